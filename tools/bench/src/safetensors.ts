import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type SafetensorsTensor, writeSafetensors } from '@xlt/core';

/**
 * Writes a safetensors file of `mib` MiB (64 tensors), then reads it back in a fresh process and
 * reports the read time and that process's peak resident memory, to show reading needs about the
 * file's size (not twice it).
 */
export async function safetensorsLoad(mib = 1024): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-st-'));
  try {
    const file = path.join(dir, 'big.safetensors');
    const per = (mib * 2 ** 20) / 64 / 4;
    const tensors: Record<string, SafetensorsTensor> = {};
    for (let i = 0; i < 64; i++) {
      const data = new Float32Array(per);
      for (let j = 0; j < per; j += 4096) data[j] = i + j;
      tensors[`layer.${i}.weight`] = { dtype: 'F32', shape: [per], data };
    }
    const t0 = performance.now();
    await writeSafetensors(file, tensors);
    const writeS = (performance.now() - t0) / 1000;
    for (const k of Object.keys(tensors)) delete tensors[k];
    const script = `
      const { readSafetensors } = await import('@xlt/core');
      const base = process.resourceUsage().maxRSS;
      const t0 = performance.now();
      const f = await readSafetensors(${JSON.stringify(file)});
      let n = 0; for (const t of f.tensors.values()) n += t.data.length;
      console.log(JSON.stringify({ s: (performance.now() - t0) / 1000, n, baseMiB: base / 1024, peakMiB: process.resourceUsage().maxRSS / 1024 }));`;
    const out = JSON.parse(
      execFileSync(process.execPath, ['--input-type=module', '-e', script], {
        cwd: path.dirname(new URL(import.meta.url).pathname),
        encoding: 'utf8',
      }),
    );
    return `safetensors ${mib} MiB: write ${writeS.toFixed(2)} s, read ${out.s.toFixed(2)} s; reader process peak RSS ${out.peakMiB.toFixed(0)} MiB (${out.baseMiB.toFixed(0)} MiB before reading)`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
