// dagre layout off the main thread, for graphs too big to lay out without freezing the page.
import dagre from '@dagrejs/dagre';

interface Req {
  nodes: { id: string; width: number; height: number }[];
  edges: { source: string; target: string }[];
}

self.onmessage = (e: MessageEvent<Req>) => {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 20, ranksep: 60 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of e.data.nodes) g.setNode(n.id, { width: n.width, height: n.height });
  for (const ed of e.data.edges) g.setEdge(ed.source, ed.target);
  dagre.layout(g);
  const positions: Record<string, { x: number; y: number }> = {};
  for (const id of g.nodes()) {
    const n = g.node(id);
    if (n) positions[id] = { x: n.x, y: n.y };
  }
  (self as unknown as Worker).postMessage(positions);
};
