import { describe, expect, it } from 'vitest';
import { bundleName, diffLines, nextEnvironment } from '../lib/lifecycle';
import { match } from '../lib/router.svelte';

describe('lifecycle', () => {
  it('promotes to the environment after the furthest one', () => {
    expect(nextEnvironment({ stage: 'dev' })).toBe('qa');
    expect(nextEnvironment({ stage: 'qa' })).toBe('uat');
    expect(nextEnvironment({ stage: 'uat' })).toBe('prod');
    expect(nextEnvironment({ stage: 'prod' })).toBeNull();
    expect(nextEnvironment({ stage: 'retired' })).toBeNull();
  });

  it('colours a unified diff', () => {
    const lines = diffLines('--- a/workflow.sql\n+++ b/workflow.sql\n@@ -1,2 +1,2 @@\n-- name: x\n-SELECT 1;\n+SELECT 2;\n');
    expect(lines.map((l) => l.kind)).toEqual(['head', 'head', 'hunk', 'del', 'del', 'add']);
    expect(diffLines('@@ -1 +1 @@\n--- x\n').map((l) => l.kind)).toEqual(['hunk', 'del']);
    expect(diffLines(' same\n').map((l) => l.kind)).toEqual(['same']);
  });

  it('names bundles and routes the pages', () => {
    expect(bundleName('sales', 3)).toBe('sales-v3.klaw.json');
    expect(match('/workflows/sales/versions')).toEqual({ name: 'versions', params: { name: 'sales' } });
    expect(match('/workflows/sales/diff/1/3')).toEqual({ name: 'diff', params: { name: 'sales', a: '1', b: '3' } });
    expect(match('/workflows/sales/diff/2/working')).toEqual({ name: 'diff', params: { name: 'sales', a: '2', b: 'working' } });
    expect(match('/builder')).toEqual({ name: 'builder', params: {} });
    expect(match('/builder/sales')).toEqual({ name: 'builder', params: { name: 'sales' } });
    expect(match('/approvals')).toEqual({ name: 'approvals', params: {} });
    expect(match('/audit')).toEqual({ name: 'audit', params: {} });
    expect(match('/workflows/sales')).toEqual({ name: 'workflow', params: { name: 'sales' } });
  });
});
