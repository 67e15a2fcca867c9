"""The graph shapes the overhead workloads run: a fan-out (W1), a chain (W2) and a large
layered DAG (W4). Each comes as a Klaw workflow and as the plain description its floor uses,
built from the same functions so that only the orchestration differs."""

from __future__ import annotations

from dataclasses import dataclass

import klaw

# -- the no-op functions every stage of W1 and W2 calls ------------------------------------------


def root() -> int:
    return 1


def noop(x: object) -> None:
    return None


def join() -> None:
    return None


def start() -> int:
    return 0


def step(x: int) -> int:
    return x + 1


def source() -> None:
    return None


def combine(a: object, b: object, c: object) -> None:
    return None


# -- W1: root -> N independent stages -> join ------------------------------------------------


def fanout(width: int) -> klaw.Workflow:
    """``root`` feeds ``width`` no-op stages; ``join`` runs after all of them (``deps=``, so it
    receives nothing: a 500-parameter function is not the point)."""
    middle = [klaw.stage(name=f"s{i}", inputs={"x": "root"})(noop) for i in range(width)]
    last = klaw.stage(name="join", deps=[s.name for s in middle])(join)
    return klaw.workflow("fanout", [klaw.stage(root), *middle, last])


# -- W2: a chain, each stage adding one to the previous one's value ---------------------------


def chain(length: int) -> klaw.Workflow:
    stages = [klaw.stage(name="c0")(start)]
    stages += [klaw.stage(name=f"c{i}", inputs={"x": f"c{i - 1}"})(step) for i in range(1, length)]
    return klaw.workflow("chain", stages)


# -- W4: a layered DAG of layers x width stages -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Layered:
    """Stage names and, per stage, the three stages of the layer above it reads."""

    names: tuple[str, ...]
    upstream: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def edges(self) -> int:
        return sum(len(u) for u in self.upstream)


def layered(layers: int, width: int) -> Layered:
    """Layer 0 has ``width`` sources; every later stage reads three distinct stages of the
    layer above (straight up, its neighbour, and one 37 places along)."""
    if width <= 37:
        raise ValueError("width must exceed 37 so the three upstream stages are distinct")
    names: list[str] = []
    upstream: list[tuple[str, ...]] = []
    for layer in range(layers):
        for j in range(width):
            names.append(f"l{layer}_{j}")
            if layer == 0:
                upstream.append(())
            else:
                above = layer - 1
                picks = (j, (j + 1) % width, (j + 37) % width)
                upstream.append(tuple(f"l{above}_{p}" for p in picks))
    return Layered(tuple(names), tuple(upstream))


def layered_workflow(spec: Layered) -> klaw.Workflow:
    """The layered DAG as Klaw stages, each built with the decorator (this is W4's "load")."""
    stages: list[klaw.StageDef] = []
    for name, ups in zip(spec.names, spec.upstream, strict=True):
        if ups:
            a, b, c = ups
            stages.append(klaw.stage(name=name, inputs={"a": a, "b": b, "c": c})(combine))
        else:
            stages.append(klaw.stage(name=name)(source))
    return klaw.workflow("layered", stages)
