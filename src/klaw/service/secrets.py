"""Where the values of ``klaw.Secret`` references come from, looked up each time a run is
prepared (first run, resume, scheduled run, recovery): never read back from the run record.

In order: the environment (``KLAW_SECRET_<NAME>``, the name upper-cased with every character
other than a letter or digit made ``_``), a file named after the secret in the secrets directory
(``secrets_dir``, default ``<home>/secrets``; one trailing newline dropped), and the configured
backend (``secrets_backend = "module:attr"``).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from klaw.authoring.secrets import bind, references
from klaw.authoring.workflow import Workflow
from klaw.errors import ConfigError, SecretNotFoundError
from klaw.settings import KlawSettings

ENV_PREFIX = "KLAW_SECRET_"


@runtime_checkable
class SecretBackend(Protocol):
    """A store of secrets by name (a vault, a cloud secret manager): ``None`` when it has no
    secret of that name."""

    def get(self, name: str) -> str | None: ...


def env_name(name: str) -> str:
    """The environment variable that holds secret ``name``."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def load_backend(spec: str) -> SecretBackend:
    """The backend named by ``module:attr``: an object with ``get``, or a class or factory that
    makes one when called without arguments."""
    module_name, sep, attr = spec.partition(":")
    hint = (
        "Set secrets_backend (KLAW_SECRETS__BACKEND) to module:attr of an object with "
        "get(name) -> str | None, or of a class or factory that makes one."
    )
    if not sep or not module_name or not attr:
        raise ConfigError(f"Setting secrets_backend {spec!r} is not module:attr.", hint=hint)
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"Setting secrets_backend {spec!r} cannot be loaded: {type(exc).__name__}: {exc}.",
            hint=hint,
        ) from None
    if isinstance(target, type) or (not isinstance(target, SecretBackend) and callable(target)):
        target = target()
    if not isinstance(target, SecretBackend):
        raise ConfigError(
            f"Setting secrets_backend {spec!r} is {type(target).__name__}, which has no "
            "get(name) method.",
            hint=hint,
        )
    return target


class SecretResolver:
    """Looks secrets up in the environment, the secrets directory and the backend."""

    def __init__(
        self,
        settings: KlawSettings,
        root: Path,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        directory = settings.secrets.dir or settings.home / "secrets"
        self.directory = directory if directory.is_absolute() else root / directory
        self.backend_spec = settings.secrets.backend
        self._environ = os.environ if environ is None else environ

    @cached_property
    def backend(self) -> SecretBackend | None:
        return None if self.backend_spec is None else load_backend(self.backend_spec)

    def places(self, name: str) -> list[str]:
        """Where ``name`` is looked for, in order, as the error for a missing one says."""
        found = [f"environment variable {env_name(name)}", f"file {self.directory / name}"]
        if self.backend_spec is not None:
            found.append(f"backend {self.backend_spec}")
        return found

    def lookup(self, name: str) -> str | None:
        """The value of secret ``name`` as it is now, or None when nowhere has it."""
        value = self._environ.get(env_name(name))
        if value is not None:
            return value
        path = self.directory / name
        try:
            text: str | None = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = None  # not in the directory: the backend may have it
        except OSError as exc:
            raise ConfigError(
                f"Secret file {path} cannot be read: {exc.strerror or exc}.",
                hint="Make it readable by the user Klaw runs as, or remove it.",
            ) from None
        if text is not None:
            return text.removesuffix("\n").removesuffix("\r")
        backend = self.backend
        if backend is None:
            return None
        try:
            return backend.get(name)
        except Exception as exc:
            raise ConfigError(
                f"Secret backend {self.backend_spec} failed to get secret {name!r}: "
                f"{type(exc).__name__}.",
                hint="Check the backend's configuration and that it can be reached.",
            ) from None

    def resolve(self, workflow: Workflow, params: Mapping[type[Any], Any]) -> dict[type[Any], Any]:
        """``params`` (one instance per model) with every ``klaw.Secret`` carrying its value.
        ``SecretNotFoundError`` before anything runs when one is missing, naming each secret,
        the params that use it and every place looked."""
        users: dict[str, list[str]] = {}
        for model, instance in params.items():
            stages = [s.name for s in workflow.stages if s.params_model is model]
            where = f"stage {', '.join(repr(s) for s in stages)}" if stages else model.__name__
            for path, secret in references(instance):
                users.setdefault(secret.name, []).append(f"param {path!r} of {where}")
        if not users:
            return dict(params)
        found: dict[str, str] = {}
        missing: list[str] = []
        for name, used_by in users.items():
            value = self.lookup(name)
            if value is None:
                missing.append(
                    f"secret {name!r} ({'; '.join(used_by)}) is not set; looked in "
                    + ", ".join(self.places(name))
                )
            else:
                found[name] = value
        if missing:
            first = next(n for n in users if n not in found)
            raise SecretNotFoundError(
                f"Workflow {workflow.name!r} cannot start: " + "; ".join(missing) + ".",
                hint=f"Set one of those, e.g. export {env_name(first)}=..., or put the value in "
                f"{self.directory / first} (see docs/secrets.md).",
            )
        return {model: bind(instance, found) for model, instance in params.items()}
