import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyReply } from "fastify";
import { JobIdParams } from "../../api/schemas.js";
import {
  BeatSchema,
  type ClaimBody,
  ClaimSchema,
  type CompleteBatchBody,
  CompleteBatchSchema,
  type CompleteBody,
  CompleteSchema,
  claimToJson,
  type EventsBody,
  EventsSchema,
  fencedToJson,
  type HeartbeatBatchBody,
  HeartbeatBatchSchema,
  type HeartbeatBody,
  HeartbeatSchema,
  heartbeatToJson,
  heldToJson,
  outcomeOf,
  type ReleaseBody,
  ReleaseSchema,
  StopSchema,
  WorkerIdSchema,
} from "../../api/workerSchemas.js";
import type { Static } from "@sinclair/typebox";
import type { Logger } from "../../logger.js";
import type { Claim, ClaimRequest, Lease, Store, StoreChange } from "../../store/store.js";

/** Output batches may be far bigger than other requests (a worker writes up to 4 Mi chars). */
const MAX_EVENTS_BODY_BYTES = 64 * 1024 * 1024;
/** A waiting claim looks again this often even without a change (delayed jobs come due). */
const CLAIM_RECHECK_MS = 1_000;
const KEEPALIVE_MS = 15_000;
/** A change stream whose client reads slower than this much backlog is closed (it reconnects). */
const MAX_STREAM_BACKLOG_BYTES = 1024 * 1024;
/**
 * What may let a waiting claim succeed now (a job that ends and frees a limited slot is
 * announced as job_available too).
 */
const CLAIM_WAKERS: ReadonlySet<StoreChange["type"]> = new Set(["job_available", "external"]);

type Params = { id: string };

/**
 * The worker protocol: a worker without store credentials (`baton worker --server`) does
 * through these what a worker does with a store, one request per WorkerStore method, with
 * batch forms (claim up to `max`, heartbeat and complete several leases at once). Fencing
 * answers (`applied: false`, `held: false`) are 200s: values, not errors.
 */
export function registerWorkerProtocolRoutes(
  app: FastifyInstance,
  store: Store,
  logger: Logger,
): void {
  // Waiting claims and change streams end as soon as the server starts closing, so that
  // closing does not wait for them.
  const closing = new AbortController();
  app.addHook("preClose", async () => closing.abort());

  app.post<{ Body: ClaimBody }>(
    "/v1/worker/claim",
    { schema: { body: ClaimSchema } },
    async (request, reply) => {
      const { max = 1, waitMs = 0, ...claimRequest } = request.body;
      const gone = disconnected(reply.raw, closing.signal);
      try {
        const claims = await claimWaiting(store, claimRequest, max, waitMs, gone.signal);
        if (reply.raw.destroyed) {
          // Nobody will run them: back to pending at once, rather than when the leases expire.
          await releaseAll(store, claims, logger);
          return { claims: [] };
        }
        return { claims: claims.map(claimToJson) };
      } finally {
        gone.dispose();
      }
    },
  );

  app.post<{ Body: HeartbeatBatchBody }>(
    "/v1/worker/heartbeat",
    { schema: { body: HeartbeatBatchSchema } },
    async (request) => {
      const { leases, ttlMs } = request.body;
      const answers = await store.heartbeatBatch(leases, ttlMs);
      return { answers: answers.map(heartbeatToJson) };
    },
  );

  app.post<{ Body: CompleteBatchBody }>(
    "/v1/worker/complete",
    { schema: { body: CompleteBatchSchema } },
    async (request) => {
      const items = request.body.items.map((item, index) => ({
        lease: item.lease,
        outcome: outcomeOf(item.outcome, `items[${index}].`),
      }));
      return { answers: await store.completeBatch(items) };
    },
  );

  app.post<{ Params: Params; Body: HeartbeatBody }>(
    "/v1/worker/jobs/:id/heartbeat",
    { schema: { params: JobIdParams, body: HeartbeatSchema } },
    async (request) => heartbeatToJson(await store.heartbeat(leaseOf(request), request.body.ttlMs)),
  );

  app.post<{ Params: Params; Body: EventsBody }>(
    "/v1/worker/jobs/:id/events",
    {
      schema: { params: JobIdParams, body: EventsSchema },
      bodyLimit: MAX_EVENTS_BODY_BYTES,
    },
    async (request) => {
      const { lines, stored } = request.body;
      return store.appendLogs(leaseOf(request), lines, stored);
    },
  );

  app.post<{ Params: Params; Body: CompleteBody }>(
    "/v1/worker/jobs/:id/complete",
    { schema: { params: JobIdParams, body: CompleteSchema } },
    async (request) => {
      const outcome = outcomeOf(request.body.outcome, "");
      return fencedToJson(await store.complete(leaseOf(request), outcome));
    },
  );

  app.post<{ Params: Params; Body: ReleaseBody }>(
    "/v1/worker/jobs/:id/release",
    { schema: { params: JobIdParams, body: ReleaseSchema } },
    async (request) => fencedToJson(await store.release(leaseOf(request), request.body.message)),
  );

  app.post<{ Body: { workerId: string } }>(
    "/v1/worker/held",
    { schema: { body: WorkerIdSchema } },
    async (request) => ({ held: (await store.heldBy(request.body.workerId)).map(heldToJson) }),
  );

  app.post<{ Body: { workerId: string } }>(
    "/v1/worker/cancel-requests",
    { schema: { body: WorkerIdSchema } },
    async (request) => ({ leases: await store.cancelRequests(request.body.workerId) }),
  );

  app.post<{ Body: Static<typeof BeatSchema> }>(
    "/v1/worker/beat",
    { schema: { body: BeatSchema } },
    async (request) => store.beatWorker({ ...request.body, runs: request.body.runs ?? null }),
  );

  app.post<{ Body: { name: string } }>(
    "/v1/worker/stop",
    { schema: { body: StopSchema } },
    async (request, reply) => {
      await store.stopWorker(request.body.name);
      return reply.status(204).send();
    },
  );

  // Takes no input (an empty body, as for cancel).
  app.post("/v1/worker/reap", async () => ({ reaped: await store.reapExpired() }));

  app.get("/v1/worker/changes", (_request, reply) => {
    streamChanges(reply, store, closing.signal);
  });
}

function leaseOf(request: { params: Params; body: { attempt: number; workerId: string } }): Lease {
  return {
    jobId: request.params.id,
    attempt: request.body.attempt,
    workerId: request.body.workerId,
  };
}

/**
 * Claims up to `max` jobs; when there are none, waits up to `waitMs` for a change that may
 * bring one (looking again every CLAIM_RECHECK_MS regardless), until `stop` aborts.
 */
async function claimWaiting(
  store: Store,
  request: ClaimRequest,
  max: number,
  waitMs: number,
  stop: AbortSignal,
): Promise<Claim[]> {
  const claim = async () => {
    if (max > 1) return store.claimBatch(request, max);
    const one = await store.claim(request);
    return one ? [one] : [];
  };
  if (waitMs === 0) return claim();
  const deadline = Date.now() + waitMs;
  let changed = false;
  let wake: () => void = () => {};
  // Watching before the first claim: a change between that claim and the wait is not missed.
  const unwatch = store.watch((change) => {
    if (!CLAIM_WAKERS.has(change.type)) return;
    changed = true;
    wake();
  });
  try {
    for (;;) {
      changed = false;
      const claims = await claim();
      const left = deadline - Date.now();
      if (claims.length > 0 || left <= 0 || stop.aborted) return claims;
      if (changed) continue;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          stop.removeEventListener("abort", done);
          wake = () => {};
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, CLAIM_RECHECK_MS));
        wake = done;
        stop.addEventListener("abort", done);
      });
    }
  } finally {
    unwatch();
  }
}

async function releaseAll(store: Store, claims: readonly Claim[], logger: Logger): Promise<void> {
  for (const claim of claims) {
    try {
      await store.release(claim.lease, "the worker went away before it received the claim");
    } catch (error) {
      logger.warn({ err: error, jobId: claim.job.id }, "could not release an undelivered claim");
    }
  }
}

/** Aborts when the client goes away or the server closes; `dispose` stops listening. */
function disconnected(
  raw: ServerResponse,
  closing: AbortSignal,
): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  raw.on("close", abort);
  closing.addEventListener("abort", abort);
  return {
    signal: controller.signal,
    dispose: () => {
      raw.off("close", abort);
      closing.removeEventListener("abort", abort);
    },
  };
}

/**
 * `GET /v1/worker/changes`: Server-Sent Events, one `data:` JSON StoreChange per change a
 * worker acts on (job_available, cancel_requested, external; jobs finished and output
 * appends are left out: every job's end would go to every worker), written together per
 * tick, with a comment line every KEEPALIVE_MS. Ends when the client goes, the server
 * closes, or the client falls too far behind (it reconnects and looks again).
 */
function streamChanges(reply: FastifyReply, store: Store, closing: AbortSignal): void {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  // Sends the headers now: the client knows it is connected.
  raw.write(": connected\n\n");
  let pending: string[] = [];
  let flushScheduled = false;
  const flush = () => {
    flushScheduled = false;
    if (raw.writableEnded) return;
    const text = pending.join("");
    pending = [];
    raw.write(text);
    if (raw.writableLength > MAX_STREAM_BACKLOG_BYTES) end();
  };
  const unwatch = store.watch((change) => {
    if (change.type === "logs" || change.type === "job_finished") return;
    const text = `data: ${JSON.stringify(change)}\n\n`;
    // Within one tick, one wake-up of a kind without a job is as good as many.
    if (!("jobId" in change) && pending.includes(text)) return;
    pending.push(text);
    if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flush);
    }
  });
  const keepalive = setInterval(() => raw.write(": keepalive\n\n"), KEEPALIVE_MS);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    unwatch();
    clearInterval(keepalive);
    closing.removeEventListener("abort", end);
    raw.off("close", end);
    raw.end();
  };
  raw.on("close", end);
  closing.addEventListener("abort", end);
  if (closing.aborted) end();
}
