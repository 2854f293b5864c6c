/**
 * The queue benchmark of issue 7: enqueue rate (one caller, concurrent callers, batches),
 * processing rate of no-op jobs, and pickup latency, for any list of QueueSystem adapters:
 * the peers here (Graphile Worker, pg-boss, BullMQ, each with its defaults and tuned), Baton
 * when its adapters are added. Every system runs on this machine, in this process, in the
 * same run; each measurement starts from an empty queue (setup/teardown around it), and the
 * systems take turns within each repetition so that they share the machine's ups and downs.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { type Figure, figure, format } from "./harness.js";
import { bullmq } from "./peers/bullmq.js";
import { graphileWorker } from "./peers/graphileWorker.js";
import { pgBoss } from "./peers/pgBoss.js";
import { postgresFloor } from "./peers/postgresFloor.js";
import { type Payload, type QueueSystem, systemLabel } from "./queueSystems.js";

export interface QueueBenchOptions {
  /** Jobs per enqueue and processing measurement. @defaultValue 20,000 */
  jobs?: number;
  /** Concurrent callers in the concurrent-enqueue measurement. @defaultValue 32 */
  callers?: number;
  /** Jobs per bulk call in the batch-enqueue measurement. @defaultValue 1,000 */
  batchSize?: number;
  /** Worker concurrency for a variant that does not name its own. @defaultValue 10 */
  concurrency?: number;
  /** Jobs enqueued to an idle worker in the pickup measurement. @defaultValue 500 */
  pickupJobs?: number;
  /** Milliseconds between two pickup enqueues. @defaultValue 5 */
  pickupGapMs?: number;
  /** How long the pickup worker idles, in milliseconds, before the first job. @defaultValue 1,000 */
  pickupIdleMs?: number;
  /**
   * Longest any one step (a setup, a measurement, a teardown) may take, in milliseconds,
   * before the benchmark fails naming it rather than hang. @defaultValue 600,000
   */
  stallMs?: number;
  /** Whether each system first processes a few jobs unrecorded. @defaultValue true */
  warmUp?: boolean;
  /**
   * Longest a processing or pickup measurement may take, in milliseconds; past it the
   * figure is taken from what was done by then, and a note says so. @defaultValue 60,000
   */
  timeLimitMs?: number;
  /** Where progress lines go. @defaultValue standard error */
  progress?: (line: string) => void;
}

type Settings = Required<QueueBenchOptions>;

const DEFAULTS: Settings = {
  jobs: 20_000,
  callers: 32,
  batchSize: 1_000,
  concurrency: 10,
  pickupJobs: 500,
  pickupGapMs: 5,
  pickupIdleMs: 1_000,
  warmUp: true,
  timeLimitMs: 60_000,
  stallMs: 600_000,
  progress: (line) => process.stderr.write(`${line}\n`),
};

/** The workloads, as figures name them. */
export const WORKLOAD = {
  enqueueOne: "enqueue, 1 caller",
  enqueueConcurrent: "enqueue, concurrent callers",
  enqueueBatch: "enqueue, batches",
  processing: "processing",
  pickupP50: "pickup latency p50",
  pickupP95: "pickup latency p95",
  pickupP99: "pickup latency p99",
} as const;

export type Workload = (typeof WORKLOAD)[keyof typeof WORKLOAD];

const UNIT: Record<Workload, string> = {
  [WORKLOAD.enqueueOne]: "jobs/s",
  [WORKLOAD.enqueueConcurrent]: "jobs/s",
  [WORKLOAD.enqueueBatch]: "jobs/s",
  [WORKLOAD.processing]: "jobs/s",
  [WORKLOAD.pickupP50]: "ms",
  [WORKLOAD.pickupP95]: "ms",
  [WORKLOAD.pickupP99]: "ms",
};

/**
 * The peers, with their defaults and tuned, on the test PostgreSQL and Redis; and the floor
 * of any PostgreSQL queue here, in raw SQL, for reference.
 */
export function peerSystems(
  options: { pgUrl?: string; redisUrl?: string; namespace?: string } = {},
): QueueSystem[] {
  const url =
    options.pgUrl ?? process.env.BATON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const redis = options.redisUrl ?? process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
  // Schemas and a key prefix of their own, apart from Baton's `baton` and the tests' `t_…`.
  const ns = options.namespace ?? "bench";
  return [
    graphileWorker("defaults", { url, schema: `${ns}_graphile` }),
    graphileWorker("tuned", { url, schema: `${ns}_graphile` }),
    pgBoss("defaults", { url, schema: `${ns}_pgboss` }),
    pgBoss("tuned", { url, schema: `${ns}_pgboss` }),
    bullmq("defaults", { url: redis, prefix: `${ns}_bullmq` }),
    bullmq("tuned", { url: redis, prefix: `${ns}_bullmq` }),
    postgresFloor({ url, schema: `${ns}_floor` }),
  ];
}

/** The peers' product names, e.g. for `best(figures, workload, PEERS)`. */
export const PEERS = ["Graphile Worker", "pg-boss", "BullMQ"] as const;

/** Whether a bigger median is better for figures in this unit (rates) or a smaller (times). */
export const higherIsBetter = (unit: string): boolean => unit !== "ms";

/**
 * The best figure of a workload among some systems, each named by its label ("pg-boss
 * (tuned)") or by its product ("pg-boss": every variant); all systems when none are named.
 */
export function best(
  figures: readonly Figure[],
  workload: string,
  systems?: readonly string[],
): Figure | undefined {
  const named = (label: string) =>
    systems === undefined ||
    systems.some((name) => label === name || label.startsWith(`${name} (`));
  const candidates = figures.filter((f) => f.workload === workload && named(f.system));
  return candidates.reduce<Figure | undefined>((top, f) => {
    if (!top) return f;
    const better = higherIsBetter(f.unit) ? f.median > top.median : f.median < top.median;
    return better ? f : top;
  }, undefined);
}

/**
 * A system's median over the best of others, per workload: "Baton / best peer". Above 1 is
 * better for rates, below 1 for latencies. Workloads either side lacks are left out.
 */
export function ratios(
  figures: readonly Figure[],
  system: string,
  others: readonly string[],
): { workload: string; ratio: number; best: string }[] {
  const workloads = [...new Set(figures.map((f) => f.workload))];
  return workloads.flatMap((workload) => {
    const mine = best(figures, workload, [system]);
    const theirs = best(figures, workload, others);
    if (!mine || !theirs || theirs.median === 0) return [];
    return [{ workload, ratio: mine.median / theirs.median, best: theirs.system }];
  });
}

/** What one measurement yields: figures by workload, and a remark when it hit a limit. */
interface Result {
  values: Partial<Record<Workload, number>>;
  limited?: string;
}

type Measurement = (
  system: QueueSystem,
  settings: Settings,
  concurrency: number,
) => Promise<Result>;

const MEASUREMENTS: readonly Measurement[] = [
  enqueueOneByOne,
  enqueueConcurrently,
  enqueueInBatches,
  processing,
  pickup,
];

/**
 * Runs every measurement on every system, `repetitions` times, after one small warm-up
 * round per system; returns a figure (median, min, max) per workload and system, and a
 * Markdown summary: the medians side by side, each system's settings and durability.
 */
export async function queueBench(
  repetitions: number,
  systems: readonly QueueSystem[],
  options: QueueBenchOptions = {},
): Promise<{ figures: Figure[]; summary: string }> {
  const settings: Settings = { ...DEFAULTS, ...options };
  const samples = new Map<string, number[]>();
  const limits = new Map<string, string[]>();
  const key = (label: string, workload: string) => `${label}\u0000${workload}`;

  if (settings.warmUp) for (const system of systems) await warmUp(system, settings);
  for (let rep = 1; rep <= repetitions; rep++) {
    for (const system of systems) {
      const label = systemLabel(system);
      const concurrency = system.concurrency ?? settings.concurrency;
      for (const measurement of MEASUREMENTS) {
        const result = await measured(system, settings, measurement.name, () =>
          measurement(system, settings, concurrency),
        );
        for (const [workload, value] of Object.entries(result.values)) {
          const k = key(label, workload);
          samples.set(k, [...(samples.get(k) ?? []), value]);
          if (result.limited !== undefined) {
            limits.set(k, [...(limits.get(k) ?? []), result.limited]);
          }
        }
        const shown = Object.entries(result.values)
          .map(([workload, value]) => `${workload} ${format(value)}`)
          .join(", ");
        settings.progress(`${label}: ${shown}${result.limited ? ` (${result.limited})` : ""}`);
      }
    }
  }

  const figures: Figure[] = [];
  for (const workload of Object.values(WORKLOAD)) {
    for (const system of systems) {
      const label = systemLabel(system);
      const values = samples.get(key(label, workload));
      if (!values) continue;
      const note = [
        noteFor(workload, system, settings),
        ...new Set(limits.get(key(label, workload)) ?? []),
      ]
        .filter((part) => part !== "")
        .join("; ");
      figures.push(figure(workload, label, UNIT[workload], values, note || undefined));
    }
  }
  return { figures, summary: summarize(figures, systems, settings, repetitions) };
}

/** Runs one measurement between a fresh setup and a teardown, none of them allowed to hang. */
async function measured(
  system: QueueSystem,
  { stallMs }: Settings,
  what: string,
  run: () => Promise<Result>,
): Promise<Result> {
  const step = `${systemLabel(system)}, ${what}`;
  await within(stallMs, `${step}: setup`, system.setup());
  try {
    return await within(stallMs, step, run());
  } finally {
    await within(stallMs, `${step}: teardown`, system.teardown());
  }
}

/** The step's result, or an error naming it when it takes longer than `ms`. */
async function within<T>(ms: number, step: string, work: Promise<T>): Promise<T> {
  const timer = new AbortController();
  const stalled = sleep(ms, undefined, { signal: timer.signal }).then(
    () => Promise.reject(new Error(`${step}: still not done after ${ms / 1000} s`)),
    () => new Promise<never>(() => {}),
  );
  try {
    return await Promise.race([work, stalled]);
  } finally {
    timer.abort();
  }
}

/**
 * A small round, not recorded: jobs enqueued one at a time and in a batch, then processed
 * for a few seconds at most; connections, caches, scripts and the JIT are then warm.
 */
async function warmUp(system: QueueSystem, settings: Settings): Promise<void> {
  const jobs = Math.min(100, settings.jobs);
  const brief = { ...settings, jobs, batchSize: jobs, timeLimitMs: 5_000 };
  await measured(system, settings, "warm-up", async () => {
    for (let i = 0; i < jobs; i++) await system.enqueueOne(payload(i));
    return processing(system, brief, system.concurrency ?? settings.concurrency);
  });
  settings.progress(`${systemLabel(system)}: warmed up`);
}

const payload = (seq: number): Payload => ({ seq });
const seconds = (since: number) => (performance.now() - since) / 1000;

async function enqueueOneByOne(system: QueueSystem, { jobs }: Settings): Promise<Result> {
  const started = performance.now();
  for (let i = 0; i < jobs; i++) await system.enqueueOne(payload(i));
  return { values: { [WORKLOAD.enqueueOne]: jobs / seconds(started) } };
}

async function enqueueConcurrently(
  system: QueueSystem,
  { jobs, callers }: Settings,
): Promise<Result> {
  let next = 0;
  const caller = async () => {
    for (let i = next++; i < jobs; i = next++) await system.enqueueOne(payload(i));
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  return { values: { [WORKLOAD.enqueueConcurrent]: jobs / seconds(started) } };
}

async function enqueueAll(system: QueueSystem, jobs: number, batchSize: number): Promise<void> {
  for (let from = 0; from < jobs; from += batchSize) {
    const size = Math.min(batchSize, jobs - from);
    await system.enqueueBatch(Array.from({ length: size }, (_, i) => payload(from + i)));
  }
}

async function enqueueInBatches(
  system: QueueSystem,
  { jobs, batchSize }: Settings,
): Promise<Result> {
  const started = performance.now();
  await enqueueAll(system, jobs, batchSize);
  return { values: { [WORKLOAD.enqueueBatch]: jobs / seconds(started) } };
}

/** Opened once, by `open()`; `wait(deadline)` resolves when it is, or at the deadline. */
function latch() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return {
    open: () => open(),
    /** The deadline is a performance.now() time. */
    async wait(deadline: number): Promise<void> {
      const timer = new AbortController();
      const expired = sleep(Math.max(0, deadline - performance.now()), undefined, {
        signal: timer.signal,
      }).catch(() => undefined);
      await Promise.race([opened, expired]);
      timer.abort();
    },
  };
}

/**
 * `jobs` no-op jobs enqueued in batches (not timed), then a worker started: the time from
 * starting it until the queue records every job completed. Rate over the time limit when
 * reached, from the jobs completed by then.
 */
async function processing(
  system: QueueSystem,
  { jobs, batchSize, timeLimitMs }: Settings,
  concurrency: number,
): Promise<Result> {
  await enqueueAll(system, jobs, batchSize);
  const allRan = latch();
  let ran = 0;
  const started = performance.now();
  const deadline = started + timeLimitMs;
  await system.startWorker(concurrency, () => {
    if (++ran === jobs) allRan.open();
  });
  await allRan.wait(deadline);
  let left = await system.outstanding();
  while (left > 0 && performance.now() < deadline) {
    await sleep(10);
    left = await system.outstanding();
  }
  const elapsed = seconds(started);
  await system.stopWorker();
  const done = jobs - left;
  return {
    values: { [WORKLOAD.processing]: done / elapsed },
    ...(left > 0
      ? {
          limited: `time limit ${timeLimitMs / 1000} s reached: ${format(done)} of ${format(jobs)} completed`,
        }
      : {}),
  };
}

/** The value at quantile q of sorted values (nearest rank). */
const quantile = (sorted: readonly number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;

/**
 * An idle running worker; `pickupJobs` jobs enqueued one at a time, `pickupGapMs` apart:
 * latency from just before each enqueue call to its handler starting. Jobs not started by
 * the time limit count with their wait so far, so the percentiles are then lower bounds.
 */
async function pickup(
  system: QueueSystem,
  { pickupJobs: jobs, pickupGapMs: gap, pickupIdleMs, timeLimitMs }: Settings,
  concurrency: number,
): Promise<Result> {
  const enqueuedAt = new Float64Array(jobs).fill(Number.NaN);
  const latency = new Float64Array(jobs).fill(Number.NaN);
  const allRan = latch();
  let ran = 0;
  await system.startWorker(concurrency, (job) => {
    const now = performance.now();
    const seq = job.seq;
    if (typeof seq !== "number" || !Number.isNaN(latency[seq])) return;
    latency[seq] = now - (enqueuedAt[seq] ?? now);
    if (++ran === jobs) allRan.open();
  });
  await sleep(pickupIdleMs); // idle: whatever the worker does at start is over
  const began = performance.now();
  for (let i = 0; i < jobs; i++) {
    const wait = began + i * gap - performance.now();
    if (wait > 0) await sleep(wait);
    enqueuedAt[i] = performance.now();
    await system.enqueueOne(payload(i));
  }
  const enqueued = performance.now();
  await allRan.wait(enqueued + timeLimitMs);
  const now = performance.now();
  let missing = 0;
  const values = Array.from(latency, (value, i) => {
    if (!Number.isNaN(value)) return value;
    missing++;
    return now - (enqueuedAt[i] ?? enqueued);
  }).sort((a, b) => a - b);
  await system.stopWorker();
  return {
    values: {
      [WORKLOAD.pickupP50]: quantile(values, 0.5),
      [WORKLOAD.pickupP95]: quantile(values, 0.95),
      [WORKLOAD.pickupP99]: quantile(values, 0.99),
    },
    ...(missing > 0
      ? {
          limited:
            `time limit ${timeLimitMs / 1000} s reached: ${missing} of ${jobs} not started, ` +
            "counted with their wait so far (lower bounds)",
        }
      : {}),
  };
}

function noteFor(workload: Workload, system: QueueSystem, settings: Settings): string {
  const concurrency = `concurrency ${system.concurrency ?? settings.concurrency}`;
  switch (workload) {
    case WORKLOAD.enqueueOne:
      return `${format(settings.jobs)} jobs, each awaited`;
    case WORKLOAD.enqueueConcurrent:
      return `${format(settings.jobs)} jobs, ${settings.callers} callers`;
    case WORKLOAD.enqueueBatch:
      return `${format(settings.jobs)} jobs, bulk calls of ${format(settings.batchSize)}`;
    case WORKLOAD.processing:
      return `${format(settings.jobs)} queued no-op jobs, ${concurrency}`;
    default:
      return `${settings.pickupJobs} jobs ${settings.pickupGapMs} ms apart, ${concurrency}`;
  }
}

/** The medians side by side (min–max when repeated), then each system's settings and durability. */
function summarize(
  figures: readonly Figure[],
  systems: readonly QueueSystem[],
  settings: Settings,
  repetitions: number,
): string {
  const labels = systems.map(systemLabel);
  const products = systems.filter((system) => !system.reference).map(systemLabel);
  const workloads = Object.values(WORKLOAD).filter((w) => figures.some((f) => f.workload === w));
  const cell = (f: Figure | undefined) =>
    f === undefined
      ? ""
      : f.runs > 1
        ? `${format(f.median)} (${format(f.min)}–${format(f.max)})`
        : format(f.median);
  const rows = workloads.map((workload) => {
    const top = best(figures, workload, products)?.system;
    const cells = labels.map((label) => {
      const f = figures.find((g) => g.workload === workload && g.system === label);
      const text = cell(f);
      return label === top && labels.length > 1 ? `**${text}**` : text;
    });
    return `| ${workload} (${UNIT[workload]}) | ${cells.join(" | ")} |`;
  });
  const table = [
    `| workload | ${labels.join(" | ")} |`,
    `| --- | ${labels.map(() => "---").join(" | ")} |`,
    ...rows,
  ].join("\n");
  const intro =
    `Every system on this machine, driven from one Node process, in the same run; ` +
    `${repetitions} repetition${repetitions === 1 ? "" : "s"}, median (min–max), best in bold. ` +
    `Enqueue: ${format(settings.jobs)} jobs one at a time from 1 caller, from ` +
    `${settings.callers} concurrent callers, and in bulk calls of ${format(settings.batchSize)}. ` +
    `Processing: ${format(settings.jobs)} queued no-op jobs, from starting the worker until the ` +
    `queue records them all completed, at concurrency ${settings.concurrency} or the variant's own. ` +
    `Pickup: ${settings.pickupJobs} jobs enqueued ${settings.pickupGapMs} ms apart to an idle ` +
    `worker, from just before the enqueue call to the handler starting. A processing or pickup ` +
    `run stops at ${settings.timeLimitMs / 1000} s (noted in the figures).`;
  const settingsList = systems
    .filter((s) => s.settings !== "")
    .map((s) => `- ${systemLabel(s)}: ${s.settings}`);
  const durability = systems.map((s) => `- ${systemLabel(s)}: ${s.durability || "not reported"}`);
  const cut = [
    ...new Set(
      figures
        .filter((f) => f.note?.includes("time limit"))
        .map((f) => `- ${f.system}, ${f.workload.replace(/ p\d+$/, "")}: ${f.note ?? ""}`),
    ),
  ];
  return [
    intro,
    table,
    ...(settingsList.length > 0
      ? ["Settings that differ from the defaults:", settingsList.join("\n")]
      : []),
    "Durability:",
    durability.join("\n"),
    ...(cut.length > 0 ? ["Cut short by the time limit:", cut.join("\n")] : []),
  ].join("\n\n");
}
