/** A time the event loop could not turn, and the handlers running then. */
export interface LoopBlock {
  ms: number;
  endedAt: number;
  running: string[];
}

const TICK_MS = 100;

/**
 * Notices when the event loop was blocked (a timer that fires far later than due), and
 * remembers which handlers were running then: a handler that blocks the loop starves the
 * heartbeats, and the lease it then loses must be explained by its cause.
 */
export class LoopWatch {
  /** What runs now, by run key: shown when a block is reported. */
  readonly running = new Map<string, string>();
  lastBlock: LoopBlock | null = null;
  private timer: NodeJS.Timeout | null = null;
  private last = 0;

  constructor(
    private readonly reportMs: number,
    private readonly onBlocked: (ms: number) => void,
  ) {}

  start(): void {
    this.last = performance.now();
    this.timer = setInterval(() => this.check(), TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /**
   * Looks now whether the loop was held up since the last tick (a caller that learns of a
   * consequence, such as a lost lease, may run before the tick that would have noticed).
   */
  check(): void {
    if (this.timer === null) return;
    const now = performance.now();
    const late = now - this.last - TICK_MS;
    this.last = now;
    if (late < this.reportMs) return;
    const ms = Math.round(late);
    this.lastBlock = { ms, endedAt: Date.now(), running: [...this.running.values()] };
    this.onBlocked(ms);
  }
}
