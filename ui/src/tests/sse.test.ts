import { describe, expect, it, vi } from 'vitest';
import { readStream, SSEParser, type SSEMessage } from '../lib/sse';

describe('SSEParser', () => {
  it('parses events split across chunks anywhere', () => {
    const text = 'id: 1\nevent: stage\ndata: {"a":1}\n\nid: 1:5\nevent: log\ndata: {"line":"x"}\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new SSEParser();
      const out = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
      expect(out).toEqual([
        { event: 'stage', data: '{"a":1}', id: '1' },
        { event: 'log', data: '{"line":"x"}', id: '1:5' },
      ]);
      expect(p.lastEventId).toBe('1:5');
    }
  });

  it('handles CRLF, CR, comments, multi-line data and default event names', () => {
    const p = new SSEParser();
    const out = p.feed(': keep-alive\r\n\r\ndata: a\r\ndata: b\r\n\r\ndata:c\rid: 7\r\r');
    expect(out).toEqual([
      { event: 'message', data: 'a\nb', id: null },
      { event: 'message', data: 'c', id: '7' },
    ]);
  });

  it('keeps the last id for messages without one, ignores unknown fields', () => {
    const p = new SSEParser();
    const out = p.feed('id: 3\ndata: x\n\nfoo: bar\ndata: y\n\n');
    expect(out.map((m) => m.id)).toEqual(['3', '3']);
  });

  it('drops an incomplete message at the end', () => {
    const p = new SSEParser();
    expect(p.feed('data: half')).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it('reads retry', () => {
    const p = new SSEParser();
    expect(p.feed('retry: 500\ndata: z\n\n')[0].retry).toBe(500);
  });
});

function streamOf(chunks: string[], fail = false): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  let i = 0;
  return new ReadableStream({
    pull(ctrl) {
      if (i < chunks.length) ctrl.enqueue(enc.encode(chunks[i++]));
      else if (fail) ctrl.error(new TypeError('network down'));
      else ctrl.close();
    },
  });
}

describe('readStream', () => {
  it('sends the bearer header and resumes with Last-Event-ID after a drop', async () => {
    const calls: Record<string, string>[] = [];
    const fetchImpl = vi.fn(async (_url: string | URL | Request, init?: RequestInit) => {
      calls.push({ ...(init?.headers as Record<string, string>) });
      if (calls.length === 1) return new Response(streamOf(['id: 1\nevent: run_started\ndata: {}\n\nid: 2\nev'], true));
      return new Response(streamOf(['id: 2\nevent: run_finished\ndata: {}\n\n']));
    });
    const got: SSEMessage[] = [];
    const ended = vi.fn();
    await readStream('/api/v1/runs/r/stream', {
      headers: () => ({ Authorization: 'Bearer t' }),
      lastEventId: '0:10',
      onMessage: (m) => got.push(m),
      onEnd: ended,
      signal: new AbortController().signal,
      retryMs: 1,
      fetchImpl: fetchImpl as unknown as typeof fetch,
    });
    expect(calls[0].Authorization).toBe('Bearer t');
    expect(calls[0]['Last-Event-ID']).toBe('0:10');
    expect(calls[1]['Last-Event-ID']).toBe('1');
    expect(got.map((m) => m.event)).toEqual(['run_started', 'run_finished']);
    expect(ended).toHaveBeenCalledOnce();
  });

  it('stops on an HTTP error with its detail', async () => {
    const onError = vi.fn();
    const fetchImpl = vi.fn(async () => new Response(JSON.stringify({ detail: 'No run' }), { status: 404 }));
    await readStream('/x', { onMessage: () => {}, onError, signal: new AbortController().signal, fetchImpl: fetchImpl as unknown as typeof fetch });
    expect(fetchImpl).toHaveBeenCalledOnce();
    expect(onError.mock.calls[0][0].message).toBe('No run');
  });
});

describe('SSEParser CRLF across chunks', () => {
  it('does not see a blank line in a CRLF split after the CR', () => {
    const p = new SSEParser();
    const out = [...p.feed('data: a\r'), ...p.feed('\ndata: b\r'), ...p.feed('\n\r\n')];
    expect(out).toEqual([{ event: 'message', data: 'a\nb', id: null }]);
  });
});
