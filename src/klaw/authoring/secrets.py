"""Secret references: ``klaw.Secret("name")`` in a params model names a secret that Klaw looks
up when a run is prepared (and again on every resume and scheduled run). The run record keeps
the reference, never the value; the stage gets the value through ``get_secret_value()``.

A reference is written ``secret:NAME`` (CLI, HTTP API, the run record) or ``{"$secret": NAME}``
(JSON). A plain ``pydantic.SecretStr`` given by value is recorded as :data:`REDACTED`, so a
resumed run must be given it again instead of replaying a mask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from klaw.errors import ConfigError, DefinitionError

PREFIX: Final = "secret:"
MASK: Final = "***"
REDACTED: Final = {"$redacted": True}  # a SecretStr given by value, not stored
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: object) -> str:
    """``name`` if it can name a secret (letters, digits, ``_ . -``; no path separator)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DefinitionError(
            f"{name!r} is not a secret name.",
            hint="A secret name is letters, digits, '_', '.' or '-', starting with a letter or "
            "digit, e.g. klaw.Secret('warehouse_password').",
        )
    return name


class Secret:
    """A reference to a secret by name, and (once a run resolved it) its value.

    ``repr`` and ``str`` never show the value; ``get_secret_value()`` returns it.
    """

    __slots__ = ("_name", "_value")

    def __init__(self, name: str) -> None:
        self._name = check_name(name)
        self._value: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def resolved(self) -> bool:
        return self._value is not None

    @property
    def reference(self) -> str:
        """How the run record writes this secret: ``secret:NAME``."""
        return PREFIX + self._name

    def get_secret_value(self) -> str:
        """The secret's value, as resolved for this run."""
        if self._value is None:
            raise ConfigError(
                f"Secret {self._name!r} was not resolved: Klaw resolves the secrets of a run's "
                "params when it prepares the run.",
                hint="Take the secret from the stage's params (filled by klaw.run, `klaw run`, "
                "the API or a schedule) rather than making a klaw.Secret in code.",
            )
        return self._value

    def with_value(self, value: str) -> Secret:
        """This reference with its value (a new object: defaults are shared between runs)."""
        bound = Secret(self._name)
        bound._value = value
        return bound

    def __repr__(self) -> str:
        return f"Secret({self._name!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._name == self._name

    def __hash__(self) -> int:
        return hash(("klaw.Secret", self._name))

    def __getstate__(self) -> tuple[str, str | None]:  # travels to worker processes and Ray
        return (self._name, self._value)

    def __setstate__(self, state: tuple[str, str | None]) -> None:
        self._name, self._value = state

    # -- pydantic ------------------------------------------------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: s.reference, when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "pattern": f"^{PREFIX}{NAME_PATTERN}$",
            "description": "A secret reference, secret:NAME; Klaw resolves it when the run "
            "starts (environment, secrets directory, backend) and never stores the value.",
        }


def parse(value: object) -> Secret:
    """A ``Secret`` from a reference: a ``Secret``, ``"secret:NAME"`` or ``{"$secret": NAME}``.
    A plain value is refused (a ``ValueError``, which pydantic reports against the field)."""
    if isinstance(value, Secret):
        return value
    name: object = None
    if isinstance(value, str) and value.startswith(PREFIX):
        name = value.removeprefix(PREFIX)
    elif isinstance(value, Mapping) and set(value) == {"$secret"}:
        name = value["$secret"]
    if isinstance(name, str) and _NAME.fullmatch(name):
        return Secret(name)
    raise ValueError(
        "a klaw.Secret takes a reference, secret:NAME (e.g. --param password=secret:db_password), "
        "not a value; NAME is letters, digits, '_', '.' or '-'"
    )


def is_redacted(value: object) -> bool:
    return isinstance(value, Mapping) and dict(value) == REDACTED


def redacted_path(value: Any, path: str = "") -> str | None:
    """The path of the first :data:`REDACTED` marker in a JSON params value, if any."""
    if is_redacted(value):
        return path
    for key, item in _children(value):
        found = redacted_path(item, f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def is_pydantic_secret(value: object) -> bool:
    """A pydantic ``SecretStr`` / ``SecretBytes`` (whose JSON dump is a mask, not the value)."""
    return hasattr(value, "get_secret_value") and type(value).__module__.startswith("pydantic")


def redact(instance: Any, dumped: Any) -> Any:
    """``dumped`` (the JSON dump of ``instance``) with each pydantic secret given by value made
    :data:`REDACTED`, and each one left at its default left out (so it applies again)."""
    fields = getattr(type(instance), "model_fields", None)
    if isinstance(fields, dict) and isinstance(dumped, dict):
        for name in fields:
            if name not in dumped:
                continue
            value = getattr(instance, name, None)
            if is_pydantic_secret(value):
                if name in instance.model_fields_set:
                    dumped[name] = dict(REDACTED)
                else:
                    del dumped[name]
            else:
                dumped[name] = redact(value, dumped[name])
    elif isinstance(instance, list | tuple) and isinstance(dumped, list):
        return [
            dict(REDACTED) if is_pydantic_secret(i) else redact(i, d)
            for i, d in zip(instance, dumped, strict=False)
        ]
    elif isinstance(instance, Mapping) and isinstance(dumped, dict):
        for key, value in instance.items():
            if str(key) in dumped:
                dumped[str(key)] = (
                    dict(REDACTED) if is_pydantic_secret(value) else redact(value, dumped[str(key)])
                )
    return dumped


# -- walking params values -------------------------------------------------------------------
def _children(value: Any) -> Iterator[tuple[str, Any]]:
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict):
        for name in fields:
            yield name, getattr(value, name, None)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key), item
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield str(index), item


def references(value: Any, path: str = "") -> Iterator[tuple[str, Secret]]:
    """Every ``Secret`` in a params value (models, mappings, sequences), with its field path."""
    for key, item in _children(value):
        where = f"{path}.{key}" if path else key
        if isinstance(item, Secret):
            yield where, item
        else:
            yield from references(item, where)


def bind(value: Any, found: Mapping[str, str]) -> Any:
    """``value`` with every ``Secret`` in it carrying its value from ``found`` (by name).
    Models are copied, never changed in place; what holds no secret is returned as is."""
    if isinstance(value, Secret):
        return value.with_value(found[value.name]) if value.name in found else value
    if isinstance(getattr(type(value), "model_fields", None), dict):
        changes = {}
        for name, item in _children(value):
            bound = bind(item, found)
            if bound is not item:
                changes[name] = bound
        return value.model_copy(update=changes) if changes else value
    if isinstance(value, dict):
        items = {k: bind(v, found) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, list | tuple):
        bound_items = [bind(v, found) for v in value]
        if any(b is not v for b, v in zip(bound_items, value, strict=True)):
            return type(value)(bound_items)
    return value


def secret_values(value: Any) -> tuple[str, ...]:
    """Every secret value a params value holds (``klaw.Secret`` once resolved, and pydantic's
    ``SecretStr``/``SecretBytes``): what a stage's captured output must not show."""
    found: list[str] = []
    _collect(value, found)
    return tuple(sorted({v for v in found if v}, key=len, reverse=True))


def _collect(value: Any, found: list[str]) -> None:
    if isinstance(value, Secret):
        if value.resolved:
            text = value.get_secret_value()
            found.append(text)
            if "\n" in text:  # captured output is masked line by line
                found.extend(line for line in text.splitlines() if len(line.strip()) >= 4)
        return
    if is_pydantic_secret(value):
        secret = value.get_secret_value()
        text = secret.decode(errors="replace") if isinstance(secret, bytes) else str(secret)
        found.append(text)
        if "\n" in text:  # captured output is masked line by line
            found.extend(line for line in text.splitlines() if len(line.strip()) >= 4)
        return
    for _, item in _children(value):
        _collect(item, found)


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
