import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  normalizeConfig,
  type SafetensorsTensor,
  writeSafetensors,
  writeTorchCheckpoint,
  type XmodConfig,
} from '@xlt/core';
import { weightShapes } from '@xlt/onnx';

/** `xlm-roberta-base`'s sizes (278M parameters with the tied MLM head). */
export const XLMR_BASE: XmodConfig = normalizeConfig({
  architectures: ['XLMRobertaForMaskedLM'],
  model_type: 'xlm-roberta',
  vocab_size: 250002,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
});

interface LoadResult {
  loadS: number;
  fwdS: number;
  shape: number[];
  baseMiB: number;
  peakMiB: number;
}

/** Loads a model folder with `XmodForMaskedLM.fromPretrained` in a fresh process (tfjs cpu) and runs one forward. */
function loadInFreshProcess(dir: string): LoadResult {
  const script = `
      const { initBackend } = await import('@xlt/core');
      await initBackend({ backend: 'cpu', log: false });
      const { XmodForMaskedLM } = await import('@xlt/xmod');
      const base = process.resourceUsage().maxRSS;
      const t0 = performance.now();
      const model = await XmodForMaskedLM.fromPretrained(${JSON.stringify(dir)});
      const loadS = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      const out = model.forward({ inputIds: [[0, 100, 2000, 30000, 2]] });
      const shape = out.logits.shape;
      const fwdS = (performance.now() - t1) / 1000;
      console.log(JSON.stringify({ loadS, fwdS, shape, baseMiB: base / 1024, peakMiB: process.resourceUsage().maxRSS / 1024 }));`;
  return JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: path.dirname(new URL(import.meta.url).pathname),
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    }),
  ) as LoadResult;
}

/**
 * Writes a random XLM-R-base-sized checkpoint (config.json + model.safetensors, Hugging Face names)
 * and the same weights as a PyTorch `pytorch_model.bin` (torch.save's zip layout, decoder tied to the
 * word embeddings as transformers saves it), then loads each with `XmodForMaskedLM.fromPretrained` in
 * a fresh process on the tfjs `cpu` backend and runs one forward pass; reports the parameter count,
 * load times and each process's peak RSS, side by side.
 */
export async function xmodLoad(config: XmodConfig = XLMR_BASE): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-xmod-'));
  try {
    const tensors: Record<string, SafetensorsTensor> = {};
    let params = 0;
    let seed = 1;
    for (const [name, shape] of weightShapes(config, 'masked-lm')) {
      if (name === 'lm_head.decoder.weight') continue; // tied to the word embeddings, as HF saves it
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      const ln = name.includes('LayerNorm') || name.includes('layer_norm');
      if (ln && name.endsWith('weight')) data.fill(1);
      else if (!name.endsWith('bias'))
        for (let i = 0; i < n; i++) {
          seed = (seed * 1103515245 + 12345) >>> 0;
          data[i] = ((seed >>> 8) / 2 ** 24 - 0.5) * 0.04;
        }
      tensors[name] = { dtype: 'F32', shape, data };
      params += n;
    }
    const st = path.join(dir, 'safetensors');
    const pt = path.join(dir, 'torch');
    mkdirSync(st);
    mkdirSync(pt);
    const t0 = performance.now();
    await writeSafetensors(path.join(st, 'model.safetensors'), tensors);
    const writeS = (performance.now() - t0) / 1000;
    const emb = 'roberta.embeddings.word_embeddings.weight';
    const bin = new Map(Object.entries(tensors));
    bin.set('lm_head.decoder.weight', tensors[emb] as SafetensorsTensor);
    const t1 = performance.now();
    writeTorchCheckpoint(path.join(pt, 'pytorch_model.bin'), bin, {
      ties: { 'lm_head.decoder.weight': emb },
    });
    const writeBinS = (performance.now() - t1) / 1000;
    for (const d of [st, pt]) writeFileSync(path.join(d, 'config.json'), JSON.stringify(config, null, 2));
    bin.clear();
    for (const k of Object.keys(tensors)) delete tensors[k];
    const a = loadInFreshProcess(st);
    const b = loadInFreshProcess(pt);
    const gib = ((params * 4) / 2 ** 30).toFixed(2);
    const line = (what: string, r: LoadResult) =>
      `  ${what}: fromPretrained ${r.loadS.toFixed(1)} s on tfjs cpu, one forward [${r.shape.join(', ')}] ${r.fwdS.toFixed(2)} s; loader process peak RSS ${r.peakMiB.toFixed(0)} MiB (${r.baseMiB.toFixed(0)} MiB before loading)`;
    return [
      `xmod load ${(params / 1e6).toFixed(0)}M-parameter XLM-R-base-sized checkpoint (${gib} GiB; written as safetensors in ${writeS.toFixed(1)} s, as pytorch_model.bin in ${writeBinS.toFixed(1)} s):`,
      line('model.safetensors ', a),
      line('pytorch_model.bin ', b),
    ].join('\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
