// A folder workflow's files (config.yaml + workflow.sql or workflow.py) as the builder edits
// them. The text is the source of truth: every edit is a pure function of the files that
// splices only the part it changes, so files nobody touched are sent back byte for byte.

export type Files = Record<string, string>;
export const CONFIG = 'config.yaml';
export const SQL_FILE = 'workflow.sql';
export const PY_FILE = 'workflow.py';

export interface StageOptions {
  retries?: number;
  timeout?: number;
  tags?: string[];
}

export interface StageModel {
  name: string;
  /** sql: a statement of workflow.sql or a klaw.sql(...) of workflow.py; python: a decorated function. */
  lang: 'sql' | 'python';
  file: string;
  /** What the stage's editor shows: the SQL query, or the Python function's source. */
  code: string;
  /** The stages it reads, as far as the text tells (the server's check has the last word). */
  deps: string[];
  /** The options written on a Python function's decorator. */
  options: StageOptions;
  /** 1-based lines of the file the stage spans. */
  line: number;
  endLine: number;
  /** Character offsets: the whole stage (comments before it aside) and its editable code. */
  range: [number, number];
  codeRange: [number, number];
  /** Python: the decorator's text and where it is; the def's parameter list (inside the parens). */
  decorator?: { range: [number, number]; text: string };
  signature?: [number, number];
  /** Where the name is written (a marker, def, name= or variable), each renamed together. */
  nameRanges: [number, number][];
}

export interface FolderModel {
  file: typeof SQL_FILE | typeof PY_FILE | null;
  stages: StageModel[];
  config: Record<string, unknown>;
  /** Problems reading the files locally (the server's check reports them in full). */
  problems: string[];
}

/** One edit's result: the files (unchanged when nothing needed changing) and what the user must do. */
export interface Edit {
  files: Files;
  note?: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
export function validName(name: string): boolean {
  return NAME.test(name);
}

export function codeFile(files: Files): typeof SQL_FILE | typeof PY_FILE | null {
  if (SQL_FILE in files) return SQL_FILE;
  if (PY_FILE in files) return PY_FILE;
  return null;
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === '\n') starts.push(i + 1);
  return starts;
}
function lineAt(starts: number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid] <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

function splice(text: string, [a, b]: [number, number], replacement: string): string {
  return text.slice(0, a) + replacement + text.slice(b);
}

// ---------------------------------------------------------------------------------- SQL ----

const NAME_LINE = /^\s*--\s*name\s*:(.*)$/i;

/** Tables an SQL query reads among `names` (comments and string literals aside). */
export function tablesRead(sql: string, names: Iterable<string>): string[] {
  const bare = sql
    .replace(/--[^\n]*/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/'(?:[^']|'')*'/g, "''");
  const found: string[] = [];
  for (const n of names) {
    const re = new RegExp(`(?<![\\w$.])${n}(?![\\w(])`, 'i');
    if (re.test(bare)) found.push(n);
  }
  return found;
}

function parseSql(text: string): { stages: StageModel[]; problems: string[] } {
  const starts = lineStarts(text);
  const lines = starts.map((s, i) => text.slice(s, i + 1 < starts.length ? starts[i + 1] : text.length));
  const markers: { line: number; name: string }[] = [];
  lines.forEach((raw, i) => {
    const m = NAME_LINE.exec(raw.replace(/\r?\n$/, ''));
    if (m) markers.push({ line: i, name: m[1].trim() });
  });
  const problems: string[] = [];
  const stages: StageModel[] = [];
  const end = (i: number) => (i < starts.length ? starts[i] : text.length);
  markers.forEach((mk, k) => {
    const next = k + 1 < markers.length ? markers[k + 1].line : lines.length;
    let first = mk.line + 1;
    while (first < next && !lines[first].trim()) first++;
    let last = next - 1;
    while (last >= first && !lines[last].trim()) last--;
    const bodyStart = end(first);
    let bodyEnd = last >= first ? end(last + 1) : bodyStart;
    if (last >= first && text[bodyEnd - 1] === '\n') bodyEnd -= text[bodyEnd - 2] === '\r' ? 2 : 1;
    const markerLine = lines[mk.line];
    const at = markerLine.indexOf(':') + 1;
    const lead = markerLine.slice(at).length - markerLine.slice(at).trimStart().length;
    const nameStart = starts[mk.line] + at + lead;
    if (!NAME.test(mk.name)) problems.push(`${SQL_FILE}:${mk.line + 1}: ${JSON.stringify(mk.name)} is not a valid stage name.`);
    stages.push({
      name: mk.name,
      lang: 'sql',
      file: SQL_FILE,
      code: text.slice(bodyStart, bodyEnd),
      deps: [],
      options: {},
      line: mk.line + 1,
      endLine: Math.max(mk.line + 1, last + 1),
      range: [starts[mk.line], end(next)],
      codeRange: [bodyStart, bodyEnd],
      nameRanges: [[nameStart, nameStart + mk.name.length]],
    });
  });
  return { stages, problems };
}

// ------------------------------------------------------------------------------- Python ----

/** The index just past a string literal starting at `i` (a quote or a prefix), or -1. */
function stringEnd(text: string, i: number): number {
  const m = /^[rRbBuUfF]{0,2}("""|'''|"|')/.exec(text.slice(i, i + 5));
  if (!m) return -1;
  const q = m[1];
  let j = i + m[0].length;
  const raw = /[rR]/.test(m[0].slice(0, m[0].length - q.length));
  while (j < text.length) {
    if (!raw && text[j] === '\\') {
      j += 2;
      continue;
    }
    if (text.startsWith(q, j)) return j + q.length;
    if (q.length === 1 && text[j] === '\n') return j;
    if (raw && text[j] === '\\') j++;
    j++;
  }
  return text.length;
}

/** The index of the bracket closing the one at `open`, strings and comments skipped. */
function closing(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '#') {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
      continue;
    }
    if (c === '"' || c === "'" || (/[rRbBuUfF]/.test(c) && /^[rRbBuUfF]{1,2}["']/.test(text.slice(i, i + 3)) && !/\w/.test(text[i - 1] ?? ''))) {
      const e = stringEnd(text, i);
      if (e > i) {
        i = e - 1;
        continue;
      }
    }
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  return text.length - 1;
}

/** A keyword argument's value text in an argument list: where it is. */
function kwarg(text: string, [a, b]: [number, number], key: string): [number, number] | null {
  const inner = text.slice(a, b);
  const re = new RegExp(`(^|[,(\\s])${key}\\s*=\\s*`, 'g');
  let m: RegExpExecArray | null;
  while ((m = re.exec(inner))) {
    const start = a + m.index + m[0].length;
    // the value ends at the next comma at depth 0 (or the end of the list)
    let depth = 0;
    for (let i = start; i < b; i++) {
      const c = text[i];
      if (c === '"' || c === "'") {
        i = stringEnd(text, i) - 1;
        continue;
      }
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth--;
      else if (c === ',' && depth === 0) return [start, trimEnd(text, start, i)];
    }
    return [start, trimEnd(text, start, b)];
  }
  return null;
}
function trimEnd(text: string, a: number, b: number): number {
  while (b > a && /\s/.test(text[b - 1])) b--;
  return b;
}

function pyLiteral(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyLiteral).join(', ')}]`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (value === null || value === undefined) return 'None';
  return String(value);
}
function readPyValue(src: string): unknown {
  const s = src.trim();
  if (/^[-+]?\d+$/.test(s)) return Number(s);
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return Number(s);
  if (s === 'True') return true;
  if (s === 'False') return false;
  if (s === 'None') return null;
  const str = /^(["'])(.*)\1$/.exec(s);
  if (str) return str[2];
  const list = /^[[(](.*)[\])]$/s.exec(s);
  if (list) {
    const items = list[1].split(',').map((x) => x.trim()).filter((x) => x);
    return items.map(readPyValue);
  }
  return undefined;
}

const DECORATOR = /^@(?:klaw\.)?(asset|stage)\b/;
const SQL_CALL = /^([A-Za-z_]\w*)\s*=\s*(?:klaw\.)?sql\s*\(/;

function pyStages(text: string): StageModel[] {
  const starts = lineStarts(text);
  const stages: StageModel[] = [];
  const nLines = starts.length;
  const lineText = (i: number) => text.slice(starts[i], i + 1 < nLines ? starts[i + 1] - 1 : text.length);
  // top-level lines that begin a statement (not inside brackets or strings)
  const topLevel: boolean[] = new Array(nLines).fill(false);
  {
    let i = 0;
    let depth = 0;
    let line = 0;
    let atStart = true;
    while (i < text.length) {
      const c = text[i];
      if (atStart) {
        topLevel[line] = depth === 0 && !/^[\s]/.test(c) && c !== '#' && c !== '\n';
        atStart = false;
      }
      if (c === '\n') {
        line++;
        atStart = true;
        i++;
        continue;
      }
      if (c === '#') {
        const nl = text.indexOf('\n', i);
        i = nl < 0 ? text.length : nl;
        continue;
      }
      if (c === '"' || c === "'") {
        const e = stringEnd(text, i);
        for (let k = i; k < e; k++) if (text[k] === '\n') line++;
        i = e;
        continue;
      }
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth = Math.max(0, depth - 1);
      i++;
    }
  }
  // a stage runs to the next top-level statement (or comment at column 0), trailing blanks aside
  const blockEnd = (from: number): number => {
    let j = from + 1;
    while (j < nLines) {
      const t = lineText(j);
      if ((topLevel[j] || /^#/.test(t)) && t.trim()) break;
      j++;
    }
    let last = j - 1;
    while (last > from && !lineText(last).trim()) last--;
    return last; // inclusive
  };
  const endOf = (last: number) => (last + 1 < nLines ? starts[last + 1] - 1 : text.length);
  let i = 0;
  while (i < nLines) {
    const t = lineText(i);
    if (!topLevel[i]) {
      i++;
      continue;
    }
    const dec = DECORATOR.exec(t);
    const call = SQL_CALL.exec(t);
    if (dec) {
      const decStart = starts[i];
      const withArgs = /^@(?:klaw\.)?(?:asset|stage)\s*\(/.exec(t);
      const paren = withArgs ? decStart + withArgs[0].length - 1 : -1;
      const decEnd = withArgs ? closing(text, paren) + 1 : decStart + t.length;
      const defMatch = /(?:^|\n)((?:async\s+)?def\s+)([A-Za-z_]\w*)\s*\(/.exec(text.slice(decEnd));
      if (!defMatch) {
        i++;
        continue;
      }
      const defAt = decEnd + defMatch.index + (defMatch[0].startsWith('\n') ? 1 : 0);
      const fnNameStart = defAt + defMatch[1].length;
      const fnName = defMatch[2];
      const open = text.indexOf('(', fnNameStart);
      const close = closing(text, open);
      const defLine = lineAt(starts, close) - 1;
      const last = blockEnd(defLine);
      const decText = text.slice(decStart, decEnd);
      const decArgs: [number, number] | null = withArgs ? [paren + 1, decEnd - 1] : null;
      const options: StageOptions = {};
      const nameRanges: [number, number][] = [];
      let name = fnName;
      if (decArgs) {
        for (const key of ['retries', 'timeout', 'tags'] as const) {
          const at = kwarg(text, decArgs, key);
          if (at) {
            const v = readPyValue(text.slice(...at));
            if (key === 'tags' && Array.isArray(v)) options.tags = v.map(String);
            else if (key !== 'tags' && typeof v === 'number') options[key] = v;
          }
        }
        const nm = kwarg(text, decArgs, 'name');
        const v = nm ? readPyValue(text.slice(...nm)) : undefined;
        if (nm && typeof v === 'string') {
          name = v;
          nameRanges.push([nm[0] + 1, nm[1] - 1]);
        }
      }
      if (!nameRanges.length) nameRanges.push([fnNameStart, fnNameStart + fnName.length]);
      const end = endOf(last);
      const params = text
        .slice(open + 1, close)
        .split(',')
        .map((p) => p.trim().split(/[:=]/)[0].trim().replace(/^\*+/, ''))
        .filter((p) => p && p !== 'params' && p !== '/');
      const after = decArgs ? kwarg(text, decArgs, 'deps') : null;
      const listed = after ? readPyValue(text.slice(...after)) : undefined;
      if (Array.isArray(listed)) params.push(...listed.filter((d): d is string => typeof d === 'string'));
      stages.push({
        name,
        lang: 'python',
        file: PY_FILE,
        code: text.slice(decStart, end),
        deps: params,
        options,
        line: i + 1,
        endLine: last + 1,
        range: [decStart, end],
        codeRange: [decStart, end],
        decorator: { range: [decStart, decEnd], text: decText },
        signature: [open + 1, close],
        nameRanges,
      });
      i = last + 1;
      continue;
    }
    if (call) {
      const open = starts[i] + call[0].length - 1;
      const close = closing(text, open);
      const last = lineAt(starts, close) - 1;
      const args: [number, number] = [open + 1, close];
      // the query: the first string literal of the call
      let q = open + 1;
      while (q < close && /[\s]/.test(text[q])) q++;
      const qEnd = stringEnd(text, q);
      const prefix = /^[rRbBuUfF]{0,2}("""|'''|"|')/.exec(text.slice(q, q + 5));
      const nameAt = kwarg(text, args, 'name');
      const nameValue = nameAt ? readPyValue(text.slice(...nameAt)) : undefined;
      const nameRanges: [number, number][] = [[starts[i], starts[i] + call[1].length]];
      if (nameAt && typeof nameValue === 'string') nameRanges.push([nameAt[0] + 1, nameAt[1] - 1]);
      let codeRange: [number, number] = [q, q];
      if (prefix && qEnd > q) codeRange = [q + prefix[0].length, qEnd - prefix[1].length];
      stages.push({
        name: typeof nameValue === 'string' ? nameValue : call[1],
        lang: 'sql',
        file: PY_FILE,
        code: text.slice(...codeRange),
        deps: [],
        options: {},
        line: i + 1,
        endLine: last + 1,
        range: [starts[i], endOf(last)],
        codeRange,
        nameRanges,
      });
      i = last + 1;
      continue;
    }
    i++;
  }
  return stages;
}

// ---------------------------------------------------------------------------- config.yaml ----

interface YamlKey {
  key: string;
  /** the key's line through its value's last line (block lists and folded text included) */
  range: [number, number];
  line: number;
  value: unknown;
  /** the value could be read here (a scalar, a flow list, a block list or folded text) */
  simple: boolean;
}

function yamlScalar(src: string): unknown {
  const s = src.trim();
  if (s === '' || s === '~' || s === 'null' || s === 'Null' || s === 'NULL') return null;
  if (/^(true|True|TRUE)$/.test(s)) return true;
  if (/^(false|False|FALSE)$/.test(s)) return false;
  if (/^[-+]?\d+$/.test(s)) return Number(s);
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return Number(s);
  if (s.startsWith('"') && s.endsWith('"') && s.length >= 2) {
    try {
      return JSON.parse(s);
    } catch {
      return s.slice(1, -1);
    }
  }
  if (s.startsWith("'") && s.endsWith("'") && s.length >= 2) return s.slice(1, -1).replace(/''/g, "'");
  return s;
}

/** The value part of a line without its comment (` # ...` outside quotes). */
function uncomment(v: string): string {
  let quote: string | null = null;
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(v[i - 1]))) return v.slice(0, i).trimEnd();
  }
  return v.trimEnd();
}

function flowList(v: string): unknown[] | undefined {
  const m = /^\[(.*)\]$/.exec(v.trim());
  if (!m) return undefined;
  if (!m[1].trim()) return [];
  return m[1].split(',').map(yamlScalar);
}

function yamlKeys(text: string): YamlKey[] {
  const starts = lineStarts(text);
  const lines = starts.map((s, i) => text.slice(s, i + 1 < starts.length ? starts[i + 1] - 1 : text.length).replace(/\r$/, ''));
  const keys: YamlKey[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^([A-Za-z_][\w-]*)\s*:(?:\s+(.*))?$/.exec(lines[i]) ?? /^([A-Za-z_][\w-]*):$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && (/^\s/.test(lines[j]) || lines[j] === '' || /^-\s/.test(lines[j]) || lines[j] === '-')) j++;
    let last = j - 1;
    while (last > i && !lines[last].trim()) last--;
    const raw = uncomment(m[2] ?? '');
    const cont = lines.slice(i + 1, last + 1);
    let value: unknown;
    let simple = true;
    if (/^[>|][+-]?$/.test(raw)) {
      const body = cont.map((l) => l.trim());
      value = raw.startsWith('>') ? body.filter((l) => l).join(' ') : body.join('\n');
    } else if (raw === '' && cont.length && cont.every((l) => /^\s*(-(\s|$)|#)/.test(l) || !l.trim())) {
      value = cont.filter((l) => /^\s*-/.test(l)).map((l) => yamlScalar(uncomment(l.replace(/^\s*-\s?/, ''))));
    } else if (raw === '' && cont.some((l) => l.trim() && !l.trim().startsWith('#'))) {
      value = undefined;
      simple = false;
    } else if (raw.startsWith('[')) {
      value = flowList(raw);
      simple = value !== undefined;
    } else if (raw.startsWith('{')) {
      value = undefined;
      simple = false;
    } else value = yamlScalar(raw);
    const end = last + 1 < starts.length ? starts[last + 1] - 1 : text.length;
    keys.push({ key: m[1], range: [starts[i], end], line: i + 1, value, simple });
    i = last;
  }
  return keys;
}

export function readConfig(text: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of yamlKeys(text)) if (k.simple) out[k.key] = k.value;
  return out;
}

const PLAIN = /^[A-Za-z_][\w./@ +-]*$/;
function yamlValue(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(yamlValue).join(', ')}]`;
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') {
    const reserved = /^(true|false|null|yes|no|on|off|~)$/i.test(value) || /^[-+]?[\d.]/.test(value);
    return PLAIN.test(value) && !reserved && !/\s$/.test(value) && !value.includes(': ') && !value.includes(' #') ? value : JSON.stringify(value);
  }
  return String(value);
}

/** config.yaml with `key` set to `value` (undefined: the key removed), its other lines as they were. */
export function setConfig(text: string, key: string, value: unknown): string {
  const found = yamlKeys(text).find((k) => k.key === key);
  if (value === undefined) {
    if (!found) return text;
    let [a, b] = found.range;
    if (text[b] === '\n') b++;
    return text.slice(0, a) + text.slice(b);
  }
  const line = `${key}: ${yamlValue(value)}`;
  if (found) {
    const [a, b] = found.range;
    const first = text.slice(a, text.indexOf('\n', a) < 0 || text.indexOf('\n', a) > b ? b : text.indexOf('\n', a));
    const m = /^[^:]*:\s*(.*)$/.exec(first);
    const raw = m ? m[1] : '';
    const comment = raw.slice(uncomment(raw).length).match(/\s+#.*$/)?.[0] ?? '';
    const oneLine = !text.slice(a, b).includes('\n');
    return splice(text, [a, b], line + (oneLine || !/^[>|]/.test(raw) ? comment : ''));
  }
  const sep = text === '' || text.endsWith('\n') ? '' : '\n';
  return `${text}${sep}${line}\n`;
}

/** The key of config.yaml at a 1-based line. */
export function configKeyAt(text: string, line: number): string | null {
  for (const k of yamlKeys(text)) {
    const endLine = k.line + text.slice(...k.range).split('\n').length - 1;
    if (line >= k.line && line <= endLine) return k.key;
  }
  return null;
}

// ------------------------------------------------------------------------------ the model ----

export function parseFolder(files: Files): FolderModel {
  const file = codeFile(files);
  const config = readConfig(files[CONFIG] ?? '');
  const problems: string[] = [];
  let stages: StageModel[] = [];
  if (file === SQL_FILE) {
    const r = parseSql(files[SQL_FILE]);
    stages = r.stages;
    problems.push(...r.problems);
  } else if (file === PY_FILE) stages = pyStages(files[PY_FILE]);
  const names = stages.map((s) => s.name);
  for (const s of stages) {
    const others = names.filter((n) => n !== s.name);
    s.deps = s.lang === 'sql' ? tablesRead(s.code, others) : s.deps.filter((d) => others.includes(d));
  }
  const seen = new Set<string>();
  for (const s of stages) {
    if (seen.has(s.name)) problems.push(`${s.file}:${s.line}: the name ${JSON.stringify(s.name)} is used twice.`);
    seen.add(s.name);
  }
  return { file, stages, config, problems };
}

function stageOf(files: Files, name: string): { model: FolderModel; stage: StageModel; text: string } {
  const model = parseFolder(files);
  const stage = model.stages.find((s) => s.name === name);
  if (!stage) throw new Error(`No stage ${JSON.stringify(name)} in the workflow.`);
  return { model, stage, text: files[stage.file] };
}

/** The stage's code replaced by `code` (the rest of its file as it was). */
export function setCode(files: Files, name: string, code: string): Files {
  const { stage, text } = stageOf(files, name);
  if (stage.code === code) return files;
  let replacement = code;
  if (stage.lang === 'sql' && stage.file === PY_FILE) replacement = pyQuery(text, stage, code);
  return { ...files, [stage.file]: splice(text, stage.lang === 'sql' && stage.file === PY_FILE ? literalRange(text, stage) : stage.codeRange, replacement) };
}

/** A klaw.sql(...) stage's query literal: the range of the whole literal, quotes included. */
function literalRange(text: string, stage: StageModel): [number, number] {
  let [a, b] = stage.codeRange;
  while (a > 0 && /["'rRbBuUfF]/.test(text[a - 1]) && a > stage.range[0]) a--;
  while (b < text.length && /["']/.test(text[b])) b++;
  return [a, b];
}
function pyQuery(text: string, stage: StageModel, code: string): string {
  const [a, b] = literalRange(text, stage);
  const open = text.slice(a, stage.codeRange[0]);
  const close = text.slice(stage.codeRange[1], b);
  const triple = open.endsWith('"""') || open.endsWith("'''");
  if ((triple || !code.includes('\n')) && !code.includes(close) && !code.includes('\\')) return open + code + close;
  if (!code.includes('"""') && !code.includes('\\')) return `"""${code}"""`;
  return JSON.stringify(code);
}

/** The stage renamed; so are the references to it of the stages that read it. */
export function renameStage(files: Files, name: string, to: string): Edit {
  if (name === to) return { files };
  if (!validName(to)) return { files, note: `${JSON.stringify(to)} is not a valid stage name: letters, digits and underscores, starting with a letter or underscore.` };
  const { model, stage } = stageOf(files, name);
  if (model.stages.some((s) => s.name === to)) return { files, note: `There is a stage named ${to} already.` };
  const file = stage.file;
  let text = files[file];
  // edits from the end of the file backwards, so earlier offsets stay right
  const edits: { range: [number, number]; text: string }[] = stage.nameRanges.map((r) => ({ range: r, text: to }));
  const word = new RegExp(`(?<![\\w$.'"])${name}(?![\\w'"])`, 'g');
  for (const s of model.stages) {
    if (s === stage || !s.deps.includes(name)) continue;
    if (s.lang === 'python' && s.signature) {
      const [a, b] = s.codeRange;
      const dec = s.decorator?.range ?? [a, a];
      edits.push({ range: [dec[1], b], text: text.slice(dec[1], b).replace(word, to) });
    } else edits.push({ range: s.codeRange, text: text.slice(...s.codeRange).replace(word, to) });
  }
  edits.sort((x, y) => y.range[0] - x.range[0]);
  for (const e of edits) text = splice(text, e.range, e.text);
  return { files: { ...files, [file]: text } };
}

function sqlTemplate(upstream: string[]): string {
  if (!upstream.length) return 'SELECT 1 AS value;';
  return `SELECT *\nFROM ${upstream.join('\nCROSS JOIN ')};`;
}
/** A query the builder wrote (or one of its shape): it can be rewritten for new inputs. */
function templateInputs(code: string): string[] | null {
  const c = code.trim();
  if (/^SELECT 1 AS value;?$/i.test(c)) return [];
  const m = /^SELECT \*\s+FROM (\w+)((?:\s+CROSS JOIN \w+)*)\s*;?$/i.exec(c);
  if (!m) return null;
  return [m[1], ...[...m[2].matchAll(/CROSS JOIN (\w+)/gi)].map((x) => x[1])];
}

function pyFunction(name: string, upstream: string[]): string {
  const body = upstream.length ? `    return ${upstream[0]}` : '    return None';
  return `@klaw.stage\ndef ${name}(${upstream.join(', ')}):\n    """What ${name} does."""\n${body}\n`;
}

function ensureImport(text: string): string {
  if (/^import klaw\b/m.test(text) || /^from klaw import/m.test(text)) return text;
  // after a module docstring and `from __future__` imports, else at the top
  const future = [...text.matchAll(/^from __future__ import[^\n]*\n/gm)].pop();
  if (future) {
    const at = future.index + future[0].length;
    return text.slice(0, at) + '\nimport klaw\n' + text.slice(at);
  }
  const doc = /^(?:"""[\s\S]*?"""|'''[\s\S]*?''')[^\n]*\n/.exec(text);
  if (doc) return text.slice(0, doc[0].length) + '\nimport klaw\n' + text.slice(doc[0].length);
  return `import klaw\n${text ? '\n' : ''}${text}`;
}

function appendBlock(text: string, block: string, gap: string): string {
  if (!text.trim()) return block;
  let out = text.endsWith('\n') ? text : `${text}\n`;
  out = out.replace(/\n+$/, '\n');
  return `${out}${gap}${block}`;
}

/** A new stage at the end of the code file, reading `upstream`. */
export function addStage(files: Files, lang: 'sql' | 'python', name: string, upstream: string[] = []): Edit {
  if (!validName(name)) return { files, note: `${JSON.stringify(name)} is not a valid stage name.` };
  const model = parseFolder(files);
  if (model.stages.some((s) => s.name === name)) return { files, note: `There is a stage named ${name} already.` };
  const file = model.file;
  if (file === SQL_FILE) {
    if (lang === 'python')
      return { files, note: 'This workflow is workflow.sql: its stages are SQL statements. A Python stage needs a workflow.py workflow.' };
    return { files: { ...files, [SQL_FILE]: appendBlock(files[SQL_FILE], `-- name: ${name}\n${sqlTemplate(upstream)}\n`, '\n') } };
  }
  if (file === PY_FILE) {
    const text = ensureImport(files[PY_FILE]);
    const block =
      lang === 'python'
        ? pyFunction(name, upstream)
        : `${name} = klaw.sql(\n    """\n${sqlTemplate(upstream).replace(/;$/, '')}\n""",\n    name=${JSON.stringify(name)},\n)\n`;
    return { files: { ...files, [PY_FILE]: appendBlock(text, block, '\n\n') } };
  }
  return { files, note: 'The workflow has neither workflow.sql nor workflow.py.' };
}

/** The stage and the text of its block gone (comments above it kept). */
export function removeStage(files: Files, name: string): Files {
  const { stage, text } = stageOf(files, name);
  let [a, b] = stage.range;
  if (stage.file === PY_FILE) {
    while (b < text.length && text[b] === '\n') b++;
    if (b >= text.length) while (a > 0 && text[a - 1] === '\n' && text[a - 2] === '\n') a--;
  }
  return { ...files, [stage.file]: text.slice(0, a) + text.slice(b) };
}

/** `down` reads `up`: a Python function gets the parameter; an SQL query of the builder's shape
 * gets the table; any other query is the user's to change (the note says so). */
export function addEdge(files: Files, up: string, down: string): Edit {
  const { model, stage, text } = stageOf(files, down);
  if (up === down) return { files, note: 'A stage cannot read itself.' };
  if (!model.stages.some((s) => s.name === up)) return { files, note: `No stage ${up}.` };
  if (stage.deps.includes(up)) return { files };
  if (stage.lang === 'python' && stage.signature) {
    const [a, b] = stage.signature;
    const inner = text.slice(a, b);
    const insert = inner.trim() ? `${up}, ` : up;
    const at = inner.trim() ? a + (inner.length - inner.trimStart().length) : a;
    return { files: { ...files, [stage.file]: splice(text, [at, at], insert) } };
  }
  const inputs = templateInputs(stage.code);
  if (inputs === null) {
    return {
      files,
      note: `${down} reads the tables its SQL names: add ${up} to its query (FROM or JOIN) to make it an input.`,
    };
  }
  let query = sqlTemplate([...inputs, up]);
  if (stage.file === PY_FILE) query = query.replace(/;$/, '');
  else if (!stage.code.trim().endsWith(';')) query = query.replace(/;$/, '');
  return { files: setCode(files, down, query) };
}

/** `down` no longer reads `up` (a Python parameter removed, a builder-shaped query rewritten). */
export function removeEdge(files: Files, up: string, down: string): Edit {
  const { stage, text } = stageOf(files, down);
  if (!stage.deps.includes(up)) return { files };
  if (stage.lang === 'python' && stage.signature) {
    const [a, b] = stage.signature;
    const inner = text.slice(a, b);
    const parts = inner.split(',');
    const kept = parts.filter((p) => p.trim().split(/[:=]/)[0].trim() !== up);
    let next = kept.join(',');
    if (kept.length && parts.length && kept.length < parts.length && /^\s/.test(next) && !/^\s/.test(inner)) next = next.trimStart();
    return { files: { ...files, [stage.file]: splice(text, [a, b], next) } };
  }
  const inputs = templateInputs(stage.code);
  if (inputs === null) return { files, note: `${down} reads ${up} in its SQL: remove it from the query.` };
  let query = sqlTemplate(inputs.filter((x) => x !== up));
  if (stage.file === PY_FILE || !stage.code.trim().endsWith(';')) query = query.replace(/;$/, '');
  return { files: setCode(files, down, query) };
}

/** A Python stage's decorator with `options` set (undefined: removed), its other arguments kept. */
export function setStageOptions(files: Files, name: string, options: StageOptions): Edit {
  const { stage, text } = stageOf(files, name);
  if (stage.lang !== 'python' || !stage.decorator)
    return { files, note: 'An SQL stage takes its retries, timeout and tags from config.yaml.' };
  let dec = stage.decorator.text;
  for (const key of ['retries', 'timeout', 'tags'] as const) {
    const want = options[key];
    const have = stage.options[key];
    if (JSON.stringify(want) === JSON.stringify(have)) continue;
    dec = setKwarg(dec, key, want === undefined ? undefined : pyLiteral(want));
  }
  if (dec === stage.decorator.text) return { files };
  return { files: { ...files, [stage.file]: splice(text, stage.decorator.range, dec) } };
}

function setKwarg(dec: string, key: string, value: string | undefined): string {
  const paren = dec.indexOf('(');
  if (paren < 0) return value === undefined ? dec : `${dec.trimEnd()}(${key}=${value})`;
  const close = closing(dec, paren);
  const at = kwarg(dec, [paren + 1, close], key);
  if (at) {
    if (value !== undefined) return splice(dec, at, value);
    // remove `key=value` and one comma next to it
    let a = dec.lastIndexOf(key, at[0]);
    let b = at[1];
    const after = /^\s*,\s*/.exec(dec.slice(b));
    if (after) b += after[0].length;
    else {
      const before = /,\s*$/.exec(dec.slice(paren + 1, a));
      if (before) a -= before[0].length;
    }
    const out = splice(dec, [a, b], '');
    return /\(\s*\)$/.test(out.trimEnd()) ? out.replace(/\(\s*\)\s*$/, '') : out;
  }
  if (value === undefined) return dec;
  const inner = dec.slice(paren + 1, close);
  const trailing = /,\s*$/.test(inner);
  const sep = inner.trim() ? (trailing ? ' ' : ', ') : '';
  const multi = inner.includes('\n');
  if (multi) {
    const indent = /\n(\s+)\S/.exec(inner)?.[1] ?? '    ';
    const body = inner.replace(/\s*$/, '');
    return dec.slice(0, paren + 1) + `${body}${body.endsWith(',') ? '' : ','}\n${indent}${key}=${value},\n` + dec.slice(close);
  }
  return dec.slice(0, close) + `${sep}${key}=${value}` + dec.slice(close);
}

/** New folder files: config.yaml and one stage. */
export function newFolder(kind: 'sql' | 'python', description = ''): Files {
  const lines = [];
  if (description) lines.push(`description: ${yamlValue(description)}`);
  lines.push(`engine: ${kind === 'sql' ? 'duckdb' : 'python'}`);
  const config = lines.join('\n') + '\n';
  if (kind === 'sql') return { [CONFIG]: config, [SQL_FILE]: `-- name: first\n${sqlTemplate([])}\n` };
  return { [CONFIG]: config, [PY_FILE]: `import klaw\n\n\n${pyFunction('first', [])}` };
}

/** Which stage or config.yaml key a problem message names. */
export function locate(message: string, files: Files): { stage?: string; field?: string } {
  const model = parseFolder(files);
  const cfg = /config\.yaml:(\d+)/.exec(message);
  if (cfg) {
    const key = configKeyAt(files[CONFIG] ?? '', Number(cfg[1]));
    if (key) return { field: key };
  }
  const named = /(?:stage|statement|name) '([A-Za-z_]\w*)'/i.exec(message);
  if (named && model.stages.some((s) => s.name === named[1])) return { stage: named[1] };
  const at = /workflow\.(sql|py):(\d+)/.exec(message);
  if (at) {
    const line = Number(at[2]);
    const s = model.stages.find((x) => line >= x.line && line <= x.endLine + 1);
    if (s) return { stage: s.name };
  }
  for (const s of model.stages) if (new RegExp(`\\b${s.name}\\b`).test(message)) return { stage: s.name };
  return {};
}

/** Whether two sets of files are the same, byte for byte. */
export function sameFiles(a: Files, b: Files): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}
