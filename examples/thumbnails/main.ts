/**
 * The whole example in one process: a worker, and the pipeline that gives it work.
 *
 *   npm run example                          # the sample pictures
 *   node examples/thumbnails/dist/main.js a.png b.png
 */
import { connection, dirs, isMain } from "./config.js";
import { picturesToProcess, runPipeline, shown } from "./enqueue.js";
import { createWorker, stopOnSignals } from "./worker.js";

if (isMain(import.meta.url)) {
  const startedAt = performance.now();
  const schema = connection.schema ? ` (schema ${connection.schema})` : "";
  console.log(`Baton thumbnails example\nstore: ${connection.store}${schema}`);
  const pictures = await picturesToProcess(process.argv.slice(2));

  const worker = createWorker();
  await worker.start();
  console.log(`worker ${worker.name} started: 4 jobs at a time, handlers in threads`);
  // Ctrl-C stops the worker gracefully, then the program. The jobs stay in the store: run
  // it again and the idempotency keys find them, finished or still to do.
  const removeHandlers = stopOnSignals(worker, () => process.exit(130));
  try {
    const { thumbnails, failed } = await runPipeline(pictures);
    const seconds = ((performance.now() - startedAt) / 1000).toFixed(1);
    console.log(
      `done in ${seconds} s: ${thumbnails.length} thumbnail(s) in ${shown(dirs.thumbnails)}, ` +
        `${failed.length} failed, the report in ${shown(dirs.outbox)}`,
    );
  } finally {
    removeHandlers();
    await worker.stop();
  }
}
