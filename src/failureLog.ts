import type { Logger } from "./logger.js";

/**
 * Logs a repeating failure once when it starts, then at growing intervals with a count,
 * and once when it clears: an outage reads as three lines, not a flood.
 */
export class FailureLog {
  private count = 0;
  private nextReport = 1;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  failed(error: unknown): void {
    this.count++;
    if (this.count < this.nextReport) return;
    this.nextReport *= 10;
    this.log.error({ err: error, failures: this.count }, `${this.what} failed`);
  }

  succeeded(): void {
    if (this.count === 0) return;
    this.log.info({ failures: this.count }, `${this.what} works again`);
    this.count = 0;
    this.nextReport = 1;
  }
}
