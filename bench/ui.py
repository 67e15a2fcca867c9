"""U1-U4: the web UI in headless Chromium (the distribution's, driven by Playwright) against the
HTTP API served from this process (uvicorn in a thread, as ``klaw api`` serves it).

The project has a 10,000-stage workflow (100 layers of 100 stages, each reading one stage of
the layer above); its metadata store is filled beforehand, outside every timing, with 100,000
runs and a run whose log has 1,000,000 lines. Each figure is a wall time measured from the
bench process around one navigation or one batch of events, to the moment the page shows the
result (Playwright's waits poll each animation frame):

- U1: ``/workflows/big`` until the graph is interactive (drawn and laid out); and, on the page
  of a running run of that workflow, 1,000 stage-state events committed at once until the graph
  shows the last of them (committed in this process: the SSE stream is woken at once).
- U2: ``/runs`` until its first row shows, next to ``GET /api/v1/runs`` alone (the server's
  part of it: the floor).
- U3: the 1,000,000-line log's page until its last line shows, and the tab's JS heap then.
- U4: the gzip size of what the first page loads, and the time to its ``load`` event.

Without Chromium or a built UI (``make ui``) the rows say so instead of a figure.
"""

from __future__ import annotations

import gzip
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.follow import TOKEN
from bench.follow import _serving as serving
from bench.report import Basis, Row, Target, Unit

if TYPE_CHECKING:
    from bench.workloads import Settings
    from klaw.metadata.store import MetadataStore
    from klaw.service.orchestrator import Orchestrator

LAYERS, WIDTH = 100, 100  # U1: 10,000 stages
RUNS = 100_000  # U2
LOG_LINES = 1_000_000  # U3
BATCH = 1_000  # U1: stage-state events per batch
WAIT_MS = 120_000

FLOWS = f"""
import klaw


def source() -> int:
    return 1


def step(x: int) -> int:
    return x


stages = []
for layer in range({LAYERS}):
    for i in range({WIDTH}):
        name = f"s{{layer}}_{{i}}"
        if layer == 0:
            stages.append(klaw.stage(name=name)(source))
        else:
            stages.append(klaw.stage(name=name, inputs={{"x": f"s{{layer - 1}}_{{i}}"}})(step))
big = klaw.workflow("big", stages, description="{LAYERS * WIDTH:,} stages")
"""


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text('[project]\nname = "u"\nmodules = ["u_flows.py"]\n')
    (root / "u_flows.py").write_text(FLOWS)
    return root


def _fill(store: MetadataStore) -> tuple[str, str]:
    """100,000 finished runs, one with a 1,000,000-line log, and one running run of ``big``:
    (the log's run, the running run)."""
    from klaw.ids import new_run_id
    from klaw.metadata.records import Batch, LogRecord, RunRecord
    from klaw.states import RunState

    now = time.time()
    host = os.uname().nodename
    states = (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)
    for start in range(0, RUNS, 10_000):
        runs = [
            RunRecord(
                run_id=f"u{i:08d}",
                workflow="big",
                state=states[i % 3],
                created_at=now - 86_400 * 365 + i * 300.0,
                ended_at=now - 86_400 * 365 + i * 300.0 + 60.0,
                owner_host=host,
                owner_pid=1,
            )
            for i in range(start, start + 10_000)
        ]
        store.commit(Batch(runs=runs))
    logged = f"u{RUNS - 1:08d}"
    for start in range(0, LOG_LINES, 20_000):
        lines = [
            LogRecord(
                run_id=logged,
                stage="s0_0",
                attempt=1,
                stream="stdout" if i % 5 else "stderr",
                ts=now,
                line=f"line {i} of a long log: {'x' * (i % 40)}",
            )
            for i in range(start, min(LOG_LINES, start + 20_000))
        ]
        store.commit(Batch(logs=lines))
    running = RunRecord(
        run_id=new_run_id(),
        workflow="big",
        state=RunState.RUNNING,
        created_at=now,
        started_at=now,
        owner_host=host,
        owner_pid=os.getpid(),
    )
    store.create_run(running)
    return logged, running.run_id


@contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("KLAW_TEST_CHROMIUM") or shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _signed_in(browser: Any, url: str) -> Any:
    # bypass_csp: Playwright's waits evaluate script, which the UI's policy (rightly) forbids
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(f"{url}/login")
    page.get_by_test_id("login-token").fill(TOKEN)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(lambda u: "/login" not in u)
    return page


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _median(repeat: int, action: Callable[[], float]) -> float:
    return statistics.median(action() for _ in range(repeat))


def _graph(page: Any, url: str) -> float:
    def load() -> None:
        page.goto(f"{url}/workflows/big")
        page.wait_for_selector("[data-testid=graph][data-ready=true]", timeout=WAIT_MS)

    page.goto(f"{url}/")
    return _timed(load)


def _recolour(page: Any, url: str, orch: Orchestrator, run_id: str, repeat: int) -> float:
    """Commit 1,000 stage-state events at once; the time until the run page has drawn the
    last of them (its ``data-applied-seq`` reaches the batch's last seq)."""
    from klaw.metadata.records import Batch, EventRecord

    page.goto(f"{url}/runs/{run_id}")
    page.wait_for_selector("[data-testid=graph][data-ready=true]", timeout=WAIT_MS)
    store = orch.metadata
    seq = max((e.seq for e in store.list_events(run_id)), default=0)
    samples = []
    for n in range(repeat):
        layer = n % LAYERS
        names = [f"s{layer}_{i}" for i in range(WIDTH)] * (BATCH // WIDTH)
        state = ("running", "succeeded")[(n // LAYERS) % 2]
        now = time.time()
        events = [
            EventRecord(run_id=run_id, kind="stage", ts=now, stage=s, attempt=1, state=state)
            for s in names
        ]
        seq += len(events)
        done = (
            "() => Number(document.querySelector('[data-testid=run-graph]')"
            f"?.dataset.appliedSeq ?? 0) >= {seq}"
        )
        started = time.perf_counter()
        store.commit(Batch(events=events))
        page.wait_for_function(done, timeout=WAIT_MS, polling="raf")
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _runs_page(page: Any, url: str) -> float:
    def load() -> None:
        page.goto(f"{url}/runs")
        page.get_by_test_id("run-row").first.wait_for(timeout=WAIT_MS)

    page.goto(f"{url}/")
    return _timed(load)


def _runs_api(url: str) -> float:
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        return _timed(lambda: client.get("/api/v1/runs", params={"limit": 50}).raise_for_status())


def _log_end(page: Any, url: str, run_id: str) -> float:
    last = f"line {LOG_LINES - 1} of a long log"

    def load() -> None:
        page.goto(f"{url}/runs/{run_id}/logs")
        page.get_by_test_id("logs-end").click()
        page.get_by_text(last).wait_for(timeout=WAIT_MS)

    page.goto(f"{url}/")
    return _timed(load)


def _heap(browser: Any, url: str, run_id: str) -> float:
    """The JS heap of a tab that opened the log at its end, after a garbage collection."""
    page = _signed_in(browser, url)
    try:
        page.goto(f"{url}/runs/{run_id}/logs")
        page.get_by_test_id("logs-end").click()
        page.get_by_text(f"line {LOG_LINES - 1} of a long log").wait_for(timeout=WAIT_MS)
        cdp = page.context.new_cdp_session(page)
        cdp.send("HeapProfiler.collectGarbage")
        cdp.send("Performance.enable")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return float(metrics["JSHeapUsedSize"])
    finally:
        page.context.close()


def _bundle(dist: Path) -> float:
    """Gzip bytes of index.html and what it links (not the chunks loaded on demand)."""
    index = (dist / "index.html").read_text()
    files = [dist / "index.html"]
    files += [p for p in (dist / "static").iterdir() if p.name in index]
    return float(sum(len(gzip.compress(p.read_bytes(), 9)) for p in files))


def _first_load(browser: Any, url: str) -> float:
    context = browser.new_context()
    page = context.new_page()
    try:
        return _timed(lambda: page.goto(f"{url}/login", wait_until="load"))
    finally:
        context.close()


def _missing(why: str) -> list[Row]:
    print(f"U: {why}; the web UI rows are skipped", file=sys.stderr)
    return []


def web_ui(settings: Settings) -> list[Row]:
    from klaw.api.http.ui import DIST
    from klaw.service.orchestrator import Orchestrator

    if not (os.environ.get("KLAW_TEST_CHROMIUM") or shutil.which("chromium")):
        return _missing("no Chromium (apt-get install chromium)")
    if not (DIST / "index.html").is_file():
        return _missing("the UI is not built (make ui)")
    repeat = settings.times(5)
    root = _project(settings.home() / "u")
    orch = Orchestrator.open(root, home=str(root / ".klaw"))
    try:
        store = orch.metadata
        logged, running = _fill(store)
        with serving(orch) as (url, _), _browser() as browser:
            page = _signed_in(browser, url)
            graph = _median(repeat, lambda: _graph(page, url))
            recolour = _recolour(page, url, orch, running, repeat * 4)
            runs = _median(repeat, lambda: _runs_page(page, url))
            runs_api = _median(repeat, lambda: _runs_api(url))
            log_end = _median(repeat, lambda: _log_end(page, url, logged))
            heap = _heap(browser, url, logged)
            first = _median(repeat, lambda: _first_load(browser, url))
    finally:
        orch.shutdown(wait=10.0)
        orch.close()
    size = f"{LAYERS * WIDTH:,}"
    return [
        Row(
            "U1",
            f"{size}-stage graph, navigation to interactive",
            Unit.SECONDS,
            graph,
            target=Target(2.0, Basis.KLAW, strict=True),
        ),
        Row(
            "U1",
            f"re-colour {BATCH:,} stage states from SSE (commit to shown)",
            Unit.SECONDS,
            recolour,
            target=Target(0.1, Basis.KLAW, strict=True),
        ),
        Row(
            "U2",
            f"runs list, first page with {RUNS:,} runs (server + render)",
            Unit.SECONDS,
            runs,
            runs_api,
            "GET /api/v1/runs alone",
            Target(0.3, Basis.KLAW, strict=True),
        ),
        Row(
            "U3",
            f"{LOG_LINES:,}-line log, open and show its end",
            Unit.SECONDS,
            log_end,
            target=Target(1.0, Basis.KLAW, strict=True),
        ),
        Row(
            "U3",
            "  the tab's JS heap then",
            Unit.BYTES,
            heap,
            target=Target(300 * 2**20, Basis.KLAW, strict=True),
        ),
        Row("U4", "bundle, gzip (index.html and what it links)", Unit.BYTES, _bundle(DIST)),
        Row("U4", "first load on loopback (to the load event)", Unit.SECONDS, first),
    ]
