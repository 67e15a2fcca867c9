"""A layered drawing of a workflow's graph, computed where the graph is (so a browser showing
10,000 stages need not lay them out itself).

Each stage's layer is its longest path from a source (stages of one layer can run at once);
within a layer, stages are ordered by the barycentre of their neighbours in the layer before,
then after, then before again (the Sugiyama heuristic's sweeps), which keeps most edges short
and uncrossed. Cost: a few passes over the stages and edges, O(V + E) each plus a sort per
layer; no edge routing (edges are drawn straight, or by the client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

LAYER_GAP: Final = 220.0  # between layers, left to right
ROW_GAP: Final = 56.0  # between stages of one layer


def layered(
    order: Sequence[str], upstream: Mapping[str, Sequence[str]]
) -> dict[str, tuple[float, float]]:
    """The position ``(x, y)`` of each stage of ``order`` (topological) whose ``upstream``
    stages are given: layers left to right, each centred on ``y = 0``."""
    inside = set(order)
    ups = {name: [u for u in upstream.get(name, ()) if u in inside] for name in order}
    downs: dict[str, list[str]] = {name: [] for name in order}
    level: dict[str, int] = {}
    for name in order:
        level[name] = 1 + max((level[u] for u in ups[name]), default=-1)
        for u in ups[name]:
            downs[u].append(name)
    layers: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for name in order:
        layers[level[name]].append(name)
    rank = {name: float(i) for layer in layers for i, name in enumerate(layer)}

    def sweep(indices: range, neighbours: Mapping[str, list[str]]) -> None:
        for i in indices:
            layer = layers[i]
            centre = {
                n: sum(rank[m] for m in neighbours[n]) / len(neighbours[n])
                if neighbours[n]
                else rank[n]
                for n in layer
            }
            layer.sort(key=lambda n: centre[n])
            for r, n in enumerate(layer):
                rank[n] = float(r)

    down, up = range(1, len(layers)), range(len(layers) - 2, -1, -1)
    sweep(down, ups)
    sweep(up, downs)
    sweep(down, ups)
    return {
        name: (i * LAYER_GAP, (r - (len(layer) - 1) / 2) * ROW_GAP)
        for i, layer in enumerate(layers)
        for r, name in enumerate(layer)
    }
