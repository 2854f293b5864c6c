import type {
  ClaimBody,
  ClaimJson,
  FencedAnswerJson,
  HeartbeatAnswerJson,
  HeldLeaseJson,
} from "../api/workerSchemas.js";
import {
  claimFromJson,
  fencedFromJson,
  heartbeatFromJson,
  heldFromJson,
  MAX_WORKER_BATCH,
} from "../api/workerSchemas.js";
import type { OutputLine, OutputOffsets } from "../core/logEvent.js";
import type { AttemptOutcome } from "../core/outcome.js";
import type { WorkerBeat, WorkerOrders } from "../core/pool.js";
import { FailureLog } from "../failureLog.js";
import type { Logger } from "../logger.js";
import type {
  AppendAnswer,
  Claim,
  ClaimRequest,
  Completion,
  CompletionAnswer,
  FencedAnswer,
  HeartbeatAnswer,
  HeldLease,
  Lease,
  StoreChange,
  WorkerStore,
} from "../store/store.js";
import { type ClientOptions, type Endpoint, endpointOf, sendRequest } from "./httpClient.js";
import { parseSse } from "./sse.js";

export interface RemoteWorkerStoreOptions extends ClientOptions {
  logger: Logger;
  /** A request not answered within this fails (the worker retries it as any store error). */
  requestTimeoutMs?: number;
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const RECONNECT_BASE_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** Nothing from the change stream for this long (the server writes every 15 s): reconnect. */
const STREAM_IDLE_MS = 45_000;
const CHANGE_TYPES: ReadonlySet<string> = new Set<StoreChange["type"]>([
  "job_available",
  "job_finished",
  "cancel_requested",
  "logs",
  "external",
]);

interface PendingHeartbeat {
  lease: Lease;
  ttlMs: number;
  resolve: (answer: HeartbeatAnswer) => void;
  reject: (error: unknown) => void;
}

/**
 * What a worker needs of a store, through a Baton server's worker protocol (`baton worker
 * --server`): the worker then needs no store credentials, only the server's URL and token.
 * Errors are thrown as the HTTP client's (ApiError with the server's problem detail,
 * UnreachableError); fencing refusals come back as values, as from a store. `watch` follows
 * the server's change stream, reconnecting with backoff and jitter, and reports `external`
 * after a reconnect, since whatever happened meanwhile was missed. Heartbeats asked for in
 * the same tick go to the server in one request.
 */
export class RemoteWorkerStore implements WorkerStore {
  private readonly endpoint: Endpoint;
  private readonly timeoutMs: number;
  private readonly streamFailures: FailureLog;
  private readonly listeners = new Set<(change: StoreChange) => void>();
  private stream: AbortController | null = null;
  private pendingHeartbeats: PendingHeartbeat[] = [];
  private closed = false;
  /** Leases handed to the worker (claimed or held), until it completes or releases them. */
  private readonly delivered = new Set<string>();
  /** A claim failed in a way that may have taken jobs whose answer never arrived. */
  private unsure = false;

  constructor(options: RemoteWorkerStoreOptions) {
    this.endpoint = endpointOf(options);
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.streamFailures = new FailureLog(
      options.logger.child({ server: this.endpoint.server }),
      "following the server's change stream",
    );
  }

  get server(): string {
    return this.endpoint.server;
  }

  async claim(request: ClaimRequest): Promise<Claim | null> {
    const [claim] = await this.claimUpTo(request, 1);
    return claim ?? null;
  }

  async claimBatch(request: ClaimRequest, max: number): Promise<Claim[]> {
    return this.claimUpTo(request, max);
  }

  /**
   * Claims up to `max` jobs; with `waitMs`, the server waits that long for one to come
   * before answering empty (a worker that follows `watch` has no need to).
   */
  async claimUpTo(request: ClaimRequest, max: number, waitMs = 0): Promise<Claim[]> {
    if (this.unsure) await this.releaseUndelivered(request.workerId);
    const body: ClaimBody = {
      workerId: request.workerId,
      queues: request.queues && [...request.queues],
      kinds: [...request.kinds],
      ...(request.handlers !== undefined && {
        handlers: request.handlers && [...request.handlers],
      }),
      freeCpus: request.freeCpus,
      freeMemoryMb: request.freeMemoryMb,
      leaseTtlMs: request.leaseTtlMs,
      max,
      waitMs,
    };
    let answer: { claims: ClaimJson[] };
    try {
      answer = await this.post("/v1/worker/claim", body, waitMs);
    } catch (error) {
      this.unsure = true;
      throw error;
    }
    const claims = answer.claims.map(claimFromJson);
    for (const claim of claims) this.delivered.add(leaseKey(claim.lease));
    return claims;
  }

  /**
   * After a claim whose answer may have been lost (a timeout, a dropped connection), gives
   * back to pending, without spending an attempt, every job the server says this worker
   * holds that it never received; otherwise they would sit leased until the reaper failed
   * them as lost.
   */
  private async releaseUndelivered(workerId: string): Promise<void> {
    const held = await this.post<{ held: HeldLeaseJson[] }>("/v1/worker/held", { workerId });
    const holding = new Set<string>();
    for (const { lease } of held.held) {
      const key = leaseKey(lease);
      holding.add(key);
      if (this.delivered.has(key)) continue;
      await this.release(lease, "the worker never received its claim (the answer was lost)");
    }
    // What the server no longer counts as held is done with.
    for (const key of this.delivered) if (!holding.has(key)) this.delivered.delete(key);
    this.unsure = false;
  }

  heartbeat(lease: Lease, ttlMs: number): Promise<HeartbeatAnswer> {
    return new Promise((resolve, reject) => {
      this.pendingHeartbeats.push({ lease, ttlMs, resolve, reject });
      if (this.pendingHeartbeats.length === 1) setImmediate(() => this.sendHeartbeats());
    });
  }

  async heartbeatBatch(leases: readonly Lease[], ttlMs: number): Promise<HeartbeatAnswer[]> {
    const answers: HeartbeatAnswer[] = [];
    for (const chunk of chunks(leases)) {
      const body = { leases: chunk.map(leaseBody), ttlMs };
      const page = await this.post<{ answers: HeartbeatAnswerJson[] }>(
        "/v1/worker/heartbeat",
        body,
      );
      answers.push(...page.answers.map(heartbeatFromJson));
    }
    return answers;
  }

  async appendLogs(
    lease: Lease,
    lines: readonly OutputLine[],
    stored?: OutputOffsets,
  ): Promise<AppendAnswer> {
    const body = {
      ...pathLease(lease),
      // Only the fields of a line: the worker's own bookkeeping on them is not sent.
      lines: lines.map(({ stream, line, ts, kind, data, cut }) => ({
        stream,
        line,
        ts,
        kind,
        data,
        cut,
      })),
      ...(stored && { stored: { stdout: stored.stdout, stderr: stored.stderr } }),
    };
    return this.post(jobPath(lease, "events"), body);
  }

  async complete(lease: Lease, outcome: AttemptOutcome): Promise<FencedAnswer> {
    const body = { ...pathLease(lease), outcome: outcomeBody(outcome) };
    const answer = await this.post<FencedAnswerJson>(jobPath(lease, "complete"), body);
    this.delivered.delete(leaseKey(lease));
    return fencedFromJson(answer);
  }

  async completeBatch(items: readonly Completion[]): Promise<CompletionAnswer[]> {
    const answers: CompletionAnswer[] = [];
    for (const chunk of chunks(items)) {
      const body = {
        items: chunk.map((item) => ({
          lease: leaseBody(item.lease),
          outcome: outcomeBody(item.outcome),
        })),
      };
      const page = await this.post<{ answers: CompletionAnswer[] }>("/v1/worker/complete", body);
      for (const item of chunk) this.delivered.delete(leaseKey(item.lease));
      answers.push(...page.answers);
    }
    return answers;
  }

  async release(lease: Lease, message: string): Promise<FencedAnswer> {
    const body = { ...pathLease(lease), message };
    const answer = await this.post<FencedAnswerJson>(jobPath(lease, "release"), body);
    this.delivered.delete(leaseKey(lease));
    return fencedFromJson(answer);
  }

  async heldBy(workerId: string): Promise<HeldLease[]> {
    const answer = await this.post<{ held: HeldLeaseJson[] }>("/v1/worker/held", { workerId });
    const held = answer.held.map(heldFromJson);
    for (const { lease } of held) this.delivered.add(leaseKey(lease));
    return held;
  }

  async beatWorker(beat: WorkerBeat): Promise<WorkerOrders> {
    const body = {
      name: beat.name,
      host: beat.host,
      pid: beat.pid,
      queues: beat.queues && [...beat.queues],
      runs: beat.runs,
      concurrency: beat.concurrency,
      cpus: beat.cpus,
      memoryMb: beat.memoryMb,
      ttlMs: beat.ttlMs,
      fresh: beat.fresh,
    };
    return this.post("/v1/worker/beat", body);
  }

  async stopWorker(name: string): Promise<void> {
    await this.post("/v1/worker/stop", { name });
  }

  async cancelRequests(workerId: string): Promise<Lease[]> {
    const answer = await this.post<{ leases: Lease[] }>("/v1/worker/cancel-requests", {
      workerId,
    });
    return answer.leases;
  }

  async reapExpired(): Promise<number> {
    return (await this.post<{ reaped: number }>("/v1/worker/reap")).reaped;
  }

  watch(listener: (change: StoreChange) => void): () => void {
    this.listeners.add(listener);
    if (!this.stream && !this.closed) {
      const stream = new AbortController();
      this.stream = stream;
      void this.follow(stream.signal);
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stopStream();
    };
  }

  /** Stops following the change stream; requests in flight finish or time out. */
  close(): void {
    this.closed = true;
    this.listeners.clear();
    this.stopStream();
  }

  private stopStream(): void {
    this.stream?.abort();
    this.stream = null;
  }

  private async post<T>(path: string, body?: unknown, waitMs = 0): Promise<T> {
    const response = await sendRequest(this.endpoint, "POST", path, body, {
      signal: AbortSignal.timeout(this.timeoutMs + waitMs),
    });
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /** Sends the heartbeats asked for since the last tick: one request per lease TTL. */
  private sendHeartbeats(): void {
    const pending = this.pendingHeartbeats;
    this.pendingHeartbeats = [];
    const byTtl = new Map<number, PendingHeartbeat[]>();
    for (const item of pending) byTtl.set(item.ttlMs, [...(byTtl.get(item.ttlMs) ?? []), item]);
    for (const [ttlMs, group] of byTtl) {
      const [only] = group;
      const answers =
        group.length === 1 && only
          ? this.heartbeatOne(only.lease, ttlMs).then((answer) => [answer])
          : this.heartbeatBatch(
              group.map((item) => item.lease),
              ttlMs,
            );
      answers.then(
        (list) => group.forEach((item, index) => settle(item, list[index])),
        (error: unknown) => group.forEach((item) => item.reject(error)),
      );
    }
  }

  private async heartbeatOne(lease: Lease, ttlMs: number): Promise<HeartbeatAnswer> {
    const body = { ...pathLease(lease), ttlMs };
    return heartbeatFromJson(await this.post(jobPath(lease, "heartbeat"), body));
  }

  /** Follows the change stream until `stop` aborts, reconnecting with backoff and jitter. */
  private async follow(stop: AbortSignal): Promise<void> {
    let failures = 0;
    let first = true;
    while (!stop.aborted) {
      const attempt = new AbortController();
      const abortAttempt = () => attempt.abort();
      stop.addEventListener("abort", abortAttempt);
      let lastDataAt = Date.now();
      const idle = setInterval(() => {
        if (Date.now() - lastDataAt > STREAM_IDLE_MS) attempt.abort();
      }, STREAM_IDLE_MS / 3);
      try {
        const response = await sendRequest(this.endpoint, "GET", "/v1/worker/changes", undefined, {
          headers: { accept: "text/event-stream" },
          signal: attempt.signal,
        });
        if (!response.body) throw new Error("the server sent an empty change stream");
        this.streamFailures.succeeded();
        failures = 0;
        // What changed while there was no stream was missed: the worker looks again.
        if (!first) this.emit({ type: "external" });
        first = false;
        const body = response.body.pipeThrough(
          new TransformStream<Uint8Array, Uint8Array>({
            transform(chunk, controller) {
              lastDataAt = Date.now();
              controller.enqueue(chunk);
            },
          }),
        );
        for await (const event of parseSse(body)) {
          if (event.event === "message") this.emit(parseChange(event.data));
        }
      } catch (error) {
        if (stop.aborted) break;
        this.streamFailures.failed(error);
      } finally {
        clearInterval(idle);
        stop.removeEventListener("abort", abortAttempt);
      }
      first = false;
      failures++;
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** (failures - 1));
      await sleep(delay * (0.5 + Math.random() / 2), stop);
    }
  }

  private emit(change: StoreChange | null): void {
    if (!change) return;
    for (const listener of [...this.listeners]) listener(change);
  }
}

function settle(item: PendingHeartbeat, answer: HeartbeatAnswer | undefined): void {
  if (answer) item.resolve(answer);
  else item.reject(new Error("the server's heartbeat answer left this lease out"));
}

function parseChange(data: string): StoreChange | null {
  try {
    const change = JSON.parse(data) as StoreChange;
    return CHANGE_TYPES.has(change.type) ? change : null;
  } catch {
    return null;
  }
}

function leaseKey(lease: Lease): string {
  return `${lease.jobId}#${lease.attempt}`;
}

function leaseBody(lease: Lease): Lease {
  return { jobId: lease.jobId, attempt: lease.attempt, workerId: lease.workerId };
}

/** The lease of a per-job path's body (the job is in the path). */
function pathLease(lease: Lease): { attempt: number; workerId: string } {
  return { attempt: lease.attempt, workerId: lease.workerId };
}

function jobPath(lease: Lease, action: string): string {
  return `/v1/worker/jobs/${encodeURIComponent(lease.jobId)}/${action}`;
}

function outcomeBody(outcome: AttemptOutcome): AttemptOutcome {
  switch (outcome.state) {
    case "succeeded":
      return outcome.result === undefined
        ? { state: outcome.state, exitCode: outcome.exitCode, signal: null }
        : {
            state: outcome.state,
            exitCode: outcome.exitCode,
            signal: null,
            result: outcome.result,
          };
    case "failed":
      return {
        state: outcome.state,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        failure: { reason: outcome.failure.reason, message: outcome.failure.message },
        ...(outcome.final === undefined ? {} : { final: outcome.final }),
      };
    case "cancelled":
      return { state: outcome.state, exitCode: outcome.exitCode, signal: outcome.signal };
  }
}

function* chunks<T>(items: readonly T[]): Generator<T[]> {
  for (let start = 0; start < items.length; start += MAX_WORKER_BATCH) {
    yield items.slice(start, start + MAX_WORKER_BATCH);
  }
}

function sleep(ms: number, stop: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      stop.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stop.addEventListener("abort", done);
  });
}
