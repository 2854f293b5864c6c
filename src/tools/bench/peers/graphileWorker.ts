/**
 * Graphile Worker (PostgreSQL, LISTEN/NOTIFY) as a benchmark queue system, in its own schema.
 */
import { EventEmitter, once } from "node:events";
import {
  Logger,
  makeWorkerUtils,
  run,
  type Runner,
  type TaskList,
  type WorkerEvents,
  type WorkerUtils,
} from "graphile-worker";
import { dropSchema, type Payload, postgresDurability, type QueueSystem } from "../queueSystems.js";

export type Variant = "defaults" | "tuned";

const TASK = "bench_noop";
const LISTEN_TIMEOUT_MS = 10_000;

/**
 * The tuned variant is the configuration Graphile Worker's performance page gives for its
 * own figures ("Quick stats ... achieved with this configuration"):
 * https://worker.graphile.org/docs/performance — concurrentJobs 24, maxPoolSize 25,
 * localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0. The local queue and the
 * batch delays are explained in the option docs (graphile-worker's `GraphileWorker.
 * WorkerOptions`, "Batching" on the same page): the pool fetches and locks jobs in batches
 * and completes them in batches, at the cost of more jobs locked at once and, after a crash,
 * completed jobs that run again once their lock expires (4 h).
 */
const TUNED = {
  concurrentJobs: 24,
  maxPoolSize: 25,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
} as const;

export function graphileWorker(
  variant: Variant,
  { url, schema }: { url: string; schema: string },
): QueueSystem {
  const tuned = variant === "tuned";
  const logger = new Logger(() => (level, message) => {
    if (String(level) === "error") process.stderr.write(`graphile-worker: ${message}\n`);
  });
  const shared = {
    connectionString: url,
    schema,
    logger,
    ...(tuned ? { maxPoolSize: TUNED.maxPoolSize } : {}),
  };
  let utils: WorkerUtils | null = null;
  let runner: Runner | null = null;

  const open = (): WorkerUtils => {
    if (!utils) throw new Error("Graphile Worker: setup() was not called");
    return utils;
  };

  const system: QueueSystem = {
    system: "Graphile Worker",
    variant,
    ...(tuned ? { concurrency: TUNED.concurrentJobs } : {}),
    settings: tuned
      ? `concurrentJobs ${TUNED.concurrentJobs}, maxPoolSize ${TUNED.maxPoolSize}, ` +
        `localQueue.size ${TUNED.localQueue.size}, completeJobBatchDelay 0, failJobBatchDelay 0`
      : "",
    durability: "",

    async setup() {
      await dropSchema(url, schema);
      utils = await makeWorkerUtils(shared);
      await utils.migrate();
      const server = await postgresDurability(url);
      system.durability =
        `${server}: a job is on disk once addJob returns` +
        (tuned
          ? "; completions are batched, so a crash can run finished jobs again after the 4 h lock timeout"
          : "");
    },

    async enqueueOne(payload) {
      await open().addJob(TASK, payload);
    },

    async enqueueBatch(payloads) {
      await open().addJobs(payloads.map((payload) => ({ identifier: TASK, payload })));
    },

    async startWorker(concurrency, onJob) {
      if (runner) throw new Error("Graphile Worker: a worker is already running");
      const taskList: TaskList = {
        [TASK]: async (payload) => {
          onJob(payload as Payload);
        },
      };
      const events: WorkerEvents = new EventEmitter();
      const listening = once(events, "pool:listen:success", {
        signal: AbortSignal.timeout(LISTEN_TIMEOUT_MS),
      });
      listening.catch(() => undefined); // awaited below, unless run() fails first
      runner = await run({
        ...shared,
        events,
        concurrency,
        taskList,
        parsedCronItems: [],
        noHandleSignals: true,
        ...(tuned
          ? {
              preset: {
                worker: {
                  localQueue: { ...TUNED.localQueue },
                  completeJobBatchDelay: TUNED.completeJobBatchDelay,
                  failJobBatchDelay: TUNED.failJobBatchDelay,
                },
              },
            }
          : {}),
      });
      await listening;
    },

    async outstanding() {
      return open().withPgClient(async (client) => {
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${client.escapeIdentifier(schema)}._private_jobs`,
        );
        return rows[0]?.n ?? 0;
      });
    },

    async stopWorker() {
      const stopping = runner;
      runner = null;
      await stopping?.stop();
    },

    async teardown() {
      await system.stopWorker();
      const releasing = utils;
      utils = null;
      await releasing?.release();
      await dropSchema(url, schema);
    },
  };
  return system;
}
