export type ThemeMode = 'auto' | 'light' | 'dark';
const KEY = 'klaw.theme';

class Theme {
  mode = $state<ThemeMode>('auto');
  /** Bumped when the effective colours change (graphs re-read their CSS variables). */
  version = $state(0);

  init(): void {
    try {
      const saved = localStorage.getItem(KEY) as ThemeMode | null;
      if (saved === 'light' || saved === 'dark') this.mode = saved;
    } catch {
      /* no storage */
    }
    this.apply();
    window.matchMedia?.('(prefers-color-scheme: dark)').addEventListener?.('change', () => this.version++);
  }

  toggle(): void {
    const dark = this.isDark();
    this.mode = dark ? 'light' : 'dark';
    try {
      localStorage.setItem(KEY, this.mode);
    } catch {
      /* no storage */
    }
    this.apply();
  }

  isDark(): boolean {
    if (this.mode !== 'auto') return this.mode === 'dark';
    return !!window.matchMedia?.('(prefers-color-scheme: dark)').matches;
  }

  private apply(): void {
    if (this.mode === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = this.mode;
    this.version++;
  }
}

export const theme = new Theme();

export function cssVar(name: string, fallback = '#888'): string {
  if (typeof document === 'undefined') return fallback;
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}
