"""The ``klaw`` command line (Typer + rich). Heavy modules load only in the commands that use
them, so ``klaw run`` starts fast."""

from __future__ import annotations


def main() -> None:
    from klaw.cli.app import run_app

    run_app()
