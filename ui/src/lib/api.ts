// The one HTTP client of the UI: bearer token from sessionStorage, problem+json errors.
import type { LogLine, Problem } from './types';

const TOKEN_KEY = 'klaw.token';
export const API = '/api/v1';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}
export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.problem = problem;
  }
  get status(): number {
    return this.problem.status;
  }
}

type Unauthorized = () => void;
let onUnauthorized: Unauthorized = () => {};
export function setUnauthorizedHandler(fn: Unauthorized): void {
  onUnauthorized = fn;
}

export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}`, ...extra } : { ...extra };
}

async function problemOf(res: Response): Promise<Problem> {
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (body && typeof body === 'object') {
    const p = body as Record<string, unknown>;
    // FastAPI validation errors: {detail: [{msg, loc}]}
    if (Array.isArray(p.detail)) {
      const msgs = (p.detail as { msg?: string; loc?: unknown[] }[]).map(
        (d) => `${(d.loc ?? []).join('.')}: ${d.msg ?? ''}`,
      );
      return { status: res.status, title: res.statusText, detail: msgs.join('; ') };
    }
    return { status: res.status, title: res.statusText, ...(p as object) } as Problem;
  }
  return { status: res.status, title: res.statusText || `HTTP ${res.status}` };
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  query?: Record<string, string | number | boolean | null | undefined | (string | number)[]>;
  signal?: AbortSignal;
  /** Don't redirect to /login on 401 (the login page itself). */
  quiet401?: boolean;
}

export function url(path: string, query?: RequestOptions['query']): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === null || v === undefined || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => params.append(k, String(x)));
    else params.append(k, String(v));
  }
  const qs = params.toString();
  return `${API}${path}${qs ? `?${qs}` : ''}`;
}

/** Encode an asset key for a path: each `/`-separated part on its own. */
export function keyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers = authHeaders({ Accept: 'application/json' });
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(url(path, opts.query), {
      method: opts.method ?? 'GET',
      headers,
      body,
      signal: opts.signal,
    });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new ApiError({ status: 0, title: 'Network error', detail: String(err), hint: 'Is the Klaw server running?' });
  }
  if (!res.ok) {
    const problem = await problemOf(res);
    if (res.status === 401 && !opts.quiet401) onUnauthorized();
    throw new ApiError(problem);
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T>(path: string, query?: RequestOptions['query'], signal?: AbortSignal) =>
  request<T>(path, { query, signal });
export const post = <T>(path: string, body?: unknown, query?: RequestOptions['query']) =>
  request<T>(path, { method: 'POST', body: body ?? {}, query });

/** A log line of the API: a JSON array (the page replies) or an object (SSE). */
export function toLogLine(raw: unknown): LogLine {
  if (Array.isArray(raw)) {
    const [, stage, attempt, stream, ts, line, level, seq] = raw as [
      string, string | null, number | null, string, number, string, string | null, number,
    ];
    return { seq, stage, attempt, stream, ts, line, level };
  }
  const o = raw as Record<string, unknown>;
  return {
    seq: Number(o.seq),
    stage: (o.stage as string | null) ?? null,
    attempt: (o.attempt as number | null) ?? null,
    stream: String(o.stream ?? 'log'),
    ts: Number(o.ts ?? 0),
    line: String(o.line ?? ''),
    level: (o.level as string | null) ?? null,
  };
}
