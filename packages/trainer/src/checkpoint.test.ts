import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, isXltError, Rng } from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints, loadCheckpoint, saveCheckpoint, verifyCheckpoint } from './checkpoint.js';
import { modelLoss, type TokenBatch } from './objectives.js';
import { fit } from './run.js';
import { snapshot, TinyModel, tinyBatch } from './test-model.js';
import { Trainer } from './trainer.js';

const tmp = mkdtempSync(join(tmpdir(), 'xlt-trainer-ck-'));
beforeAll(async () => {
  await initBackend();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const opts = {
  lr: 5e-3,
  totalSteps: 8,
  weightDecay: 0.01,
  schedule: { kind: 'linear' as const, warmupSteps: 2 },
  seed: 3,
  data: ({ rng }: { rng: Rng }) => tinyBatch(rng),
};

describe('checkpoints', () => {
  it('resume continues to exactly the losses of an uninterrupted run', async () => {
    const m0 = new TinyModel(11);
    const full = await fit<TokenBatch>(m0, modelLoss(m0), opts);
    const finalFull = snapshot(m0);
    m0.dispose();

    const runDir = join(tmp, 'resume');
    const m1 = new TinyModel(11);
    // interrupted after 5 of 8 steps (a run whose total is 8 but that is stopped: emulate with a callback throw)
    let err: unknown;
    try {
      await fit<TokenBatch>(m1, modelLoss(m1), {
        ...opts,
        runDir,
        checkpointEvery: 5,
        callbacks: {
          onCheckpoint: () => {
            throw new Error('interrupted');
          },
        },
      });
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toBe('interrupted');
    m1.dispose();
    expect(listCheckpoints(join(runDir, 'checkpoints')).map((p) => p.slice(-13))).toEqual(['step-00000005']);

    const m2 = new TinyModel(99); // different initial weights: all state must come from the checkpoint
    const resumed = await fit<TokenBatch>(m2, modelLoss(m2), {
      ...opts,
      runDir,
      resume: true,
      checkpointEvery: 5,
    });
    expect(resumed.resumedFrom).toBe(5);
    expect(resumed.losses).toEqual(full.losses.slice(5));
    expect(resumed.gradNorms).toEqual(full.gradNorms.slice(5));
    const finalResumed = snapshot(m2);
    for (const [n, v] of finalFull) expect(Array.from(finalResumed.get(n) ?? []), n).toEqual(Array.from(v));
    const lines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const summary = JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8'));
    expect(summary.steps).toBe(8);
    const config = JSON.parse(readFileSync(join(runDir, 'config.json'), 'utf8'));
    expect(config.lr).toBe(5e-3);
    m2.dispose();
  });

  it('resume passes over a damaged newest checkpoint, says so, and continues from the newest intact one', async () => {
    const m0 = new TinyModel(11);
    const full = await fit<TokenBatch>(m0, modelLoss(m0), opts);
    m0.dispose();
    const runDir = join(tmp, 'resume-damaged');
    const m1 = new TinyModel(11);
    await expect(
      fit<TokenBatch>(m1, modelLoss(m1), {
        ...opts,
        runDir,
        checkpointEvery: 3,
        keepCheckpoints: 3,
        callbacks: {
          onCheckpoint: (_d, step) => {
            if (step === 6) throw new Error('interrupted');
          },
        },
      }),
    ).rejects.toThrow('interrupted');
    m1.dispose();
    const cks = listCheckpoints(join(runDir, 'checkpoints'));
    expect(cks.map((p) => p.slice(-13))).toEqual(['step-00000003', 'step-00000006']);
    // the newest is damaged: one byte of its weights flipped
    const weights = join(cks[1] as string, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] as number) ^ 0xff;
    writeFileSync(weights, bytes);
    const lines: string[] = [];
    const skippedSeen: string[] = [];
    const m2 = new TinyModel(99);
    const resumed = await fit<TokenBatch>(m2, modelLoss(m2), {
      ...opts,
      runDir,
      resume: true,
      progress: { write: (t: string) => lines.push(t) },
      callbacks: { onCheckpointSkipped: (d) => skippedSeen.push(d) },
    });
    expect(resumed.resumedFrom).toBe(3);
    expect(resumed.losses).toEqual(full.losses.slice(3));
    expect(resumed.skippedCheckpoints?.map((s) => s.dir)).toEqual([cks[1]]);
    expect(resumed.skippedCheckpoints?.[0]?.reason).toMatch(/corrupted/);
    expect(skippedSeen).toEqual([cks[1]]);
    expect(lines.join('')).toMatch(/checkpoint .*step-00000006 is damaged, passed over: .*corrupted/);
    m2.dispose();
  });

  it('resume refuses to start from scratch when every checkpoint is damaged', async () => {
    const runDir = join(tmp, 'resume-all-damaged');
    const m1 = new TinyModel(11);
    await fit<TokenBatch>(m1, modelLoss(m1), { ...opts, totalSteps: 2, runDir, checkpointEvery: 2 });
    m1.dispose();
    const [ck] = listCheckpoints(join(runDir, 'checkpoints'));
    rmSync(join(ck as string, 'manifest.json'));
    const m2 = new TinyModel(99);
    await expect(fit<TokenBatch>(m2, modelLoss(m2), { ...opts, runDir, resume: true })).rejects.toThrow(
      /no intact checkpoint to resume from: .*step-00000002: checkpoint has no manifest/,
    );
    m2.dispose();
  });

  it('detects a corrupted checkpoint by sha256 and loads nothing from it', async () => {
    const m = new TinyModel(12);
    const t = new Trainer<TokenBatch>(m, modelLoss(m), { lr: 1e-2, totalSteps: 4 });
    t.trainStep(tinyBatch(new Rng(1)));
    const dir = join(tmp, 'corrupt');
    await saveCheckpoint(dir, t);
    expect(verifyCheckpoint(dir).step).toBe(1);
    const weights = join(dir, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] as number) ^ 0xff;
    writeFileSync(weights, bytes);
    t.trainStep(tinyBatch(new Rng(2)));
    const before = snapshot(m);
    let err: unknown;
    try {
      await loadCheckpoint(dir, t);
    } catch (e) {
      err = e;
    }
    expect(isXltError(err, 'FORMAT')).toBe(true);
    expect((err as { file?: string }).file).toBe(weights);
    expect((err as Error).message).toMatch(/corrupted/);
    expect(snapshot(m)).toEqual(before);
    expect(t.step).toBe(2);
    t.dispose();
    m.dispose();
  });

  it('a checkpoint without a manifest (interrupted write) is reported, not loaded', async () => {
    const m = new TinyModel(13);
    const t = new Trainer<TokenBatch>(m, modelLoss(m), { lr: 1e-2, totalSteps: 4 });
    const dir = join(tmp, 'nomanifest');
    await saveCheckpoint(dir, t);
    rmSync(join(dir, 'manifest.json'));
    await expect(loadCheckpoint(dir, t)).rejects.toThrow(/no manifest/);
    t.dispose();
    m.dispose();
  });
});
