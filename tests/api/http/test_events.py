"""GET /runs/{id}/stream against a real uvicorn server: a run followed from the start to
``run_finished`` with its log lines, resumed with Last-Event-ID or ?after=, and refused (404,
401, 422) before any stream starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from klaw.api.http import Role
from klaw.api.http.events import Cursor
from klaw.errors import InvalidCommandError

from .live import Live, serving

API = "/api/v1"


@dataclass
class Message:
    id: str | None = None
    event: str = "message"
    data: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("events"), "http_events_flows") as served:
        yield served


def read_stream(
    live: Live, run_id: str, headers: dict[str, str] | None = None, **params: Any
) -> tuple[list[Message], list[str]]:
    """Every message of the run's stream (it ends by itself) and the comment lines."""
    messages: list[Message] = []
    comments: list[str] = []
    current = Message()
    with live.client(Role.VIEWER) as client:
        path = f"{API}/runs/{run_id}/stream"
        with client.stream("GET", path, headers=headers, params=params) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line == "":
                    if current.data or current.id is not None:
                        messages.append(current)
                    current = Message()
                elif line.startswith(":"):
                    comments.append(line)
                else:
                    name, _, value = line.partition(": ")
                    if name == "data":
                        current.data.append(value)
                    elif name == "id":
                        current.id = value
                    elif name == "event":
                        current.event = value
    return messages, comments


def submitted(live: Live) -> str:
    with live.client(Role.OPERATOR) as client:
        response = client.post(f"{API}/runs", json={"workflow": "pipe"})
    assert response.status_code == 201, response.text
    run_id: str = response.json()["run"]["run_id"]
    return run_id


def events_of(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.event != "log"]


def test_a_run_followed_from_the_start_to_its_end(live: Live) -> None:
    run_id = submitted(live)
    messages, _ = read_stream(live, run_id)  # started while the run is queued or running
    events = events_of(messages)
    seqs = [int(m.id or "") for m in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert events[-1].event == "run_finished"
    assert events[-1].json()["state"] == "succeeded"
    assert all(m.json()["run_id"] == run_id and m.json()["kind"] == m.event for m in events)
    logs = [m for m in messages if m.event == "log"]
    assert any(m.json()["line"] == "making numbers" for m in logs)
    for log in logs:
        seq, _, log_seq = (log.id or "").partition(":")
        assert int(log_seq) == log.json()["seq"] and int(seq) in seqs
    # the same as the events route has, in the same order
    with live.client(Role.VIEWER) as client:
        listed = client.get(f"{API}/runs/{run_id}/events").json()["events"]
    assert [m.json() for m in events] == listed


def test_a_stream_resumes_after_the_last_id(live: Live) -> None:
    run_id = submitted(live)
    assert live.wait_done(run_id)["state"] == "succeeded"
    whole, _ = read_stream(live, run_id)
    seqs = [int(m.id or "") for m in events_of(whole)]
    middle = seqs[len(seqs) // 2]

    resumed, _ = read_stream(live, run_id, headers={"Last-Event-ID": str(middle)})
    assert [int(m.id or "") for m in events_of(resumed)] == [s for s in seqs if s > middle]
    after, _ = read_stream(live, run_id, after=middle)
    assert [m.id for m in events_of(after)] == [m.id for m in events_of(resumed)]

    # from a log line's id: later events, and no line sent again
    last_log = [m for m in whole if m.event == "log"][-1]
    tail, _ = read_stream(live, run_id, headers={"Last-Event-ID": last_log.id or ""})
    assert [m for m in tail if m.event == "log"] == []
    log_at = int((last_log.id or "").partition(":")[0])
    assert [int(m.id or "") for m in tail] == [s for s in seqs if s > log_at]

    # from the end: nothing left, and the stream still ends
    done, _ = read_stream(live, run_id, headers={"Last-Event-ID": f"{seqs[-1]}:999999"})
    assert done == []


def test_refusals_come_before_the_stream(live: Live) -> None:
    with live.client(Role.VIEWER) as client:
        missing = client.get(f"{API}/runs/nosuchrun/stream")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["code"] == "RunNotFoundError"
        bad_id = client.get(f"{API}/runs/nosuchrun/stream", headers={"Last-Event-ID": "x"})
        assert bad_id.status_code == 422
        assert bad_id.json()["code"] == "InvalidCommandError"
    with live.client() as anonymous:
        refused = anonymous.get(f"{API}/runs/nosuchrun/stream")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.headers["www-authenticate"] == "Bearer"


def test_cursor_parsing() -> None:
    assert Cursor.parse(None, None) == Cursor(0, 0)
    assert Cursor.parse(None, 7) == Cursor(7, 0)
    assert Cursor.parse("5", 7) == Cursor(5, 0)
    assert Cursor.parse(" 5:12 ", None) == Cursor(5, 12)
    assert Cursor.parse("", 3) == Cursor(3, 0)
    for bad in ["x", "-1", "5:x", "5:-2"]:
        with pytest.raises(InvalidCommandError, match="Last-Event-ID"):
            Cursor.parse(bad, None)
