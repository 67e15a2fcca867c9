// Client-side routing on real paths (history API): every page can be reloaded and shared.

export interface Route {
  name: string;
  params: Record<string, string>;
}

const patterns: [string, RegExp][] = [
  ['overview', /^\/$/],
  ['workflows', /^\/workflows\/?$/],
  ['workflow', /^\/workflows\/(?<name>[^/]+)\/?$/],
  ['versions', /^\/workflows\/(?<name>[^/]+)\/versions\/?$/],
  ['diff', /^\/workflows\/(?<name>[^/]+)\/diff\/(?<a>\d+)\/(?<b>\d+|working)\/?$/],
  ['approvals', /^\/approvals\/?$/],
  ['audit', /^\/audit\/?$/],
  ['builder', /^\/builder(?:\/(?<name>[^/]+))?\/?$/],
  ['runs', /^\/runs\/?$/],
  ['logs', /^\/runs\/(?<id>[^/]+)\/logs\/?$/],
  ['run', /^\/runs\/(?<id>[^/]+)\/?$/],
  ['assets', /^\/assets\/?$/],
  ['asset', /^\/assets\/(?<key>.+?)\/?$/],
  ['schedules', /^\/schedules\/?$/],
  ['login', /^\/login\/?$/],
];

export function match(path: string): Route {
  for (const [name, re] of patterns) {
    const m = re.exec(path);
    if (m) {
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.groups ?? {})) {
        if (v === undefined) continue;
        params[k] = k === 'key' ? v.split('/').map(decodeURIComponent).join('/') : decodeURIComponent(v);
      }
      return { name, params };
    }
  }
  return { name: 'notfound', params: {} };
}

class Location {
  path = $state(typeof location === 'undefined' ? '/' : location.pathname);
  search = $state(typeof location === 'undefined' ? '' : location.search);
  route = $derived(match(this.path));
  query = $derived(new URLSearchParams(this.search));

  sync(): void {
    this.path = location.pathname;
    this.search = location.search;
  }
}

export const loc = new Location();

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const u = new URL(to, location.origin);
  const same = u.pathname === location.pathname && u.search === location.search;
  if (opts.replace || same) history.replaceState(history.state, '', u.pathname + u.search + u.hash);
  else history.pushState(null, '', u.pathname + u.search + u.hash);
  const pageChanged = u.pathname !== loc.path;
  loc.sync();
  if (pageChanged && !opts.replace) window.scrollTo(0, 0);
}

/** Replace the query string of the current page (filters kept in the URL). */
export function setQuery(values: Record<string, string | string[] | null | undefined>): void {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) {
    if (v === null || v === undefined || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => params.append(k, x));
    else params.set(k, v);
  }
  const qs = params.toString();
  navigate(location.pathname + (qs ? `?${qs}` : ''), { replace: true });
}

/** Intercept clicks on same-origin links (not /api, not modified clicks). */
export function installLinkHandler(): () => void {
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest?.('a');
    if (!a || a.target || a.hasAttribute('download') || a.dataset.external !== undefined) return;
    const href = a.getAttribute('href');
    if (!href || href.startsWith('#')) return;
    const u = new URL(a.href, location.href);
    if (u.origin !== location.origin || u.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(u.pathname + u.search + u.hash);
  };
  const onPop = () => loc.sync();
  document.addEventListener('click', onClick);
  window.addEventListener('popstate', onPop);
  return () => {
    document.removeEventListener('click', onClick);
    window.removeEventListener('popstate', onPop);
  };
}

export function assetHref(key: string): string {
  return '/assets/' + key.split('/').map(encodeURIComponent).join('/');
}
export function runHref(id: string): string {
  return `/runs/${encodeURIComponent(id)}`;
}
export function workflowHref(name: string): string {
  return `/workflows/${encodeURIComponent(name)}`;
}
export function logsHref(id: string, stage?: string | null, attempt?: number | null): string {
  const q = new URLSearchParams();
  if (stage) q.set('stage', stage);
  if (attempt) q.set('attempt', String(attempt));
  const qs = q.toString();
  return `/runs/${encodeURIComponent(id)}/logs${qs ? `?${qs}` : ''}`;
}
export function versionsHref(name: string): string {
  return `/workflows/${encodeURIComponent(name)}/versions`;
}
/** `b` null: the working copy. */
export function diffHref(name: string, a: number, b: number | null): string {
  return `/workflows/${encodeURIComponent(name)}/diff/${a}/${b ?? 'working'}`;
}
export function builderHref(name?: string | null): string {
  return name ? `/builder/${encodeURIComponent(name)}` : '/builder';
}
