// A params JSON Schema as form fields, and the browser-side checks of their values.
import type { JsonSchema } from './types';

export type FieldKind = 'string' | 'number' | 'integer' | 'boolean' | 'enum' | 'array' | 'json';

export interface Field {
  name: string;
  label: string;
  description: string;
  kind: FieldKind;
  /** The item kind of an array field. */
  itemKind?: 'string' | 'number' | 'integer' | 'boolean' | 'enum';
  options?: unknown[];
  required: boolean;
  nullable: boolean;
  schema: JsonSchema;
  default: unknown;
}

/** The form value of a field: text for inputs (one item a line for arrays), a boolean for checkboxes. */
export type FormValue = string | boolean;

function resolve(s: JsonSchema, root: JsonSchema): JsonSchema {
  let out = s;
  for (let i = 0; i < 10 && out.$ref; i++) {
    const ref = out.$ref;
    const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
    const defs = (m && (root[m[1]] as Record<string, JsonSchema> | undefined)) || undefined;
    const target = m && defs ? defs[m[2]] : undefined;
    if (!target) break;
    const { $ref: _r, ...rest } = out;
    void _r;
    out = { ...target, ...rest };
  }
  return out;
}

function typeOf(s: JsonSchema): string | undefined {
  if (Array.isArray(s.type)) return s.type.find((t) => t !== 'null');
  return s.type;
}

function kindOf(s: JsonSchema): Field['itemKind'] | undefined {
  if (s.enum) return 'enum';
  const t = typeOf(s);
  if (t === 'string' || t === 'number' || t === 'integer' || t === 'boolean') return t;
  return undefined;
}

export function fieldsOf(schema: JsonSchema | null | undefined): Field[] {
  if (!schema || !schema.properties) return [];
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties).map(([name, raw]) => {
    let s = resolve(raw, schema);
    let nullable = Array.isArray(s.type) && s.type.includes('null');
    if (s.anyOf) {
      const alts = s.anyOf.map((a) => resolve(a, schema));
      const nonNull = alts.filter((a) => typeOf(a) !== 'null');
      nullable = nullable || nonNull.length < alts.length;
      if (nonNull.length === 1) {
        const { anyOf: _a, ...rest } = s;
        void _a;
        s = { ...nonNull[0], ...rest };
      }
    }
    if (s.const !== undefined && !s.enum) s = { ...s, enum: [s.const] };
    let kind: FieldKind = kindOf(s) ?? 'json';
    let itemKind: Field['itemKind'];
    let options = s.enum;
    if (!s.anyOf && typeOf(s) === 'array' && s.items) {
      const items = resolve(s.items, schema);
      itemKind = kindOf(items);
      if (itemKind) {
        kind = 'array';
        if (items.enum) options = items.enum;
      }
    }
    if (s.anyOf && kind !== 'json') kind = 'json';
    return {
      name,
      label: s.title ?? name,
      description: s.description ?? '',
      kind,
      itemKind,
      options,
      required: required.has(name),
      nullable,
      schema: s,
      default: s.default,
    };
  });
}

export function initialValues(fields: Field[], params: Record<string, unknown> = {}): Record<string, FormValue> {
  const out: Record<string, FormValue> = {};
  for (const f of fields) {
    const v = f.name in params ? params[f.name] : f.default;
    if (f.kind === 'boolean') out[f.name] = v === true;
    else if (v === undefined || v === null) out[f.name] = '';
    else if (f.kind === 'array') out[f.name] = Array.isArray(v) ? v.map((x) => String(x)).join('\n') : String(v);
    else if (f.kind === 'json') out[f.name] = JSON.stringify(v);
    else if (f.kind === 'enum') out[f.name] = JSON.stringify(v);
    else out[f.name] = String(v);
  }
  return out;
}

function checkNumber(v: number, s: JsonSchema, integer: boolean): string | null {
  if (!Number.isFinite(v)) return 'Enter a number.';
  if (integer && !Number.isInteger(v)) return 'Enter a whole number.';
  if (s.minimum !== undefined && v < s.minimum) return `Must be at least ${s.minimum}.`;
  if (s.maximum !== undefined && v > s.maximum) return `Must be at most ${s.maximum}.`;
  if (s.exclusiveMinimum !== undefined && v <= s.exclusiveMinimum) return `Must be more than ${s.exclusiveMinimum}.`;
  if (s.exclusiveMaximum !== undefined && v >= s.exclusiveMaximum) return `Must be less than ${s.exclusiveMaximum}.`;
  if (typeof s.multipleOf === 'number' && Math.abs(v / s.multipleOf - Math.round(v / s.multipleOf)) > 1e-9)
    return `Must be a multiple of ${s.multipleOf}.`;
  return null;
}

function checkString(v: string, s: JsonSchema): string | null {
  if (s.minLength !== undefined && v.length < s.minLength) return `At least ${s.minLength} characters.`;
  if (s.maxLength !== undefined && v.length > s.maxLength) return `At most ${s.maxLength} characters.`;
  if (s.pattern) {
    let re: RegExp | null = null;
    try {
      re = new RegExp(s.pattern, 'u');
    } catch {
      re = null;
    }
    if (re && !re.test(v)) return `Must match the pattern ${s.pattern}.`;
  }
  return null;
}

function scalar(kind: string, text: string, s: JsonSchema, options?: unknown[]): { value?: unknown; error?: string } {
  if (kind === 'number' || kind === 'integer') {
    if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text.trim())) return { error: 'Enter a number.' };
    const n = Number(text);
    const err = checkNumber(n, s, kind === 'integer');
    return err ? { error: err } : { value: n };
  }
  if (kind === 'boolean') {
    if (text === 'true') return { value: true };
    if (text === 'false') return { value: false };
    return { error: 'Enter true or false.' };
  }
  if (kind === 'enum') {
    const opts = options ?? [];
    const found = opts.find((o) => JSON.stringify(o) === text || String(o) === text);
    return found === undefined ? { error: `Choose one of ${opts.map(String).join(', ')}.` } : { value: found };
  }
  const err = checkString(text, s);
  return err ? { error: err } : { value: text };
}

export interface Validated {
  params: Record<string, unknown>;
  errors: Record<string, string>;
  valid: boolean;
}

/** Check the form's values against the fields' schema; only values set (or required) are sent. */
export function validate(fields: Field[], values: Record<string, FormValue>): Validated {
  const params: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const f of fields) {
    const raw = values[f.name];
    if (f.kind === 'boolean') {
      params[f.name] = raw === true;
      continue;
    }
    const text = typeof raw === 'string' ? raw : String(raw ?? '');
    if (text.trim() === '' && f.kind !== 'string') {
      if (f.required && !f.nullable) errors[f.name] = 'Required.';
      else if (f.nullable && f.default === null) params[f.name] = null;
      continue;
    }
    if (text === '' && f.kind === 'string') {
      if (f.required) errors[f.name] = 'Required.';
      continue; // empty: the default applies
    }
    if (f.kind === 'json') {
      try {
        params[f.name] = JSON.parse(text);
      } catch {
        errors[f.name] = 'Enter valid JSON.';
      }
      continue;
    }
    if (f.kind === 'array') {
      const items = text.split('\n').map((x) => x.trim()).filter((x) => x !== '');
      const out: unknown[] = [];
      const itemSchema = (f.schema.items ?? {}) as JsonSchema;
      for (const [i, item] of items.entries()) {
        const r = scalar(f.itemKind ?? 'string', item, itemSchema, f.options);
        if (r.error) {
          errors[f.name] = `Item ${i + 1}: ${r.error}`;
          break;
        }
        out.push(r.value);
      }
      const s = f.schema;
      if (!errors[f.name]) {
        if (typeof s.minItems === 'number' && out.length < s.minItems) errors[f.name] = `At least ${s.minItems} items.`;
        else if (typeof s.maxItems === 'number' && out.length > s.maxItems) errors[f.name] = `At most ${s.maxItems} items.`;
        else if (s.uniqueItems === true && new Set(out.map((x) => JSON.stringify(x))).size !== out.length)
          errors[f.name] = 'Items must be unique.';
        else params[f.name] = out;
      }
      continue;
    }
    const r = scalar(f.kind, text, f.schema, f.options);
    if (r.error) errors[f.name] = r.error;
    else params[f.name] = r.value;
  }
  return { params, errors, valid: Object.keys(errors).length === 0 };
}
