import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CELL_INPUTS_FILE, checkCellInputs, inputDigests, recordCellInputs } from './cell-inputs.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-cell-inputs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a grid cell's recorded inputs", () => {
  const a = path.join(dir, 'a.txt');
  const b = path.join(dir, 'b.txt');
  writeFileSync(a, 'one');
  writeFileSync(b, 'two');

  it('are the SHA-256 of each file; the same files check as the same, a changed one is named', () => {
    const d = inputDigests({ tokenizer: a, 'heldOut.en': b });
    // sha256("one")
    expect(d.tokenizer).toBe('7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed');
    const cell = path.join(dir, 'cell');
    mkdirSync(cell);
    recordCellInputs(cell, d);
    expect(checkCellInputs(cell, d)).toBe('same');
    // a run with more inputs (more languages) still accepts the cell
    expect(checkCellInputs(cell, { ...d, 'heldOut.ru': d.tokenizer as string })).toBe('same');
    expect(() => checkCellInputs(cell, { ...d, 'heldOut.en': d.tokenizer as string })).toThrow(
      /measured on a different heldOut\.en .*field 'heldOut\.en'/,
    );
    expect(() => checkCellInputs(cell, { tokenizer: d.tokenizer as string })).toThrow(
      /measured on input "heldOut\.en", which this run does not have/,
    );
  });

  it('are unrecorded for a cell from before they were kept, and a file that is not an object is named', () => {
    const old = path.join(dir, 'old');
    mkdirSync(old);
    expect(checkCellInputs(old, {})).toBe('unrecorded');
    writeFileSync(path.join(old, CELL_INPUTS_FILE), '[1, 2]');
    expect(() => checkCellInputs(old, {})).toThrow(/must hold an object.*inputs\.json/);
    writeFileSync(path.join(old, CELL_INPUTS_FILE), '{ half');
    expect(() => checkCellInputs(old, {})).toThrow(/not JSON/);
  });
});
