// The one HTTP client of the UI: bearer token from sessionStorage, problem+json errors.
import type {
  ApprovalRequest,
  AuditEntry,
  DiffReply,
  DraftReply,
  LogLine,
  Problem,
  PromotionReply,
  SourceReply,
  VersionDetail,
  VersionReply,
  VersionsReply,
} from './types';

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

// The lifecycle routes: versions, promotions, approvals, audit, drafts.
const wfPath = (wf: string) => `/workflows/${encodeURIComponent(wf)}`;

export const lifecycle = {
  versions: (wf: string, opts: { limit?: number; before?: number } = {}) =>
    get<VersionsReply>(`${wfPath(wf)}/versions`, { limit: opts.limit, before: opts.before }),
  version: async (wf: string, version: number) =>
    (await get<{ detail: VersionDetail }>(`${wfPath(wf)}/versions/${version}`)).detail,
  /** Save a new version (`files`: the builder's folder files); the same content makes none. */
  createVersion: (wf: string, message: string, files?: Record<string, string>) =>
    post<VersionReply>(`${wfPath(wf)}/versions`, files ? { message, files } : { message }),
  /** `b` null: against the working copy. */
  diff: (wf: string, a: number, b: number | null) => get<DiffReply>(`${wfPath(wf)}/diff`, { a, b }),
  promote: (wf: string, version: number, to: string) =>
    post<PromotionReply>(`${wfPath(wf)}/versions/${version}/promote`, {}, { to }),
  demote: (wf: string) => post<PromotionReply>(`${wfPath(wf)}/demote`),
  retire: (wf: string, version: number) => post<VersionReply>(`${wfPath(wf)}/versions/${version}/retire`),
  bundle: async (wf: string, version: number) =>
    (await get<{ bundle: Record<string, unknown> }>(`${wfPath(wf)}/versions/${version}/bundle`)).bundle,
  importBundle: (bundle: Record<string, unknown>, replace = false) => post<VersionReply>('/versions/import', { bundle, replace }),
  /** `state`: pending (the server's default), approved, rejected or all. */
  approvals: async (opts: { workflow?: string; state?: 'pending' | 'approved' | 'rejected' | 'all' } = {}) =>
    (await get<{ requests: ApprovalRequest[] }>('/approvals', { workflow: opts.workflow, state: opts.state })).requests,
  approve: (id: string, comment: string) => post<PromotionReply>(`/approvals/${encodeURIComponent(id)}/approve`, { comment }),
  reject: (id: string, comment: string) => post<PromotionReply>(`/approvals/${encodeURIComponent(id)}/reject`, { comment }),
  audit: async (opts: { workflow?: string; limit?: number; before?: number } = {}) =>
    (await get<{ entries: AuditEntry[] }>('/audit', { workflow: opts.workflow, limit: opts.limit, before: opts.before })).entries,
  checkDraft: (workflow: string, files: Record<string, string>, selection?: string) =>
    post<DraftReply>('/drafts/check', selection ? { workflow, files, selection } : { workflow, files }),
  source: (wf: string) => get<SourceReply>(`${wfPath(wf)}/source`),
};

/** Offer a JSON value as a file download (a bundle as WF-vN.klaw.json). */
export function downloadJson(name: string, value: unknown): void {
  const blob = new Blob([JSON.stringify(value, null, 2) + '\n'], { type: 'application/json' });
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = name;
  a.dataset.external = '';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 1000);
}
