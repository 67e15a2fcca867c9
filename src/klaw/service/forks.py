"""The fork server that run workers, import checks and the definitions process are forked from.
It imports Klaw once (``PRELOAD``), so a child starts with Klaw loaded in milliseconds rather
than importing it again; the preload has to be set before the first child starts it."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext
from typing import Final

# What the fork server imports once, so a worker starts with Klaw loaded.
PRELOAD: Final = [
    "klaw.service.runworker",
    "klaw.service.orchestrator",
    "klaw.service.dispatcher",
    "klaw.execution.runner",
    "klaw.execution.lease",
    "klaw.execution.local",
    "klaw.metadata.sqlite",
]


def context() -> ForkServerContext:
    """The fork server's multiprocessing context, with Klaw preloaded."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx
