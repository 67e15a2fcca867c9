// Server-Sent Events over fetch(): EventSource cannot send the bearer header.

export interface SSEMessage {
  event: string;
  data: string;
  id: string | null;
  retry?: number;
}

/** An incremental text/event-stream parser (the WHATWG rules: fields, comments, CR/LF). */
export class SSEParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | null = null;
  private retry: number | undefined;
  private skipLF = false;
  /** The id of the last message dispatched (what Last-Event-ID resends). */
  lastEventId: string | null = null;

  /** Feed a chunk of decoded text; returns the complete messages it finished. */
  feed(chunk: string): SSEMessage[] {
    // A CR that ended the last chunk may be the first half of a CRLF split across chunks.
    if (this.skipLF && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.skipLF = false;
    this.buffer += chunk;
    const out: SSEMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (m[0] === '\r' && this.buffer === '') this.skipLF = true;
      const msg = this.line(line);
      if (msg) out.push(msg);
    }
    return out;
  }

  /** The end of the stream: a message without its blank line is dropped (per spec). */
  end(): SSEMessage[] {
    this.buffer = '';
    this.data = [];
    this.event = '';
    return [];
  }

  private line(line: string): SSEMessage | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
    }
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
    }
    return null;
  }

  private dispatch(): SSEMessage | null {
    if (this.id !== null) this.lastEventId = this.id;
    if (this.data.length === 0) {
      this.event = '';
      return null;
    }
    const msg: SSEMessage = {
      event: this.event || 'message',
      data: this.data.join('\n'),
      id: this.lastEventId,
    };
    if (this.retry !== undefined) msg.retry = this.retry;
    this.data = [];
    this.event = '';
    return msg;
  }
}

export interface StreamOptions {
  headers?: () => Record<string, string>;
  lastEventId?: string | null;
  onMessage: (msg: SSEMessage) => void;
  onError?: (err: unknown) => void;
  /** Called when the server ended the stream normally (the run has ended). */
  onEnd?: () => void;
  signal: AbortSignal;
  /** Reconnect delay in ms after a dropped connection. */
  retryMs?: number;
  fetchImpl?: typeof fetch;
}

/**
 * Read an SSE stream with fetch() and a ReadableStream, sending the bearer header; after a
 * network error it resumes with Last-Event-ID. It stops when the server closes the stream
 * cleanly, on a non-2xx answer, or when `signal` aborts.
 */
export async function readStream(url: string, opts: StreamOptions): Promise<void> {
  const doFetch = opts.fetchImpl ?? fetch;
  let lastId = opts.lastEventId ?? null;
  let retry = opts.retryMs ?? 2000;
  let failures = 0;
  while (!opts.signal.aborted) {
    const parser = new SSEParser();
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream', ...(opts.headers?.() ?? {}) };
      if (lastId) headers['Last-Event-ID'] = lastId;
      const res = await doFetch(url, { headers, signal: opts.signal, cache: 'no-store' });
      if (!res.ok || !res.body) {
        let detail = `HTTP ${res.status}`;
        try {
          const p = await res.json();
          detail = p.detail ?? detail;
        } catch {
          /* empty */
        }
        opts.onError?.(Object.assign(new Error(detail), { status: res.status }));
        return;
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const msg of parser.feed(value)) {
          if (msg.retry) retry = msg.retry;
          lastId = parser.lastEventId ?? lastId;
          failures = 0;
          opts.onMessage(msg);
        }
      }
      opts.onEnd?.();
      return;
    } catch (err) {
      if (opts.signal.aborted) return;
      failures += 1;
      opts.onError?.(err);
      if (failures > 20) return;
      await new Promise((r) => setTimeout(r, Math.min(retry * failures, 15000)));
    }
  }
}
