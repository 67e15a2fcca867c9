"""Klaw: a Python-first data orchestrator.

Describe workflows as DAGs of stages that produce versioned datasets (assets), run them on a
laptop with nothing to set up, and inspect every run, log and snapshot.
"""

import typing as _typing

from klaw.authoring.resources import Resources as Resources
from klaw.authoring.resources import RetryPolicy as RetryPolicy
from klaw.authoring.secrets import Secret as Secret
from klaw.authoring.sql import klaw_sql as sql
from klaw.authoring.stage import StageDef as StageDef
from klaw.authoring.stage import asset as asset
from klaw.authoring.stage import stage as stage
from klaw.authoring.workflow import Workflow as Workflow
from klaw.authoring.workflow import workflow as workflow
from klaw.errors import KlawError as KlawError
from klaw.errors import NonRetryableError as NonRetryableError
from klaw.ids import AssetRef as AssetRef
from klaw.service.embedded import open_orchestrator as open_orchestrator
from klaw.service.embedded import open_project as open_project
from klaw.service.embedded import plan as plan
from klaw.service.embedded import run as run
from klaw.states import RunState as RunState
from klaw.states import StageState as StageState

if _typing.TYPE_CHECKING:
    from klaw.api.flight.client import Client as Client

# Loaded on first use, so that `import klaw` stays light (pyarrow.flight is heavy).
_LAZY = {"Client": "klaw.api.flight.client"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'klaw' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AssetRef",
    "Client",
    "KlawError",
    "NonRetryableError",
    "Resources",
    "RetryPolicy",
    "RunState",
    "Secret",
    "StageDef",
    "StageState",
    "Workflow",
    "asset",
    "open_orchestrator",
    "open_project",
    "plan",
    "run",
    "sql",
    "stage",
    "workflow",
]
__version__ = "0.1.0"
