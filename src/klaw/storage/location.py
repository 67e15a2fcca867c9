"""Where a lake lives: its catalog database (a SQLite file or a Postgres database), its data
path, and the DuckDB extensions each needs, which come from the installed
``duckdb-extension-*`` Python packages and are never downloaded.

A Postgres catalog is named the way ``KLAW_METADATA__URL`` names a metadata database: a URL
(``postgresql://user:password@host:5432/db``) or a ``postgres:`` libpq keyword string
(``postgres:dbname=klaw host=db``). DuckLake keeps its tables in the ``public`` schema unless
the URL's ``options`` set a search path (``?options=-csearch_path%3Dlake``): its first schema is
then where they go, created on first use if it does not exist.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import duckdb

from klaw.errors import StorageError

CONNECT_TIMEOUT_S = 10  # how long an unreachable Postgres host may take to be named
_BUSY_TIMEOUT_MS = 5000
_REMOTE_EXTENSIONS = {"s3": "httpfs", "gs": "httpfs", "gcs": "httpfs", "r2": "httpfs"}
_URL_SCHEMES = ("postgresql://", "postgres://")
_KEYWORD_PREFIXES = ("postgresql:", "postgres:")
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([^\s]+)")
_URL_PASSWORD = re.compile(r"(://[^:/@\s\"']*:)[^@\s\"']*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&\"]+)")
_concealed: set[str] = set()  # secrets every message hides (see conceal)


@dataclass(frozen=True, slots=True)
class CatalogTarget:
    """How to attach one catalog: what ``ATTACH`` gets, the extension its database needs, the
    extra ``ATTACH`` options, the schema that holds DuckLake's tables in that database, and the
    database as its own driver opens it (a SQLite file's path, or a Postgres conninfo)."""

    attach: str
    extension: str
    options: tuple[str, ...]
    schema: str
    database: str

    @property
    def postgres(self) -> bool:
        return self.extension == "postgres_scanner"


def is_postgres(catalog: str | Path) -> bool:
    """Whether ``catalog`` names a Postgres database rather than a SQLite file."""
    return isinstance(catalog, str) and catalog.startswith(_KEYWORD_PREFIXES)


def redact(text: str) -> str:
    """``text`` with every password of a Postgres URL or keyword string in it, and every
    secret handed to :func:`conceal`, replaced by ***."""
    for secret in tuple(_concealed):
        text = text.replace(secret, "***")
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def conceal(*secrets: str | None) -> None:
    """From now on, :func:`redact` hides these (the object store's secret and token)."""
    _concealed.update(s for s in secrets if s and len(s) >= 4)  # never a tiny, common string


def catalog_target(catalog: str | Path) -> CatalogTarget:
    """The attach target of a catalog; for a SQLite one, its folder is created."""
    if is_postgres(catalog):
        return _postgres_target(str(catalog))
    text = str(catalog)
    if isinstance(catalog, str) and catalog.startswith("sqlite:"):
        text = text.removeprefix("sqlite:")
    path = Path(text).expanduser().resolve()
    make_folder(path.parent, "the folder for the DuckLake catalog")
    options = ("META_JOURNAL_MODE 'WAL'", f"META_BUSY_TIMEOUT {_BUSY_TIMEOUT_MS}")
    return CatalogTarget(f"ducklake:sqlite:{path}", "sqlite_scanner", options, "main", str(path))


def _postgres_target(text: str) -> CatalogTarget:
    if text.startswith(_URL_SCHEMES):
        parts = urlsplit(text)
        query = parse_qs(parts.query, keep_blank_values=True)
        options = " ".join(query.get("options", []))
        if "connect_timeout" not in query:
            extra = urlencode({"connect_timeout": CONNECT_TIMEOUT_S})
            parts = parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra)
        conninfo = urlunsplit(parts)
    else:
        conninfo = text.split(":", 1)[1].strip()
        try:
            words = shlex.split(conninfo)
        except ValueError as exc:
            raise StorageError(
                f"the Postgres catalog {redact(text)!r} cannot be parsed: {exc}",
                hint="write it as postgresql://user@host:5432/db or postgres:dbname=db host=...",
            ) from None
        pairs = [word.split("=", 1) for word in words]
        values = {pair[0].strip(): pair[1] for pair in pairs if len(pair) == 2}
        options = values.get("options", "")
        if "connect_timeout" not in values:
            conninfo = f"{conninfo} connect_timeout={CONNECT_TIMEOUT_S}"
    schema = _schema(options)
    return CatalogTarget(
        f"ducklake:postgres:{conninfo}",
        "postgres_scanner",
        (f"METADATA_SCHEMA {literal(schema)}",),
        schema,
        conninfo,
    )


def _schema(options: str) -> str:
    """The first schema of a ``-c search_path=...`` in libpq ``options``; ``public`` without."""
    found = _SEARCH_PATH.search(options)
    first = found.group(1).split(",")[0].strip() if found else ""
    if first.startswith('"') and first.endswith('"') and len(first) > 1:
        return first[1:-1]
    return first.lower() or "public"  # unquoted, Postgres folds it to lower case


def data_location(data_path: str | Path) -> tuple[str, str | None]:
    """The absolute data path (ending in '/') and the extension its file system needs."""
    text = str(data_path)
    scheme = text.split("://", 1)[0].lower() if "://" in text else None
    if scheme is not None:
        if scheme not in _REMOTE_EXTENSIONS:
            raise StorageError(
                f"the data path {text!r} uses {scheme}://, which Klaw cannot store to",
                hint="use a local folder or an s3:// or gs:// URL",
            )
        return text.rstrip("/") + "/", _REMOTE_EXTENSIONS[scheme]
    path = Path(text).expanduser().resolve()
    make_folder(path, "the data folder")
    return str(path) + "/", None


def make_folder(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create {what} {str(path)!r}: {exc.strerror}",
            hint="choose a path in a folder you can write",
        ) from None


def package(extension: str) -> str:
    """The Python package that ships a DuckDB extension."""
    return "duckdb-extension-" + extension.replace("_", "-")


def extension_folders(name: str) -> list[str]:
    """The folders of the installed ``duckdb-extension-<name>`` package (none: not installed)."""
    spec = importlib.util.find_spec("duckdb_extension_" + name)
    return list(spec.submodule_search_locations or []) if spec else []


def extension_file(name: str) -> Path:
    """The extension file shipped inside the ``duckdb-extension-<name>`` Python package."""
    folders = extension_folders(name)
    relative = Path("extensions") / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    for folder in folders:
        if (Path(folder) / relative).is_file():
            return Path(folder) / relative
    found = "is not installed" if not folders else f"has no build for DuckDB {duckdb.__version__}"
    raise StorageError(
        f"the DuckDB extension {name!r} is needed, but the package {package(name)} {found}",
        hint=f"install it with `pip install {package(name)}=={duckdb.__version__}`",
    )


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
