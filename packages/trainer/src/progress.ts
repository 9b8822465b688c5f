import type { StepResult } from './trainer.js';

/** A writable text stream (process.stdout/stderr or anything with write). */
export interface TextSink {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** One step as shown by the progress display. */
export interface ProgressInfo extends StepResult {
  totalSteps: number;
  /** Tokens per second since the run (or resume) started; NaN when tokens are not counted. */
  tokensPerSecond: number;
  /** Estimated seconds left. */
  etaSeconds: number;
  /** Stage name, when running stages. */
  stage?: string;
  /** Share of padding among the token slots so far (0..1), when slots are counted. */
  paddingShare?: number;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

/** The one-line text for a step: `step 12/100 loss 3.2101 lr 1.00e-4 gnorm 0.812 1234 tok/s pad 3% eta 1m05s`. */
export function formatProgress(p: ProgressInfo): string {
  const parts = [
    `${p.stage !== undefined ? `[${p.stage}] ` : ''}step ${p.step}/${p.totalSteps}`,
    `loss ${p.loss.toFixed(4)}`,
    `lr ${p.lr.toExponential(2)}`,
    `gnorm ${p.gradNorm.toFixed(3)}`,
  ];
  if (Number.isFinite(p.tokensPerSecond)) parts.push(`${Math.round(p.tokensPerSecond)} tok/s`);
  if (p.paddingShare !== undefined) parts.push(`pad ${(100 * p.paddingShare).toFixed(0)}%`);
  parts.push(`eta ${fmtTime(p.etaSeconds)}`);
  return parts.join(' ');
}

/**
 * Shows progress: on a TTY one line rewritten in place (`\r`), otherwise one plain line every
 * `every` steps (and at the last step).
 */
export class ProgressPrinter {
  private readonly sink: TextSink;
  private readonly tty: boolean;
  private readonly every: number;
  private open = false;

  constructor(sink: TextSink, options: { tty?: boolean; every?: number } = {}) {
    this.sink = sink;
    this.tty = options.tty ?? sink.isTTY === true;
    this.every = options.every ?? (this.tty ? 1 : 10);
  }

  update(p: ProgressInfo): void {
    const line = formatProgress(p);
    if (this.tty) {
      const width = this.sink.columns ?? 120;
      this.sink.write(`\r${line.slice(0, width - 1)}\x1b[K`);
      this.open = true;
      if (p.step >= p.totalSteps) this.end();
    } else if (p.step % this.every === 0 || p.step >= p.totalSteps || p.step === 1) {
      this.sink.write(`${line}\n`);
    }
  }

  /** Prints a message on its own line (ending the TTY line first). */
  log(message: string): void {
    this.end();
    this.sink.write(`${message}\n`);
  }

  /** Ends the in-place TTY line. */
  end(): void {
    if (this.open) {
      this.sink.write('\n');
      this.open = false;
    }
  }
}

/** A plain-line sink (no TTY) handing each non-empty line to `log`, e.g. a command's logger. */
export function lineSink(log: (line: string) => void): TextSink {
  return {
    isTTY: false,
    write(text: string) {
      for (const l of text.split('\n')) if (l.trim() !== '') log(l.replace(/\r/g, ''));
    },
  };
}
