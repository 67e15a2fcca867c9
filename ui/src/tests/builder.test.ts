import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen, waitFor } from '@testing-library/svelte';
import Builder from '../pages/Builder.svelte';
import { session } from '../lib/auth.svelte';
import { setToken } from '../lib/api';

const dir = resolve(process.cwd(), '../examples/tpch/workflows/tpch_sql');
const files = {
  'config.yaml': readFileSync(resolve(dir, 'config.yaml'), 'utf-8'),
  'workflow.sql': readFileSync(resolve(dir, 'workflow.sql'), 'utf-8'),
};

interface Call {
  method: string;
  path: string;
  body: Record<string, unknown> | null;
}
let calls: Call[] = [];

function serve() {
  calls = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: string, init?: RequestInit) => {
      const u = new URL(input, 'http://x');
      const body = init?.body ? (JSON.parse(String(init.body)) as Record<string, unknown>) : null;
      calls.push({ method: init?.method ?? 'GET', path: u.pathname, body });
      const json = (status: number, value: unknown) => new Response(JSON.stringify(value), { status, headers: { 'Content-Type': 'application/json' } });
      if (u.pathname === '/api/v1/workflows/tpch_sql/source')
        return json(200, { type: 'SourceReply', workflow: 'tpch_sql', kind: 'folder', files, hash: 'ab', version: 1 });
      if (u.pathname === '/api/v1/drafts/check')
        return json(200, { type: 'DraftReply', workflow: 'tpch_sql', error: null, plan: { stages: [], levels: [], external: {}, selection: null }, stages: [], edges: [], params_schema: null });
      if (u.pathname === '/api/v1/workflows/tpch_sql/versions') {
        const same = JSON.stringify(body?.files) === JSON.stringify(files);
        const version = { workflow: 'tpch_sql', version: same ? 1 : 2, hash: 'ab', format: 1, kind: 'folder', author: 'me', message: '', created_at: 0, stage: 'dev', environments: ['dev'], stages: 3, read_only: false };
        return json(same ? 200 : 201, { type: 'VersionReply', version, created: !same });
      }
      if (u.pathname === '/api/v1/workflows/daily/source') return json(404, { status: 404, title: 'Not Found', code: 'WorkflowNotFoundError' });
      if (u.pathname === '/api/v1/workflows/daily/versions')
        return json(200, { type: 'VersionsReply', versions: [{ workflow: 'daily', version: 4, kind: 'folder', stage: 'dev', environments: ['dev'] }], deployments: [] });
      if (u.pathname === '/api/v1/workflows/daily/versions/4')
        return json(200, { type: 'VersionDetailReply', detail: { version: {}, files: { 'config.yaml': 'engine: duckdb\n', 'workflow.sql': '-- name: first\nSELECT 1 AS value;\n' }, graph: { stages: [] } } });
      return json(404, { status: 404, title: 'Not found' });
    }),
  );
}

beforeEach(() => {
  setToken('tok');
  session.role = 'operator';
  session.subject = 'me';
  serve();
});
afterEach(() => {
  vi.unstubAllGlobals();
  setToken(null);
  session.clear();
});

const saves = () => calls.filter((c) => c.method === 'POST' && c.path.endsWith('/versions'));

describe('the builder', () => {
  it('saves an opened folder unchanged byte for byte: no new version', async () => {
    render(Builder, { name: 'tpch_sql' });
    await screen.findByTestId('builder-stage-region_volume');
    expect(screen.getByTestId('builder-dirty').textContent).toMatch(/No changes/);
    await fireEvent.click(screen.getByTestId('save'));
    await screen.findByTestId('save-notice');
    expect(saves()).toHaveLength(1);
    expect(saves()[0].body?.files).toEqual(files);
    const sent = saves()[0].body?.files as Record<string, string>;
    expect(sent['workflow.sql']).toBe(files['workflow.sql']);
    expect(sent['config.yaml']).toBe(files['config.yaml']);
    expect(screen.getByTestId('save-notice').textContent).toMatch(/no new version/);
  });

  it('applies the config form unchanged without touching config.yaml, and one field as one line', async () => {
    render(Builder, { name: 'tpch_sql' });
    await screen.findByTestId('builder-stage-region_volume');
    await fireEvent.click(screen.getByTestId('config-button'));
    expect(screen.getByTestId('builder-dirty').textContent).toMatch(/No changes/);
    await fireEvent.input(screen.getByTestId('config-retries'), { target: { value: '4' } });
    await fireEvent.click(screen.getByTestId('config-button'));
    expect(screen.getByTestId('builder-dirty').textContent).toMatch(/Changed/);
    await fireEvent.click(screen.getByTestId('save'));
    await screen.findByTestId('save-notice');
    const sent = saves()[0].body?.files as Record<string, string>;
    expect(sent['config.yaml']).toBe(files['config.yaml'].replace('retries: 1\n', 'retries: 4\n'));
    expect(sent['workflow.sql']).toBe(files['workflow.sql']);
  });

  it('adds an SQL stage reading the selected one and saves it', async () => {
    render(Builder, { name: 'tpch_sql' });
    await screen.findByTestId('builder-stage-region_volume');
    await fireEvent.click(screen.getByText('region_volume', { selector: 'button' }));
    await fireEvent.input(screen.getByTestId('new-stage-name'), { target: { value: 'top_regions' } });
    await fireEvent.click(screen.getByTestId('add-sql'));
    await screen.findByTestId('builder-stage-top_regions');
    expect((screen.getByTestId('stage-code') as HTMLTextAreaElement).value).toBe('SELECT *\nFROM region_volume;');
    await fireEvent.input(screen.getByTestId('save-message'), { target: { value: 'top regions' } });
    await fireEvent.click(screen.getByTestId('save'));
    await screen.findByTestId('save-notice');
    const sent = saves()[0].body as { message: string; files: Record<string, string> };
    expect(sent.message).toBe('top regions');
    expect(sent.files['config.yaml']).toBe(files['config.yaml']);
    expect(sent.files['workflow.sql']).toBe(files['workflow.sql'].trimEnd() + '\n\n-- name: top_regions\nSELECT *\nFROM region_volume;\n');
    expect(screen.getByTestId('save-notice').textContent).toMatch(/version 2/);
  });

  it('opens the newest version of a workflow that has no folder yet', async () => {
    render(Builder, { name: 'daily' });
    await screen.findByTestId('builder-stage-first');
    expect(screen.getByTestId('builder-note').textContent).toMatch(/newest version, v4/);
    expect(screen.getByTestId('builder-version').textContent).toMatch(/version 4/);
    expect(screen.queryByTestId('problem')).toBeNull();
  });

  it('checks the draft as it is edited, after a pause', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      render(Builder, { name: 'tpch_sql' });
      await screen.findByTestId('builder-stage-region_volume');
      await vi.advanceTimersByTimeAsync(700);
      await waitFor(() => expect(calls.some((c) => c.path === '/api/v1/drafts/check')).toBe(true));
      const check = calls.find((c) => c.path === '/api/v1/drafts/check');
      expect(check?.body).toEqual({ workflow: 'tpch_sql', files });
      await screen.findByTestId('check-ok');
    } finally {
      vi.useRealTimers();
    }
  });
});
