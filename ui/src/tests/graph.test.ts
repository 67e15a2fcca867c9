import { describe, expect, it, vi } from 'vitest';
import { render, screen, waitFor } from '@testing-library/svelte';
import Graph from '../components/Graph.svelte';
import { fitViewport, KeptLayout, leanStyle, lineageElements, recolor, STATE_VARS, statesFromAttempts, workflowElements } from '../lib/graph';
import type { WorkflowDetail } from '../lib/types';

const wf: WorkflowDetail = {
  workflow: { name: 'rich', description: '', schedule: null, stages: ['events', 'check', 'summary'], assets: ['events', 'summary'], tags: [], source: 'workflows.rich' },
  stages: [
    { name: 'events', kind: 'asset', asset: 'events', description: '', retries: 0, timeout: null, tags: ['ingest'], inputs: ['raw/clicks'] },
    { name: 'check', kind: 'stage', asset: null, description: '', retries: 0, timeout: null, tags: [], inputs: [], engine: 'duckdb' },
    { name: 'summary', kind: 'asset', asset: 'summary', description: '', retries: 1, timeout: null, tags: [], inputs: ['events'] },
  ],
  edges: [['events', 'check'], ['events', 'summary']],
  params_schema: null,
  max_active_runs: 1,
  executor: null,
  timezone: 'UTC',
  catch_up: 'latest',
  depends_on: [],
};

describe('workflowElements', () => {
  it('builds stage, asset and input-asset nodes and deduplicated edges', () => {
    const els = workflowElements(wf);
    const nodes = els.filter((e) => e.group === 'nodes').map((e) => e.data);
    const edges = els.filter((e) => e.group === 'edges').map((e) => e.data.id);
    expect(nodes.map((n) => [n.id, (n as { kind: string }).kind])).toEqual([
      ['events', 'asset'], ['check', 'stage'], ['summary', 'asset'], ['asset:raw/clicks', 'external'],
    ]);
    expect(edges.sort()).toEqual(['asset:raw/clicks->events', 'events->check', 'events->summary']);
    expect((nodes[0] as { label: string }).label).toContain('#ingest');
    expect((nodes[1] as { label: string }).label).toContain('duckdb');
  });

  it('places nodes where the server laid them out, input assets left of their reader', () => {
    const placed = { ...wf, positions: { events: [0, 0], check: [220, -28], summary: [220, 28] } as Record<string, [number, number]> };
    const els = workflowElements(placed);
    const at = (id: string) => els.find((e) => e.data.id === id)?.position;
    expect(at('check')).toEqual({ x: 220, y: -28 });
    expect(at('asset:raw/clicks')).toEqual({ x: -220, y: 0 });
    expect(workflowElements(wf).every((e) => e.position === undefined)).toBe(true);
  });

  it('builds a lineage graph around the asset', () => {
    const els = lineageElements({ key: 'b', workflow: 'w', stage: 's', upstream: ['a'], downstream: ['c'] });
    expect(els.filter((e) => e.group === 'nodes').map((e) => e.data.id)).toEqual(['asset:b', 'asset:a', 'stage', 'asset:c']);
  });

  it('takes the latest attempt of each stage', () => {
    expect(statesFromAttempts([
      { stage: 'a', attempt: 2, state: 'succeeded' },
      { stage: 'a', attempt: 1, state: 'failed' },
    ])).toEqual({ a: 'succeeded' });
  });

  it('recolours in one batch, only the nodes that changed', () => {
    const data: Record<string, string> = { a: 'running', b: 'pending' };
    const batch = vi.fn((fn: () => void) => fn());
    const cy = {
      batch,
      getElementById: (id: string) => ({
        empty: () => !(id in data),
        data: (k: string, v?: unknown) => (v === undefined ? data[id] : (data[id] = v as string)),
      }),
    };
    expect(recolor(cy, { a: 'succeeded', b: 'pending', zz: 'failed' })).toBe(1);
    expect(batch).toHaveBeenCalledOnce();
    expect(data.a).toBe('succeeded');
  });
});

describe('leanStyle', () => {
  const color = (name: string, fallback: string) => (name === '--state-failed' ? '#f00' : fallback);
  it('draws a large graph with straight edges, a colour per state and no labels', () => {
    const rules = leanStyle(color, false);
    expect(rules.some((r) => 'label' in r.style)).toBe(false);
    expect(rules.find((r) => r.selector === 'edge')?.style['curve-style']).toBe('haystack');
    for (const s of STATE_VARS) expect(rules.some((r) => r.selector === `node[state = "${s}"]`)).toBe(true);
    expect(rules.find((r) => r.selector === 'node[state = "failed"]')?.style['background-color']).toBe('#f00');
  });
  it('adds the labels once zoomed in', () => {
    const label = leanStyle(color, true).find((r) => 'label' in r.style);
    expect(label?.style.label).toBe('data(label)');
  });
});

describe('fitViewport', () => {
  const box = { width: 400, height: 200, padding: 10, minZoom: 0.05, maxZoom: 3 };
  it('fits the nodes into the box, centred, as cy.fit() does', () => {
    const v = fitViewport([{ x: 0, y: 0 }, { x: 1000, y: 0 }, { x: 500, y: 100 }], { width: 100, height: 20 }, box);
    expect(v.zoom).toBeCloseTo(380 / 1100);
    expect(v.pan.x).toBeCloseTo((400 - v.zoom * 1000) / 2);
    expect(v.pan.y).toBeCloseTo((200 - v.zoom * 100) / 2);
  });
  it('keeps to the zoom limits and copes with no nodes', () => {
    expect(fitViewport([{ x: 5, y: 5 }], { width: 1, height: 1 }, box).zoom).toBe(3);
    expect(fitViewport([], { width: 1, height: 1 }, box)).toEqual({ zoom: 1, pan: { x: 200, y: 100 } });
  });
});

describe('KeptLayout', () => {
  it('moves nothing and reports start, ready and stop', () => {
    const events: string[] = [];
    const layout = { emit: (e: string) => events.push(e) };
    expect(KeptLayout.prototype.run.call(layout)).toBe(layout);
    expect(events).toEqual(['layoutstart', 'layoutready', 'layoutstop']);
  });
});

describe('Graph', () => {
  it('draws the workflow and re-colours on a state change without a relayout', async () => {
    const elements = workflowElements(wf);
    const { rerender, component } = render(Graph, { elements, states: { events: 'running' }, headless: true });
    await waitFor(() => expect(screen.getByTestId('graph-node-events')).toHaveAttribute('data-state', 'running'));
    expect(screen.getByTestId('graph-node-check')).toHaveAttribute('data-state', 'none');
    expect(screen.getByTestId('graph-node-check')).toHaveAttribute('data-kind', 'stage');
    const getCy = () => (component as unknown as { getCy: () => import('cytoscape').Core | null }).getCy();
    await waitFor(() => expect(getCy()).not.toBeNull());
    const cy = getCy()!;
    expect(cy.nodes().length).toBe(4);
    const before = cy.getElementById('check').position();
    const layout = vi.spyOn(cy, 'layout');
    const batch = vi.spyOn(cy, 'batch');
    await rerender({ elements, states: { events: 'succeeded', check: 'failed' }, headless: true });
    await waitFor(() => expect(screen.getByTestId('graph-node-check')).toHaveAttribute('data-state', 'failed'));
    expect(cy.getElementById('check').data('state')).toBe('failed');
    expect(cy.getElementById('events').data('state')).toBe('succeeded');
    expect(batch).toHaveBeenCalled();
    expect(layout).not.toHaveBeenCalled();
    expect(cy.getElementById('check').position()).toEqual(before);
  });
});
