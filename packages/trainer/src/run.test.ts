import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { initBackend } from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints } from './checkpoint.js';
import { modelLoss, type TokenBatch } from './objectives.js';
import { formatProgress, ProgressPrinter } from './progress.js';
import { fit } from './run.js';
import { TinyModel, tinyBatch } from './test-model.js';

const tmp = mkdtempSync(join(tmpdir(), 'xlt-trainer-run-'));
beforeAll(async () => {
  await initBackend();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function sink(isTTY: boolean) {
  const out: string[] = [];
  return { out, s: { isTTY, columns: 200, write: (t: string) => out.push(t) } };
}

describe('fit', () => {
  it('evaluates every N steps, keeps the best checkpoint and stops early after `patience` evaluations without improvement', async () => {
    const runDir = join(tmp, 'early');
    const m = new TinyModel(21);
    // metric |step - 2|: best at step 2, worse at 3 and 4 -> with patience 2 it stops at step 4
    const evals: number[] = [];
    const s = await fit<TokenBatch>(m, modelLoss(m), {
      lr: 1e-3,
      totalSteps: 10,
      data: ({ rng }) => tinyBatch(rng),
      runDir,
      evalEvery: 1,
      evaluate: (step) => {
        evals.push(step);
        return { dev_loss: Math.abs(step - 2) };
      },
      earlyStoppingPatience: 2,
      checkpointEvery: 1,
      keepCheckpoints: 2,
    });
    expect(evals).toEqual([1, 2, 3, 4]);
    expect(s.stoppedEarly).toBe(true);
    expect(s.steps).toBe(4);
    expect(s.best).toEqual({ step: 2, metrics: { dev_loss: 0 } });
    const best = JSON.parse(readFileSync(join(runDir, 'best', 'manifest.json'), 'utf8'));
    expect(best.step).toBe(2);
    const evalLines = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.type === 'eval');
    expect(evalLines.map((l) => l.dev_loss)).toEqual([1, 0, 1, 2]);
    expect(existsSync(join(runDir, 'summary.json'))).toBe(true);
    // checkpoints every step, only the newest two kept
    expect(listCheckpoints(join(runDir, 'checkpoints')).map((p) => basename(p))).toEqual([
      'step-00000003',
      'step-00000004',
    ]);
    m.dispose();
  });

  it('gives timers a turn between steps (a signal handler or progress timer is never starved)', async () => {
    const m = new TinyModel(23);
    const steps: number[] = [];
    let firedAfterStep = -1;
    await fit<TokenBatch>(m, modelLoss(m), {
      lr: 1e-3,
      totalSteps: 5,
      data: ({ rng }) => tinyBatch(rng),
      callbacks: {
        onStep: (r) => {
          steps.push(r.step);
          // a timer set during step 1 runs before step 2, not after all five steps
          if (r.step === 1)
            setTimeout(() => {
              firedAfterStep = steps.length;
            }, 0);
        },
      },
    });
    expect(firedAfterStep).toBe(1);
    m.dispose();
  });

  it('calls onStep with lr from the schedule and counts tokens; prints plain lines off a TTY', async () => {
    const m = new TinyModel(22);
    const seen: Array<{ step: number; lr: number; tokens: number }> = [];
    const { out, s } = sink(false);
    await fit<TokenBatch>(m, modelLoss(m), {
      lr: 1e-3,
      totalSteps: 4,
      schedule: { kind: 'linear', warmupSteps: 2 },
      data: ({ rng }) => tinyBatch(rng, 3, 5),
      tokens: (b) => b.inputIds.length * (b.inputIds[0]?.length ?? 0),
      progress: s,
      callbacks: { onStep: (r) => seen.push({ step: r.step, lr: r.lr, tokens: r.tokens }) },
    });
    // warm-up 2 of 4: multipliers 0, 0.5, then (4-2)/2 = 1, (4-3)/2 = 0.5
    expect(seen.map((r) => r.lr)).toEqual([0, 0.5e-3, 1e-3, 0.5e-3]);
    expect(seen.every((r) => r.tokens === 15)).toBe(true);
    expect(out.every((l) => l.endsWith('\n') && !l.includes('\r'))).toBe(true);
    expect(out.some((l) => l.startsWith('step 4/4'))).toBe(true);
    m.dispose();
  });

  it('rewrites one line in place on a TTY', () => {
    const { out, s } = sink(true);
    const p = new ProgressPrinter(s);
    const info = {
      step: 1,
      totalSteps: 2,
      loss: 1.5,
      lr: 1e-4,
      gradNorm: 0.5,
      tokensPerSecond: 100,
      etaSeconds: 65,
    };
    p.update(info);
    p.update({ ...info, step: 2, etaSeconds: 0 });
    expect(out[0]?.startsWith('\r')).toBe(true);
    expect(out[0]).toContain('step 1/2 loss 1.5000 lr 1.00e-4 gnorm 0.500 100 tok/s eta 1m05s');
    expect(out[out.length - 1]).toBe('\n');
    expect(formatProgress({ ...info, tokensPerSecond: Number.NaN })).not.toContain('tok/s');
    expect(formatProgress({ ...info, paddingShare: 0.254 })).toContain('100 tok/s pad 25% eta');
    expect(formatProgress(info)).not.toContain('pad');
  });
});
