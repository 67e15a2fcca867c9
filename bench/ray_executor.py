"""R1-R3: W1-W3 on the Ray executor next to the same tasks submitted to Ray by hand, in one Ray
started once for the whole workload. Target: Klaw on Ray within 1.5x of hand-written Ray."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import klaw
from bench import shapes
from bench.pipeline import FUNCTIONS
from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved

FAN = 200
CHAIN = 100
RATIO_TARGET = Target(1.5, Basis.RATIO)

# Module-level workflows: Ray workers pickle the stages' functions by reference.
_FAN = klaw.workflow(
    "ray_fan",
    [
        klaw.stage(name="root")(shapes.root),
        *(klaw.stage(name=f"n{i}", inputs={"x": "root"})(shapes.noop) for i in range(FAN)),
        klaw.stage(name="join", deps=[f"n{i}" for i in range(FAN)])(shapes.join),
    ],
)
_CHAIN = klaw.workflow(
    "ray_chain",
    [
        klaw.stage(name="c0")(shapes.start),
        *(
            klaw.stage(name=f"c{i}", inputs={"x": f"c{i - 1}"})(shapes.step)
            for i in range(1, CHAIN)
        ),
    ],
)
_PIPELINE = klaw.workflow("ray_pipeline", [klaw.stage(fn) for fn in FUNCTIONS])


def _by_hand_fan(ray: Any) -> Callable[[], None]:
    root, noop, join = (
        ray.remote(max_retries=0)(f) for f in (shapes.root, shapes.noop, shapes.join)
    )

    def run() -> None:
        r = root.remote()
        ray.get([noop.remote(r) for _ in range(FAN)])
        ray.get(join.remote())

    return run


def _by_hand_chain(ray: Any) -> Callable[[], None]:
    start, step = (ray.remote(max_retries=0)(f) for f in (shapes.start, shapes.step))

    def run() -> None:
        ref = start.remote()
        for _ in range(1, CHAIN):
            ref = step.remote(ref)
        ray.get(ref)

    return run


def _by_hand_pipeline(ray: Any) -> Callable[[], None]:
    import inspect

    remotes = {fn.__name__: ray.remote(max_retries=0)(fn) for fn in FUNCTIONS}

    def run() -> None:
        refs: dict[str, Any] = {}
        for fn in FUNCTIONS:
            args = [refs[p] for p in inspect.signature(fn).parameters]
            refs[fn.__name__] = remotes[fn.__name__].remote(*args)
        ray.get(refs[FUNCTIONS[-1].__name__])

    return run


def _klaw(wf: klaw.Workflow, home: Path, workers: int | None) -> Callable[[], None]:
    def run() -> None:
        record = klaw.run(wf, home=home, executor="ray", max_workers=workers)
        if record.state.value != "succeeded":
            raise RuntimeError(f"{wf.name} on Ray ended {record.state.value}: {record.error}")

    return run


def per_workflow(scratch: Path, repeat: int, workers: int | None) -> list[Row]:
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rows = []
        workloads = [
            ("R1", f"W1 on Ray: 1+{FAN}+1 fan-out, per stage", _FAN, _by_hand_fan, FAN + 2),
            ("R2", f"W2 on Ray: chain of {CHAIN}, per stage", _CHAIN, _by_hand_chain, CHAIN),
            ("R3", "W3 on Ray: 8 stages, 1M rows", _PIPELINE, _by_hand_pipeline, 0),
        ]
        for key, label, wf, hand, stages in workloads:
            home = scratch / f"ray-{key}"
            cases = {"klaw": Case(_klaw(wf, home, workers)), "hand": Case(hand(ray))}
            times = interleaved(cases, repeat)
            unit = Unit.PER_STAGE if stages else Unit.SECONDS
            per = stages or 1
            rows.append(
                Row(
                    key,
                    label,
                    unit,
                    times["klaw"].median / per,
                    times["hand"].median / per,
                    "same tasks, Ray by hand",
                    RATIO_TARGET,
                )
            )
        return rows
    finally:
        ray.shutdown()
        time.sleep(0.5)
