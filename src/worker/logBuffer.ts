import type { OutputLine } from "../core/logEvent.js";

export interface LogBufferOptions<T extends OutputLine> {
  flushIntervalMs: number;
  flushMaxEvents: number;
  maxBufferedEvents: number;
  /** Writes one batch; rejects to have it retried; `LeaseLost` stops the buffer for good. */
  write: (lines: T[]) => Promise<void>;
  /** Called with true when the buffer is full (stop reading the job), false when it has room. */
  onPressure: (full: boolean) => void;
  /** Called once when the store refuses the output because the lease is gone. */
  onLeaseLost: () => void;
  /** Called for each failed write before it is retried. */
  onWriteError: (error: unknown, attempt: number) => void;
}

export class LeaseLost extends Error {
  constructor(message = "the attempt no longer holds the job's lease") {
    super(message);
    this.name = "LeaseLost";
  }
}

const MAX_BATCH = 20_000;
/** Memory bounds that hold whatever the line lengths: per buffer, and per written batch. */
const MAX_BUFFERED_CHARS = 16 * 1024 * 1024;
const MAX_BATCH_CHARS = 4 * 1024 * 1024;
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 5_000;

/**
 * Buffers a job's output and writes it to the store in batches: every flushIntervalMs, or as
 * soon as flushMaxEvents lines wait. When more lines wait than one batch holds, batches grow
 * (up to MAX_BATCH) so that throughput is bounded by the store, not the batch size. At
 * maxBufferedEvents it asks for backpressure instead of dropping anything.
 */
export class LogBuffer<T extends OutputLine = OutputLine> {
  private lines: T[] = [];
  private chars = 0;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private full = false;
  private stopped: LeaseLost | null = null;
  private abandoned = false;
  /** How many times the buffer filled up and asked for backpressure. */
  pauses = 0;

  constructor(private readonly options: LogBufferOptions<T>) {}

  get size(): number {
    return this.lines.length;
  }

  push(line: T): void {
    if (this.stopped || this.abandoned) return;
    this.lines.push(line);
    this.chars += line.line.length;
    if (this.lines.length >= this.options.flushMaxEvents || this.chars >= MAX_BATCH_CHARS) {
      this.startFlush();
    } else if (!this.timer && !this.flushing) {
      this.timer = setTimeout(() => this.startFlush(), this.options.flushIntervalMs);
    }
    if (!this.full && this.isFull()) {
      this.full = true;
      this.pauses++;
      this.options.onPressure(true);
    }
  }

  /** Writes everything buffered; rejects with LeaseLost if the store refused it. */
  async drain(): Promise<void> {
    while (this.lines.length > 0 || this.flushing !== null) {
      if (this.stopped) throw this.stopped;
      this.startFlush();
      await this.flushing;
    }
    if (this.stopped) throw this.stopped;
  }

  /**
   * Gives up on the store (unreachable for too long): drops what is buffered and whatever
   * comes, so that the job can be stopped and drained; `drain` then resolves.
   */
  abandon(): void {
    if (this.abandoned || this.stopped) return;
    this.abandoned = true;
    this.release();
  }

  /** Stops for good (the lease is gone): nothing more will be written. */
  stop(reason: LeaseLost): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.release();
    this.options.onLeaseLost();
  }

  /** Drops everything and lets the job's pipes flow (into nothing) so that it can end. */
  private release(): void {
    if (this.full) {
      this.full = false;
      this.options.onPressure(false);
    }
    this.clearTimer();
    this.lines = [];
    this.chars = 0;
  }

  private isFull(): boolean {
    return this.lines.length >= this.options.maxBufferedEvents || this.chars >= MAX_BUFFERED_CHARS;
  }

  private startFlush(): void {
    this.clearTimer();
    if (!this.flushing) this.flushing = this.flushLoop();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.lines.length > 0 && !this.stopped && !this.abandoned) {
        const batch = this.nextBatch();
        await this.writeWithRetry(batch);
        if (this.stopped || this.abandoned) break;
        this.lines.splice(0, batch.length);
        for (const written of batch) this.chars -= written.line.length;
        if (
          this.full &&
          this.lines.length < this.options.maxBufferedEvents / 2 &&
          this.chars < MAX_BUFFERED_CHARS / 2
        ) {
          this.full = false;
          this.options.onPressure(false);
        }
        // Below one batch, wait for the interval again rather than writing line by line.
        if (this.lines.length < this.options.flushMaxEvents && this.chars < MAX_BATCH_CHARS) break;
      }
    } finally {
      this.flushing = null;
      if (this.lines.length > 0 && !this.stopped && !this.timer) {
        this.timer = setTimeout(() => this.startFlush(), this.options.flushIntervalMs);
      }
    }
  }

  /** The oldest lines, as many as one batch holds by count and by size (at least one). */
  private nextBatch(): T[] {
    const maxLines = Math.max(this.options.flushMaxEvents, MAX_BATCH);
    let count = 0;
    let chars = 0;
    for (const line of this.lines) {
      if (count >= maxLines || (count > 0 && chars + line.line.length > MAX_BATCH_CHARS)) break;
      count++;
      chars += line.line.length;
    }
    return this.lines.slice(0, count);
  }

  private async writeWithRetry(batch: T[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.options.write(batch);
        return;
      } catch (error) {
        if (error instanceof LeaseLost) {
          this.stop(error);
          return;
        }
        this.options.onWriteError(error, attempt);
        const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempt - 1));
        await new Promise((resolve) => setTimeout(resolve, delay));
        if (this.stopped || this.abandoned) return;
      }
    }
  }
}
