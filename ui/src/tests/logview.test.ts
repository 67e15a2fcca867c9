import { describe, expect, it } from 'vitest';
import { render, screen } from '@testing-library/svelte';
import { tick } from 'svelte';
import LogView from '../components/LogView.svelte';
import { findTracebacks, highlight, mergeLines, searchLines } from '../lib/logs';
import type { LogLine } from '../lib/types';

function line(seq: number, text: string, stream = 'stdout', stage = 'load'): LogLine {
  return { seq, stage, attempt: 1, stream, ts: seq, line: text, level: null };
}

function many(n: number): LogLine[] {
  const out: LogLine[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = line(i + 1, `line number ${i + 1}`, i % 3 === 0 ? 'stderr' : 'stdout');
  return out;
}

const TB = [
  'Traceback (most recent call last):',
  '  File "/w/x.py", line 3, in check',
  '    raise ValueError("bad")',
  'ValueError: bad',
];

describe('findTracebacks', () => {
  it('marks the block from the Traceback line to the exception line', () => {
    const lines = [line(1, 'before'), ...TB.map((t, i) => line(i + 2, t, 'stderr')), line(6, 'after')];
    const { marks, blocks } = findTracebacks(lines);
    expect(blocks).toEqual([{ start: 1, end: 4 }]);
    expect([...marks]).toEqual([0, 1, 2, 2, 3, 0]);
  });

  it('follows one stage through interleaved lines of another', () => {
    const lines = [
      line(1, TB[0], 'stderr', 'a'),
      line(2, 'unrelated output', 'stdout', 'b'),
      line(3, TB[1], 'stderr', 'a'),
      line(4, TB[3], 'stderr', 'a'),
    ];
    const { marks, blocks } = findTracebacks(lines);
    expect(blocks).toEqual([{ start: 0, end: 3 }]);
    expect(marks[1]).toBe(0);
    expect(marks[3]).toBe(3);
  });

  it('handles chained tracebacks as two blocks', () => {
    const lines = [...TB, '', 'During handling of the above exception, another exception occurred:', '', ...TB].map((t, i) => line(i + 1, t, 'stderr'));
    const { blocks } = findTracebacks(lines);
    expect(blocks.length).toBe(2);
  });
});

describe('search', () => {
  it('finds and highlights case-insensitively', () => {
    const lines = [line(1, 'Alpha beta'), line(2, 'gamma'), line(3, 'BETA max')];
    expect(searchLines(lines, 'beta')).toEqual([0, 2]);
    expect(highlight('Alpha beta Beta', 'beta')).toEqual([
      { text: 'Alpha ', hit: false },
      { text: 'beta', hit: true },
      { text: ' ', hit: false },
      { text: 'Beta', hit: true },
    ]);
  });

  it('merges pages by seq without duplicates', () => {
    const a = [line(5, 'e'), line(6, 'f')];
    expect(mergeLines(a, [line(3, 'c'), line(4, 'd')]).map((l) => l.seq)).toEqual([3, 4, 5, 6]);
    expect(mergeLines(a, [line(6, 'f'), line(7, 'g')]).map((l) => l.seq)).toEqual([5, 6, 7]);
  });
});

describe('LogView', () => {
  it('renders only a window of a 100,000-line log', async () => {
    const lines = many(100_000);
    render(LogView, { lines, initialHeight: 540, follow: false });
    await tick();
    const rows = screen.getAllByTestId('log-line');
    expect(rows.length).toBeGreaterThan(10);
    expect(rows.length).toBeLessThan(200);
    expect(screen.getByTestId('log-view')).toHaveAttribute('data-count', '100000');
    expect(rows[0]).toHaveAttribute('data-seq', '1');
    expect(rows[0]).toHaveAttribute('data-stream', 'stderr');
  });

  it('marks traceback lines and highlights search hits', async () => {
    const lines = [line(1, 'starting'), ...TB.map((t, i) => line(i + 2, t, 'stderr')), line(6, 'done bad things')];
    render(LogView, { lines, initialHeight: 400, query: 'bad', follow: false });
    await tick();
    const rows = screen.getAllByTestId('log-line');
    expect(rows.map((r) => r.getAttribute('data-traceback'))).toEqual([null, 'start', 'body', 'body', 'end', null]);
    expect(screen.getAllByTestId('traceback')).toHaveLength(1);
    const marks = document.querySelectorAll('mark');
    expect([...marks].map((m) => m.textContent)).toEqual(['bad', 'bad', 'bad']);
  });

  it('updates when lines are appended', async () => {
    const { rerender } = render(LogView, { lines: many(10), initialHeight: 400, follow: false });
    await tick();
    expect(screen.getAllByTestId('log-line')).toHaveLength(10);
    await rerender({ lines: many(15), initialHeight: 400, follow: false });
    await tick();
    expect(screen.getAllByTestId('log-line')).toHaveLength(15);
  });
});

describe('TracebackIndex', () => {
  it('reads only appended lines and finishes a block across appends', async () => {
    const { TracebackIndex } = await import('../lib/logs');
    const idx = new TracebackIndex();
    const base = [line(1, 'x'), line(2, TB[0], 'stderr'), line(3, TB[1], 'stderr')];
    let r = idx.update(base);
    expect(r.blocks).toEqual([{ start: 1, end: 2 }]);
    expect([...r.marks]).toEqual([0, 1, 2]);
    const more = base.concat([line(4, TB[2], 'stderr'), line(5, TB[3], 'stderr'), line(6, 'y')]);
    r = idx.update(more);
    expect(r.blocks).toEqual([{ start: 1, end: 4 }]);
    expect([...r.marks]).toEqual([0, 1, 2, 2, 3, 0]);
    // Prepended lines: read again from the start.
    r = idx.update([line(0, 'first'), ...more]);
    expect(r.blocks).toEqual([{ start: 2, end: 5 }]);
    expect(r.marks.length).toBe(7);
  });
});
