// Log lines: Python traceback blocks and search over the loaded lines.
import type { LogLine } from './types';

/** Per line: 0 outside a traceback, 1 its first line, 2 inside, 3 its exception (last) line. */
export type TbMark = 0 | 1 | 2 | 3;

export interface TracebackBlock {
  start: number; // index of the "Traceback (most recent call last):" line
  end: number; // index of the exception line (inclusive)
}

const TB_START = /^\s*Traceback \(most recent call last\):\s*$/;
const CHAINED = /^(During handling of the above exception|The above exception was the direct cause)/;

function streamKey(l: LogLine): string {
  return `${l.stage ?? ''}\u0000${l.attempt ?? ''}\u0000${l.stream}`;
}

/**
 * Find traceback blocks: from a `Traceback (most recent call last):` line to the exception
 * line (the first line after it that is not indented), within one stage attempt's stream
 * (lines of other stages interleaved in between are skipped).
 */
export function findTracebacks(lines: readonly LogLine[]): { marks: Uint8Array; blocks: TracebackBlock[] } {
  const marks = new Uint8Array(lines.length);
  const blocks: TracebackBlock[] = [];
  const open = new Map<string, { start: number; members: number[] }>();
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    const text = l.line;
    const key = streamKey(l);
    const cur = open.get(key);
    if (TB_START.test(text)) {
      if (cur) finish(cur, cur.members[cur.members.length - 1]);
      open.set(key, { start: i, members: [i] });
      continue;
    }
    if (!cur) continue;
    if (/^\s/.test(text) || text === '' || text.startsWith('^') || text.startsWith('~')) {
      cur.members.push(i);
      continue;
    }
    // The first unindented line: the exception (e.g. "ValueError: ...").
    cur.members.push(i);
    finish(cur, i);
    open.delete(key);
  }
  // Blocks still open at the end (the exception line not loaded yet) count to their last line.
  for (const cur of open.values()) finish(cur, cur.members[cur.members.length - 1], true);
  blocks.sort((a, b) => a.start - b.start);
  return { marks, blocks };

  function finish(cur: { start: number; members: number[] }, end: number, unfinished = false) {
    for (const m of cur.members) marks[m] = 2;
    marks[cur.start] = 1;
    if (!unfinished && end !== cur.start) marks[end] = 3;
    blocks.push({ start: cur.start, end });
  }
}

/** Is this line a chained-exception separator inside a traceback? */
export function isChainLine(text: string): boolean {
  return CHAINED.test(text);
}

/** The indexes of the lines containing `query` (case-insensitive). */
export function searchLines(lines: readonly LogLine[], query: string): number[] {
  const q = query.toLowerCase();
  if (!q) return [];
  const out: number[] = [];
  for (let i = 0; i < lines.length; i++) if (lines[i].line.toLowerCase().includes(q)) out.push(i);
  return out;
}

/** Split `text` into parts, marking the occurrences of `query` (case-insensitive). */
export function highlight(text: string, query: string): { text: string; hit: boolean }[] {
  if (!query) return [{ text, hit: false }];
  const lower = text.toLowerCase();
  const q = query.toLowerCase();
  const parts: { text: string; hit: boolean }[] = [];
  let pos = 0;
  for (;;) {
    const i = lower.indexOf(q, pos);
    if (i < 0) break;
    if (i > pos) parts.push({ text: text.slice(pos, i), hit: false });
    parts.push({ text: text.slice(i, i + q.length), hit: true });
    pos = i + q.length;
  }
  if (pos < text.length) parts.push({ text: text.slice(pos), hit: false });
  return parts.length ? parts : [{ text, hit: false }];
}

/** Merge `incoming` into sorted-by-seq `lines` (dropping duplicates); returns a new array. */
export function mergeLines(lines: readonly LogLine[], incoming: readonly LogLine[]): LogLine[] {
  if (incoming.length === 0) return lines as LogLine[];
  const sorted = [...incoming].sort((a, b) => a.seq - b.seq);
  if (lines.length === 0) return dedupe(sorted);
  const first = lines[0].seq;
  const last = lines[lines.length - 1].seq;
  if (sorted[0].seq > last) return lines.concat(dedupe(sorted));
  if (sorted[sorted.length - 1].seq < first) return dedupe(sorted).concat(lines);
  const bySeq = new Map<number, LogLine>();
  for (const l of lines) bySeq.set(l.seq, l);
  for (const l of sorted) bySeq.set(l.seq, l);
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

function dedupe(sorted: LogLine[]): LogLine[] {
  const out: LogLine[] = [];
  for (const l of sorted) if (out.length === 0 || out[out.length - 1].seq !== l.seq) out.push(l);
  return out;
}
