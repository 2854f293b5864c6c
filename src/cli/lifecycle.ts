import type { Logger } from "../logger.js";

/**
 * Runs until SIGTERM or SIGINT (or until `done` resolves), then shuts down gracefully; a
 * second signal asks for an immediate stop. Resolves when the graceful shutdown is
 * complete; removes its handlers.
 */
export function untilShutdown(
  logger: Logger,
  graceful: () => Promise<void>,
  immediate: () => void,
  done?: Promise<unknown>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals | "done") => {
      signals++;
      if (signals === 1) {
        if (signal !== "done") {
          logger.info(
            { signal },
            `${signal} received: shutting down gracefully (again to stop at once)`,
          );
        }
        graceful().then(
          () => {
            process.off("SIGTERM", onSignal);
            process.off("SIGINT", onSignal);
            resolve();
          },
          (error: unknown) => reject(error instanceof Error ? error : new Error(String(error))),
        );
      } else {
        logger.warn({ signal }, `${signal} received again: stopping running jobs now`);
        immediate();
      }
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    void done?.then(() => onSignal("done"));
  });
}
