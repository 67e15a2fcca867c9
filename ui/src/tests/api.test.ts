import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, get, keyPath, setToken, setUnauthorizedHandler, toLogLine } from '../lib/api';
import { session } from '../lib/auth.svelte';
import { match } from '../lib/router.svelte';

function reply(status: number, body: unknown) {
  return vi.fn(async () => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } }));
}

afterEach(() => {
  vi.unstubAllGlobals();
  setToken(null);
});

describe('api', () => {
  it('sends the bearer token and turns problem+json into ApiError', async () => {
    setToken('tok');
    const f = reply(403, { type: 'x', title: 'Forbidden', status: 403, detail: 'Needs operator.', hint: 'Ask an admin.', code: 'AuthError' });
    vi.stubGlobal('fetch', f);
    const err = (await get('/runs').catch((e) => e)) as ApiError;
    expect(err).toBeInstanceOf(ApiError);
    expect(err.problem.detail).toBe('Needs operator.');
    expect(err.problem.hint).toBe('Ask an admin.');
    const calls = f.mock.calls as unknown as [string, RequestInit][];
    expect((calls[0][1].headers as Record<string, string>).Authorization).toBe('Bearer tok');
  });

  it('calls the 401 handler', async () => {
    const on401 = vi.fn();
    setUnauthorizedHandler(on401);
    vi.stubGlobal('fetch', reply(401, { status: 401, detail: 'No token.' }));
    await get('/runs').catch(() => {});
    expect(on401).toHaveBeenCalledOnce();
  });

  it('reads log lines as arrays (pages) and objects (SSE)', () => {
    const a = toLogLine(['r', 'st', 2, 'stderr', 1.5, 'boom', 'ERROR', 9]);
    const o = toLogLine({ run_id: 'r', stage: 'st', attempt: 2, stream: 'stderr', ts: 1.5, line: 'boom', level: 'ERROR', seq: 9 });
    expect(a).toEqual(o);
    expect(a.seq).toBe(9);
  });

  it('keeps / in asset keys', () => {
    expect(keyPath('raw/orders 2')).toBe('raw/orders%202');
    expect(match('/assets/raw/orders%202')).toEqual({ name: 'asset', params: { key: 'raw/orders 2' } });
    expect(match('/runs/abc/logs')).toEqual({ name: 'logs', params: { id: 'abc' } });
    expect(match('/workflows/x').name).toBe('workflow');
  });
});

describe('session roles', () => {
  it('a viewer may not operate; an operator may', async () => {
    setToken('tok');
    vi.stubGlobal('fetch', reply(200, { subject: 'ann', role: 'viewer' }));
    await session.load();
    expect(session.canOperate).toBe(false);
    vi.stubGlobal('fetch', reply(200, { subject: 'bob', role: 'operator' }));
    await session.load();
    expect(session.canOperate).toBe(true);
  });

  it('without /auth/me the role is unknown and the server decides', async () => {
    setToken('tok');
    vi.stubGlobal('fetch', reply(404, { status: 404, detail: 'Not Found', code: 'RouteNotFound' }));
    await session.load();
    expect(session.role).toBeNull();
    expect(session.canOperate).toBe(true);
  });
});
