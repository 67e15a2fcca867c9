// Dev harness: `npm run dev`, then open /dev/graph-bench.html?n=3500 (worker layout above 3,000).
import { mount } from 'svelte';
import '../src/app.css';
import Graph from '../src/components/Graph.svelte';
import { workflowElements } from '../src/lib/graph';
import type { WorkflowDetail } from '../src/lib/types';

const n = Number(new URLSearchParams(location.search).get('n') ?? 3500);
const stages = Array.from({ length: n }, (_, i) => ({
  name: `s${i}`, kind: i % 3 ? 'stage' : 'asset', asset: i % 3 ? null : `s${i}`, description: '',
  retries: 0, timeout: null, tags: [], inputs: [],
}));
// Layers of 60 stages, each reading two stages of the layer before.
const edges: [string, string][] = stages.slice(60).flatMap((s, j) => {
  const i = j + 60;
  return [[`s${i - 60}`, s.name], [`s${i - 60 - (i % 60) + ((i * 7) % 60)}`, s.name]] as [string, string][];
});
const wf = { workflow: { name: 'bench', description: '', schedule: null, stages: [], assets: [], tags: [], source: '' },
  stages, edges, params_schema: null, max_active_runs: 1, executor: null, timezone: 'UTC', catch_up: 'latest', depends_on: [] } as WorkflowDetail;
const t0 = performance.now();
const states: Record<string, string> = {};
mount(Graph, { target: document.getElementById('app')!, props: { elements: workflowElements(wf), states, height: 700 } });
(window as unknown as { benchStart: number }).benchStart = t0;
