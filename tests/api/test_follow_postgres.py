"""Following a live run end to end on Postgres metadata: the SSE stream, ``klaw.Client.follow``
and the CLI's Flight follow each deliver every event of a run that is still going when they
start (its stage waits for the test's go-ahead), in order, to ``run_finished``; the ListEvents
long poll answers when an event is committed; an old client's ListEvents (no ``wait``) answers
at once; ``CancelRun`` returns once the run has stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from klaw.api.flight import serve
from klaw.api.http import StaticTokenAuthenticator, create_app
from klaw.cli.backend import RemoteBackend
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.records import EventRecord
from klaw.protocol import EventsReply, GetRun, ListEvents, RunReply, long_poll
from klaw.service.orchestrator import Orchestrator, RunRequest
from tests.metadata import test_postgres

server_url = test_postgres.server_url  # the Postgres fixtures: a fresh schema per test
url = test_postgres.url

TOKEN = "follow-token-4b7d1e"
WAIT = 60.0  # bounded waits: reaching one is a failure

FLOWS = """
import time
from pathlib import Path

import klaw

GO = Path(__file__).resolve().parent / "go"


@klaw.stage
def slow() -> int:
    print("waiting for go")
    deadline = time.monotonic() + 60
    while not GO.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("going")
    return 1


@klaw.stage
def after(slow: int) -> int:
    return slow + 1


live = klaw.workflow("live", [slow, after])
"""


class Served:
    def __init__(self, root: Path, orchestrator: Orchestrator, http: str, flight: str) -> None:
        self.root, self.orchestrator, self.http, self.flight = root, orchestrator, http, flight

    def start(self) -> str:
        (self.root / "go").unlink(missing_ok=True)
        return self.orchestrator.start(RunRequest(workflow="live")).run_id

    def go(self) -> None:
        (self.root / "go").touch()


@pytest.fixture
def served(tmp_path: Path, url: str) -> Iterator[Served]:
    PostgresMetadataStore(url).migrate()
    root = tmp_path / "project"
    root.mkdir()
    module = f"follow_pg_{tmp_path.name.replace('-', '_')}"
    (root / "klaw.toml").write_text(
        f'[project]\nname = "followpg"\nmodules = ["{module}.py"]\n'
        f'[settings.metadata]\nurl = "{url}"\n'
    )
    (root / f"{module}.py").write_text(FLOWS)
    orchestrator = Orchestrator.open(root)
    app = create_app(
        orchestrator,
        StaticTokenAuthenticator.parse(f"admin:{TOKEN}"),
        allowed_hosts=["127.0.0.1"],
        cors_origins=[],
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    flight = serve(orchestrator, host="127.0.0.1", port=0, tokens=[TOKEN])
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(root, orchestrator, f"http://127.0.0.1:{port}", flight.location)
    finally:
        (root / "go").touch()
        server.should_exit = True
        thread.join(timeout=WAIT)
        flight.stop()
        orchestrator.shutdown(wait=30.0)
        orchestrator.close()


def _follow_live(served: Served, follow: Callable[[str, Callable[[str, int], None]], None]) -> Any:
    """Start a run, follow it with ``follow(run_id, seen)`` (``seen(kind, seq)`` per event) on
    a thread; let the run finish only once the follower has seen its stage running."""
    run_id = served.start()
    seen: list[tuple[str, int]] = []
    running = threading.Event()
    errors: list[BaseException] = []

    def on_event(kind: str, seq: int) -> None:
        seen.append((kind, seq))
        if kind == "stage" and len(seen) >= 2:
            running.set()

    def target() -> None:
        try:
            follow(run_id, on_event)
        except BaseException as exc:  # reported below
            errors.append(exc)
            running.set()

    thread = threading.Thread(target=target)
    thread.start()
    assert running.wait(WAIT), "the follower saw no stage event of the live run"
    served.go()
    thread.join(WAIT)
    assert not thread.is_alive(), "the follower did not end with the run"
    assert not errors, errors
    assert served.orchestrator.get_run(run_id).state.value == "succeeded"
    listed = [(e.kind, e.seq) for e in served.orchestrator.events(run_id)]
    assert seen == listed  # every event, once, in order
    assert seen[-1][0] == "run_finished"
    return run_id


def test_sse_stream_delivers_a_live_run(served: Served) -> None:
    lines: list[str] = []

    def follow(run_id: str, seen: Callable[[str, int], None]) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=served.http, headers=headers, timeout=WAIT) as client:
            path = f"/api/v1/runs/{run_id}/stream"
            with client.stream("GET", path) as response:
                assert response.status_code == 200
                kind, ident = "", ""
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line.startswith("data: ") and kind == "log":
                        lines.append(line)
                    elif line == "" and kind:
                        if kind != "log":
                            seen(kind, int(ident))
                        kind = ""

    _follow_live(served, follow)
    assert any("waiting for go" in line for line in lines)
    assert any("going" in line for line in lines)


def test_client_follow_delivers_a_live_run(served: Served) -> None:
    from klaw.api.flight import Client

    def follow(run_id: str, seen: Callable[[str, int], None]) -> None:
        with Client(served.flight, token=TOKEN, timeout=WAIT) as client:
            for event in client.follow(run_id):
                seen(event.kind, event.seq)

    run_id = _follow_live(served, follow)
    with Client(served.flight, token=TOKEN, timeout=WAIT) as client:
        assert client.wait(run_id, timeout=WAIT).state.value == "succeeded"


def test_cli_follow_over_flight_delivers_a_live_run(served: Served) -> None:
    class Watcher:
        def __init__(self, seen: Callable[[str, int], None]) -> None:
            self.seen = seen

        def start(self, run: Any, stages: int) -> None: ...

        def events(self, events: list[EventRecord]) -> None:
            for event in events:
                self.seen(event.kind, event.seq)

    def follow(run_id: str, seen: Callable[[str, int], None]) -> None:
        backend = RemoteBackend(served.flight, TOKEN)
        try:
            reply = backend.execute(GetRun(run_id=run_id))
            assert isinstance(reply, RunReply)
            backend._follow(reply.run, Watcher(seen))
        finally:
            backend.close()

    _follow_live(served, follow)


def test_long_poll_answers_on_commit_and_old_clients_at_once(served: Served) -> None:
    from klaw.api.flight import Client

    run_id = served.start()
    with Client(served.flight, token=TOKEN, timeout=WAIT) as client:
        head = client.events(run_id).events  # an old client's ListEvents: at once
        deadline = time.monotonic() + WAIT
        while not any(e.kind == "stage" for e in head) and time.monotonic() < deadline:
            head += client.events(run_id, head[-1].seq, wait=1.0).events
        assert any(e.kind == "stage" for e in head)
        after = head[-1].seq
        while True:  # the stage prints and waits: nothing more is committed until the go
            page = client.events(run_id, after, wait=0.5)
            if not page.events:
                break
            after = page.events[-1].seq
        served.go()
        started = time.monotonic()
        page = client.execute(long_poll(run_id, after, WAIT))
        assert isinstance(page, EventsReply) and page.events, "no events: the wait ran out"
        assert time.monotonic() - started < WAIT / 2  # answered by the commit, not the cap
        assert page.events[0].seq == after + 1
        assert client.wait(run_id, timeout=WAIT).state.value == "succeeded"
        page = client.execute(ListEvents(run_id=run_id, after_seq=10**9, wait=WAIT))
        assert isinstance(page, EventsReply) and page.events == []  # ended: answered at once


def test_http_long_poll_and_cancel_wait(served: Served) -> None:
    run_id = served.start()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=served.http, headers=headers, timeout=WAIT) as client:
        path = f"/api/v1/runs/{run_id}/events"
        page = client.get(path, params={"after": 0, "wait": 5}).json()
        assert page["events"] and page["events"][0]["seq"] == 1
        bad = client.get(path, params={"wait": -1})
        assert bad.status_code == 422
        cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", params={"wait": WAIT})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["run"]["state"] == "cancelled"
