"""The ``klaw`` command line (Typer + rich). Heavy modules load only in the commands that use
them, so ``klaw run`` starts fast."""

from __future__ import annotations


def main() -> None:
    """The ``klaw`` executable: run the command, then leave without the interpreter's final
    garbage collections (see :func:`_freeze_for_exit`)."""
    from klaw.cli.app import run_app

    try:
        run_app()
    finally:
        _freeze_for_exit()


def _freeze_for_exit() -> None:
    """Move every object still alive to the collector's permanent generation (``gc.freeze``).

    At exit the interpreter collects garbage again while it tears its modules down; with
    pydantic, pydantic-settings and Typer loaded that walk of every live object took about a
    third of a one-stage ``klaw run``. Garbage made since the last collection is collected
    first (the young generations, cheap), and everything is still released by reference
    counting as modules are cleared; only cycles left among the frozen objects are not walked,
    and the process is ending. Meant for the console script, whose process ends when ``main``
    returns (tests drive the Typer app instead)."""
    import gc

    gc.collect(1)
    gc.freeze()
