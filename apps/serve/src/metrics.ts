import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one server (its own registry, so several servers can live in one process). */
export class ServeMetrics {
  readonly registry = new Registry();
  readonly requestDuration: Histogram<'route' | 'status'>;
  readonly requests: Counter<'route' | 'status'>;
  readonly batchSize: Histogram;
  readonly batchDuration: Histogram;
  readonly queueLength: Gauge;
  readonly admitted: Gauge;
  readonly queueCapacity: Gauge;
  readonly shed: Gauge;

  /**
   * `queueLength`: examples waiting for a batch; `admission`: the queue bound's load, capacity and
   * shed count.
   */
  constructor(
    queueLength: () => number,
    admission: { load: number; capacity: number; shed: number } = { load: 0, capacity: 0, shed: 0 },
  ) {
    this.requestDuration = new Histogram({
      name: 'xlt_request_duration_seconds',
      help: 'Request latency by route and status code',
      labelNames: ['route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.requests = new Counter({
      name: 'xlt_requests_total',
      help: 'Requests by route and status code',
      labelNames: ['route', 'status'],
      registers: [this.registry],
    });
    this.batchSize = new Histogram({
      name: 'xlt_batch_size',
      help: 'Examples per model call',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers: [this.registry],
    });
    this.batchDuration = new Histogram({
      name: 'xlt_batch_duration_seconds',
      help: 'Model call time per batch',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    /** A gauge read from `value` at each scrape. */
    const sampled = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(value());
        },
      });
    this.queueLength = sampled('xlt_queue_length', 'Examples waiting for a batch', queueLength);
    this.admitted = sampled(
      'xlt_admitted_examples',
      'Examples admitted and not yet answered (bounded by xlt_queue_capacity)',
      () => admission.load,
    );
    this.queueCapacity = sampled(
      'xlt_queue_capacity',
      'Most examples admitted at once; beyond it requests get 503 OVERLOADED',
      () => admission.capacity,
    );
    this.shed = sampled(
      'xlt_shed_requests',
      'Requests answered 503 OVERLOADED because the queue was full',
      () => admission.shed,
    );
  }
}
