"""``klaw dev``'s reloader: the project's workflow definitions reloaded when its files change."""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final

from klaw.errors import KlawError

if TYPE_CHECKING:
    from types import ModuleType

    from klaw.service.orchestrator import Orchestrator

WATCHED: Final = (".py", ".sql", ".yaml", ".yml")  # files whose change reloads definitions


class Reloader:
    """Reloads the Orchestrator's workflow definitions when the project's files change. New
    requests see the new definitions; runs in progress keep the plans they started with. A
    change that does not import is reported on stderr and the old definitions stay."""

    def __init__(self, orch: Orchestrator) -> None:
        self.orch = orch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="klaw-dev-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10.0)

    def _watch(self) -> None:
        import watchfiles

        root = self.orch.project.root
        home = str(self.orch.settings.home)

        def wanted(change: watchfiles.Change, path: str) -> bool:
            return (
                path.endswith(WATCHED)
                and not path.startswith(home)
                and "__pycache__" not in path
                and "/." not in path[len(str(root)) :]
            )

        for _changes in watchfiles.watch(root, watch_filter=wanted, stop_event=self._stop):
            self.reload()

    def reload(self) -> None:
        try:
            found = reload_workflows(self.orch)
        except KlawError as exc:
            hint = f"\nhint: {exc.hint}" if exc.hint else ""
            sys.stderr.write(
                f"error: reloading workflows failed; the previous definitions stay.\n"
                f"error: {exc.message}{hint}\n"
            )
        else:
            sys.stderr.write(f"Reloaded workflows: {', '.join(sorted(found)) or 'none'}\n")
        sys.stderr.flush()


def reload_workflows(orch: Orchestrator) -> list[str]:
    """Load the project's modules afresh and swap the new definitions into ``orch`` (its
    cached graphs go with the old ones); the workflow names. On an error, the definitions it
    had stay, and the error is raised."""
    from klaw.service.project import load_workflows

    mine = _project_modules(orch)
    for name in mine:
        del sys.modules[name]
    importlib.invalidate_caches()
    if orch.definitions is not None:  # loaded afresh by a new definitions process
        return orch.reload_definitions()
    try:
        found = load_workflows(orch.project)
    except BaseException:
        for name in _project_modules(orch):
            del sys.modules[name]
        sys.modules.update(mine)
        raise
    orch.replace_workflows(found)
    return sorted(found)


def _project_modules(orch: Orchestrator) -> dict[str, ModuleType]:
    """The imported modules of the project's own files (named in klaw.toml, or inside
    those packages), by name."""
    root = orch.project.root.resolve()
    tops = {Path(m).stem if m.endswith(".py") else m.split(".")[0] for m in orch.project.modules}
    found = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in tops:
            continue
        file = getattr(module, "__file__", None)
        if file is not None and Path(file).resolve().is_relative_to(root):
            found[name] = module
    return found
