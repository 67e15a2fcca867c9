// The newest runs of many workflows in one call (GET /last-runs: an indexed lookup each on the
// server), chunked so that no URL grows past what servers and proxies take.
import { get } from './api';
import type { RunRecord } from './types';

const CHUNK = 100;

export async function lastRuns(workflows: string[], limit: number): Promise<Record<string, RunRecord[]>> {
  const found: Record<string, RunRecord[]> = Object.fromEntries(workflows.map((w) => [w, []]));
  const chunks: string[][] = [];
  for (let i = 0; i < workflows.length; i += CHUNK) chunks.push(workflows.slice(i, i + CHUNK));
  const replies = await Promise.all(chunks.map((chunk) => get<{ runs: RunRecord[] }>('/last-runs', { workflow: chunk, limit })));
  for (const reply of replies) for (const run of reply.runs) (found[run.workflow] ??= []).push(run);
  return found;
}
