import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  initBackend,
  readSafetensors,
  type SafetensorsTensor,
  TorchCheckpointReader,
  tensorBytes,
  writeTorchCheckpoint,
} from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { XmodForMaskedLM, XmodForSequenceClassification } from './index.js';
import { tinyConfig } from './test-config.js';

const tmp = mkdtempSync(join(tmpdir(), 'xmod-torch-'));

function bytesOf(p: { dataSync(): ArrayLike<number> }): Buffer {
  const d = Float32Array.from(p.dataSync());
  return Buffer.from(d.buffer);
}

describe('fromPretrained on a folder with only pytorch_model.bin', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('gives byte-identical parameters to the safetensors it was converted from (tied decoder, position_ids)', async () => {
    const model = new XmodForMaskedLM(tinyConfig());
    const st = join(tmp, 'st');
    await model.savePretrained(st);
    // convert as a transformers .bin holds it: the decoder shares the embeddings' (and lm_head.bias') storage,
    // plus the position_ids buffer
    const tensors = new Map<string, SafetensorsTensor>(
      (await readSafetensors(join(st, 'model.safetensors'))).tensors,
    );
    const emb = tensors.get('roberta.embeddings.word_embeddings.weight') as SafetensorsTensor;
    const bias = tensors.get('lm_head.bias') as SafetensorsTensor;
    tensors.set('lm_head.decoder.weight', emb);
    tensors.set('lm_head.decoder.bias', bias);
    tensors.set('roberta.embeddings.position_ids', {
      dtype: 'I64',
      shape: [1, 20],
      data: BigInt64Array.from({ length: 20 }, (_, i) => BigInt(i)),
    });
    const bin = join(tmp, 'bin');
    mkdirSync(bin);
    copyFileSync(join(st, 'config.json'), join(bin, 'config.json'));
    writeTorchCheckpoint(join(bin, 'pytorch_model.bin'), tensors, {
      ties: {
        'lm_head.decoder.weight': 'roberta.embeddings.word_embeddings.weight',
        'lm_head.decoder.bias': 'lm_head.bias',
      },
    });

    // the file is what the reader expects: one storage for the tied pair, same bytes as the safetensors
    const r = TorchCheckpointReader.open(join(bin, 'pytorch_model.bin'));
    try {
      expect(r.prefix).toBe('pytorch_model');
      expect(r.info('lm_head.decoder.weight').storage).toBe(
        r.info('roberta.embeddings.word_embeddings.weight').storage,
      );
      expect(Buffer.from(tensorBytes(r.get('lm_head.decoder.weight')))).toEqual(
        Buffer.from(tensorBytes(emb)),
      );
    } finally {
      r.close();
    }

    const loaded = await XmodForMaskedLM.fromPretrained(bin);
    const want = new Map(model.namedParameters());
    const got = loaded.namedParameters();
    expect(got.map(([n]) => n)).toEqual([...want.keys()]);
    for (const [n, p] of got) expect(bytesOf(p).equals(bytesOf(want.get(n) as never)), n).toBe(true);
    expect(loaded.config.languages).toEqual(model.config.languages);

    // a classifier from the same .bin: body loaded, head fresh, the MLM head ignored
    const cls = await XmodForSequenceClassification.fromPretrained(bin, { config: { num_labels: 3 } });
    expect(cls.newlyInitialized.every((n) => n.startsWith('classifier.'))).toBe(true);
    const w = 'roberta.encoder.layer.1.output.adapter_modules.de_DE.dense1.weight';
    const clsParams = new Map(cls.namedParameters());
    expect(bytesOf(clsParams.get(w) as never).equals(bytesOf(want.get(w) as never))).toBe(true);
    model.dispose();
    loaded.dispose();
    cls.dispose();
  });
});
