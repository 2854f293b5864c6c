import type { Job } from "./job.js";
import { canRun, isLive, serves, type WorkerInfo } from "./pool.js";

/** Why a job is not running, as `baton jobs explain` and `GET /v1/jobs/:id/explain` say it. */
export type WaitCode =
  | "not_pending"
  | "scheduled"
  | "queue_paused"
  | "queue_limit"
  | "key_limit"
  | "no_worker"
  | "no_runner"
  | "too_big"
  | "workers_busy"
  | "behind"
  | "next";

export interface WaitReason {
  code: WaitCode;
  message: string;
  /** Jobs holding the slots of a reached limit. */
  holders?: string[];
  /** Workers concerned (busy ones). */
  workers?: string[];
}

export interface Explanation {
  jobId: string;
  state: Job["state"];
  reasons: WaitReason[];
}

/** What the store knows that bears on a pending job's wait. */
export interface WaitFacts {
  job: Job;
  now: number;
  queue: { paused: boolean; maxRunning: number | null; running: number };
  queueHolders: string[];
  keyRunning: number;
  keyHolders: string[];
  workers: WorkerInfo[];
  /** Ready jobs of the same queue that come first (priority, then runAt, then age). */
  ahead: number;
}

/**
 * Every reason that keeps the job waiting, most fundamental first. A pending job with none
 * is next in line: a worker with room claims it at its next look.
 */
export function explainWait(facts: WaitFacts): Explanation {
  const { job, now, queue } = facts;
  const reasons: WaitReason[] = [];
  const explained = { jobId: job.id, state: job.state, reasons };
  if (job.state !== "pending") {
    reasons.push({ code: "not_pending", message: notPendingMessage(job) });
    return explained;
  }
  if (job.runAt > now) {
    reasons.push({
      code: "scheduled",
      message: `scheduled for ${new Date(job.runAt).toISOString()}, in ${seconds(job.runAt - now)}`,
    });
  }
  if (queue.paused) {
    reasons.push({ code: "queue_paused", message: `queue ${job.queue} is paused` });
  }
  if (queue.maxRunning !== null && queue.running >= queue.maxRunning) {
    reasons.push({
      code: "queue_limit",
      message: `queue ${job.queue} is at its limit: ${queue.running} of ${queue.maxRunning} running`,
      holders: facts.queueHolders,
    });
  }
  if (job.concurrencyKey !== null && facts.keyRunning >= job.concurrencyLimit) {
    reasons.push({
      code: "key_limit",
      message:
        `concurrency key ${job.concurrencyKey} is at its limit: ` +
        `${facts.keyRunning} of ${job.concurrencyLimit} running`,
      holders: facts.keyHolders,
    });
  }
  reasons.push(...workerReasons(job, facts.workers));
  if (facts.ahead > 0) {
    reasons.push({
      code: "behind",
      message:
        facts.ahead === 1
          ? `behind 1 ready job of queue ${job.queue} that comes first (higher priority or older)`
          : `behind ${facts.ahead} ready jobs of queue ${job.queue} that come first (higher priority or older)`,
    });
  }
  if (reasons.length === 0) {
    reasons.push({ code: "next", message: "next in line: a worker with room claims it now" });
  }
  return explained;
}

/** No live worker serves the queue; none is big enough; or all that fit are full. */
function workerReasons(job: Job, workers: readonly WorkerInfo[]): WaitReason[] {
  const inQueue = workers.filter((w) => isLive(w) && serves(w, job.queue));
  if (inQueue.length === 0) {
    return [{ code: "no_worker", message: `no live worker serves queue ${job.queue}` }];
  }
  const serving = inQueue.filter((w) => canRun(w, job));
  if (serving.length === 0) {
    const what = job.kind === "handler" ? `has handler ${job.handler}` : "runs shell jobs";
    const have = inQueue.map((w) => `${w.name}: ${runsText(w)}`).join("; ");
    return [
      {
        code: "no_runner",
        message: `no live worker serving queue ${job.queue} ${what} (${have})`,
        workers: inQueue.map((w) => w.name),
      },
    ];
  }
  const { cpus, memoryMb } = job.resources;
  const fitting = serving.filter(
    (w) => cpus <= w.cpus && (memoryMb === null || w.memoryMb === null || memoryMb <= w.memoryMb),
  );
  if (fitting.length === 0) {
    const maxCpus = Math.max(...serving.map((w) => w.cpus));
    const maxMemory = Math.max(...serving.map((w) => w.memoryMb ?? Infinity));
    const needs = [`${cpus} cpus`, ...(memoryMb === null ? [] : [`${memoryMb} MiB`])].join(", ");
    return [
      {
        code: "too_big",
        message:
          `needs ${needs}; the largest live worker serving queue ${job.queue} has ` +
          `${maxCpus} cpus${Number.isFinite(maxMemory) ? `, ${maxMemory} MiB` : ""}`,
      },
    ];
  }
  const roomy = fitting.filter(
    (w) =>
      w.running < w.concurrency &&
      cpus <= w.cpus - w.usedCpus + 1e-9 &&
      (memoryMb === null || w.memoryMb === null || memoryMb <= w.memoryMb - w.usedMemoryMb),
  );
  if (roomy.length > 0) return [];
  return [
    {
      code: "workers_busy",
      message: `every live worker that can run it is full (${fitting.map((w) => `${w.name}: ${w.running}/${w.concurrency} jobs, ${round(w.usedCpus)}/${w.cpus} cpus`).join("; ")})`,
      workers: fitting.map((w) => w.name),
    },
  ];
}

function runsText(worker: WorkerInfo): string {
  const { runs } = worker;
  if (runs === null) return "anything";
  const parts = [
    ...(runs.shell ? ["shell jobs"] : []),
    ...(runs.handlers.length > 0 ? [`handlers ${runs.handlers.join(", ")}`] : []),
  ];
  return parts.length > 0 ? parts.join(" and ") : "nothing";
}

function notPendingMessage(job: Job): string {
  switch (job.state) {
    case "running":
      return `running on ${job.workerId ?? "a worker"} (attempt ${job.attempt})`;
    case "blocked":
      return "blocked: waiting for the steps it depends on";
    default:
      return `${job.state}: it will not run again unless retried`;
  }
}

function seconds(ms: number): string {
  return ms < 60_000 ? `${Math.ceil(ms / 1000)}s` : `${Math.round(ms / 60_000)}m`;
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
