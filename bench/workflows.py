"""The Klaw side of W1, W2 and W4: workflows built programmatically from ``bench.shapes``.
One function object serves many stages (``klaw.stage(name=..., inputs=...)(fn)``)."""

from __future__ import annotations

import klaw
from bench import shapes


def fanout(width: int) -> klaw.Workflow:
    """``root`` feeds ``width`` no-op stages; ``join`` runs after all of them (``deps=``, so it
    receives nothing: a 500-parameter function is not the point)."""
    middle = [klaw.stage(name=f"s{i}", inputs={"x": "root"})(shapes.noop) for i in range(width)]
    last = klaw.stage(name="join", deps=[s.name for s in middle])(shapes.join)
    return klaw.workflow("fanout", [klaw.stage(shapes.root), *middle, last])


def chain(length: int) -> klaw.Workflow:
    """``c0`` starts at 0; ``c1`` ... each add one to the value of the stage before."""
    stages = [klaw.stage(name="c0")(shapes.start)]
    stages += [
        klaw.stage(name=f"c{i}", inputs={"x": f"c{i - 1}"})(shapes.step) for i in range(1, length)
    ]
    return klaw.workflow("chain", stages)


def single() -> klaw.Workflow:
    """One no-op stage: what a run costs before it has any stages to speak of."""
    return klaw.workflow("single", [klaw.stage(shapes.root)])


def layered(spec: shapes.Layered) -> klaw.Workflow:
    """The layered DAG as Klaw stages, each built with the decorator (W4's "load")."""
    stages: list[klaw.StageDef] = []
    for name, ups in zip(spec.names, spec.upstream, strict=True):
        if ups:
            a, b, c = ups
            stages.append(klaw.stage(name=name, inputs={"a": a, "b": b, "c": c})(shapes.combine))
        else:
            stages.append(klaw.stage(name=name)(shapes.source))
    return klaw.workflow("layered", stages)
