import { XltError } from '@xlt/core';

export interface BatcherOptions {
  /** Largest number of items run together. */
  maxBatchSize: number;
  /** How long the first queued item waits for others before the batch runs (ms). */
  maxWaitMs: number;
  /** Called after each batch with its size and run time (seconds). */
  onBatch?: (size: number, seconds: number) => void;
}

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

/**
 * Dynamic batching: requests queue up and run together when `maxBatchSize` items are waiting or the
 * oldest has waited `maxWaitMs`. One batch runs at a time (the model already uses every core).
 */
export class DynamicBatcher<I, O> {
  private readonly queue: Array<Pending<I, O>> = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly run: (items: I[]) => Promise<O[]>;
  private readonly options: BatcherOptions;

  constructor(run: (items: I[]) => Promise<O[]>, options: BatcherOptions) {
    if (!(options.maxBatchSize >= 1))
      throw new XltError('CONFIG', 'maxBatchSize must be at least 1', { field: 'maxBatchSize' });
    this.run = run;
    this.options = options;
  }

  /** Items waiting (not yet in a running batch). */
  get queueLength(): number {
    return this.queue.length;
  }

  /** Queues one item; resolves with its output once its batch has run. */
  submit(item: I): Promise<O> {
    if (this.closed) return Promise.reject(new XltError('STATE', 'the server is shutting down'));
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running !== null) return; // the running batch re-schedules when it ends
    if (this.queue.length >= this.options.maxBatchSize) {
      this.flush();
    } else if (this.queue.length > 0 && this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.options.maxWaitMs);
    }
  }

  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running !== null || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatchSize);
    const t0 = process.hrtime.bigint();
    this.running = (async () => {
      try {
        const outs = await this.run(batch.map((p) => p.item));
        if (outs.length !== batch.length)
          throw new XltError('STATE', `batch returned ${outs.length} outputs for ${batch.length} inputs`);
        for (const [i, p] of batch.entries()) p.resolve(outs[i] as O);
      } catch (e) {
        for (const p of batch) p.reject(e);
      } finally {
        this.options.onBatch?.(batch.length, Number(process.hrtime.bigint() - t0) / 1e9);
        this.running = null;
        // whatever queued meanwhile: run at once if a full batch is there, else after the wait
        if (this.queue.length >= this.options.maxBatchSize || this.closed) this.flush();
        else this.schedule();
      }
    })();
  }

  /** Stops accepting items and resolves when everything queued has run. */
  async drain(): Promise<void> {
    this.closed = true;
    while (this.queue.length > 0 || this.running !== null) {
      if (this.running === null) this.flush();
      await this.running;
    }
  }
}
