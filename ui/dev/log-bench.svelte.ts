// Dev harness: `npm run dev`, then open /dev/log-bench.html?n=1000000.
import { mount } from 'svelte';
import '../src/app.css';
import LogView from '../src/components/LogView.svelte';
import type { LogLine } from '../src/lib/types';

const n = Number(new URLSearchParams(location.search).get('n') ?? 1_000_000);
const TB = ['Traceback (most recent call last):', '  File "/w/x.py", line 3, in check', '    raise ValueError("bad")', 'ValueError: bad'];
const lines: LogLine[] = new Array(n);
for (let i = 0; i < n; i++) {
  const tb = i % 5000 >= 4996 ? TB[(i % 5000) - 4996] : null;
  lines[i] = { seq: i + 1, stage: tb ? 'stage0' : `stage${i % 7}`, attempt: 1, stream: tb ? 'stderr' : i % 11 ? 'stdout' : 'log', ts: i, line: tb ?? `line ${i + 1} of the generated log`, level: null };
}
const live = new URLSearchParams(location.search).has('live');
let current = $state.raw(lines);
mount(LogView, {
  target: document.getElementById('app')!,
  props: {
    get lines() {
      return current;
    },
    height: 700,
    follow: live,
    query: 'line 99',
  },
});
// ?live: append 500 lines every 100 ms, as a tailing run would.
if (live) {
  let seq = n;
  setInterval(() => {
    const batch: LogLine[] = [];
    for (let k = 0; k < 500; k++) {
      seq++;
      batch.push({ seq, stage: 'live', attempt: 1, stream: 'stdout', ts: seq, line: `live line ${seq}`, level: null });
    }
    current = current.concat(batch);
  }, 100);
}
