"""The work itself, without Klaw: the functions W1, W2 and W4's stages call, and W4's layered
DAG as a plain description. Klaw's workflows (``bench.workflows``) and the floors
(``bench.floors``) are both built from these, so that only the orchestration differs. Nothing
here imports Klaw, so a floor's process carries none of it."""

from __future__ import annotations

from dataclasses import dataclass

# -- W1: root -> N independent no-ops -> join -----------------------------------------------------


def root() -> int:
    return 1


def noop(x: object) -> None:
    return None


def join() -> None:
    return None


# -- W2: a chain, each stage adding one to the previous one's value -------------------------------


def start() -> int:
    return 0


def step(x: int) -> int:
    return x + 1


# -- W4: a layered DAG ----------------------------------------------------------------------------


def source() -> None:
    return None


def combine(a: object, b: object, c: object) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Layered:
    """Stage names and, per stage, the stages of the layer above that it reads."""

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
                picks = (j, (j + 1) % width, (j + 37) % width)
                upstream.append(tuple(f"l{layer - 1}_{p}" for p in picks))
    return Layered(tuple(names), tuple(upstream))
