import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isXltError, XltConfigError, XltError, XltFormatError, XltShapeError } from './errors.js';
import { findRepoRoot, sharedDir } from './shared.js';

describe('XltError', () => {
  it('puts file, line, field and tensor in the message and keeps them as fields', () => {
    const e = new XltFormatError('expected 3 columns, got 2', { file: 'a.tsv', line: 7, field: 'label' });
    expect(e.message).toBe("expected 3 columns, got 2 (a.tsv:7, field 'label')");
    expect(e.code).toBe('FORMAT');
    expect(e.file).toBe('a.tsv');
    expect(e.line).toBe(7);
    expect(e.name).toBe('XltFormatError');
    expect(e).toBeInstanceOf(XltError);
    expect(isXltError(e, 'FORMAT')).toBe(true);
    expect(isXltError(e, 'CONFIG')).toBe(false);
    expect(isXltError(new Error('x'))).toBe(false);
  });

  it('formats expected and actual shapes', () => {
    const e = new XltShapeError('shape mismatch', { tensor: 'w', expected: [2, 3], got: [3, 2] });
    expect(e.message).toBe("shape mismatch: expected [2, 3], got [3, 2] (tensor 'w')");
    expect(new XltConfigError('bad').code).toBe('CONFIG');
  });
});

describe('shared dir', () => {
  it('defaults to ../shared beside the repository root and honours XLT_SHARED_DIR', () => {
    const saved = process.env.XLT_SHARED_DIR;
    try {
      delete process.env.XLT_SHARED_DIR;
      const root = findRepoRoot()!;
      expect(root).toBeDefined();
      expect(sharedDir()).toBe(path.resolve(root, '..', 'shared'));
      process.env.XLT_SHARED_DIR = '/tmp/elsewhere';
      expect(sharedDir()).toBe('/tmp/elsewhere');
    } finally {
      if (saved === undefined) delete process.env.XLT_SHARED_DIR;
      else process.env.XLT_SHARED_DIR = saved;
    }
  });
});
