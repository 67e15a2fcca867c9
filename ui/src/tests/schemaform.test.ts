import { describe, expect, it, vi } from 'vitest';
import { fireEvent, render, screen } from '@testing-library/svelte';
import SchemaForm from '../components/SchemaForm.svelte';
import { fieldsOf, validate } from '../lib/schemaform';
import type { JsonSchema } from '../lib/types';

const schema: JsonSchema = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', title: 'Name', minLength: 2 },
    code: { type: 'string', pattern: '^[a-z]{2}[0-9]{2}$', default: 'ab12' },
    days: { type: 'integer', minimum: 1, maximum: 30, default: 3 },
    ratio: { type: 'number', minimum: 0, maximum: 1, default: 0.5 },
    region: { type: 'string', enum: ['eu', 'us'], default: 'eu' },
    fail: { type: 'boolean', default: false },
    tags: { type: 'array', items: { type: 'string' }, default: [] },
    ids: { type: 'array', items: { type: 'integer' } },
    limit: { anyOf: [{ type: 'integer' }, { type: 'null' }], default: null },
  },
};

describe('fieldsOf / validate', () => {
  it('maps JSON Schema types to field kinds', () => {
    const kinds = Object.fromEntries(fieldsOf(schema).map((f) => [f.name, f.kind]));
    expect(kinds).toEqual({
      name: 'string', code: 'string', days: 'integer', ratio: 'number', region: 'enum',
      fail: 'boolean', tags: 'array', ids: 'array', limit: 'integer',
    });
  });

  it('converts values and reports an error per field', () => {
    const f = fieldsOf(schema);
    const ok = validate(f, { name: 'xy', code: 'cd34', days: '7', ratio: '0.25', region: '"us"', fail: true, tags: 'a\nb', ids: '1\n2', limit: '' });
    expect(ok.errors).toEqual({});
    expect(ok.params).toEqual({ name: 'xy', code: 'cd34', days: 7, ratio: 0.25, region: 'us', fail: true, tags: ['a', 'b'], ids: [1, 2], limit: null });
    const bad = validate(f, { name: '', code: 'zz', days: '3.5', ratio: '2', region: '"eu"', fail: false, tags: '', ids: '1\nx', limit: '' });
    expect(Object.keys(bad.errors).sort()).toEqual(['code', 'days', 'ids', 'name', 'ratio']);
    expect(bad.errors.days).toMatch(/whole/);
    expect(bad.errors.ratio).toMatch(/at most 1/);
    expect(bad.errors.ids).toMatch(/Item 2/);
  });
});

describe('SchemaForm', () => {
  it('shows an error next to each invalid field and does not submit', async () => {
    const onsubmit = vi.fn();
    render(SchemaForm, { schema, onsubmit });
    await fireEvent.input(screen.getByTestId('param-days'), { target: { value: '99' } });
    await fireEvent.input(screen.getByTestId('param-code'), { target: { value: 'nope' } });
    await fireEvent.click(screen.getByTestId('launch-button'));
    expect(onsubmit).not.toHaveBeenCalled();
    expect(screen.getByTestId('param-error-days')).toHaveTextContent('Must be at most 30.');
    expect(screen.getByTestId('param-days')).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByTestId('param-error-code')).toHaveTextContent(/pattern/);
    expect(screen.getByTestId('param-error-name')).toHaveTextContent('Required.');
    expect(screen.getByTestId('param-error-ratio')).not.toBeVisible();
    expect(screen.getByTestId('param-ratio')).not.toHaveAttribute('aria-invalid');
  });

  it('submits the typed params once valid', async () => {
    const onsubmit = vi.fn();
    render(SchemaForm, { schema, onsubmit });
    await fireEvent.input(screen.getByTestId('param-name'), { target: { value: 'hello' } });
    await fireEvent.change(screen.getByTestId('param-region'), { target: { value: '"us"' } });
    await fireEvent.click(screen.getByTestId('param-fail'));
    await fireEvent.input(screen.getByTestId('param-tags'), { target: { value: 'x\ny' } });
    await fireEvent.click(screen.getByTestId('launch-button'));
    expect(onsubmit).toHaveBeenCalledWith({ name: 'hello', code: 'ab12', days: 3, ratio: 0.5, region: 'us', fail: true, tags: ['x', 'y'], limit: null });
  });

  it('checks a field when it loses focus', async () => {
    render(SchemaForm, { schema, onsubmit: () => {} });
    const ratio = screen.getByTestId('param-ratio');
    await fireEvent.input(ratio, { target: { value: 'abc' } });
    await fireEvent.blur(ratio);
    expect(screen.getByTestId('param-error-ratio')).toHaveTextContent('Enter a number.');
  });

  it('hides the launch button when the role may not launch', () => {
    render(SchemaForm, { schema, onsubmit: () => {}, canSubmit: false });
    expect(screen.queryByTestId('launch-button')).toBeNull();
  });
});
