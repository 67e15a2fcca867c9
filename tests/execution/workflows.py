"""Workflow fixtures, defined at module level so process workers can import them. Every
fixture here runs on both the thread and the process executor (see test_runner.py)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, SecretStr

import klaw


class Scratch(BaseModel):
    """Where a fixture keeps files that must survive across worker processes."""

    scratch: str = ""
    fail_times: int = 0


def _count(params: Scratch, name: str) -> int:
    """How many times ``name`` ran before (a file-based counter that crosses processes)."""
    path = Path(params.scratch) / f"{name}.count"
    before = int(path.read_text()) if path.exists() else 0
    path.write_text(str(before + 1))
    return before


# -- linear: arrow -> polars -> plain stage ---------------------------------------------------
@klaw.asset
def numbers() -> pa.Table:
    return pa.table({"n": list(range(10)), "group": ["a", "b"] * 5})


@klaw.asset
def doubled(numbers: pl.DataFrame) -> pl.DataFrame:
    assert isinstance(numbers, pl.DataFrame)
    return numbers.with_columns((pl.col("n") * 2).alias("n2"))


@klaw.stage
def total(doubled: pa.Table) -> int:
    assert isinstance(doubled, pa.Table)
    return int(pa.compute.sum(doubled["n2"]).as_py())


@klaw.asset
def summary(total: int) -> pa.Table:
    return pa.table({"total": [total]})


linear = klaw.workflow("linear", [numbers, doubled, total, summary])


# -- fan-out and fan-in -----------------------------------------------------------------------
@klaw.stage
def root() -> int:
    return 1


def _leaf(root: int) -> int:
    return root + 1


LEAVES = [klaw.stage(name=f"leaf_{i}", inputs={"root": "root"})(_leaf) for i in range(20)]


@klaw.asset(deps=[leaf.name for leaf in LEAVES])
def gather() -> pa.Table:
    return pa.table({"done": [True]})


fanout = klaw.workflow("fanout", [root, *LEAVES, gather])


# -- failure: one branch fails, the other succeeds --------------------------------------------
@klaw.asset
def good() -> pa.Table:
    return pa.table({"x": [1]})


@klaw.stage
def bad(good: pa.Table) -> None:
    print("about to fail")
    raise ValueError("bad input in row 3")


@klaw.asset
def after_bad(bad: None) -> pa.Table:
    return pa.table({"x": [1]})


@klaw.asset
def independent(good: pa.Table) -> pa.Table:
    return good


failing = klaw.workflow("failing", [good, bad, after_bad, independent])


# -- retries ----------------------------------------------------------------------------------
@klaw.asset(retries=klaw.RetryPolicy(retries=2, delay=0.01))
def flaky(params: Scratch) -> pa.Table:
    if _count(params, "flaky") < params.fail_times:
        raise ConnectionError("transient")
    return pa.table({"ok": [1]})


@klaw.asset(retries=3)
def fatal(params: Scratch) -> pa.Table:
    _count(params, "fatal")
    raise klaw.NonRetryableError("the input is wrong; retrying will not help")


retrying = klaw.workflow("retrying", [flaky])
non_retryable = klaw.workflow("non_retryable", [fatal])


# -- timeout and cancel -----------------------------------------------------------------------
@klaw.stage(timeout=0.3)
def sleepy(params: Scratch) -> None:
    (Path(params.scratch) / "sleepy.pid").write_text(str(os.getpid()))
    for _ in range(400):
        time.sleep(0.05)


timeout = klaw.workflow("timeout", [sleepy])


@klaw.asset
def slow_source() -> pa.Table:
    """Read back through the failpoint ``read_input:slow_source`` (a slow lake, on demand)."""
    return pa.table({"n": list(range(1000))})


@klaw.asset(timeout=0.5)
def quick(slow_source: pa.Table) -> pa.Table:
    """Instant: only reading its input can be slow."""
    return slow_source


@klaw.asset(timeout=0.5)
def dawdle(slow_source: pa.Table) -> pa.Table:
    """Overruns its timeout in its own function."""
    for _ in range(600):
        time.sleep(0.05)
    return slow_source


slow_input = klaw.workflow("slow_input", [slow_source, quick, dawdle])


@klaw.stage
def long(params: Scratch) -> None:
    (Path(params.scratch) / "long.pid").write_text(str(os.getpid()))
    for _ in range(600):
        time.sleep(0.05)


@klaw.stage
def after_long(long: None) -> None:
    return None


cancellable = klaw.workflow("cancellable", [long, after_long])


# -- wrong output and captured logs -----------------------------------------------------------
@klaw.asset
def not_a_table() -> dict[str, int]:
    return {"a": 1}


wrong_output = klaw.workflow("wrong_output", [not_a_table])


@klaw.stage
def chatty() -> int:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    logging.getLogger("chatty").warning("to logging")
    return 1


noisy = klaw.workflow("noisy", [chatty])


# -- secrets: a stage that shows its secrets every way it can (all must be masked) -------------
class Vault(BaseModel):
    vault_password: klaw.Secret = klaw.Secret("vault_pw")
    api_key: SecretStr = SecretStr("")


@klaw.stage
def leaky(params: Vault) -> int:
    value = params.vault_password.get_secret_value()
    key = params.api_key.get_secret_value()
    print(f"password {value} key {key}")
    sys.stdout.write(value[:4])  # one line in two writes
    sys.stdout.write(value[4:] + "\n")
    print(f"to stderr {value}", file=sys.stderr)
    logging.getLogger("leaky").warning("logged %s and %s", value, key)
    raise klaw.NonRetryableError(f"refused {value} / {key}")


secretive = klaw.workflow("secretive", [leaky])
