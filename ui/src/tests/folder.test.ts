import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  addEdge,
  addStage,
  locate,
  newFolder,
  parseFolder,
  readConfig,
  removeEdge,
  removeStage,
  renameStage,
  sameFiles,
  setCode,
  setConfig,
  setStageOptions,
  type Files,
} from '../lib/folder';

// The hand-written SQL folder workflow of the TPC-H example.
const dir = resolve(process.cwd(), '../examples/tpch/workflows/tpch_sql');
const sqlFolder: Files = {
  'config.yaml': readFileSync(resolve(dir, 'config.yaml'), 'utf-8'),
  'workflow.sql': readFileSync(resolve(dir, 'workflow.sql'), 'utf-8'),
};

const PY = `"""Orders, by hand."""

from __future__ import annotations

import pyarrow as pa

import klaw


@klaw.asset(retries=2, tags=["raw"])
def orders() -> pa.Table:
    return pa.table({"amount": [1, 2, 3]})


# the clean orders
@klaw.asset
def clean(
    orders: pa.Table,
) -> pa.Table:
    """Orders with a positive amount."""
    return orders.filter(pa.compute.greater(orders["amount"], 0))


totals = klaw.sql("SELECT sum(amount) AS total FROM clean", name="totals")


@klaw.stage(deps=["totals"])
def report(clean) -> int:
    return clean.num_rows
`;
const pyFolder: Files = { 'config.yaml': 'engine: python\nretries: 1\n', 'workflow.py': PY };

describe('reading a folder workflow', () => {
  it('finds the SQL statements, their code and what they read', () => {
    const m = parseFolder(sqlFolder);
    expect(m.file).toBe('workflow.sql');
    expect(m.stages.map((s) => s.name)).toEqual(['pricing_summary', 'local_supplier_volume', 'region_volume']);
    const region = m.stages[2];
    expect(region.deps).toEqual(['local_supplier_volume']);
    expect(region.code.startsWith('-- The local supplier volume per region')).toBe(true);
    expect(region.code.endsWith('ORDER BY region, order_year;')).toBe(true);
    expect(m.stages[0].deps).toEqual([]);
    expect(m.stages[0].line).toBe(5);
    expect(m.problems).toEqual([]);
  });

  it('reads config.yaml: scalars, lists, folded text', () => {
    const c = readConfig(sqlFolder['config.yaml']);
    expect(c.engine).toBe('duckdb');
    expect(c.retries).toBe(1);
    expect(c.retry_delay).toBe(0.5);
    expect(c.depends_on).toEqual(['tpch']);
    expect(c.tags).toEqual(['example', 'tpch', 'sql']);
    expect(String(c.description).startsWith('TPC-H pricing summary (Q1)')).toBe(true);
    expect('params' in c).toBe(false); // a mapping: left to the text
  });

  it('finds Python functions, klaw.sql stages, decorator options and inputs', () => {
    const m = parseFolder(pyFolder);
    expect(m.stages.map((s) => [s.name, s.lang])).toEqual([
      ['orders', 'python'],
      ['clean', 'python'],
      ['totals', 'sql'],
      ['report', 'python'],
    ]);
    const [orders, clean, totals, report] = m.stages;
    expect(orders.options).toEqual({ retries: 2, tags: ['raw'] });
    expect(clean.deps).toEqual(['orders']);
    expect(clean.code.startsWith('@klaw.asset\ndef clean(')).toBe(true);
    expect(clean.code.endsWith('return orders.filter(pa.compute.greater(orders["amount"], 0))')).toBe(true);
    expect(totals.code).toBe('SELECT sum(amount) AS total FROM clean');
    expect(totals.deps).toEqual(['clean']);
    expect(report.deps).toEqual(['clean', 'totals']);
  });
});

describe('editing keeps the text', () => {
  it('an unchanged round trip sends the same bytes', () => {
    for (const folder of [sqlFolder, pyFolder]) {
      const m = parseFolder(folder);
      let files = folder;
      for (const s of m.stages) files = setCode(files, s.name, s.code); // the editor's text, untouched
      for (const s of m.stages) files = setStageOptions(files, s.name, s.options).files;
      for (const [k, v] of Object.entries(m.config)) files = { ...files, 'config.yaml': setConfigIfChanged(files['config.yaml'], k, v) };
      expect(sameFiles(files, folder)).toBe(true);
      expect(files['config.yaml']).toBe(folder['config.yaml']);
    }
  });

  it('a new SQL stage is appended; nothing before it moves', () => {
    const { files, note } = addStage(sqlFolder, 'sql', 'top_regions', ['region_volume']);
    expect(note).toBeUndefined();
    const sql = files['workflow.sql'];
    expect(sql.startsWith(sqlFolder['workflow.sql'].trimEnd())).toBe(true);
    expect(sql.slice(sqlFolder['workflow.sql'].trimEnd().length)).toBe('\n\n-- name: top_regions\nSELECT *\nFROM region_volume;\n');
    expect(files['config.yaml']).toBe(sqlFolder['config.yaml']);
    const m = parseFolder(files);
    expect(m.stages.at(-1)?.deps).toEqual(['region_volume']);
    expect(addStage(sqlFolder, 'python', 'x').note).toMatch(/workflow\.sql/);
    expect(addStage(sqlFolder, 'sql', 'region_volume').note).toMatch(/already/);
    expect(addStage(sqlFolder, 'sql', '1bad').note).toMatch(/not a valid/);
  });

  it('a new Python stage and a new klaw.sql stage', () => {
    const py = addStage(pyFolder, 'python', 'audit', ['clean']).files;
    expect(py['workflow.py']).toBe(PY + '\n\n@klaw.stage\ndef audit(clean):\n    """What audit does."""\n    return clean\n');
    const sq = addStage(pyFolder, 'sql', 'big', ['clean']).files;
    const m = parseFolder(sq);
    const big = m.stages.find((s) => s.name === 'big');
    expect(big?.lang).toBe('sql');
    expect(big?.deps).toEqual(['clean']);
    const fresh = addStage({ 'config.yaml': 'engine: python\n', 'workflow.py': 'from __future__ import annotations\n' }, 'python', 'a').files;
    expect(fresh['workflow.py']).toMatch(/^from __future__ import annotations\n\nimport klaw\n/);
  });

  it('a stage renamed: its marker and the queries that read it', () => {
    const { files } = renameStage(sqlFolder, 'local_supplier_volume', 'supplier_volume');
    const m = parseFolder(files);
    expect(m.stages.map((s) => s.name)).toEqual(['pricing_summary', 'supplier_volume', 'region_volume']);
    expect(m.stages[2].deps).toEqual(['supplier_volume']);
    expect(files['workflow.sql']).toBe(sqlFolder['workflow.sql'].replace('-- name: local_supplier_volume', '-- name: supplier_volume').replace('FROM local_supplier_volume', 'FROM supplier_volume'));
    expect(renameStage(sqlFolder, 'region_volume', 'pricing_summary').note).toMatch(/already/);
  });

  it('a Python stage renamed: its def, the parameters and uses of its readers', () => {
    const { files } = renameStage(pyFolder, 'orders', 'raw_orders');
    const py = files['workflow.py'];
    expect(py).toContain('def raw_orders() -> pa.Table:');
    expect(py).toContain('def clean(\n    raw_orders: pa.Table,\n)');
    expect(py).toContain('return raw_orders.filter(pa.compute.greater(raw_orders["amount"], 0))');
    expect(py).toContain('# the clean orders'); // comments are not code
    const t = renameStage(pyFolder, 'totals', 'sums').files['workflow.py'];
    expect(t).toContain('sums = klaw.sql("SELECT sum(amount) AS total FROM clean", name="sums")');
  });

  it('an edge added: a parameter of a function, a table of a builder query', () => {
    const py = addEdge(pyFolder, 'orders', 'report').files;
    expect(py['workflow.py']).toContain('def report(orders, clean) -> int:');
    expect(parseFolder(py).stages[3].deps).toEqual(['orders', 'clean', 'totals']);
    const empty = addEdge(pyFolder, 'orders', 'orders');
    expect(empty.note).toMatch(/itself/);
    // a query written by hand is the user's to change
    const hand = addEdge(sqlFolder, 'pricing_summary', 'region_volume');
    expect(hand.files).toBe(sqlFolder);
    expect(hand.note).toMatch(/add pricing_summary to its query/);
    // the builder's own query takes the new table
    const added = addStage(sqlFolder, 'sql', 'joined', ['region_volume']).files;
    const both = addEdge(added, 'pricing_summary', 'joined').files;
    expect(parseFolder(both).stages.at(-1)?.code).toBe('SELECT *\nFROM region_volume\nCROSS JOIN pricing_summary;');
    expect(parseFolder(removeEdge(both, 'region_volume', 'joined').files).stages.at(-1)?.code).toBe('SELECT *\nFROM pricing_summary;');
  });

  it('an edge removed from a Python function', () => {
    const { files } = removeEdge(pyFolder, 'clean', 'report');
    expect(files['workflow.py']).toContain('def report() -> int:');
    const two = addEdge(pyFolder, 'orders', 'report').files;
    expect(removeEdge(two, 'orders', 'report').files['workflow.py']).toBe(PY);
  });

  it("a Python stage's options on its decorator, other arguments kept", () => {
    let { files } = setStageOptions(pyFolder, 'orders', { retries: 3, tags: ['raw'] });
    expect(files['workflow.py']).toContain('@klaw.asset(retries=3, tags=["raw"])');
    files = setStageOptions(files, 'orders', { retries: 3, tags: ['raw'], timeout: 60 }).files;
    expect(files['workflow.py']).toContain('@klaw.asset(retries=3, tags=["raw"], timeout=60)');
    files = setStageOptions(files, 'orders', { tags: ['raw'], timeout: 60 }).files;
    expect(files['workflow.py']).toContain('@klaw.asset(tags=["raw"], timeout=60)');
    files = setStageOptions(files, 'clean', { timeout: 5 }).files;
    expect(files['workflow.py']).toContain('@klaw.asset(timeout=5)\ndef clean(');
    files = setStageOptions(files, 'clean', {}).files;
    expect(files['workflow.py']).toContain('@klaw.asset\ndef clean(');
    expect(setStageOptions(sqlFolder, 'region_volume', { retries: 1 }).note).toMatch(/config\.yaml/);
  });

  it('editing code changes only that stage', () => {
    const files = setCode(sqlFolder, 'pricing_summary', 'SELECT 1 AS x;');
    const before = sqlFolder['workflow.sql'];
    const after = files['workflow.sql'];
    const m0 = parseFolder(sqlFolder).stages[0];
    expect(after).toBe(before.slice(0, m0.codeRange[0]) + 'SELECT 1 AS x;' + before.slice(m0.codeRange[1]));
    const py = setCode(pyFolder, 'totals', 'SELECT count(*) AS n\nFROM clean');
    expect(py['workflow.py']).toContain('totals = klaw.sql("""SELECT count(*) AS n\nFROM clean""", name="totals")');
    expect(parseFolder(py).stages[2].code).toBe('SELECT count(*) AS n\nFROM clean');
  });

  it('a stage removed', () => {
    const files = removeStage(sqlFolder, 'local_supplier_volume');
    expect(parseFolder(files).stages.map((s) => s.name)).toEqual(['pricing_summary', 'region_volume']);
    const py = removeStage(pyFolder, 'report');
    expect(py['workflow.py']).toBe(PY.slice(0, PY.indexOf('\n\n\n@klaw.stage(deps')) + '\n');
  });
});

describe('config.yaml', () => {
  it('patches one key, keeping comments and order', () => {
    const text = sqlFolder['config.yaml'];
    const out = setConfig(text, 'retries', 3);
    expect(out).toBe(text.replace('retries: 1\n', 'retries: 3\n'));
    expect(setConfig(text, 'depends_on', ['tpch', 'other'])).toBe(text.replace('depends_on: [tpch] #', 'depends_on: [tpch, other] #'));
    expect(setConfig(text, 'schedule', '0 3 * * *')).toBe(text + 'schedule: "0 3 * * *"\n');
    expect(setConfig(text, 'timeout', undefined)).toBe(text.replace('timeout: 300\n', ''));
    const desc = setConfig(text, 'description', 'Short.');
    expect(readConfig(desc).description).toBe('Short.');
    expect(desc).toContain('description: Short.\nengine: duckdb');
    expect(setConfig('engine: python', 'retries', 2)).toBe('engine: python\nretries: 2\n');
    expect(setConfig('tags:\n  - a\n  - b\nretries: 1\n', 'tags', ['c'])).toBe('tags: [c]\nretries: 1\n');
    expect(readConfig('tags:\n  - a\n  - b\n').tags).toEqual(['a', 'b']);
    expect(setConfig('x: 1\n', 'description', 'yes')).toBe('x: 1\ndescription: "yes"\n');
  });
});

describe('new workflows and problems', () => {
  it('makes a folder that reads back', () => {
    const sql = newFolder('sql', 'Daily numbers');
    expect(sql['config.yaml']).toBe('description: Daily numbers\nengine: duckdb\n');
    expect(parseFolder(sql).stages.map((s) => s.name)).toEqual(['first']);
    const py = newFolder('python');
    expect(parseFolder(py).stages.map((s) => [s.name, s.lang])).toEqual([['first', 'python']]);
  });

  it('places a problem at its stage or config key', () => {
    expect(locate("config.yaml:8: retries: Input should be greater than or equal to 0 (got -1)", sqlFolder)).toEqual({ field: 'retries' });
    expect(locate("SQL stage 'region_volume' (workflow.sql:44) reads table 'x'", sqlFolder)).toEqual({ stage: 'region_volume' });
    expect(locate('/p/workflow.sql:26: the statement is empty.', sqlFolder)).toEqual({ stage: 'local_supplier_volume' });
    expect(locate("Stage 'region_volume' (sales/workflow.sql:44) depends on 'x'", sqlFolder)).toEqual({ stage: 'region_volume' });
    expect(locate('sales/config.yaml:6: engine: bad', sqlFolder)).toEqual({ field: 'engine' });
    expect(locate('something else', sqlFolder)).toEqual({});
  });
});

function setConfigIfChanged(text: string, key: string, value: unknown): string {
  return JSON.stringify(readConfig(text)[key]) === JSON.stringify(value) ? text : setConfig(text, key, value);
}
