import { FailureLog } from "../failureLog.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/store.js";

export interface MaintenanceOptions {
  store: Store;
  logger: Logger;
  reapIntervalMs: number;
  logRetentionMs: number;
  scheduleIntervalMs: number;
}

/** Jobs whose output one retention transaction removes: short, so writers barely wait. */
const PRUNE_BATCH = 20;
const PRUNE_INTERVAL_MS = 10 * 60_000;

/**
 * The server's background work, safe to run on every server at once (no leader): the lease
 * reaper, cron schedules, and log retention. Returns the function that stops it.
 */
export function startMaintenance(options: MaintenanceOptions): () => void {
  const { store, logger } = options;
  let stopped = false;
  const reapFailures = new FailureLog(logger, "reaping expired leases");
  const reaper = setInterval(() => {
    store.reapExpired().then(
      (reaped) => {
        reapFailures.succeeded();
        if (reaped > 0) logger.warn({ reaped }, "expired leases reaped");
      },
      (error: unknown) => reapFailures.failed(error),
    );
  }, options.reapIntervalMs);

  const fireFailures = new FailureLog(logger, "firing cron schedules");
  let firing = false;
  const fire = async () => {
    if (firing) return;
    firing = true;
    try {
      for (const done of await store.fireSchedules()) {
        const fields = { schedule: done.schedule, at: new Date(done.at), job: done.jobId };
        if (done.error) logger.error({ ...fields, error: done.error }, "schedule cannot fire");
        else if (!done.missed) logger.debug(fields, "schedule fired");
        else if (done.jobId) logger.info(fields, "schedule missed firings; ran them once");
        else logger.info(fields, "schedule missed firings; skipped them");
      }
      fireFailures.succeeded();
    } catch (error) {
      fireFailures.failed(error);
    } finally {
      firing = false;
    }
  };
  const scheduler = setInterval(() => void fire(), options.scheduleIntervalMs);

  let pruning = false;
  const prune = async () => {
    if (pruning) return;
    pruning = true;
    let total = 0;
    try {
      const before = Date.now() - options.logRetentionMs;
      for (;;) {
        const pruned = await store.pruneLogs(before, PRUNE_BATCH);
        total += pruned;
        if (pruned < PRUNE_BATCH || stopped) break;
        // Let requests in between batches.
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (total > 0) logger.info({ jobs: total }, "removed the output of old finished jobs");
    } catch (error) {
      logger.warn({ err: error }, "removing old job output failed");
    } finally {
      pruning = false;
    }
  };
  const retention = setInterval(() => void prune(), PRUNE_INTERVAL_MS);
  const first = setTimeout(() => void prune(), 1_000);
  return () => {
    stopped = true;
    clearInterval(reaper);
    clearInterval(scheduler);
    clearInterval(retention);
    clearTimeout(first);
  };
}
