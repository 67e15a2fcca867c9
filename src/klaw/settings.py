"""Settings, read once: command-line flag > ``KLAW_*`` environment > ``klaw.toml`` > default.

Settings are nested in groups, one per part of Klaw: ``metadata``, ``lake`` (with ``lake.s3``),
``executor``, ``flight``, ``http`` (with ``http.oidc``), ``log``, ``secrets``, ``telemetry``
and ``mcp``; the project's ``home`` stays at the top. A group's setting is
``[settings.GROUP]`` in ``klaw.toml`` and ``KLAW_GROUP__NAME`` in the environment
(``KLAW_LAKE__CATALOG``, ``KLAW_HTTP__OIDC__ISSUER``). The flat names of earlier releases
(``KLAW_LAKE_CATALOG``, ``lake_catalog`` under ``[settings]``) still work for this release,
each with a deprecation warning naming its new spelling (:data:`LEGACY`). The command line's
flags keep their short names.

The client's own settings (``KLAW_SERVER``, ``KLAW_URL``, ``KLAW_TOKEN``) are
:class:`ClientSettings`: a client needs no project.

Klaw's own settings models are built without pydantic's plugins: looking them up scans the
entry points of every installed distribution (``importlib.metadata``), several milliseconds
of every ``klaw`` start in a large environment. The models of a project's own params still
get them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal


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
    from pydantic import (
        BaseModel,
        BeforeValidator,
        ByteSize,
        ConfigDict,
        Field,
        SecretStr,
        ValidationError,
    )
    from pydantic_settings import (
        BaseSettings,
        EnvSettingsSource,
        NoDecode,
        PydanticBaseSettingsSource,
        SettingsConfigDict,
    )


def _split(value: Any) -> Any:
    """A comma-separated string as a list (what an environment variable can hold)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list that the environment gives comma-separated (``a,b``) and klaw.toml as a TOML array.
Names = Annotated[list[str], NoDecode, BeforeValidator(_split)]
Secrets = Annotated[list[SecretStr], NoDecode, BeforeValidator(_split)]
_POSTGRES = ("postgresql://", "postgres://")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class MetadataSettings(_Group):
    """The metadata database: runs, attempts, events, logs, schedules, tokens."""

    url: str | None = Field(
        None, description="sqlite:///PATH or postgresql://...; default sqlite:///<home>/klaw.db."
    )
    queue: int = Field(
        10_000,
        ge=1,
        description="Records (transitions, events, log lines) of a run handed to the metadata "
        "writer and not yet committed; when that many wait, the run waits for the database.",
    )

    @property
    def postgres(self) -> bool:
        """Whether the metadata is in Postgres (decided here, once, from the URL)."""
        return self.url is not None and self.url.startswith(_POSTGRES)


class S3Settings(_Group):
    """Object storage of an ``s3://`` lake; each falls back to the standard ``AWS_*`` variable."""

    endpoint: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, R2, moto): host:port or a URL; unset: AWS.",
    )
    region: str | None = Field(None, description="S3 region of the bucket.")
    key_id: str | None = Field(
        None, description="Access key id; with neither key set, the AWS credential chain is used."
    )
    secret: SecretStr | None = Field(None, description="Secret access key (never logged or shown).")
    session_token: SecretStr | None = Field(
        None, description="Session token of temporary credentials."
    )
    url_style: Literal["path", "vhost"] | None = Field(
        None, description="path or vhost; default path with an endpoint, else vhost."
    )
    use_ssl: bool | None = Field(None, description="HTTPS; default from the endpoint URL, on.")


class LakeSettings(_Group):
    """The DuckLake catalog and its Parquet data."""

    catalog: str | None = Field(
        None,
        description="DuckLake catalog: a SQLite file or a postgresql:// URL; "
        "default <home>/lake.sqlite.",
    )
    data: str | None = Field(None, description="Parquet data path; default <home>/lake/.")
    s3: S3Settings = Field(default_factory=S3Settings)


class ExecutorSettings(_Group):
    """How and where stages run."""

    kind: Literal["thread", "process", "ray"] = Field("thread", description="Executor kind.")
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
    stage_io_timeout: float = Field(
        3600.0,
        gt=0,
        description="Seconds a stage with a timeout may spend loading its inputs, and again "
        "committing its snapshot (its own timeout covers only its function).",
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


class FlightSettings(_Group):
    """`klaw server`: Arrow Flight."""

    host: str = Field("127.0.0.1", description="Address `klaw server` listens on.")
    port: int = Field(8815, ge=0, le=65535, description="Port of `klaw server` (0: any).")
    cache_mb: int = Field(
        1024, ge=0, description="MiB of recently read snapshots `klaw server` keeps in memory."
    )
    tokens: Secrets = Field(
        default_factory=list,
        description="Bearer tokens `klaw server` accepts (more than one: rotation).",
    )
    tokens_file: Path | None = Field(
        None, description="File of accepted tokens, one a line (# comments), re-read live."
    )


class OidcSettings(_Group):
    """JWTs of an OIDC issuer as bearer tokens of `klaw api`, and the web UI's sign-in there."""

    issuer: str | None = Field(
        None,
        description="OIDC issuer whose JWTs `klaw api` accepts as bearer tokens (its `iss`); "
        "unset: no JWTs.",
    )
    audience: str | None = Field(
        None, description="The `aud` a JWT must carry for `klaw api` (needed with an issuer)."
    )
    jwks_url: str | None = Field(
        None, description="The issuer's JWKS; default <issuer>/.well-known/jwks.json."
    )
    client_id: str | None = Field(
        None,
        description="The web UI's OIDC client id: with the issuer's authorize and token URLs, "
        "the UI offers sign-in at the issuer (authorization code with PKCE).",
    )
    authorize_url: str | None = Field(
        None, description="The issuer's authorization endpoint (for the web UI's sign-in)."
    )
    token_url: str | None = Field(
        None, description="The issuer's token endpoint (the API trades the UI's code there)."
    )
    scope: str = Field("openid", description="Scopes the web UI's sign-in asks for.")
    role_claim: str = Field(
        "klaw_role",
        description="JWT claim holding the caller's role (viewer, operator, approver, admin); a "
        "JWT without a known role is refused.",
    )


class HttpSettings(_Group):
    """`klaw api`: the HTTP API and the web UI."""

    host: str = Field("127.0.0.1", description="Address `klaw api` listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of `klaw api` (0: any).")
    tokens: Secrets = Field(
        default_factory=list,
        description="Tokens `klaw api` accepts with their roles, each role:token "
        "(roles: viewer, operator, approver, admin).",
    )
    allowed_hosts: Names = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"],
        description="Host headers `klaw api` answers ('*': any).",
    )
    cors_origins: Names = Field(
        default_factory=list, description="Browser origins allowed to call `klaw api` (none)."
    )
    rate: float = Field(
        20.0, gt=0, description="Requests per second each API principal may make, sustained."
    )
    burst: int = Field(40, ge=1, description="Requests an API principal may make at once.")
    auth_fail_rate: float = Field(
        10.0, gt=0, description="Failed authentications per minute a client IP may make."
    )
    auth_fail_burst: int = Field(
        20, ge=1, description="Failed authentications a client IP may make at once."
    )
    max_body: int = Field(
        1024 * 1024, ge=1, description="Largest request body `klaw api` reads, in bytes."
    )
    max_depth: int = Field(64, ge=1, description="Deepest nesting of a JSON request body.")
    idempotency_ttl: float = Field(
        86400.0, gt=0, description="Seconds an Idempotency-Key of POST /runs is remembered."
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="Rate-limit storage of `klaw api`: memory:// (this process) or "
        "redis://host:port[/db] (shared by every API process using it).",
    )
    rate_limit_prefix: str = Field(
        "klaw", min_length=1, description="Prefix of the rate-limit keys in a shared storage."
    )
    oidc: OidcSettings = Field(default_factory=OidcSettings)


class LogSettings(_Group):
    """Klaw's own logs (stage output is captured apart)."""

    level: str = Field("warning", description="Level of Klaw's own logs on stderr.")
    format: Literal["console", "json"] = Field("console", description="Klaw's log format.")


class SecretsSettings(_Group):
    """Where `klaw.Secret` values are looked up after the environment (``KLAW_SECRET_<NAME>``)."""

    dir: Path | None = Field(
        None,
        description="Directory of secret files, one per secret named after it (e.g. "
        "/run/secrets); default <home>/secrets. Relative to the project root.",
    )
    backend: str | None = Field(
        None,
        description="Secret backend asked after the environment and the directory: module:attr "
        "of an object with get(name) -> str | None (or of a class or factory making one).",
    )


class TelemetrySettings(_Group):
    """Traces, metrics and logs (OpenTelemetry) and lineage (OpenLineage); off by default,
    and then none is imported. The SDK's own ``OTEL_*`` variables apply too (``OTEL_SERVICE_NAME``,
    ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER``, ...)."""

    traces: Literal["none", "console", "otlp-http", "otlp-grpc"] = Field(
        "none", description="Where spans go: an OTLP collector (HTTP or gRPC), stdout, nowhere."
    )
    endpoint: str | None = Field(
        None,
        description="OTLP endpoint (e.g. http://127.0.0.1:4318); unset: "
        "OTEL_EXPORTER_OTLP_ENDPOINT, else the SDK's default.",
    )
    service_name: str | None = Field(
        None, description="service.name of the spans; unset: OTEL_SERVICE_NAME, else klaw."
    )
    sample_ratio: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of new traces kept (0.1: one in ten; a child follows its parent); "
        "unset: OTEL_TRACES_SAMPLER, else all.",
    )
    logs: Literal["none", "console", "otlp-http", "otlp-grpc"] = Field(
        "none",
        description="Where Klaw's log records and the stage logs it captures go besides stderr "
        "and the metadata store: an OTLP collector (HTTP or gRPC, at endpoint), stdout, nowhere.",
    )
    metrics: Literal["none", "console", "otlp-http", "otlp-grpc"] = Field(
        "none",
        description="Where metrics go besides /metrics on the API: an OTLP collector (HTTP or "
        "gRPC, at endpoint), stdout, nowhere.",
    )
    metrics_interval: float | None = Field(
        None,
        gt=0,
        description="Seconds between OTLP metric exports; unset: OTEL_METRIC_EXPORT_INTERVAL, "
        "else 60.",
    )
    trace_url: str | None = Field(
        None,
        description="Link from the web UI's run page to each stage attempt's trace: a URL with "
        "{trace_id}, {run_id}, {stage} and {attempt} (e.g. a Grafana Tempo or Jaeger search).",
    )
    lineage: Literal["none", "console", "http", "file"] = Field(
        "none",
        description="Where OpenLineage events of stage attempts go: a lineage server over HTTP "
        "(Marquez), a file of JSON lines, stdout, nowhere.",
    )
    lineage_url: str | None = Field(
        None, description="Lineage server for lineage = http (e.g. http://marquez:5000)."
    )
    lineage_file: str | None = Field(None, description="File for lineage = file (appended).")
    lineage_namespace: str = Field(
        "klaw", description="OpenLineage namespace of Klaw's jobs and datasets."
    )


class McpSettings(_Group):
    """``klaw mcp``: Klaw's commands as tools of an MCP server for AI assistants."""

    confirm: Names = Field(
        default_factory=list,
        description="MCP tools a person confirms before each call (MCP elicitation), e.g. "
        "submit_run,cancel_run; * for every mutating tool.",
    )


class SettingDeprecationWarning(FutureWarning):
    """A setting was given by its flat name of an earlier release (shown by default: the
    people who set environment variables and ``klaw.toml`` are a program's users)."""


class KlawSettings(BaseSettings):
    """Where Klaw keeps things and how it runs stages."""

    # defer_build: the validator is made on first use, by load_settings without plugins
    model_config = SettingsConfigDict(
        env_prefix="KLAW_",
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
        defer_build=True,
    )

    home: Path = Field(Path(".klaw"), description="Directory of the embedded metadata and lake.")
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    flight: FlightSettings = Field(default_factory=FlightSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    mcp: McpSettings = Field(default_factory=McpSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _EnvSource(settings_cls),
            _LegacyEnvSource(settings_cls),
            _FileSource(settings_cls),
        )

    def resolve(self, root: Path) -> KlawSettings:
        """These settings with every path made absolute against the project root."""
        home = self.home if self.home.is_absolute() else root / self.home
        return self.model_copy(update={"home": home})

    @property
    def metadata_path(self) -> Path:
        """The SQLite file of the metadata (when it is not in Postgres)."""
        url = self.metadata.url
        if url is None:
            return self.home / "klaw.db"
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        return Path(url)

    @property
    def catalog(self) -> str:
        """The lake's DuckLake catalog: a SQLite file or a Postgres URL."""
        return self.lake.catalog or str(self.home / "lake.sqlite")

    @property
    def data_path(self) -> str:
        """Where the lake's Parquet files are: a folder or an ``s3://`` URL."""
        return self.lake.data or str(self.home / "lake")

    @property
    def on_object_store(self) -> bool:
        """Whether the lake's data is in object storage (``s3://``)."""
        return self.data_path.lower().startswith("s3://")


# The flat names of earlier releases, by where each setting is now. Flags keep these names.
LEGACY: dict[str, tuple[str, ...]] = {
    "metadata_url": ("metadata", "url"),
    "metadata_queue": ("metadata", "queue"),
    "lake_catalog": ("lake", "catalog"),
    "lake_data": ("lake", "data"),
    **{f"s3_{name}": ("lake", "s3", name) for name in S3Settings.model_fields},
    "executor": ("executor", "kind"),
    **{name: ("executor", name) for name in ExecutorSettings.model_fields if name != "kind"},
    "tokens": ("flight", "tokens"),
    "tokens_file": ("flight", "tokens_file"),
    "server_host": ("flight", "host"),
    "server_port": ("flight", "port"),
    "server_cache_mb": ("flight", "cache_mb"),
    **{f"api_{name}": ("http", name) for name in HttpSettings.model_fields if name != "oidc"},
    **{f"oidc_{name}": ("http", "oidc", name) for name in OidcSettings.model_fields},
    "log_level": ("log", "level"),
    "log_format": ("log", "format"),
    "secrets_dir": ("secrets", "dir"),
    "secrets_backend": ("secrets", "backend"),
}
# The standard AWS variables a lake in S3 falls back to, after Klaw's own.
AWS_FALLBACK: dict[str, tuple[str, ...]] = {
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "key_id": ("AWS_ACCESS_KEY_ID",),
    "secret": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}


def env_name(path: tuple[str, ...]) -> str:
    """The environment variable of the setting at ``path`` (``KLAW_LAKE__CATALOG``)."""
    return "KLAW_" + "__".join(path).upper()


def toml_name(path: tuple[str, ...]) -> str:
    """Where the setting at ``path`` goes in ``klaw.toml`` (``[settings.lake] catalog``)."""
    if len(path) == 1:
        return f"{path[0]} under [settings]"
    return f"{path[-1]} under [settings.{'.'.join(path[:-1])}]"


_warned: set[str] = set()


def _deprecated(old: str, new: str) -> None:
    if old in _warned:
        return
    _warned.add(old)
    warnings.warn(
        f"{old} is deprecated and will stop working in the next release: use {new}.",
        SettingDeprecationWarning,
        stacklevel=2,
    )


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any, *, keep: bool) -> None:
    """Set ``tree[path] = value``; with ``keep``, a value already there stays."""
    for part in path[:-1]:
        found = tree.setdefault(part, {})
        if not isinstance(found, dict):  # a group given whole (a model): leave it to validation
            return
        tree = found
    if keep and path[-1] in tree:
        return
    tree[path[-1]] = value


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flags by their flat names (``max_workers=4``) as nested settings; group names and
    ``home`` pass through."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        path = LEGACY.get(name)
        if path is None or (name == "executor" and isinstance(value, Mapping | BaseModel)):
            tree[name] = value
        else:
            _put(tree, path, value, keep=False)
    return tree


class _EnvSource(EnvSettingsSource):
    """``KLAW_*`` by the nested names. ``KLAW_EXECUTOR=thread`` (an earlier release's flat
    name, equal to a group's) is left to :class:`_LegacyEnvSource`."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        value = self.env_vars.get("klaw_executor")
        if value is not None and not value.lstrip().startswith("{"):
            self.env_vars = {k: v for k, v in self.env_vars.items() if k != "klaw_executor"}


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """The flat ``KLAW_*`` names of earlier releases (deprecated), then the ``AWS_*`` fallbacks
    of the S3 settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = {k.upper(): v for k, v in os.environ.items() if k[:4].upper() in ("KLAW", "AWS_")}
        tree: dict[str, Any] = {}
        for name, path in LEGACY.items():
            value = environ.get("KLAW_" + name.upper())
            if value is None:
                continue
            if name == "executor" and value.lstrip().startswith("{"):
                continue  # the group, as JSON: the nested names' source has it
            _deprecated(f"KLAW_{name.upper()}", env_name(path))
            _put(tree, path, value, keep=False)
        for name, names in AWS_FALLBACK.items():
            for aws in names:
                if aws in environ:
                    _put(tree, ("lake", "s3", name), environ[aws], keep=True)
                    break
        return tree


_file_values: ContextVar[dict[str, Any] | None] = ContextVar("klaw_file_settings", default=None)


class _FileSource(PydanticBaseSettingsSource):
    """The ``[settings]`` tables of ``klaw.toml`` (handed in by the project loader, nested
    already by :func:`_from_file`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


def _from_file(values: Mapping[str, Any]) -> dict[str, Any]:
    """The project file's settings, nested: flat names of earlier releases moved to their
    group (deprecated); an unknown name is an error that lists the known ones."""
    from klaw.errors import ConfigError

    tree: dict[str, Any] = {}
    legacy: list[tuple[str, Any]] = []
    for name, value in values.items():
        if name in KlawSettings.model_fields:
            tree[name] = value
        elif name in LEGACY:
            legacy.append((name, value))
        else:
            raise ConfigError(
                f"Unknown setting {name!r} in the project file's [settings].",
                hint=f"Known settings: {', '.join(KlawSettings.model_fields)}; a group's "
                'settings go in its own table, e.g. [settings.lake] catalog = "...".',
            )
    for name, value in legacy:  # a value in its group's table wins over the flat name
        path = LEGACY[name]
        _deprecated(f"{name} under [settings]", toml_name(path))
        _put(tree, path, value, keep=True)
    return tree


_loaded: dict[str, KlawSettings] = {}  # load_settings' answers by their inputs


def load_settings(file_values: Mapping[str, Any], **flags: Any) -> KlawSettings:
    """Settings from flags (``None`` means not given; flat flag names such as
    ``max_workers`` or a group's values as a dict), the environment, and the project file's
    ``[settings]``."""
    from klaw.errors import ConfigError

    given = nest({k: v for k, v in flags.items() if v is not None})
    # The same environment, file values and flags give the same (frozen) settings: a process
    # that opens many orchestrators (``klaw.run`` in a loop, tests) validates them once.
    key = _cache_key(dict(file_values), given)
    found = _loaded.get(key) if key is not None else None
    if found is not None:
        return found
    token = _file_values.set(_from_file(file_values))
    try:
        if KlawSettings.__pydantic_complete__:
            loaded = KlawSettings(**given)
        else:  # the first one builds the validator (defer_build): without plugins
            with _without_pydantic_plugins():
                loaded = KlawSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise ConfigError(
            f"Settings are not valid: {problems}.",
            hint="Check the flag, the KLAW_* environment variable or the [settings] table of "
            "klaw.toml that sets it (a group's setting is KLAW_GROUP__NAME, e.g. "
            "KLAW_LAKE__CATALOG, or NAME under [settings.GROUP]).",
        ) from None
    finally:
        _file_values.reset(token)
    if key is not None:
        if len(_loaded) >= 64:
            _loaded.clear()
        _loaded[key] = loaded
    return loaded


def _problem(error: Any) -> str:
    path = tuple(str(p) for p in error["loc"])
    where = ".".join(path)
    if error["type"] == "extra_forbidden" and len(path) > 1:
        group = ".".join(path[:-1])
        return f"{where}: no such setting in [settings.{group}] ({env_name(path)})"
    return f"{where} ({env_name(path)}): {error['msg']}"


def _cache_key(file_values: dict[str, Any], flags: dict[str, Any]) -> str | None:
    """What ``load_settings`` read, as a key; None when a value has no faithful ``repr``."""
    if not all(_plain(v) for v in (*file_values.values(), *flags.values())):
        return None
    env = sorted(i for i in os.environ.items() if i[0].upper().startswith(("KLAW_", "AWS_")))
    return repr((env, file_values, flags))


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | Path):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


class ClientSettings(BaseSettings):
    """What a client (the CLI's ``--server`` and ``--url``) reads: no project needed."""

    model_config = SettingsConfigDict(
        env_prefix="KLAW_", extra="ignore", frozen=True, defer_build=True
    )

    server: str | None = Field(None, description="Klaw server to send commands to (grpc://).")
    url: str | None = Field(None, description="Klaw HTTP API to send commands to (http://).")
    token: SecretStr | None = Field(None, description="Bearer token sent to either.")


def load_client_settings() -> ClientSettings:
    """The client's settings from the environment (``KLAW_SERVER``, ``KLAW_URL``,
    ``KLAW_TOKEN``)."""
    with _without_pydantic_plugins():
        return ClientSettings()
