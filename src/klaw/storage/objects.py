"""Object storage for a lake's data: ``s3://bucket/prefix`` on AWS S3 or an S3-compatible store
(MinIO, Cloudflare R2, moto), through DuckDB's ``httpfs`` extension.

Credentials reach DuckDB as a temporary secret of the store's own connection (``CREATE
SECRET (TYPE s3, ...)``), never written anywhere: a key id and secret when one is configured,
otherwise the AWS credential chain (environment, profiles, SSO, instance roles) of the ``aws``
extension. :func:`check_object_store` proves at start that the data path can be written and
read, and names what is missing before anything runs. No secret is ever in a message: every
error text goes through :meth:`ObjectStore.redact`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

import duckdb

from klaw.errors import ConfigError, KlawError, StorageError
from klaw.storage import location
from klaw.storage.location import conceal, extension_file, literal, package, redact

SCHEMES = ("s3://",)  # the data paths whose credentials Klaw configures
_PROBE = ".klaw-probe"  # the marker object the start check writes and reads back (kept)
_INSTALL = "pip install 'klaw[s3]'"
_SETTINGS = (
    "KLAW_LAKE__S3__KEY_ID and KLAW_LAKE__S3__SECRET "
    "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)
_NO_CREDENTIALS = ("credential chain", "secret validation", "no credentials")
_DENIED = ("accessdenied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden")


@dataclass(frozen=True, slots=True)
class ObjectStore:
    """How to reach an S3 API: where (``endpoint`` as ``host:port``, empty for AWS), how
    (``url_style``, ``use_ssl``), and as whom (a key, or the credential chain when none)."""

    region: str | None = None
    endpoint: str | None = None
    url_style: Literal["path", "vhost"] | None = None
    use_ssl: bool = True
    key_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def configure(
        cls,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        key_id: str | None = None,
        secret: str | None = None,
        session_token: str | None = None,
        url_style: Literal["path", "vhost"] | None = None,
        use_ssl: bool | None = None,
    ) -> ObjectStore:
        """From settings: an endpoint may be a URL (``http://127.0.0.1:9000``, whose scheme
        decides ``use_ssl`` unless it is given); with an endpoint the URL style defaults to
        ``path``, as MinIO and moto need; empty values count as unset."""
        endpoint = (endpoint or "").strip() or None
        if endpoint is not None and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
            if use_ssl is None:
                use_ssl = scheme.lower() != "http"
            endpoint = endpoint.rstrip("/")
        key_id, secret = (key_id or "").strip() or None, secret or None
        if (key_id is None) != (secret is None):
            given, missing = ("KLAW_LAKE__S3__KEY_ID", "KLAW_LAKE__S3__SECRET")
            if key_id is None:
                given, missing = missing, given
            raise ConfigError(
                f"S3 credentials are incomplete: {given} is set but {missing} is not.",
                hint=f"Set both of {_SETTINGS}, or neither to use the AWS credential chain.",
            )
        return cls(
            region=(region or "").strip() or None,
            endpoint=endpoint,
            url_style=url_style or ("path" if endpoint else None),
            use_ssl=True if use_ssl is None else use_ssl,
            key_id=key_id,
            secret=secret,
            session_token=session_token or None,
        )

    @property
    def chain(self) -> bool:
        """Whether credentials come from the AWS credential chain (no key configured)."""
        return self.key_id is None

    @property
    def extensions(self) -> tuple[str, ...]:
        """The DuckDB extensions this needs, loaded from their Python packages."""
        return ("httpfs", "aws") if self.chain else ("httpfs",)

    def secret_sql(self) -> str:
        """The ``CREATE SECRET`` statement of these settings (it holds the secret: never
        show it). From now on every storage error message hides the secret."""
        conceal(self.secret, self.session_token)
        options = ["TYPE s3"]
        if self.chain:
            options.append("PROVIDER credential_chain")
        else:
            options += [
                f"KEY_ID {literal(self.key_id or '')}",
                f"SECRET {literal(self.secret or '')}",
            ]
            if self.session_token:
                options.append(f"SESSION_TOKEN {literal(self.session_token)}")
        if self.region:
            options.append(f"REGION {literal(self.region)}")
        if self.endpoint:
            options.append(f"ENDPOINT {literal(self.endpoint)}")
        if self.url_style:
            options.append(f"URL_STYLE {literal(self.url_style)}")
        options.append(f"USE_SSL {'true' if self.use_ssl else 'false'}")
        return f"CREATE OR REPLACE SECRET klaw_s3 ({', '.join(options)})"

    def authorize(self, con: duckdb.DuckDBPyConnection) -> None:
        """Give ``con`` (its extensions loaded) these credentials; a StorageError says why not."""
        try:
            con.execute(self.secret_sql())
        except duckdb.Error as exc:
            error = _secret_error(self, exc)
            raise StorageError(error.message, hint=error.hint) from None

    def redact(self, text: str) -> str:
        """``text`` with the secret, the session token and any Postgres password as ***."""
        for hidden in (self.secret, self.session_token):
            if hidden:
                text = text.replace(hidden, "***")
        return redact(text)

    @property
    def where(self) -> str:
        return f"the S3 endpoint {self.endpoint}" if self.endpoint else "AWS S3"


def on_object_store(data_path: str) -> bool:
    """Whether a data path is in object storage whose credentials Klaw configures."""
    return data_path.lower().startswith(SCHEMES)


def check_object_store(data_path: str, config: ObjectStore) -> None:
    """Prove that the lake's data path can be written and read with ``config``, before any
    stage runs: write a marker object under it and read it back. A ConfigError names what is
    missing: the httpfs package, credentials, the endpoint, the bucket, or permission."""
    url = redact(data_path)
    files = []
    for name in config.extensions:
        try:
            files.append(extension_file(name))
        except StorageError:
            why = "" if name == "httpfs" else " to find credentials (none are configured)"
            found = location.extension_folders(name)
            state = f"has no build for DuckDB {duckdb.__version__}" if found else "is not installed"
            raise ConfigError(
                f"The lake's data path {url} is in object storage, which needs DuckDB's {name!r}"
                f" extension{why}: the package {package(name)} {state}.",
                hint=f"Install the object-storage extras: {_INSTALL}"
                + ("" if name == "httpfs" else f", or set {_SETTINGS}"),
            ) from None
    marker = data_path.rstrip("/") + "/" + _PROBE
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    try:
        for file in files:
            con.execute(f"LOAD {literal(str(file))}")
        try:
            con.execute(config.secret_sql())
        except duckdb.Error as exc:
            raise _secret_error(config, exc) from None
        token = uuid.uuid4().hex
        try:
            con.execute(
                f"COPY (SELECT {literal(token)} AS probe) TO {literal(marker)} (FORMAT csv)"
            )
            row = con.execute(f"SELECT probe FROM read_csv({literal(marker)})").fetchone()
        except duckdb.Error as exc:
            raise probe_error(config, data_path, exc) from None
        if row is None or row[0] != token:
            raise ConfigError(
                f"The lake's data path {url} did not read back what was written to it.",
                hint="Check that nothing else writes to that prefix, and the store's consistency.",
            )
    finally:
        con.close()


def probe_error(config: ObjectStore, data_path: str, exc: duckdb.Error) -> KlawError:
    """What an S3 request's failure means, naming the URL (redacted) and what to fix."""
    text = config.redact(str(exc))
    lower = text.lower()
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(exc).__name__
    status = getattr(exc, "status_code", None)  # duckdb.HTTPException carries it
    url = redact(data_path)
    bucket = data_path.split("://", 1)[-1].split("/", 1)[0]
    if status == 404 or "nosuchbucket" in lower:
        return ConfigError(
            f"The lake's data path {url}: the bucket {bucket!r} does not exist on {config.where}.",
            hint="Create the bucket, or fix KLAW_LAKE__DATA (and KLAW_LAKE__S3__ENDPOINT, "
            "KLAW_LAKE__S3__REGION).",
        )
    if status in (401, 403) or any(word in lower for word in _DENIED):
        return ConfigError(
            f"The lake's data path {url}: access denied by {config.where} ({first}).",
            hint=f"Check the credentials ({_SETTINGS}, or the AWS profile) and that they may "
            f"read, write and list {url}.",
        )
    if "could not connect" in lower or "connection" in lower or "resolve" in lower:
        return ConfigError(
            f"The lake's data path {url}: {config.where} cannot be reached ({first}).",
            hint="Check KLAW_LAKE__S3__ENDPOINT (host:port or a URL), KLAW_LAKE__S3__USE_SSL "
            "and the network.",
        )
    return ConfigError(
        f"The lake's data path {url} cannot be written and read back: {first}",
        hint="Check KLAW_LAKE__DATA and the KLAW_LAKE__S3__* settings.",
    )


def _secret_error(config: ObjectStore, exc: duckdb.Error) -> KlawError:
    text = config.redact(str(exc))
    first = " ".join(text.strip().splitlines()[0].split()) if text.strip() else type(exc).__name__
    if config.chain and any(word in text.lower() for word in _NO_CREDENTIALS):
        return ConfigError(
            "No S3 credentials found: none are configured, and the AWS credential chain "
            "(environment, profile, SSO, instance role) found none.",
            hint=f"Set {_SETTINGS}, or configure an AWS profile (AWS_PROFILE).",
        )
    return ConfigError(
        f"The S3 settings are not valid: {first}",
        hint="Check the KLAW_LAKE__S3__* settings (KLAW_LAKE__S3__URL_STYLE is path or vhost).",
    )
