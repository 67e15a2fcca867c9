"""Loading a project's workflow modules where a bad one cannot take a server down.

The serving commands import no workflow module themselves. Each module is first imported in a
child process of its own, with a time limit (``definition_load_timeout``): a module that
raises, crashes the interpreter or does not finish importing is reported with what happened
(file and line for an exception) and left out. Then a :class:`DefinitionsHost` process imports
the modules that passed and answers, for the serving process, every command that needs the
definitions (list, show, plan, validate, lineage) and the schedules they define; the run
workers import them again for each run.
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from klaw.errors import DefinitionError, KlawError, ProjectImportError
from klaw.protocol.errors import error_reply, from_reply
from klaw.protocol.replies import ErrorReply
from klaw.service import forks

if TYPE_CHECKING:
    from klaw.service.project import Project
    from klaw.settings import KlawSettings


def check_modules(project: Project, timeout: float) -> dict[str, KlawError]:
    """Import each of the project's workflow modules in a child process of its own; the error
    of each that raised, crashed or took longer than ``timeout`` seconds."""
    ctx = forks.context()
    errors: dict[str, KlawError] = {}
    for name in project.modules:
        mine, theirs = ctx.Pipe(duplex=False)
        child = ctx.Process(
            target=_import_main, args=(theirs, project, name), name="klaw-import-check"
        )
        child.start()
        theirs.close()
        try:
            if not mine.poll(timeout):
                errors[name] = ProjectImportError(
                    f"Workflow module {name!r} did not finish importing within {timeout:g} s; "
                    "its workflows are not loaded.",
                    hint="Look for what it waits on at import (a network call, a lock, input()"
                    "); KLAW_EXECUTOR__DEFINITION_LOAD_TIMEOUT sets the limit.",
                )
                continue
            kind, value = mine.recv()
        except EOFError:
            child.join(5.0)
            errors[name] = ProjectImportError(
                f"Workflow module {name!r} crashed the interpreter importing it "
                f"(exit code {child.exitcode}); its workflows are not loaded.",
                hint=f"Import it by hand to see why: python {name}"
                if name.endswith(".py")
                else f"Import it by hand to see why: python -c 'import {name}'.",
            )
            continue
        finally:
            with suppress(OSError, AttributeError):
                child.kill()
            child.join(5.0)
            mine.close()
        if kind == "error":
            errors[name] = from_reply(value)
    return errors


def _import_main(conn: Connection, project: Project, name: str) -> None:
    """The body of an import check: import module ``name`` of ``project`` and say how it went."""
    import sys

    from klaw.service.project import import_module

    root = str(project.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import_module(project, name)
    except KlawError as exc:
        conn.send(("error", error_reply(exc)))
    except BaseException as exc:  # SystemExit, KeyboardInterrupt at import: still reported
        error = ProjectImportError(
            f"Workflow module {name!r} raised {exc!r} at import; its workflows are not loaded.",
            hint="Remove what exits or waits for input at import.",
        )
        conn.send(("error", error_reply(error)))
    else:
        conn.send(("ok", None))
    conn.close()


class DefinitionsHost:
    """The project's workflow definitions, loaded and served by a child process, so that a
    serving process never imports user code: it forwards the commands that need definitions
    (list, show, plan, validate, lineage) and asks the few things it needs itself (workflow
    names, schedules). A host that dies is started again on the next question."""

    def __init__(self, project: Project, settings: KlawSettings) -> None:
        self._project = project
        self._settings = settings
        self._lock = threading.Lock()
        self._ctx = forks.context()
        self._child: BaseProcess | None = None
        self._conn: Connection | None = None
        self.load_errors: dict[str, KlawError] = {}
        self.names: tuple[str, ...] = ()

    def start(self) -> DefinitionsHost:
        """Check every module's import, then start the host on those that passed; this host.
        ConfigError (a duplicate workflow name, say) when the project cannot be loaded."""
        with self._lock:
            errors = check_modules(self._project, self._settings.executor.definition_load_timeout)
            self._spawn(errors)
        return self

    def _spawn(self, errors: dict[str, KlawError]) -> None:
        mine, theirs = self._ctx.Pipe()
        replies = {name: error_reply(exc) for name, exc in errors.items()}
        child = self._ctx.Process(
            target=_host_main,
            args=(theirs, self._project, self._settings, replies),
            name="klaw-definitions",
            daemon=True,
        )
        child.start()
        theirs.close()
        wait = self._settings.executor.definition_load_timeout * max(1, len(self._project.modules))
        try:
            if not mine.poll(wait):
                raise ProjectImportError(
                    f"The project's workflows did not finish loading within {wait:g} s.",
                    hint="KLAW_EXECUTOR__DEFINITION_LOAD_TIMEOUT sets how long each module may "
                    "take.",
                )
            kind, value = mine.recv()
        except EOFError:
            child.join(5.0)
            raise ProjectImportError(
                f"The process loading the project's workflows ended ({child.exitcode}).",
                hint="Run `klaw validate` to see why.",
            ) from None
        except BaseException:
            _stop(child)
            mine.close()
            raise
        if kind == "refused":
            _stop(child)
            mine.close()
            raise from_reply(value)
        old, old_conn = self._child, self._conn
        self._child, self._conn = child, mine
        self.load_errors, self.names = errors, tuple(value)
        if old is not None and old_conn is not None:
            old_conn.close()
            _stop(old)

    def reload(self) -> tuple[str, ...]:
        """Load the project's modules afresh in a new host and swap it in; the workflow names.
        When a module no longer loads, its error is raised and the old host stays."""
        with self._lock:
            errors = check_modules(self._project, self._settings.executor.definition_load_timeout)
            if errors:
                raise next(iter(errors.values()))
            self._spawn(errors)
            return self.names

    def handle(self, data: bytes) -> bytes:
        """The encoded reply of the host to an encoded command."""
        reply: bytes = self.ask("command", data)
        return reply

    def ask(self, kind: str, value: Any = None) -> Any:
        """The host's answer to a question: ``command`` (encoded bytes), ``schedules``."""
        with self._lock:
            if self._child is None or not self._child.is_alive():
                self._spawn(self.load_errors)
            assert self._conn is not None
            try:
                self._conn.send((kind, value))
                answer, found = self._conn.recv()
            except (EOFError, OSError):
                child = self._child
                self._child = None
                code = child.exitcode if child is not None else None
                raise DefinitionError(
                    f"The process serving the project's workflow definitions ended ({code}); "
                    "it is started again on the next request.",
                    hint="Retry; if it happens again, `klaw validate` may say why.",
                ) from None
        if answer == "refused":
            raise from_reply(found)
        return found

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._child is not None:
                _stop(self._child)
            self._child = self._conn = None


def _host_main(
    conn: Connection, project: Project, settings: KlawSettings, errors: dict[str, ErrorReply]
) -> None:
    """The body of a definitions host: load the modules that passed their check, then answer."""
    from klaw.service.dispatcher import Dispatcher
    from klaw.service.orchestrator import Orchestrator
    from klaw.service.project import load_workflows
    from klaw.service.schedules import definitions

    os.setpgrp()  # a Ctrl-C at the server's terminal is the server's to handle
    orch = Orchestrator(project, settings)
    try:
        orch.replace_workflows(load_workflows(project, skip=set(errors)))
        orch.load_errors = {name: from_reply(reply) for name, reply in errors.items()}
    except KlawError as exc:
        conn.send(("refused", error_reply(exc)))
        return
    dispatcher = Dispatcher(orch)
    conn.send(("ready", sorted(orch.workflows)))
    while True:
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):  # the server is gone
            break
        try:
            if kind == "command":
                answer: Any = dispatcher.handle(value)
            elif kind == "schedules":
                answer = definitions(orch.workflows)
            else:
                raise TypeError(f"Not a question: {kind!r}")
        except KlawError as exc:
            conn.send(("refused", error_reply(exc)))
            continue
        conn.send(("answer", answer))
    orch.close()


def _stop(child: BaseProcess) -> None:
    with suppress(OSError, AttributeError):
        child.kill()
    child.join(5.0)
