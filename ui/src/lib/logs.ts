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

export interface Tracebacks {
  marks: Uint8Array;
  blocks: TracebackBlock[];
}

interface Open {
  start: number;
  members: number[];
}

/**
 * Traceback blocks of a growing log, kept up to date incrementally: when the new array only
 * appends to the one seen last (live tailing), only the new lines are read; otherwise (older
 * lines prepended, another filter) everything is read again.
 *
 * A block runs from a `Traceback (most recent call last):` line to the exception line (the
 * first line after it that is not indented), within one stage attempt's stream (lines of other
 * stages interleaved in between are skipped).
 */
export class TracebackIndex {
  private lines: readonly LogLine[] = [];
  private marks = new Uint8Array(0);
  private closed: TracebackBlock[] = [];
  private open = new Map<string, Open>();

  update(lines: readonly LogLine[]): Tracebacks {
    const n0 = this.lines.length;
    const appended = n0 > 0 && lines.length >= n0 && lines[0] === this.lines[0] && lines[n0 - 1] === this.lines[n0 - 1];
    if (!appended) this.reset();
    const from = appended ? n0 : 0;
    if (lines.length > this.marks.length) {
      const grown = new Uint8Array(Math.max(lines.length, this.marks.length * 2, 1024));
      grown.set(this.marks);
      this.marks = grown;
    }
    for (let i = from; i < lines.length; i++) this.read(lines, i);
    this.lines = lines;
    return this.result(lines.length);
  }

  private reset() {
    this.lines = [];
    this.marks = new Uint8Array(0);
    this.closed = [];
    this.open = new Map();
  }

  private read(lines: readonly LogLine[], i: number) {
    const l = lines[i];
    const text = l.line;
    const key = streamKey(l);
    const cur = this.open.get(key);
    if (TB_START.test(text)) {
      if (cur) this.close(cur, cur.members[cur.members.length - 1], false);
      this.open.set(key, { start: i, members: [i] });
      this.marks[i] = 1;
      return;
    }
    if (!cur) return;
    cur.members.push(i);
    if (/^\s/.test(text) || text === '' || text.startsWith('^') || text.startsWith('~')) {
      this.marks[i] = 2;
      return;
    }
    // The first unindented line: the exception (e.g. "ValueError: ...").
    this.close(cur, i, true);
    this.open.delete(key);
  }

  private close(cur: Open, end: number, finished: boolean) {
    for (const m of cur.members) this.marks[m] = 2;
    this.marks[cur.start] = 1;
    if (finished && end !== cur.start) this.marks[end] = 3;
    this.closed.push({ start: cur.start, end });
  }

  private result(n: number): Tracebacks {
    // Blocks still open (the exception line not loaded yet) count to their last line.
    const blocks = this.closed.concat([...this.open.values()].map((o) => ({ start: o.start, end: o.members[o.members.length - 1] })));
    blocks.sort((a, b) => a.start - b.start);
    return { marks: this.marks.subarray(0, n), blocks };
  }
}

/** The traceback blocks of `lines` (read in full; see TracebackIndex for a growing log). */
export function findTracebacks(lines: readonly LogLine[]): Tracebacks {
  return new TracebackIndex().update(lines);
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
