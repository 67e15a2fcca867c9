"""The one place that chooses concrete backends from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from klaw.errors import ConfigError
from klaw.settings import KlawSettings

if TYPE_CHECKING:
    from klaw.execution.executor import Executor
    from klaw.execution.lease import LeaseKeeper
    from klaw.metadata.store import MetadataStore
    from klaw.storage.objects import ObjectStore
    from klaw.storage.store import AssetStore


def open_metadata(settings: KlawSettings, *, upgrade: bool = True) -> MetadataStore:
    """The metadata store. The embedded SQLite default upgrades itself; a Postgres database is
    upgraded only by `klaw db upgrade` (``upgrade`` is ignored for it), and a store on an old
    schema refuses to work and names that command."""
    url = settings.metadata.url
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        try:
            from klaw.metadata.postgres import PostgresMetadataStore
        except ImportError:
            raise ConfigError(
                "A Postgres metadata URL needs psycopg.",
                hint='Install it: pip install "klaw[postgres]".',
            ) from None
        return PostgresMetadataStore(url)
    if url is not None and not url.startswith("sqlite:"):
        raise ConfigError(
            f"KLAW_METADATA__URL={url!r} is neither sqlite:///PATH nor postgresql://...",
            hint="Unset it to use the embedded default (<home>/klaw.db).",
        )
    from klaw.metadata.sqlite import SQLiteMetadataStore

    path = settings.metadata_path
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteMetadataStore(path)
    if upgrade:
        store.migrate()
    return store


def on_object_store(settings: KlawSettings) -> bool:
    """Whether the lake's data is in object storage (``s3://``); imports nothing."""
    return settings.data_path.lower().startswith("s3://")


def object_store(settings: KlawSettings) -> ObjectStore | None:
    """How to reach the lake's object storage (None: the lake is on a file system)."""
    if not on_object_store(settings):
        return None
    from klaw.storage.objects import ObjectStore

    secret, token = settings.lake.s3.secret, settings.lake.s3.session_token
    return ObjectStore.configure(
        endpoint=settings.lake.s3.endpoint,
        region=settings.lake.s3.region,
        key_id=settings.lake.s3.key_id,
        secret=secret.get_secret_value() if secret else None,
        session_token=token.get_secret_value() if token else None,
        url_style=settings.lake.s3.url_style,
        use_ssl=settings.lake.s3.use_ssl,
    )


def check_lake(settings: KlawSettings) -> None:
    """Before anything runs: a lake in object storage can be written and read with the
    configured credentials, or a ConfigError names what is missing. A lake on a file system
    is not checked (and nothing is imported for it)."""
    config = object_store(settings)
    if config is not None:
        from klaw.storage.objects import check_object_store

        check_object_store(settings.data_path, config)


class LakeFactory:
    """Opens the asset store on first use, once per process. Picklable, so a process worker
    opens its own store and commits snapshots from where the stage ran (an object store's
    credentials travel with it, in memory only)."""

    def __init__(self, catalog: str, data_path: str, objects: ObjectStore | None = None) -> None:
        self.catalog, self.data_path, self.objects = catalog, data_path, objects
        self._store: AssetStore | None = None

    def __call__(self) -> AssetStore:
        if self._store is None:
            from klaw.storage.ducklake import DuckLakeAssetStore

            self._store = DuckLakeAssetStore(
                self.catalog, self.data_path, object_store=self.objects
            )
        return self._store

    @property
    def opened(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __getstate__(self) -> dict[str, Any]:
        return {"catalog": self.catalog, "data_path": self.data_path, "objects": self.objects}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.catalog, self.data_path = state["catalog"], state["data_path"]
        self.objects, self._store = state.get("objects"), None


class MetadataFactory:
    """Opens the metadata store on first use, once per process. Given the process's open
    ``store``, hands out that one (its roles share one connection). Picklable, so a worker
    process renews its attempts' leases in the same database as the runner (it opens its own)."""

    def __init__(self, settings: KlawSettings, store: MetadataStore | None = None) -> None:
        self.settings = settings
        self._store = store

    def __call__(self) -> MetadataStore:
        if self._store is None:
            self._store = open_metadata(self.settings)
        return self._store

    def __getstate__(self) -> dict[str, KlawSettings]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, KlawSettings]) -> None:
        self.settings, self._store = state["settings"], None


def make_executor(
    settings: KlawSettings,
    lake: LakeFactory,
    *,
    kind: str | None,
    max_workers: int | None,
    leases: LeaseKeeper | None = None,
) -> Executor:
    chosen = kind or settings.executor.kind
    workers = max_workers or settings.executor.max_workers
    if chosen == "thread":
        from klaw.execution.local import ThreadExecutor

        return ThreadExecutor(lake, workers, leases)
    if chosen == "process":
        from klaw.execution.process import ProcessExecutor

        return ProcessExecutor(lake, workers, leases)
    if chosen == "ray":
        try:
            from klaw.execution.ray import RayExecutor
        except ImportError:
            raise ConfigError(
                "The Ray executor needs Ray.", hint='Install it: pip install "klaw[ray]".'
            ) from None
        return RayExecutor(lake, workers, address=settings.executor.ray_address, leases=leases)
    raise ConfigError(
        f"Unknown executor {chosen!r}.",
        hint="Use --executor thread (default), process or ray.",
    )
