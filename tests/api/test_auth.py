"""Bearer tokens on every Flight method: none and wrong ones refused, several valid at once, a
token file rotated while the server runs; the client's errors name KLAW_TOKEN / KLAW_SERVER."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pyarrow import flight

from klaw.api.flight import Client, TokenSet
from klaw.api.flight.auth import bearer_token, parse_token_file
from klaw.api.flight.tickets import encode_ticket
from klaw.errors import AuthError, ConfigError, ServerUnavailableError
from klaw.protocol import Ping, encode
from klaw.settings import KlawSettings

from .served import OTHER_TOKEN, TOKEN, Served, auth, serving

Call = Callable[[flight.FlightClient, flight.FlightCallOptions], object]
PATH = flight.FlightDescriptor.for_path("numbers")


def do_put(client: flight.FlightClient, options: flight.FlightCallOptions) -> None:
    table = pa.table({"n": [1, 2]})
    writer, _ = client.do_put(flight.FlightDescriptor.for_path("uploaded"), table.schema, options)
    writer.write_table(table)
    writer.close()


METHODS: dict[str, Call] = {
    "do_action": lambda c, o: list(c.do_action(flight.Action("command", encode(Ping())), o)),
    "list_actions": lambda c, o: list(c.list_actions(o)),
    "do_get": lambda c, o: c.do_get(flight.Ticket(encode_ticket("numbers")), o).read_all(),
    "do_put": do_put,
    "list_flights": lambda c, o: list(c.list_flights(b"", o)),
    "get_flight_info": lambda c, o: c.get_flight_info(PATH, o),
    "get_schema": lambda c, o: c.get_schema(PATH, o),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("api-auth")
    with serving(root, "api_auth_flows", tokens=[TOKEN, OTHER_TOKEN]) as served:
        with served.client() as client:
            client.submit("pipe", wait=True)
        yield served


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("token", [None, "wrong-token", "", f"{TOKEN}x"])
def test_every_method_refuses_a_missing_or_wrong_token(
    served: Served, method: str, token: str | None
) -> None:
    before = [a.key for a in served.orchestrator.assets()]
    client = served.raw()
    try:
        # get_schema raises an OSError on the client (pyarrow's check_status, not Flight's)
        with pytest.raises((pa.ArrowException, OSError)) as info:
            METHODS[method](client, auth(token))
    finally:
        client.close()
    text = str(info.value)
    if method != "get_schema":
        assert isinstance(info.value, flight.FlightUnauthenticatedError), text
    assert ("none was sent" if not token else "is not accepted") in text
    assert "Bearer" in text and "KLAW_FLIGHT__TOKENS" in text
    assert not token or token not in text  # a refused token is never echoed
    assert [a.key for a in served.orchestrator.assets()] == before  # nothing written


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_every_method_serves_either_accepted_token(served: Served, method: str, token: str) -> None:
    client = served.raw()
    try:
        METHODS[method](client, auth(token))
    finally:
        client.close()


def test_the_scheme_is_case_insensitive_and_other_schemes_are_refused() -> None:
    assert bearer_token({"authorization": ["bearer abc"]}) == "abc"
    assert bearer_token({"authorization": [b"Bearer  abc "]}) == "abc"
    assert bearer_token({"authorization": ["Basic abc"]}) is None
    assert bearer_token({"authorization": ["Bearer"]}) is None
    assert bearer_token({}) is None


def test_token_file_rotated_while_the_server_runs(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# rotated weekly\nold-token-aaaa\n")
    tokens = TokenSet(["fixed-token-zzzz"], file)
    with serving(tmp_path / "project", "api_rotation_flows", tokens=tokens) as served:
        with served.client("old-token-aaaa") as client:
            assert client.ping().project == "apiproj"
        file.write_text("# rotated\nnew-token-bbbb  # since today\n")
        with served.client("old-token-aaaa") as client, pytest.raises(AuthError):
            client.ping()
        with served.client("new-token-bbbb") as client:
            assert client.ping().project == "apiproj"
        with served.client("fixed-token-zzzz") as client:  # KLAW_FLIGHT__TOKENS stay valid
            assert client.ping().project == "apiproj"
        # both at once while clients move over, then the file goes away: its tokens with it
        file.write_text("new-token-bbbb\nnewer-token-cccc\n")
        for token in ("new-token-bbbb", "newer-token-cccc"):
            with served.client(token) as client:
                assert client.ping().project == "apiproj"
        file.unlink()
        with served.client("newer-token-cccc") as client, pytest.raises(AuthError):
            client.ping()
        with served.client("fixed-token-zzzz") as client:
            assert client.ping().project == "apiproj"


def test_a_rewrite_within_the_same_timestamp_tick_is_seen(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("token-one-1111\n")
    stamp = os.stat(file).st_mtime_ns
    tokens = TokenSet((), file)
    assert tokens.accepts("token-one-1111")
    file.write_text("token-two-2222\n")  # same size; give it the very same mtime
    os.utime(file, ns=(stamp, stamp))
    assert tokens.accepts("token-two-2222") and not tokens.accepts("token-one-1111")


def test_token_parsing() -> None:
    assert parse_token_file("# header\n\n t1 \nt2 # note\n   # indented comment\n") == ["t1", "t2"]


def test_tokens_from_settings(tmp_path: Path) -> None:
    settings = KlawSettings(flight={"tokens": "one, two"})
    tokens = TokenSet.from_settings(settings)
    assert tokens.count() == 2 and tokens.accepts("two") and not tokens.accepts("three")
    assert "one" not in repr(tokens) and "two" not in repr(tokens)
    (tmp_path / "tokens.txt").write_text("three\n")
    relative = KlawSettings(flight={"tokens_file": Path("tokens.txt")})
    assert TokenSet.from_settings(relative, tmp_path).accepts("three")


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (KlawSettings(), ["No tokens", "KLAW_FLIGHT__TOKENS", "KLAW_FLIGHT__TOKENS_FILE"]),
        (KlawSettings(flight={"tokens": " , "}), ["No tokens"]),
        (
            KlawSettings(flight={"tokens_file": Path("/nonexistent/tokens")}),
            ["'/nonexistent/tokens'"],
        ),
    ],
)
def test_no_tokens_is_refused(settings: KlawSettings, names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        TokenSet.from_settings(settings)
    text = f"{info.value.message} {info.value.hint}"
    for name in names:
        assert name in text


def test_an_empty_token_file_without_fixed_tokens_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("# nobody yet\n")
    with pytest.raises(ConfigError) as info:
        TokenSet.from_settings(KlawSettings(flight={"tokens_file": tmp_path / "tokens"}))
    assert "holds none" in info.value.message


def test_client_errors_name_the_token_variable(served: Served) -> None:
    with served.client(token=None) as client, pytest.raises(AuthError) as missing:
        client.ping()
    assert "KLAW_TOKEN is not set" in missing.value.message
    assert "KLAW_TOKEN" in (missing.value.hint or "")
    with served.client(token="wrong-token") as client, pytest.raises(AuthError) as wrong:
        client.read_asset("numbers")
    assert "refused DoGet" in wrong.value.message and "KLAW_TOKEN" in (wrong.value.hint or "")


def test_client_defaults_come_from_the_environment(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAW_SERVER", served.server.location.removeprefix("grpc://"))
    monkeypatch.setenv("KLAW_TOKEN", OTHER_TOKEN)
    with Client() as client:
        assert client.url == served.server.location
        assert client.ping().project == "apiproj"
        assert OTHER_TOKEN not in repr(client)


def test_an_unreachable_server_is_named_with_how_to_start_one() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"grpc://127.0.0.1:{port}", token=TOKEN)
    with client, pytest.raises(ServerUnavailableError) as info:
        client.ping()
    assert f"grpc://127.0.0.1:{port}" in info.value.message
    assert "klaw server" in (info.value.hint or "") and "KLAW_SERVER" in (info.value.hint or "")


def test_a_malformed_server_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Client("grpc://[not a host", token=TOKEN)
    assert "grpc://HOST:PORT" in (info.value.hint or "")
