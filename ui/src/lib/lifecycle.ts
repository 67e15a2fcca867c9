// What the version pages compute: the next environment, a unified diff's lines, names.
import { ENVIRONMENTS, type Environment, type VersionView } from './types';

/** Where Promote sends a version: the environment after the one it is in (none once in prod or retired). */
export function nextEnvironment(v: Pick<VersionView, 'stage'>): Environment | null {
  const at = ENVIRONMENTS.indexOf(v.stage);
  return at >= 0 && at + 1 < ENVIRONMENTS.length ? ENVIRONMENTS[at + 1] : null;
}

export type DiffLineKind = 'add' | 'del' | 'hunk' | 'head' | 'same';
export interface DiffLine {
  kind: DiffLineKind;
  text: string;
}
/** A unified diff's lines, each with what it is (for colouring). */
export function diffLines(diff: string): DiffLine[] {
  const lines = diff.endsWith('\n') ? diff.slice(0, -1).split('\n') : diff.split('\n');
  let inHunk = false; // `---`/`+++` are file names only before the first hunk
  return lines.map((text) => {
    if (!inHunk && (text.startsWith('+++') || text.startsWith('---'))) return { kind: 'head', text };
    if (text.startsWith('@@')) {
      inHunk = true;
      return { kind: 'hunk', text };
    }
    if (text.startsWith('+')) return { kind: 'add', text };
    if (text.startsWith('-')) return { kind: 'del', text };
    return { kind: 'same', text };
  });
}

export function bundleName(workflow: string, version: number): string {
  return `${workflow}-v${version}.klaw.json`;
}

export function shortHash(hash: string): string {
  return hash.slice(0, 10);
}

/** An audit action as words. */
export function actionLabel(action: string): string {
  const words: Record<string, string> = {
    'version.created': 'version created',
    'version.imported': 'version imported',
    'version.deleted': 'version deleted',
    'promotion.requested': 'promotion requested',
    'promotion.approved': 'promotion approved',
    'promotion.rejected': 'promotion rejected',
    promoted: 'promoted',
    demoted: 'demoted',
    retired: 'retired',
    'git.synced': 'git synced',
  };
  return words[action] ?? action;
}
