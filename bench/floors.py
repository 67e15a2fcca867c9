"""Floors: the same work without Klaw. Plain Python loops, a ``ThreadPoolExecutor``, a bare
rustworkx graph, an empty interpreter. Each returns when the work is done; callers time it."""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import rustworkx as rx

from bench import shapes

# -- W0 -----------------------------------------------------------------------------------------


def empty_interpreter() -> None:
    """``python -c pass`` with the same interpreter (and so the same site-packages)."""
    subprocess.run([sys.executable, "-c", "pass"], check=True)


# -- W1: root -> N no-ops -> join ---------------------------------------------------------------


def fanout_loop(width: int) -> None:
    value = shapes.root()
    for _ in range(width):
        shapes.noop(value)
    shapes.join()


def fanout_pool(pool: ThreadPoolExecutor, width: int) -> None:
    """root, then ``width`` parallel no-ops, then join: each a task on the pool, each level
    waiting for the one before (what an orchestrator's dependencies mean)."""
    value = pool.submit(shapes.root).result()
    done, _ = wait([pool.submit(shapes.noop, value) for _ in range(width)])
    for future in done:
        future.result()
    pool.submit(shapes.join).result()


# -- W2: a chain --------------------------------------------------------------------------------


def chain_loop(length: int) -> int:
    value = shapes.start()
    for _ in range(1, length):
        value = shapes.step(value)
    return value


def chain_pool(pool: ThreadPoolExecutor, length: int) -> int:
    """Each step a task on the pool, submitted once the previous one's result is back."""
    value = pool.submit(shapes.start).result()
    for _ in range(1, length):
        value = pool.submit(shapes.step, value).result()
    return value


# -- W3: functions called in a loop -------------------------------------------------------------


def pipeline_loop(functions: Sequence[Callable[..., Any]]) -> None:
    """Call ``functions`` in order (a topological order), each with the results its parameters
    name, dropping every result once its last consumer has run: the best a hand-written
    script does, so Klaw is held to freeing intermediates as early."""
    params = [tuple(inspect.signature(fn).parameters) for fn in functions]
    remaining = Counter(p for names in params for p in names)
    values: dict[str, Any] = {}
    for fn, names in zip(functions, params, strict=True):
        result = fn(*(values[n] for n in names))
        for n in names:
            remaining[n] -= 1
            if remaining[n] == 0:
                del values[n]
        if remaining[fn.__name__] > 0:
            values[fn.__name__] = result
        del result


# -- W4: the graph alone ------------------------------------------------------------------------


def rustworkx_plan(spec: shapes.Layered) -> list[int]:
    """Build the same DAG as a bare ``PyDiGraph`` from names, check it is acyclic, sort it."""
    graph = rx.PyDiGraph(check_cycle=False, multigraph=False)
    index = dict(zip(spec.names, graph.add_nodes_from(spec.names), strict=True))
    graph.add_edges_from(
        [
            (index[up], index[name], None)
            for name, ups in zip(spec.names, spec.upstream, strict=True)
            for up in ups
        ]
    )
    if not rx.is_directed_acyclic_graph(graph):
        raise ValueError("not a DAG")
    return list(rx.topological_sort(graph))
