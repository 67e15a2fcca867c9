"""Every KlawError subclass crosses the wire as itself: raised in a real handler of a real
Flight server and of the real HTTP app (uvicorn on loopback), it reaches ``klaw.Client`` and
the HTTP client as the same class, with the same message, hint and fields."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import klaw
from klaw.api.http.client import HttpClient
from klaw.api.http.limits import Limits
from klaw.errors import (
    AuthError,
    KlawError,
    RemoteError,
    SqlProblem,
    error_class,
    error_classes,
    rebuild,
)
from klaw.protocol import ErrorReply, GetRun, from_reply

from ..api import served as flight_served
from ..api.http import live


def _klaw_error_classes() -> list[type[KlawError]]:
    """Every KlawError class Klaw defines, after importing every module of Klaw (so a class
    that lives outside klaw.errors is found too)."""
    for module in pkgutil.walk_packages(klaw.__path__, "klaw."):
        importlib.import_module(module.name)
    found = [cls for cls in error_classes().values() if cls.__module__.startswith("klaw.")]
    return sorted(found, key=lambda cls: cls.__name__)


CLASSES = _klaw_error_classes()

# A value for every field any error has: a new field needs one here (the test says so).
SAMPLES: dict[str, Any] = {
    "problems": ["a cycle: a -> b -> a", "stage 'c' depends on unknown 'd'"],
    "retry_after": 7,
    "command": "GetRun",
    "field": "run_id",
    "problem": SqlProblem.COLUMN,
    "name": "amount",
    "line": 3,
    "user_traceback": 'Traceback (most recent call last):\n  File "flows.py", line 9\nValueError',
    "code": "SomeFutureError",
}


def sample(cls: type[KlawError]) -> KlawError:
    missing = [name for name in cls.fields if name not in SAMPLES]
    assert not missing, f"add a sample value for {missing} ({cls.__name__}) to SAMPLES"
    fields = {name: SAMPLES[name] for name in cls.fields}
    return cls(f"{cls.__name__} raised on purpose.", hint=f"Handle {cls.__name__}.", **fields)


def assert_same(got: BaseException, sent: KlawError) -> None:
    assert type(got) is type(sent), f"{type(sent).__name__} arrived as {type(got).__name__}"
    assert isinstance(got, KlawError)
    assert (got.message, got.hint) == (sent.message, sent.hint)
    assert got.field_values() == sent.field_values()


def raising(run_id: str) -> None:
    """The handler of GetRun on the servers below: raises the error its run id names."""
    cls = error_class(run_id)
    assert cls is not None, run_id
    raise sample(cls)


def test_every_error_class_is_registered_and_takes_one_constructor_shape() -> None:
    names = {cls.__name__ for cls in CLASSES}
    # the families, and classes that lived outside klaw.errors before
    assert {"GraphError", "RateLimitedError", "SqlError", "LeaseLostError"} <= names
    assert {"ForbiddenError", "IdempotencyError", "TicketError", "UnknownActionError"} <= names
    for cls in CLASSES:
        assert error_class(cls.__name__) is cls
        assert cls.__module__ == "klaw.errors", f"{cls.__name__} lives outside klaw.errors"
        assert cls.__name__ in (klaw.errors.__doc__ or ""), f"{cls.__name__} not in the tree"
        sample(cls)  # (message, *, hint=None, **fields) builds each


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_an_error_survives_pickling_with_its_fields(cls: type[KlawError]) -> None:
    sent = sample(cls)
    assert_same(pickle.loads(pickle.dumps(sent)), sent)


# -- over Arrow Flight -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def flight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[flight_served.Served]:
    root = tmp_path_factory.mktemp("errors-flight")
    with flight_served.serving(root, "wire_errors_flight_flows") as served:
        served.orchestrator.get_run = raising  # type: ignore[method-assign,assignment]
        yield served


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips_over_flight(
    flight_server: flight_served.Served, cls: type[KlawError]
) -> None:
    with flight_server.client() as client, pytest.raises(KlawError) as raised:
        client.execute(GetRun(run_id=cls.__name__))
    assert_same(raised.value, sample(cls))


# -- over HTTP -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Live]:
    root = tmp_path_factory.mktemp("errors-http")
    roomy = Limits(rate=1000.0, burst=10_000)  # one request per class, none throttled
    with live.serving(root, "wire_errors_http_flows", limits=roomy) as served:
        served.orchestrator.get_run = raising  # type: ignore[method-assign,assignment]
        yield served


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_round_trips_over_http(
    http_server: live.Live, cls: type[KlawError]
) -> None:
    token = live.TOKENS[live.Role.VIEWER]
    with (
        HttpClient(http_server.url, token, retries=0) as client,
        pytest.raises(KlawError) as raised,
    ):
        client.execute(GetRun(run_id=cls.__name__))
    sent = sample(cls)
    if isinstance(sent, AuthError):  # the HTTP client says which API refused the call
        message = f"The Klaw API at {http_server.url} refused the call: {sent.message}"
        sent = rebuild(cls, message, sent.hint, sent.field_values())
    assert_same(raised.value, sent)


# -- codes this side does not know -----------------------------------------------------------
def test_a_code_without_a_class_here_is_a_remote_error_that_keeps_it() -> None:
    exc = from_reply(ErrorReply(code="SomeFutureError", message="new", hint="do x"))
    assert type(exc) is RemoteError and exc.code == "SomeFutureError"
    assert (exc.message, exc.hint) == ("new", "do x")


def test_fields_of_another_version_are_taken_as_they_come_or_dropped() -> None:
    odd = ErrorReply(code="RateLimitedError", message="slow down", fields={"retry_after": "x"})
    assert from_reply(odd).field_values() == {"retry_after": "x"}
    extra = ErrorReply(code="GraphError", message="a cycle", fields={"colour": "red"})
    graph = from_reply(extra)
    assert type(graph).__name__ == "GraphError" and graph.field_values() == {
        "problems": ["a cycle"]
    }


def test_a_class_defined_outside_klaw_never_hides_one_of_klaw() -> None:
    class GraphError(KlawError):  # a user's class of the same name
        """Not Klaw's."""

    assert error_class("GraphError") is klaw.errors.GraphError
    assert GraphError.__name__ == "GraphError"


# -- the clients import no service -----------------------------------------------------------
def test_the_clients_import_nothing_of_the_service() -> None:
    """The package root loads ``klaw.service.embedded`` (for ``klaw.run``, whose imports are
    lazy); the clients add no module of ``klaw.service`` to it."""
    script = (
        "import sys, klaw\n"
        "before = {m for m in sys.modules if m.startswith('klaw.service')}\n"
        "import klaw.api.flight.client, klaw.api.http.client\n"
        "after = {m for m in sys.modules if m.startswith('klaw.service')}\n"
        "print(sorted(after - before))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout
