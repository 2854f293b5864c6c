/**
 * BullMQ (Redis) as a benchmark queue system, under its own key prefix. BullMQ 6 no longer
 * brings a Redis client: it is given ioredis connections (in ESM it must be given built
 * clients, not connection options).
 */
import { Queue, type QueueOptions, Worker, type WorkerOptions } from "bullmq";
import { Redis } from "ioredis";
import type { Payload, QueueSystem } from "../queueSystems.js";

export type Variant = "defaults" | "tuned";

const QUEUE = "bench";
const JOB_NAME = "noop";

/**
 * The tuned variant follows BullMQ's guide: a worker concurrency well above 1 for
 * asynchronous jobs (https://docs.bullmq.io/guide/workers/concurrency, whose example uses
 * `concurrency: 50`), and keeping only a bounded number of finished jobs, "a good practice"
 * once in production (https://docs.bullmq.io/guide/workers/auto-removal-of-jobs:
 * `removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 }`); by default BullMQ
 * keeps every completed job in Redis.
 */
const TUNED = {
  concurrency: 50,
  removeOnComplete: { count: 1_000 },
  removeOnFail: { count: 5_000 },
} as const;

export function bullmq(
  variant: Variant,
  { url, prefix }: { url: string; prefix: string },
): QueueSystem {
  const tuned = variant === "tuned";
  // Every connection this adapter opens, so that teardown can close them all.
  const connections: Redis[] = [];
  const connect = (): Redis => {
    // Workers need maxRetriesPerRequest null (BullMQ, "Connections").
    const redis = new Redis(url, { maxRetriesPerRequest: null });
    redis.on("error", (error: Error) => process.stderr.write(`BullMQ redis: ${error.message}\n`));
    connections.push(redis);
    return redis;
  };
  let queue: Queue | null = null;
  let worker: Worker | null = null;

  const open = (): Queue => {
    if (!queue) throw new Error("BullMQ: setup() was not called");
    return queue;
  };

  /** Closes one of this adapter's connections. */
  const close = async (redis: Redis): Promise<void> => {
    const at = connections.indexOf(redis);
    if (at >= 0) connections.splice(at, 1);
    if (redis.status !== "end") await redis.quit().catch(() => redis.disconnect());
  };

  /** Deletes every key under this adapter's prefix, and nothing else. */
  const removeKeys = async (): Promise<void> => {
    const redis = connect();
    try {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1_000);
        if (keys.length > 0) await redis.unlink(...keys);
        cursor = next;
      } while (cursor !== "0");
    } finally {
      await close(redis);
    }
  };

  const system: QueueSystem = {
    system: "BullMQ",
    variant,
    ...(tuned ? { concurrency: TUNED.concurrency } : {}),
    settings: tuned
      ? `concurrency ${TUNED.concurrency}, removeOnComplete { count: ${TUNED.removeOnComplete.count} }, ` +
        `removeOnFail { count: ${TUNED.removeOnFail.count} }`
      : "",
    durability: "",

    async setup() {
      await removeKeys();
      const options: QueueOptions = { connection: connect(), prefix };
      queue = new Queue(QUEUE, options);
      queue.on("error", (error) => process.stderr.write(`BullMQ queue: ${error.message}\n`));
      await queue.waitUntilReady();
      system.durability = await redisDurability(connect(), close);
    },

    async enqueueOne(payload) {
      await open().add(JOB_NAME, payload);
    },

    async enqueueBatch(payloads) {
      await open().addBulk(payloads.map((data) => ({ name: JOB_NAME, data })));
    },

    async startWorker(concurrency, onJob) {
      if (worker) throw new Error("BullMQ: a worker is already running");
      const options: WorkerOptions = {
        connection: connect(),
        prefix,
        concurrency,
        ...(tuned
          ? { removeOnComplete: TUNED.removeOnComplete, removeOnFail: TUNED.removeOnFail }
          : {}),
      };
      worker = new Worker<Payload>(
        QUEUE,
        async (job) => {
          onJob(job.data);
        },
        options,
      );
      worker.on("error", (error) => process.stderr.write(`BullMQ worker: ${error.message}\n`));
      await worker.waitUntilReady();
    },

    async outstanding() {
      const counts = await open().getJobCounts("wait", "active", "prioritized", "delayed");
      return Object.values(counts).reduce((sum, n) => sum + n, 0);
    },

    async stopWorker() {
      const stopping = worker;
      worker = null;
      await stopping?.close();
    },

    async teardown() {
      await system.stopWorker();
      const closing = queue;
      queue = null;
      await closing?.close();
      for (const redis of [...connections]) await close(redis);
      await removeKeys();
    },
  };
  return system;
}

/** What this Redis keeps on disk, as a clause, from its own configuration. */
async function redisDurability(
  redis: Redis,
  close: (redis: Redis) => Promise<void>,
): Promise<string> {
  try {
    const setting = async (name: string) => {
      const reply = (await redis.config("GET", name)) as unknown;
      return Array.isArray(reply) ? String(reply[1] ?? "") : "";
    };
    const version = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "?";
    const appendonly = await setting("appendonly");
    const appendfsync = await setting("appendfsync");
    const save = await setting("save");
    const onDisk =
      appendonly === "yes"
        ? `an append-only file, fsync ${appendfsync}`
        : save.trim() === ""
          ? "nothing on disk (appendonly no, no RDB snapshots): a Redis restart loses every job"
          : `only RDB snapshots (save "${save}"), no append-only file: a crash loses the jobs since the last snapshot`;
    return (
      `Redis ${version} in memory, ${onDisk}` +
      "; BullMQ's production guide recommends AOF with appendfsync everysec"
    );
  } finally {
    await close(redis);
  }
}
