// Graph elements (Cytoscape's JSON) of a workflow and of an asset's lineage; no cytoscape import
// here, so this stays out of the main chunk.
import type { Lineage, WorkflowDetail } from './types';

export interface NodeData {
  id: string;
  label: string;
  kind: 'stage' | 'asset' | 'external';
  state?: string;
  href?: string;
  [k: string]: unknown;
}
export interface GraphElement {
  group: 'nodes' | 'edges';
  data: NodeData | { id: string; source: string; target: string };
  /** Where the server's layered drawing puts a node (GET /workflows/{name}?layout=true). */
  position?: { x: number; y: number };
}

export function stageLabel(s: { name: string; asset?: string | null; engine?: string | null; tags?: string[]; kind?: string }): string {
  const extra: string[] = [];
  if (s.engine) extra.push(s.engine);
  if (s.tags?.length) extra.push(s.tags.map((t) => `#${t}`).join(' '));
  const head = s.asset && s.asset !== s.name ? `${s.name} → ${s.asset}` : s.name;
  return extra.length ? `${head}\n${extra.join(' · ')}` : head;
}

/** One node per stage (asset-producing stages drawn as assets), one per external input asset. */
export function workflowElements(wf: WorkflowDetail, states: Record<string, string> = {}): GraphElement[] {
  const els: GraphElement[] = [];
  const names = new Set(wf.stages.map((s) => s.name));
  const assetOwner = new Map<string, string>();
  for (const s of wf.stages) if (s.asset) assetOwner.set(s.asset, s.name);
  const engineOf = (s: WorkflowDetail['stages'][number]) =>
    (s.engine as string | undefined) ?? ((s as unknown as Record<string, unknown>).executor as string | undefined) ?? null;
  for (const s of wf.stages) {
    els.push({
      group: 'nodes',
      data: {
        id: s.name,
        label: stageLabel({ ...s, engine: engineOf(s) }),
        kind: s.kind === 'asset' || s.asset ? 'asset' : 'stage',
        state: states[s.name] ?? 'none',
      },
    });
  }
  const seen = new Set<string>();
  const edge = (source: string, target: string) => {
    const id = `${source}->${target}`;
    if (seen.has(id) || source === target) return;
    seen.add(id);
    els.push({ group: 'edges', data: { id, source, target } });
  };
  const positions = (wf.positions ?? {}) as Record<string, [number, number]>;
  if (Object.keys(positions).length) {
    for (const e of els) {
      const at = positions[e.data.id];
      if (at) e.position = { x: at[0], y: at[1] };
    }
  }
  for (const [a, b] of wf.edges) if (names.has(a) && names.has(b)) edge(a, b);
  const externals = new Set<string>();
  for (const s of wf.stages) {
    for (const input of s.inputs ?? []) {
      const owner = assetOwner.get(input) ?? (names.has(input) ? input : null);
      if (owner) edge(owner, s.name);
      else {
        const id = `asset:${input}`;
        if (!externals.has(id)) {
          externals.add(id);
          const at = positions[s.name]; // an input asset: one layer left of its first reader
          const node: GraphElement = { group: 'nodes', data: { id, label: input, kind: 'external', state: 'none', asset: input } };
          if (at) node.position = { x: at[0] - 220, y: at[1] };
          els.push(node);
        }
        edge(id, s.name);
      }
    }
  }
  return els;
}

/** The asset in the middle, its upstream assets on the left, downstream on the right. */
export function lineageElements(l: Lineage): GraphElement[] {
  const els: GraphElement[] = [];
  const node = (key: string, kind: NodeData['kind'], extra: Partial<NodeData> = {}) =>
    els.push({ group: 'nodes', data: { id: `asset:${key}`, label: key, kind, asset: key, ...extra } });
  const producer = l.stage ? `${l.workflow ?? ''}.${l.stage}` : null;
  node(l.key, 'asset', { focus: 'yes' });
  for (const u of l.upstream) {
    node(u, 'external');
    if (producer) els.push({ group: 'edges', data: { id: `${u}->p`, source: `asset:${u}`, target: 'stage' } });
    else els.push({ group: 'edges', data: { id: `${u}->${l.key}`, source: `asset:${u}`, target: `asset:${l.key}` } });
  }
  if (producer) {
    els.push({ group: 'nodes', data: { id: 'stage', label: producer, kind: 'stage', workflow: l.workflow ?? '' } });
    els.push({ group: 'edges', data: { id: 'p->asset', source: 'stage', target: `asset:${l.key}` } });
  }
  for (const d of l.downstream) {
    node(d, 'external');
    els.push({ group: 'edges', data: { id: `${l.key}->${d}`, source: `asset:${l.key}`, target: `asset:${d}` } });
  }
  return els;
}

/** The stage states of a run from its attempts (the latest attempt of each stage wins). */
export function statesFromAttempts(attempts: { stage: string; attempt: number; state: string }[]): Record<string, string> {
  const best: Record<string, { attempt: number; state: string }> = {};
  for (const a of attempts) {
    const cur = best[a.stage];
    if (!cur || a.attempt >= cur.attempt) best[a.stage] = { attempt: a.attempt, state: a.state };
  }
  return Object.fromEntries(Object.entries(best).map(([k, v]) => [k, v.state]));
}

export const STATE_VARS = [
  'none', 'pending', 'ready', 'queued', 'running', 'succeeded', 'failed', 'retrying',
  'skipped', 'upstream_failed', 'cancelled', 'timed_out',
] as const;

/** Apply stage states to a cytoscape instance without a relayout (one batch). */
export function recolor(
  cy: { batch: (fn: () => void) => void; getElementById: (id: string) => { empty: () => boolean; data: (k: string, v?: unknown) => unknown } },
  states: Record<string, string>,
): number {
  let changed = 0;
  cy.batch(() => {
    for (const [id, state] of Object.entries(states)) {
      const n = cy.getElementById(id);
      if (n.empty()) continue;
      if (n.data('state') !== state) {
        n.data('state', state);
        changed++;
      }
    }
  });
  return changed;
}

/** Below this zoom a large graph's labels are too small to read: they are not drawn at all. */
export const LABEL_ZOOM = 0.8;
/** The size of every node of a large graph. */
export const LEAN_NODE = { width: 90, height: 28 };

/**
 * The style of a large graph the server laid out: the fewest rules Cytoscape draws 10,000 nodes
 * with (one size, one shape, a colour per state, straight "haystack" edges), and the labels only
 * once `labelled` (zoomed in to LABEL_ZOOM or more). `color(name, fallback)` reads a CSS variable.
 */
export interface StyleRule {
  selector: string;
  style: Record<string, string | number>;
}
export function leanStyle(color: (name: string, fallback: string) => string, labelled: boolean): StyleRule[] {
  const state = (s: string) => color(`--state-${s}`, '#9aa4b2');
  const label: StyleRule = {
    selector: 'node',
    style: {
      label: 'data(label)',
      'font-size': 11,
      'font-family': 'system-ui, sans-serif',
      color: color('--graph-text', '#111'),
      'text-valign': 'center',
      'text-halign': 'center',
      'text-wrap': 'ellipsis',
      'text-max-width': '84px',
    },
  };
  return [
    { selector: 'node', style: { ...LEAN_NODE, shape: 'rectangle', 'background-color': state('none') } },
    ...STATE_VARS.map((s) => ({ selector: `node[state = "${s}"]`, style: { 'background-color': state(s) } })),
    ...(labelled ? [label] : []),
    {
      selector: 'edge',
      style: { width: 1, 'curve-style': 'haystack', 'haystack-radius': 0, 'line-color': color('--muted', '#888') },
    },
    { selector: ':selected', style: { 'overlay-color': color('--accent', '#36c'), 'overlay-opacity': 0.25 } },
  ];
}

/**
 * A Cytoscape layout (registered as `kept`) that leaves every node where its element put it:
 * a graph the server laid out is drawn without a pass that sets each position again.
 */
export function KeptLayout(): void {}
KeptLayout.prototype.run = function (this: { emit: (event: string) => void }) {
  this.emit('layoutstart');
  this.emit('layoutready');
  this.emit('layoutstop');
  return this;
};

/**
 * The zoom and pan that fit nodes of one size (`node` wide and high) at these positions into a
 * `width` × `height` box with `padding` around: what `cy.fit()` gives, computed from the
 * positions alone instead of every element's bounding box.
 */
export function fitViewport(
  positions: Iterable<{ x: number; y: number }>,
  node: { width: number; height: number },
  box: { width: number; height: number; padding: number; minZoom: number; maxZoom: number },
): { zoom: number; pan: { x: number; y: number } } {
  let x1 = Infinity;
  let y1 = Infinity;
  let x2 = -Infinity;
  let y2 = -Infinity;
  for (const p of positions) {
    x1 = Math.min(x1, p.x - node.width / 2);
    x2 = Math.max(x2, p.x + node.width / 2);
    y1 = Math.min(y1, p.y - node.height / 2);
    y2 = Math.max(y2, p.y + node.height / 2);
  }
  if (x1 === Infinity) return { zoom: 1, pan: { x: box.width / 2, y: box.height / 2 } };
  const w = Math.max(1, box.width - 2 * box.padding);
  const h = Math.max(1, box.height - 2 * box.padding);
  const zoom = Math.min(box.maxZoom, Math.max(box.minZoom, Math.min(w / (x2 - x1), h / (y2 - y1))));
  return { zoom, pan: { x: (box.width - zoom * (x1 + x2)) / 2, y: (box.height - zoom * (y1 + y2)) / 2 } };
}
