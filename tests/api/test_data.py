"""Asset data over Flight: DoGet (latest, older, cached), DoPut, ListFlights / GetFlightInfo /
GetSchema, and errors that name the asset or field and say what to do."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pyarrow as pa
import pytest
from pyarrow import flight

from klaw.api.flight.tickets import TicketError, decode_meta, decode_receipt, encode_ticket
from klaw.errors import AssetNotFoundError, StorageError

from .served import Served, auth, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("api-data"), "api_data_flows") as served:
        with served.client() as client:  # two snapshots of `numbers`: 3 rows, then 4
            assert client.submit("pipe", wait=True).state.value == "succeeded"
            assert client.submit("pipe", params={"n": 4}, wait=True).state.value == "succeeded"
        yield served


def snapshot_ids(served: Served, key: str) -> list[int]:
    return [s.snapshot for s in served.orchestrator.snapshots(key)]


def test_do_get_reads_the_latest_and_an_older_snapshot(served: Served) -> None:
    older, latest = snapshot_ids(served, "numbers")[:2]
    with served.client() as client:
        assert client.read_asset("numbers").column("x").to_pylist() == [1, 2, 3, 4]
        assert client.read_asset("numbers", latest).num_rows == 4
        assert client.read_asset("numbers", older).column("x").to_pylist() == [1, 2, 3]
    bare = served.raw()  # a plain Flight client with a hand-made ticket
    try:
        ticket = flight.Ticket(msgspec.msgpack.encode({"key": "numbers", "snapshot": older}))
        assert bare.do_get(ticket, auth()).read_all().num_rows == 3
    finally:
        bare.close()


def test_a_large_snapshot_streams_in_batches_and_again_from_memory(served: Served) -> None:
    rows = 600_000
    table = pa.table(
        {"id": pa.array(range(rows), pa.int64()), "half": [i / 2 for i in range(rows)]}
    )
    with served.client() as client:
        snapshot = client.write_asset("wide", table)
        bare = served.raw()
        try:
            reader = bare.do_get(flight.Ticket(encode_ticket("wide", snapshot)), auth())
            batches = [chunk.data for chunk in reader]
        finally:
            bare.close()
        assert len(batches) > 1  # streamed, not one message
        assert sum(b.num_rows for b in batches) == rows
        first = pa.Table.from_batches(batches)
        assert served.server.server.cache.get("wide", snapshot) is not None
        again = client.read_asset("wide")  # served from the cache
        assert again.equals(first)
        # the rows, in the order the lake keeps them (a multi-batch commit may reorder them)
        assert again.sort_by("id").equals(table.sort_by("id").combine_chunks())
        info = client.flight_info("wide")
        assert info.total_records == rows and info.total_bytes >= again.nbytes  # + validity


def test_do_put_then_do_get_round_trip(served: Served) -> None:
    table = pa.table({"city": ["Oslo", "Lima", None], "temp": [3.5, 18.25, -1.0]})
    with served.client() as client:
        snapshot = client.write_asset("weather", table)
        assert client.read_asset("weather").equals(table)
        assert client.read_asset("weather", snapshot).equals(table)
        listed = client.snapshots("weather")
        assert [s.snapshot for s in listed] == [snapshot]
        assert (listed[0].run_id, listed[0].stage, listed[0].rows) == ("upload", "do_put", 3)
        second = client.write_asset("weather", table.slice(0, 1))  # a new snapshot
        assert second > snapshot
        assert client.read_asset("weather").num_rows == 1
        assert client.read_asset("weather", snapshot).num_rows == 3
        assert "weather" in [a.key for a in client.assets()]


def test_do_put_receipt_names_the_snapshot(served: Served) -> None:
    table = pa.table({"n": [1, 2]})
    bare = served.raw()
    try:
        writer, answers = bare.do_put(
            flight.FlightDescriptor.for_path("receipts"), table.schema, auth()
        )
        writer.write_table(table)
        writer.done_writing()
        receipt = decode_receipt(answers.read().to_pybytes())
        writer.close()
    finally:
        bare.close()
    assert (receipt.key, receipt.rows) == ("receipts", 2)
    assert receipt.snapshot == snapshot_ids(served, "receipts")[-1]


def test_write_asset_takes_polars_frames_and_record_batch_readers(served: Served) -> None:
    import polars as pl

    with served.client() as client:
        client.write_asset("from_polars", pl.DataFrame({"a": [1, 2, 3]}))
        assert client.read_asset("from_polars").column("a").to_pylist() == [1, 2, 3]
        source = pa.table({"b": ["x", "y"]})
        client.write_asset("from_reader", source.to_reader())
        assert client.read_asset("from_reader").equals(source)
        with pytest.raises(StorageError) as bad:
            client.write_asset("not-a-key", source)
        assert "'not-a-key'" in bad.value.message and "valid asset key" in bad.value.message


def test_list_flights_and_get_flight_info_describe_assets(served: Served) -> None:
    older, latest = snapshot_ids(served, "numbers")[:2]
    with served.client() as client:
        infos = {bytes(i.descriptor.path[0]).decode(): i for i in client.flights()}
        assert "numbers" in infos
        numbers = infos["numbers"]
        assert numbers.schema == pa.schema([("x", pa.int64())])
        assert numbers.total_records == 4 and numbers.total_bytes >= 4 * 8
        meta = decode_meta(numbers.app_metadata)
        assert meta is not None and (meta.snapshot, meta.snapshots) == (latest, 2)
        assert [bytes(i.descriptor.path[0]) for i in client.flights("num")] == [b"numbers"]

        old = client.flight_info("numbers", older)
        assert old.total_records == 3 and old.schema == numbers.schema
        [endpoint] = old.endpoints
        assert endpoint.locations == []  # the same server
        bare = served.raw()
        try:  # the endpoint's ticket reads exactly the snapshot described
            assert bare.do_get(endpoint.ticket, auth()).read_all().num_rows == 3
            schema = bare.get_schema(flight.FlightDescriptor.for_path("numbers"), auth()).schema
        finally:
            bare.close()
        assert schema == numbers.schema


def flight_error(call: object, *, traceback_free: bool = True) -> str:
    """The text of the Flight error ``call()`` raises, checked to carry no traceback."""
    with pytest.raises((pa.ArrowException, OSError)) as info:  # GetSchema: no FlightError
        call()  # type: ignore[operator]
    text = str(info.value)
    if traceback_free:
        assert "Traceback" not in text and 'File "' not in text, text
    return text


@pytest.mark.parametrize(
    ("ticket", "names"),
    [
        (msgspec.msgpack.encode({"key": "nope"}), ["'nope'", "does not exist", "klaw assets list"]),
        (msgspec.msgpack.encode({"key": "numbers", "snapshot": 999}), ["no snapshot 999"]),
        (b"\xc1 garbage", ["not Klaw MessagePack", "encode_ticket"]),
        (msgspec.msgpack.encode({"snapshot": 1}), ["missing required field `key`"]),
        (msgspec.msgpack.encode({"key": "numbers", "snapshot": "1"}), ["'snapshot'"]),
        (msgspec.msgpack.encode({"key": "bad key"}), ["'bad key'", "not a valid asset key"]),
    ],
)
def test_bad_tickets_are_refused_naming_what_is_wrong(
    served: Served, ticket: bytes, names: list[str]
) -> None:
    bare = served.raw()
    try:
        text = flight_error(lambda: bare.do_get(flight.Ticket(ticket), auth()).read_all())
    finally:
        bare.close()
    for name in names:
        assert name in text, text


@pytest.mark.parametrize(
    ("descriptor", "names"),
    [
        (flight.FlightDescriptor.for_path("nope"), ["'nope'", "does not exist"]),
        (flight.FlightDescriptor.for_path("numbers", "latest"), ["decimal", "'latest'"]),
        (flight.FlightDescriptor.for_path("a", "1", "2"), ["1 or 2 parts"]),
        (flight.FlightDescriptor.for_command(b"numbers"), ["path descriptor"]),
    ],
)
def test_bad_descriptors_are_refused(
    served: Served, descriptor: flight.FlightDescriptor, names: list[str]
) -> None:
    bare = served.raw()
    try:
        text = flight_error(lambda: bare.get_flight_info(descriptor, auth()))
        # pyarrow 26 appends the server's Python traceback to any GetSchema error (its server
        # side lacks the FlightError handling of the other methods): Klaw's sentence leads.
        schema_text = flight_error(
            lambda: bare.get_schema(descriptor, auth()), traceback_free=False
        )
        for name in names:
            assert name in text, text
            assert name in schema_text.split(". Detail:")[0], schema_text
    finally:
        bare.close()


def test_do_put_with_a_snapshot_in_the_path_and_do_exchange_are_refused(served: Served) -> None:
    table = pa.table({"n": [1]})
    bare = served.raw()
    try:

        def put() -> None:
            descriptor = flight.FlightDescriptor.for_path("numbers", "1")
            writer, _ = bare.do_put(descriptor, table.schema, auth())
            writer.write_table(table)
            writer.close()

        assert "new snapshot" in flight_error(put)

        def exchange() -> None:
            writer, _ = bare.do_exchange(flight.FlightDescriptor.for_path("numbers"), auth())
            writer.close()

        assert "DoExchange" in flight_error(exchange)
    finally:
        bare.close()


def test_client_raises_klaw_errors_for_data_calls(served: Served) -> None:
    with served.client() as client:
        with pytest.raises(AssetNotFoundError) as missing:
            client.read_asset("numbrs")
        assert "'numbrs'" in missing.value.message and "'numbers'" in missing.value.message
        with pytest.raises(AssetNotFoundError):
            client.flight_info("numbers", 999)
        with pytest.raises(TicketError):
            client.flight_info("numbers", -1)


def test_the_lake_streams_a_snapshot_batch_by_batch(served: Served) -> None:
    lake = served.orchestrator.lake()
    older = snapshot_ids(served, "numbers")[0]
    batches = list(lake.stream("numbers", batch_rows=3))  # the latest: 4 rows
    assert [b.num_rows for b in batches] == [3, 1]
    assert pa.Table.from_batches(lake.stream("numbers", older)).num_rows == 3
    with pytest.raises(AssetNotFoundError) as unknown:
        lake.stream("numbrs")
    assert "did you mean 'numbers'" in unknown.value.message
    with pytest.raises(AssetNotFoundError):
        lake.stream("numbers", 999)
    with pytest.raises(StorageError):
        lake.stream("numbers", "1")  # type: ignore[arg-type]
