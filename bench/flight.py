"""F1 and F2: Klaw's Arrow Flight server next to a bare pyarrow Flight server, in the same run.

F1 moves a 10,000,000-row asset (int64, float64, int32: 200 MB of Arrow) over loopback:
``DoGet`` through ``klaw server`` (its snapshot cache warm, as after a first read; and with no
cache, decoding the snapshot's Parquet as it streams) against a bare server streaming the very
table Klaw's cache holds (same batches, same buffers); ``DoPut`` (the upload committed as a DuckLake
snapshot) against a bare server that only receives it, and against receive + commit (the
same batches committed to the lake in-process).

F2 times command round trips over ``DoAction``, one call at a time: ``SubmitRun(wait=False)``
of a one-stage workflow (the run then ends outside the timing) and ``GetRun``, next to a bare
``DoAction`` that echoes its body (the floor of any Flight call) and to ``GetRun`` through the
Dispatcher in-process (what the command itself costs).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa
from pyarrow import flight

import klaw
from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved
from klaw import protocol as c
from klaw.api.flight import Client, serve
from klaw.api.flight.server import batch_rows
from klaw.service.dispatcher import Dispatcher

ROWS = 10_000_000
TOKEN = "bench-token-5f0c2d"
LATENCY_CALLS = 400  # GetRun and echo round trips per sample set
SUBMITS = 100  # SubmitRun(wait=False) round trips

RATIO_TARGET = Target(1.2, Basis.RATIO)
THROUGHPUT_TARGET = Target(1e9, Basis.KLAW, at_least=True)


@klaw.stage
def one() -> int:
    return 1


ONE_STAGE = klaw.workflow("flight_bench_one", [one])


def make_table(rows: int = ROWS) -> pa.Table:
    ids = np.arange(rows, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "amount": np.random.default_rng(7).random(rows),
            "quantity": (ids % 1000).astype(np.int32),
        }
    )


class BareServer(flight.FlightServerBase):  # type: ignore[misc]
    """The floor: pyarrow Flight with nothing behind it. DoGet streams the table it holds,
    DoPut receives a stream and drops it, DoAction echoes its body."""

    def __init__(self, table: pa.Table, rows_per_batch: int) -> None:
        self.table = pa.Table.from_batches(table.to_batches(max_chunksize=rows_per_batch))
        super().__init__("grpc://127.0.0.1:0")

    def do_get(self, context: Any, ticket: Any) -> Any:
        return flight.RecordBatchStream(self.table)

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        reader.read_all()

    def do_action(self, context: Any, action: Any) -> Iterator[Any]:
        return iter([flight.Result(action.body)])


@contextmanager
def servers(settings: Any, table: pa.Table) -> Iterator[dict[str, Any]]:
    """A Klaw orchestrator with the asset stored, served twice (snapshot cache on, off), and a
    bare server, with a client for each."""
    orch = klaw.open_orchestrator(ONE_STAGE, home=settings.home(), max_workers=settings.workers)
    rows_per_batch = batch_rows(table.schema)
    warm = serve(orch, tokens=[TOKEN])
    cold = serve(orch, tokens=[TOKEN], cache_bytes=0)
    bare = BareServer(table, rows_per_batch)
    clients = {
        "warm": Client(warm.location, TOKEN, timeout=120.0),
        "cold": Client(cold.location, TOKEN, timeout=120.0),
    }
    bare_client = flight.connect(f"grpc://127.0.0.1:{bare.port}")
    try:
        handles = {"orch": orch, "bare": bare_client, "bare_server": bare}
        yield {**handles, "cache": warm.server.cache, **clients}
    finally:
        for client in clients.values():
            client.close()
        bare_client.close()
        bare.shutdown()
        warm.stop()
        cold.stop()
        orch.shutdown()
        orch.close()


def _gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds


def _both_orders(cases: dict[str, Case], repeat: int) -> dict[str, float]:
    """Median seconds of each case, sampled interleaved in one order and then in the reverse
    one: with 200 MB per call, which case follows which moves the figures by 10-30 %."""
    first = interleaved(cases, repeat)
    second = interleaved(dict(reversed(cases.items())), repeat, warmup=0)
    return {name: statistics.median(first[name].seconds + second[name].seconds) for name in cases}


def _checked(table: pa.Table, rows: int) -> pa.Table:
    if table.num_rows != rows:
        raise RuntimeError(f"F1 read {table.num_rows} rows, not {rows}")
    return table


def _bare_put(bare: flight.FlightClient, table: pa.Table, rows_per_batch: int) -> None:
    writer, _ = bare.do_put(flight.FlightDescriptor.for_path("upload"), table.schema)
    with writer:
        for batch in table.to_batches(max_chunksize=rows_per_batch):
            writer.write_batch(batch)


def throughput(settings: Any) -> list[Row]:
    table = make_table()
    nbytes, rows = table.nbytes, table.num_rows
    size = f"{ROWS / 1e6:.0f}M rows ({nbytes / 1e6:.0f} MB)"
    rows_per_batch = batch_rows(table.schema)
    with servers(settings, table) as s:
        snapshot = s["warm"].write_asset("big", table)  # stored once, outside the timing
        s["warm"].read_asset("big")  # into Klaw's cache; the bare server streams that table
        s["bare_server"].table = s["cache"].get("big", snapshot)
        get = _both_orders(
            {
                "klaw": Case(lambda: _checked(s["warm"].read_asset("big"), rows)),
                "pinned": Case(lambda: _checked(s["warm"].read_asset("big", snapshot), rows)),
                "bare": Case(
                    lambda: _checked(s["bare"].do_get(flight.Ticket(b"big")).read_all(), rows)
                ),
                "cold": Case(lambda: _checked(s["cold"].read_asset("big"), rows)),
            },
            settings.times(5),
        )
        lake = s["orch"].lake()
        received = pa.Table.from_batches(table.to_batches(max_chunksize=rows_per_batch))
        put = _both_orders(
            {
                "klaw": Case(lambda: s["warm"].write_asset("upload", table)),
                "bare": Case(lambda: _bare_put(s["bare"], table, rows_per_batch)),
                "commit": Case(
                    lambda: lake.commit(
                        "direct", received, run_id="bench", stage="bench", attempt=1
                    )
                ),
            },
            settings.times(3),
        )
    speed = {f"get_{k}": _gbps(nbytes, v) for k, v in get.items()}
    speed.update({f"put_{k}": _gbps(nbytes, v) for k, v in put.items()})
    receive_and_commit = _gbps(nbytes, put["bare"] + put["commit"])
    bps = Unit.BYTES_PER_SECOND
    return [
        Row(
            "F1",
            f"DoGet {size}, snapshot cached",
            bps,
            speed["get_klaw"],
            speed["get_bare"],
            "bare Flight, same table",
            RATIO_TARGET,
        ),
        Row("F1", "  same, absolute", bps, speed["get_klaw"], target=THROUGHPUT_TARGET),
        Row(
            "F1",
            "  DoGet by snapshot id (no latest lookup)",
            bps,
            speed["get_pinned"],
            speed["get_bare"],
            "bare Flight, same table",
        ),
        Row(
            "F1",
            "  DoGet, snapshot decoded from Parquet",
            bps,
            speed["get_cold"],
            speed["get_bare"],
            "bare Flight, same table",
        ),
        Row(
            "F1",
            f"DoPut {size}, committed as a snapshot",
            bps,
            speed["put_klaw"],
            speed["put_bare"],
            "bare Flight, receive only",
            RATIO_TARGET,
        ),
        Row("F1", "  same, absolute", bps, speed["put_klaw"], target=THROUGHPUT_TARGET),
        Row(
            "F1",
            "  DoPut vs receive + commit",
            bps,
            speed["put_klaw"],
            receive_and_commit,
            "bare receive + lake commit",
        ),
        Row("F1", "  lake commit alone (in-process)", bps, speed["put_commit"]),
    ]


def _timed(call: Callable[[], object], after: Callable[[object], object] | None = None) -> float:
    start = time.perf_counter()
    result = call()
    elapsed = time.perf_counter() - start
    if after is not None:
        after(result)  # outside the timing
    return elapsed


def _p(samples: list[float], percentile: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percentile - 1]


def latency(settings: Any) -> list[Row]:
    table = make_table(1000)
    with servers(settings, table) as s:
        client, bare, orch = s["warm"], s["bare"], s["orch"]
        dispatcher = Dispatcher(orch)
        run = client.submit(ONE_STAGE.name, wait=True)
        get_run = c.GetRun(run_id=run.run_id)
        echo = flight.Action("echo", c.encode(get_run))
        times: dict[str, list[float]] = {"echo": [], "get": [], "local": [], "submit": []}
        for i in range(LATENCY_CALLS + 20):  # interleaved; the first 20 warm up
            samples = {
                "echo": _timed(lambda: list(bare.do_action(echo))),
                "get": _timed(lambda: client.execute(get_run)),
                "local": _timed(lambda: dispatcher.execute(get_run)),
            }
            if i >= 20:
                for name, value in samples.items():
                    times[name].append(value)
        for _ in range(SUBMITS):
            times["submit"].append(
                _timed(
                    lambda: client.submit(ONE_STAGE.name),
                    lambda created: orch.wait(created.run_id, timeout=60),
                )
            )
    rows = []
    for pct in (50, 99):
        echo_p = _p(times["echo"], pct)
        rows += [
            Row(
                "F2",
                f"SubmitRun(wait=False), one stage: p{pct}",
                Unit.SECONDS,
                _p(times["submit"], pct),
                echo_p,
                "bare DoAction echo",
            ),
            Row(
                "F2",
                f"GetRun: p{pct}",
                Unit.SECONDS,
                _p(times["get"], pct),
                echo_p,
                "bare DoAction echo",
            ),
            Row(
                "F2",
                f"  GetRun in-process (Dispatcher): p{pct}",
                Unit.SECONDS,
                _p(times["local"], pct),
            ),
        ]
    return rows
