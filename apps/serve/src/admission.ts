import { HttpError } from './errors.js';

/**
 * The queue bound: counts the examples admitted and not yet answered, over all requests, and sheds
 * a request that would take the count over `capacity` with 503 `OVERLOADED` + `Retry-After`, so a
 * load balancer can send it elsewhere instead of it waiting behind an ever longer queue.
 */
export class Admission {
  readonly capacity: number;
  /** Seconds a shed client is told to wait. */
  readonly retryAfterS: number;
  private admitted = 0;
  private shedCount = 0;

  constructor(capacity: number, retryAfterS = 1) {
    this.capacity = capacity;
    this.retryAfterS = retryAfterS;
  }

  /** Examples admitted and not yet answered. */
  get load(): number {
    return this.admitted;
  }

  /** Requests shed so far. */
  get shed(): number {
    return this.shedCount;
  }

  /** Whether nothing more fits (checked before a body is read). */
  get full(): boolean {
    return this.admitted >= this.capacity;
  }

  /** The 503 a shed request gets (and counts it). */
  overloaded(): HttpError {
    this.shedCount++;
    return new HttpError(
      503,
      'OVERLOADED',
      `the server is at its queue limit of ${this.capacity} examples; retry after ${this.retryAfterS} s`,
      { retryAfterS: this.retryAfterS },
    );
  }

  /** Counts one example as admitted until `running` settles (an example whose request gave up on it). */
  holdUntil(running: Promise<unknown>): void {
    this.admitted++;
    const release = () => {
      this.admitted--;
    };
    running.then(release, release);
  }

  /** Runs `work` with `n` examples admitted, or throws {@link overloaded} when they do not fit. */
  async run<T>(n: number, work: () => Promise<T>): Promise<T> {
    if (this.admitted + n > this.capacity) throw this.overloaded();
    this.admitted += n;
    try {
      return await work();
    } finally {
      this.admitted -= n;
    }
  }
}
