"""The metadata store of a process: one store (one connection) for all its roles."""

from __future__ import annotations

import pickle
from pathlib import Path

from klaw.service.orchestrator import Orchestrator
from klaw.service.wiring import MetadataFactory

WORKFLOW = """
import klaw

@klaw.stage
def one() -> int:
    return 1

wf = klaw.workflow("wf", [one])
"""


def _project(root: Path) -> Path:
    (root / "klaw.toml").write_text('[project]\nname = "p"\nmodules = ["flows"]\n')
    (root / "flows.py").write_text(WORKFLOW)
    return root


def test_leases_are_renewed_through_the_processs_one_store(tmp_path: Path) -> None:
    orch = Orchestrator.open(_project(tmp_path))
    try:
        assert orch.leases._store() is orch.metadata  # the same store, so the same connection
    finally:
        orch.close()


def test_a_worker_opens_its_own_store_of_the_same_database(tmp_path: Path) -> None:
    orch = Orchestrator.open(_project(tmp_path))
    try:
        factory = MetadataFactory(orch.settings, orch.metadata)
        assert factory() is orch.metadata
        copy = pickle.loads(pickle.dumps(factory))  # what a worker process receives
        theirs = copy()
        try:
            assert theirs is not orch.metadata
            assert repr(theirs) == repr(orch.metadata)
        finally:
            theirs.close()
    finally:
        orch.close()
