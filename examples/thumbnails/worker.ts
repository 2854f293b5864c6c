/**
 * The worker: runs the pipeline's jobs, four at a time. Start as many as you like, here or on
 * other machines (with a PostgreSQL store): `node examples/thumbnails/dist/worker.js`.
 */
import { Worker } from "baton";
import { connection, isMain } from "./config.js";
import type { handlers } from "./handlers.js";

export function createWorker(): Worker<typeof handlers> {
  const worker = new Worker<typeof handlers>({
    ...connection,
    // Scaling pictures keeps the CPU busy: in threads, handlers run in parallel and cannot
    // hold up the heartbeats that keep the worker's leases. Threads load the handlers from
    // their module (the compiled handlers.js beside this file), not from a function.
    handlers: new URL("./handlers.js", import.meta.url),
    isolation: "thread",
    concurrency: 4,
  });
  worker.on("succeeded", ({ job, attempt, durationMs }) => {
    console.log(
      `  [worker] job ${job.id} ${job.handler} succeeded in ${durationMs} ms (attempt ${attempt})`,
    );
  });
  worker.on("failed", ({ job, attempt, failure, retrying }) => {
    const next = retrying ? "will retry" : "no retry";
    console.log(
      `  [worker] job ${job.id} ${job.handler} failed on attempt ${attempt} (${next}): ${failure.message}`,
    );
  });
  worker.on("released", ({ job }) => {
    console.log(
      `  [worker] job ${job.id} ${job.handler} given back to pending, for the next worker`,
    );
  });
  worker.on("leaseLost", ({ message }) => console.warn(`  [worker] ${message}`));
  return worker;
}

/**
 * SIGINT (Ctrl-C) or SIGTERM stops the worker gracefully: it claims nothing more and lets
 * running jobs finish (up to 30 s; the rest go back to pending without spending an attempt);
 * a second signal stops them at once. Returns a function that removes the handlers.
 */
export function stopOnSignals(worker: Worker<typeof handlers>, then: () => void): () => void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      console.log(`${signal} again: stopping the running jobs now`);
      worker.stop({ grace: 0 }).catch((error: unknown) => console.error(error));
      return;
    }
    stopping = true;
    console.log(`${signal}: letting running jobs finish (${signal} again to stop them now)`);
    worker.stop().then(then, (error: unknown) => {
      console.error("the worker did not stop cleanly:", error);
      process.exitCode = 1;
      then();
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}

if (isMain(import.meta.url)) {
  const worker = createWorker();
  await worker.start();
  console.log(`worker ${worker.name} serving ${connection.store}; Ctrl-C to stop`);
  const removeHandlers = stopOnSignals(worker, () => {
    removeHandlers();
    console.log("worker stopped");
  });
}
