// A run's live SSE stream: events and (optionally) log lines, resumed with Last-Event-ID.
import { authHeaders, toLogLine, url } from './api';
import { readStream } from './sse';
import type { LogLine, RunEvent } from './types';

export interface RunStreamHandlers {
  onEvent?: (e: RunEvent) => void;
  onLog?: (l: LogLine) => void;
  onEnd?: () => void;
  onError?: (err: unknown) => void;
}

/** Follow run `id` from event seq `afterSeq` and log seq `afterLog`; returns a stop function. */
export function followRun(id: string, afterSeq: number, afterLog: number, h: RunStreamHandlers): () => void {
  const ctrl = new AbortController();
  readStream(url(`/runs/${encodeURIComponent(id)}/stream`), {
    headers: () => authHeaders(),
    lastEventId: `${afterSeq}:${afterLog}`,
    signal: ctrl.signal,
    onMessage: (msg) => {
      if (msg.event === 'error') {
        h.onError?.(new Error(JSON.parse(msg.data).detail ?? 'stream error'));
        return;
      }
      let data: unknown;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (msg.event === 'log') h.onLog?.(toLogLine(data));
      else h.onEvent?.(data as RunEvent);
    },
    onEnd: h.onEnd,
    onError: h.onError,
  });
  return () => ctrl.abort();
}
