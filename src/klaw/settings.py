"""Settings, read once: command-line flag > ``KLAW_*`` environment > ``klaw.toml`` > default.

Klaw's own settings model is built without pydantic's plugins: looking them up scans the
entry points of every installed distribution (``importlib.metadata``), several milliseconds
of every ``klaw`` start in a large environment. The models of a project's own params still
get them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal


@contextmanager
def _without_pydantic_plugins() -> Iterator[None]:
    """Build pydantic models without plugins (``PYDANTIC_DISABLE_PLUGINS``; the variable is as
    it was afterwards, and pydantic looks plugins up again for the next model)."""
    previous = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    if previous is not None:  # the user chose which plugins run: leave that alone
        yield
        return
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:
        os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)


with _without_pydantic_plugins():
    from pydantic import AliasChoices, ByteSize, Field, SecretStr, ValidationError
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class KlawSettings(BaseSettings):
    """Where Klaw keeps things and how it runs stages."""

    # defer_build: the validator is made on first use, by load_settings without plugins
    model_config = SettingsConfigDict(
        env_prefix="KLAW_", extra="ignore", frozen=True, populate_by_name=True, defer_build=True
    )

    home: Path = Field(Path(".klaw"), description="Directory of the embedded metadata and lake.")
    metadata_url: str | None = Field(
        None, description="Metadata database; default sqlite:///<home>/klaw.db."
    )
    lake_catalog: str | None = Field(
        None,
        description="DuckLake catalog: a SQLite file or a postgresql:// URL; "
        "default <home>/lake.sqlite.",
    )
    lake_data: str | None = Field(None, description="Parquet data path; default <home>/lake/.")
    # Object storage, for an s3:// lake_data; each falls back to the standard AWS_* variable.
    s3_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "KLAW_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
        ),
        description="S3-compatible endpoint (MinIO, R2, moto): host:port or a URL; unset: AWS.",
    )
    s3_region: str | None = Field(
        None,
        validation_alias=AliasChoices("KLAW_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="S3 region of the bucket.",
    )
    s3_key_id: str | None = Field(
        None,
        validation_alias=AliasChoices("KLAW_S3_KEY_ID", "AWS_ACCESS_KEY_ID"),
        description="Access key id; with neither key set, the AWS credential chain is used.",
    )
    s3_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KLAW_S3_SECRET", "AWS_SECRET_ACCESS_KEY"),
        description="Secret access key (never logged or shown).",
    )
    s3_session_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("KLAW_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"),
        description="Session token of temporary credentials.",
    )
    s3_url_style: Literal["path", "vhost"] | None = Field(
        None, description="path or vhost; default path with an endpoint, else vhost."
    )
    s3_use_ssl: bool | None = Field(None, description="HTTPS; default from the endpoint URL, on.")
    executor: Literal["thread", "process", "ray"] = Field("thread", description="Executor kind.")
    ray_address: str | None = Field(
        None, description="Ray cluster to join (host:port); a local Ray when unset."
    )
    max_workers: int | None = Field(None, ge=1, description="Stages run at once (default cores+4).")
    stop_grace: float = Field(5.0, ge=0, description="Seconds a stopped stage has to end.")
    lease_ttl: float = Field(
        30.0,
        gt=0,
        description="Seconds a running stage attempt's lease lasts without a heartbeat; after "
        "that the attempt is given up and retried as a new one.",
    )
    metadata_queue: int = Field(
        10_000,
        ge=1,
        description="Records (transitions, events, log lines) of a run handed to the metadata "
        "writer and not yet committed; when that many wait, the run waits for the database.",
    )
    run_isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where `klaw server`, `klaw api` and `klaw dev` run each run: in a worker "
        "process of its own (a crash, leak or hang in a stage cannot take the server down), or "
        "on a thread of the server (no isolation; for debugging). `klaw run` runs in-process.",
    )
    run_memory_limit: ByteSize | None = Field(
        None,
        description="Most memory (resident, e.g. 4GiB) a run's worker process and its children "
        "may use under `klaw server`; over it the run is stopped and ends failed. Unset: none.",
    )
    definition_load_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds the serving commands let the project's workflow modules take to "
        "import (checked in a child process); a module that takes longer is reported, not run.",
    )
    stage_io_timeout: float = Field(
        3600.0,
        gt=0,
        description="Seconds a stage with a timeout may spend loading its inputs, and again "
        "committing its snapshot (its own timeout covers only its function).",
    )
    log_level: str = Field("warning", description="Level of Klaw's own logs on stderr.")
    log_format: Literal["console", "json"] = Field("console", description="Klaw's log format.")
    secrets_dir: Path | None = Field(
        None,
        description="Directory of secret files, one per secret named after it (e.g. "
        "/run/secrets); default <home>/secrets. Relative to the project root.",
    )
    secrets_backend: str | None = Field(
        None,
        description="Secret backend asked after the environment and the directory: module:attr "
        "of an object with get(name) -> str | None (or of a class or factory making one).",
    )
    tokens: SecretStr | None = Field(
        None, description="Bearer tokens `klaw server` accepts, comma-separated (rotation)."
    )
    tokens_file: Path | None = Field(
        None, description="File of accepted tokens, one a line (# comments), re-read live."
    )
    server_host: str = Field("127.0.0.1", description="Address `klaw server` listens on.")
    server_port: int = Field(8815, ge=0, le=65535, description="Port of `klaw server` (0: any).")
    server_cache_mb: int = Field(
        1024, ge=0, description="MiB of recently read snapshots `klaw server` keeps in memory."
    )
    api_tokens: SecretStr | None = Field(
        None,
        description="Tokens `klaw api` accepts with their roles: role:token,role:token "
        "(roles: viewer, operator, approver, admin).",
    )
    api_host: str = Field("127.0.0.1", description="Address `klaw api` listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of `klaw api` (0: any).")
    api_allowed_hosts: str = Field(
        "127.0.0.1,localhost",
        description="Host headers `klaw api` answers, comma-separated ('*': any).",
    )
    api_cors_origins: str = Field(
        "", description="Browser origins allowed to call `klaw api`, comma-separated (none)."
    )
    oidc_issuer: str | None = Field(
        None,
        description="OIDC issuer whose JWTs `klaw api` accepts as bearer tokens (its `iss`); "
        "unset: no JWTs.",
    )
    oidc_audience: str | None = Field(
        None, description="The `aud` a JWT must carry for `klaw api` (needed with an issuer)."
    )
    oidc_jwks_url: str | None = Field(
        None, description="The issuer's JWKS; default <issuer>/.well-known/jwks.json."
    )
    oidc_client_id: str | None = Field(
        None,
        description="The web UI's OIDC client id: with the issuer's authorize and token URLs, "
        "the UI offers sign-in at the issuer (authorization code with PKCE).",
    )
    oidc_authorize_url: str | None = Field(
        None, description="The issuer's authorization endpoint (for the web UI's sign-in)."
    )
    oidc_token_url: str | None = Field(
        None, description="The issuer's token endpoint (the API trades the UI's code there)."
    )
    oidc_scope: str = Field("openid", description="Scopes the web UI's sign-in asks for.")
    oidc_role_claim: str = Field(
        "klaw_role",
        description="JWT claim holding the caller's role (viewer, operator, approver, admin); a "
        "JWT without a known role is refused.",
    )
    api_rate: float = Field(
        20.0, gt=0, description="Requests per second each API principal may make, sustained."
    )
    api_burst: int = Field(40, ge=1, description="Requests an API principal may make at once.")
    api_auth_fail_rate: float = Field(
        10.0, gt=0, description="Failed authentications per minute a client IP may make."
    )
    api_auth_fail_burst: int = Field(
        20, ge=1, description="Failed authentications a client IP may make at once."
    )
    api_max_body: int = Field(
        1024 * 1024, ge=1, description="Largest request body `klaw api` reads, in bytes."
    )
    api_max_depth: int = Field(64, ge=1, description="Deepest nesting of a JSON request body.")
    api_idempotency_ttl: float = Field(
        86400.0, gt=0, description="Seconds an Idempotency-Key of POST /runs is remembered."
    )
    # -- where `klaw api` keeps its rate-limit windows
    api_rate_limit_storage: str = Field(
        "memory://",
        description="Rate-limit storage of `klaw api`: memory:// (this process) or "
        "redis://host:port[/db] (shared by every API process using it).",
    )
    api_rate_limit_prefix: str = Field(
        "klaw", min_length=1, description="Prefix of the rate-limit keys in a shared storage."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _FileSource(settings_cls))

    def resolve(self, root: Path) -> KlawSettings:
        """These settings with every path made absolute against the project root."""
        home = self.home if self.home.is_absolute() else root / self.home
        return self.model_copy(update={"home": home})

    @property
    def metadata_path(self) -> Path:
        url = self.metadata_url
        if url is None:
            return self.home / "klaw.db"
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return Path(url)

    @property
    def catalog(self) -> str:
        return self.lake_catalog or str(self.home / "lake.sqlite")

    @property
    def data_path(self) -> str:
        return self.lake_data or str(self.home / "lake")


_loaded: dict[str, KlawSettings] = {}  # load_settings' answers by their inputs
_file_values: ContextVar[dict[str, Any] | None] = ContextVar("klaw_file_settings", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The ``[settings]`` values of ``klaw.toml`` (handed in by the project loader)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = _file_values.get() or {}
        return {k: v for k, v in values.items() if k in self.settings_cls.model_fields}


def load_settings(file_values: dict[str, Any], **flags: Any) -> KlawSettings:
    """Settings from flags (``None`` means not given), env, and the project file's values."""
    from klaw.errors import ConfigError

    unknown = set(file_values) - set(KlawSettings.model_fields)
    if unknown:
        raise ConfigError(
            f"Unknown setting(s) {', '.join(sorted(unknown))} in the project file.",
            hint=f"Known settings: {', '.join(KlawSettings.model_fields)}.",
        )
    given = {k: v for k, v in flags.items() if v is not None}
    # The same environment, file values and flags give the same (frozen) settings: a process
    # that opens many orchestrators (``klaw.run`` in a loop, tests) validates them once.
    key = _cache_key(file_values, given)
    found = _loaded.get(key) if key is not None else None
    if found is not None:
        return found
    token = _file_values.set(dict(file_values))
    try:
        if KlawSettings.__pydantic_complete__:
            loaded = KlawSettings(**given)
        else:  # the first one builds the validator (defer_build): without plugins
            with _without_pydantic_plugins():
                loaded = KlawSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"Settings are not valid: {problems}.",
            hint="Check the flag, the KLAW_* environment variable or the [settings] table of "
            "klaw.toml that sets it.",
        ) from None
    finally:
        _file_values.reset(token)
    if key is not None:
        if len(_loaded) >= 64:
            _loaded.clear()
        _loaded[key] = loaded
    return loaded


def _cache_key(file_values: dict[str, Any], flags: dict[str, Any]) -> str | None:
    """What ``load_settings`` read, as a key; None when a value has no faithful ``repr``."""
    if not all(_plain(v) for v in (*file_values.values(), *flags.values())):
        return None
    env = sorted(i for i in os.environ.items() if i[0].upper().startswith("KLAW_"))
    return repr((env, file_values, flags))


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | Path):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
