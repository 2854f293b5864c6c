import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyReply } from "fastify";
import { LogsQuery } from "../../api/schemas.js";
import type { JobDetail } from "../../core/job.js";
import type { LogEvent, LogStream } from "../../core/logEvent.js";
import { isTerminal } from "../../core/states.js";
import type { LogQuery, Store, StoreChange } from "../../store/store.js";
import { notFound } from "./jobs.js";

const PAGE = 10_000;
const KEEPALIVE_MS = 15_000;

interface LogsQueryString {
  after?: string;
  limit?: string;
  attempt?: string;
  stream?: string;
  follow?: string;
}

export function registerLogRoutes(
  app: FastifyInstance,
  store: Store,
  closing: AbortSignal | undefined,
): void {
  app.get<{ Params: { id: string }; Querystring: LogsQueryString }>(
    "/v1/jobs/:id/logs",
    { schema: { querystring: LogsQuery } },
    async (request, reply) => {
      const { id } = request.params;
      const job = await store.get(id);
      if (!job) throw notFound(id);
      const q = request.query;
      const lastEventId = request.headers["last-event-id"];
      const resumeFrom =
        typeof lastEventId === "string" && /^\d+$/.test(lastEventId) ? lastEventId : undefined;
      const query: LogQuery = {
        after: Number(resumeFrom ?? q.after ?? 0),
        limit: Math.min(Number(q.limit ?? PAGE), PAGE),
        attempt: q.attempt === undefined ? undefined : Number(q.attempt),
        stream: q.stream as LogStream | undefined,
      };
      if (q.follow === "1" || q.follow === "true") {
        return follow(reply, store, job, query, closing);
      }
      const events = await store.readLogs(id, query);
      return {
        events,
        // Pass as `after` to read the next page.
        next: events.at(-1)?.seq ?? query.after,
        state: job.state,
      };
    },
  );
}

/**
 * Server-Sent Events: replays from `after` (or Last-Event-ID), then streams new lines as
 * the store reports them, and ends with `event: end` carrying the job's final state.
 */
async function follow(
  reply: FastifyReply,
  store: Store,
  initial: JobDetail,
  query: LogQuery,
  closing: AbortSignal | undefined,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  const jobId = initial.id;
  let wake: (() => void) | null = null;
  let changed = true;
  const unwatch = store.watch((change: StoreChange) => {
    if (change.type === "external" || ("jobId" in change && change.jobId === jobId)) {
      changed = true;
      wake?.();
    }
  });
  let open = true;
  const stop = () => {
    open = false;
    wake?.();
  };
  raw.on("close", stop);
  closing?.addEventListener("abort", stop);
  let after = query.after;
  try {
    while (open) {
      changed = false;
      const events = await store.readLogs(jobId, { ...query, after, limit: PAGE });
      if (events.length > 0) {
        await send(raw, events.map(formatEvent).join(""));
        after = events.at(-1)?.seq ?? after;
        if (events.length === PAGE) continue;
      }
      const job = await store.get(jobId);
      if (!job || isTerminal(job.state)) {
        // The worker writes every line before it records the outcome: one more read is final.
        const rest = await store.readLogs(jobId, { ...query, after, limit: PAGE });
        if (rest.length > 0) {
          await send(raw, rest.map(formatEvent).join(""));
          after = rest.at(-1)?.seq ?? after;
          continue;
        }
        const end = job && {
          state: job.state,
          exitCode: job.exitCode,
          signal: job.signal,
          failure: job.failure,
        };
        raw.write(`event: end\ndata: ${JSON.stringify(end ?? { state: "deleted" })}\n\n`);
        break;
      }
      if (!changed) {
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), KEEPALIVE_MS);
          wake = () => {
            clearTimeout(timer);
            resolve(false);
          };
        });
        wake = null;
        if (timedOut) raw.write(": keepalive\n\n");
      }
    }
  } finally {
    unwatch();
    closing?.removeEventListener("abort", stop);
    raw.off("close", stop);
    raw.end();
  }
}

/**
 * Writes and waits while the client is slow: a long replay must not pile up in memory, and
 * yielding between pages keeps a synchronous store from starving the rest of the process.
 */
async function send(raw: ServerResponse, text: string): Promise<void> {
  if (raw.write(text)) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    return;
  }
  await new Promise<void>((resolve) => {
    const done = () => {
      raw.off("drain", done);
      raw.off("close", done);
      resolve();
    };
    raw.on("drain", done);
    raw.on("close", done);
  });
}

function formatEvent(event: LogEvent): string {
  return `id: ${event.seq}\ndata: ${JSON.stringify(event)}\n\n`;
}
