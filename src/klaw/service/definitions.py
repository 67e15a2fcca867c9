"""Loading a project's workflow modules where a bad one cannot take a server down.

The serving commands import each workflow module in a child process first, with a time limit
(``definition_load_timeout``). A module that raises, crashes the interpreter or does not finish
importing is reported with what happened (file and line for an exception) and left out; the
serving process then imports only the modules that loaded cleanly, and goes on serving their
workflows.
"""

from __future__ import annotations

import multiprocessing
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from klaw.errors import KlawError, ProjectImportError
from klaw.protocol.errors import error_reply, from_reply

if TYPE_CHECKING:
    from klaw.authoring.workflow import Workflow
    from klaw.service.project import Project


def load_checked(
    project: Project, timeout: float
) -> tuple[dict[str, Workflow], dict[str, KlawError]]:
    """The workflows of the project's modules that import cleanly in a child process within
    ``timeout`` seconds, and the error of each module that did not (by module name)."""
    from klaw.service.project import load_workflows

    errors = check_modules(project, timeout)
    return load_workflows(project, skip=set(errors)), errors


def check_modules(project: Project, timeout: float) -> dict[str, KlawError]:
    """Import each of the project's workflow modules in a child process of its own; the error
    of each that raised, crashed or took longer than ``timeout`` seconds."""
    ctx = multiprocessing.get_context("forkserver")
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
                    "); KLAW_DEFINITION_LOAD_TIMEOUT sets the limit.",
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
