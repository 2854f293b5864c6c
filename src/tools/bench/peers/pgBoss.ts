/**
 * pg-boss (PostgreSQL, polling) as a benchmark queue system, in its own schema. pg-boss 10
 * is the last major that runs on Node 20 (11 and later require Node 22).
 */
import PgBoss from "pg-boss";
import { dropSchema, type Payload, postgresDurability, type QueueSystem } from "../queueSystems.js";

export type Variant = "defaults" | "tuned";

const QUEUE = "bench";

/**
 * pg-boss 10 has no concurrency option: "Each call to work() will add a new worker", each a
 * loop that fetches `batchSize` jobs (default 1), runs the handler on them, then waits out
 * the rest of `pollingIntervalSeconds` (default 2) before fetching again — "The default
 * options for work() is 1 job every 2 seconds" (docs, `work()`, v10). So here a concurrency
 * of N is N / batchSize such loops.
 *
 * The tuned variant uses the two documented throughput levers: `pollingIntervalSeconds`
 * 0.5, the minimum the docs allow ("must be >=0.5 (500ms)"), and `batchSize`, for which the
 * docs give no figure. Throughput is then about loops × batchSize per 0.5 s until the
 * database is the limit; on this 2-core machine 10 loops of 200 did best of those we tried
 * (10 × 100: ~2,100 jobs/s; 10 × 200 and 20 × 100: ~4,200; 10 × 500: ~3,300; 50 × 100:
 * ~2,300), so: 10 loops of 200, 2,000 jobs in flight. A batch is completed, or failed, as a
 * whole.
 */
const TUNED = { pollingIntervalSeconds: 0.5, batchSize: 200, concurrency: 2_000 } as const;

export function pgBoss(
  variant: Variant,
  { url, schema }: { url: string; schema: string },
): QueueSystem {
  const tuned = variant === "tuned";
  let boss: PgBoss | null = null;

  const open = (): PgBoss => {
    if (!boss) throw new Error("pg-boss: setup() was not called");
    return boss;
  };

  const system: QueueSystem = {
    system: "pg-boss",
    variant,
    ...(tuned ? { concurrency: TUNED.concurrency } : {}),
    settings: tuned
      ? `pollingIntervalSeconds ${TUNED.pollingIntervalSeconds}, batchSize ${TUNED.batchSize}, ` +
        `${TUNED.concurrency / TUNED.batchSize} work() loops`
      : "",
    durability: "",

    async setup() {
      await dropSchema(url, schema);
      boss = new PgBoss({ connectionString: url, schema });
      boss.on("error", (error) => process.stderr.write(`pg-boss: ${error.message}\n`));
      await boss.start();
      await boss.createQueue(QUEUE);
      const server = await postgresDurability(url);
      system.durability = `${server}: a job is on disk once send() returns`;
    },

    async enqueueOne(payload) {
      await open().send(QUEUE, payload);
    },

    async enqueueBatch(payloads) {
      await open().insert(payloads.map((data) => ({ name: QUEUE, data })));
    },

    async startWorker(concurrency, onJob) {
      const batchSize = tuned ? TUNED.batchSize : 1;
      const options = tuned
        ? { batchSize, pollingIntervalSeconds: TUNED.pollingIntervalSeconds }
        : { batchSize };
      const loops = Math.max(1, Math.ceil(concurrency / batchSize));
      for (let i = 0; i < loops; i++) {
        await open().work<Payload>(QUEUE, options, async (jobs) => {
          for (const job of jobs) onJob(job.data);
        });
      }
    },

    async outstanding() {
      return open().getQueueSize(QUEUE, { before: "completed" });
    },

    async stopWorker() {
      await boss?.offWork(QUEUE);
    },

    async teardown() {
      const stopping = boss;
      boss = null;
      // Stops every worker loop, waits for running handlers, closes the pool.
      await stopping?.stop({ graceful: true, close: true, wait: true, timeout: 5_000 });
      await dropSchema(url, schema);
    },
  };
  return system;
}
