/** Call `fn` now and every `ms` while the page is visible; returns a stop function. */
export function poll(fn: () => unknown, ms: number): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = async () => {
    if (stopped) return;
    if (typeof document === 'undefined' || document.visibilityState !== 'hidden') {
      try {
        await fn();
      } catch {
        /* shown by fn */
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
