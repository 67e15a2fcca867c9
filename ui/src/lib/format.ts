export function ago(ts: number | string | null | undefined, now = Date.now() / 1000): string {
  if (ts === null || ts === undefined || ts === '') return '—';
  const t = typeof ts === 'string' ? Date.parse(ts) / 1000 : ts;
  if (!Number.isFinite(t)) return String(ts);
  const d = now - t;
  const future = d < 0;
  const s = Math.abs(d);
  let out: string;
  if (s < 45) out = `${Math.round(s)} s`;
  else if (s < 3600) out = `${Math.round(s / 60)} min`;
  else if (s < 86400) out = `${Math.round(s / 3600)} h`;
  else out = `${Math.round(s / 86400)} d`;
  return future ? `in ${out}` : `${out} ago`;
}

export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function runDuration(r: { started_at: number | null; ended_at: number | null }, now = Date.now() / 1000): number | null {
  if (r.started_at === null) return null;
  return (r.ended_at ?? now) - r.started_at;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function count(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : n.toLocaleString('en-US');
}

export function datetime(ts: number | string | null | undefined): string {
  if (ts === null || ts === undefined) return '—';
  const d = typeof ts === 'string' ? new Date(ts) : new Date(ts * 1000);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}
