import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { FAILURE_REASONS, JOB_KINDS } from "../core/job.js";
import { invalid } from "../core/errors.js";
import { EVENT_KINDS, LOG_STREAMS, type OutputLine, type OutputOffsets } from "../core/logEvent.js";
import type { AttemptOutcome } from "../core/outcome.js";
import type { Claim, FencedAnswer, HeartbeatAnswer, HeldLease, Lease } from "../store/store.js";
import { iso, jobFromWorkerJson, jobToWorkerJson, ms, type WorkerJobJson } from "./jobJson.js";

/**
 * The worker protocol's wire format: what a worker that reaches Baton through its HTTP
 * server (`baton worker --server`) sends, validated as strictly as the rest of the API
 * (unknown fields rejected, nothing coerced), and what it gets back. One request per
 * WorkerStore method; times are ISO 8601 as elsewhere in the API, except the `ts` of output
 * lines, epoch milliseconds as in `GET /v1/jobs/:id/logs`.
 */

/** The longest a claim may wait for work before answering empty. */
export const MAX_CLAIM_WAIT_MS = 30_000;
/** Most jobs one claim, heartbeat or completion request may carry. */
export const MAX_WORKER_BATCH = 10_000;

const enumOf = <T extends string>(values: readonly T[]) =>
  Type.Unsafe<T>({ type: "string", enum: [...values] });
const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const WorkerId = Type.String({ minLength: 1, maxLength: 200 });
const JobId = Type.String({ minLength: 1, maxLength: 64 });
/** Every claim takes the next attempt number, from 1: the fencing token. */
const Attempt = Type.Integer({ minimum: 1 });
const TtlMs = Type.Integer({ minimum: 1, maximum: 86_400_000 });
const Queues = Nullable(
  Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 1_000 }),
);
const Message = Type.String({ maxLength: 65_536 });

export const LeaseSchema = Type.Object(
  { jobId: JobId, attempt: Attempt, workerId: WorkerId },
  { additionalProperties: false },
);

/** `POST /v1/worker/claim`: what fits the worker's free capacity, up to `max` jobs. */
export const ClaimSchema = Type.Object(
  {
    workerId: WorkerId,
    queues: Queues,
    kinds: Type.Array(enumOf(JOB_KINDS), { minItems: 1, maxItems: JOB_KINDS.length }),
    /** Handler jobs: only those naming one of these handlers (absent or null: any). */
    handlers: Type.Optional(
      Nullable(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 10_000 })),
    ),
    freeCpus: Type.Number(),
    freeMemoryMb: Nullable(Type.Number()),
    leaseTtlMs: TtlMs,
    /** Default 1. */
    max: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_WORKER_BATCH })),
    /** How long to wait for a job before answering empty; default 0 (answer at once). */
    waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_CLAIM_WAIT_MS })),
  },
  { additionalProperties: false },
);
export type ClaimBody = Static<typeof ClaimSchema>;

/** The lease of the job named in the path. */
const PathLease = { attempt: Attempt, workerId: WorkerId };

export const HeartbeatSchema = Type.Object(
  { ...PathLease, ttlMs: TtlMs },
  { additionalProperties: false },
);
export type HeartbeatBody = Static<typeof HeartbeatSchema>;

export const HeartbeatBatchSchema = Type.Object(
  {
    leases: Type.Array(LeaseSchema, { minItems: 1, maxItems: MAX_WORKER_BATCH }),
    ttlMs: TtlMs,
  },
  { additionalProperties: false },
);
export type HeartbeatBatchBody = Static<typeof HeartbeatBatchSchema>;

const OutputLineSchema = Type.Object(
  {
    stream: enumOf(LOG_STREAMS),
    line: Type.String(),
    ts: Type.Integer({ minimum: 0 }),
    kind: enumOf(EVENT_KINDS),
    data: Type.Unknown(),
    cut: Type.Boolean(),
  },
  { additionalProperties: false },
);

const OffsetsSchema = Type.Object(
  { stdout: Type.Integer({ minimum: 0 }), stderr: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);

/** `POST /v1/worker/jobs/:id/events`: output lines, and how far each stream is now stored. */
export const EventsSchema = Type.Object(
  {
    ...PathLease,
    lines: Type.Array(OutputLineSchema, { maxItems: 100_000 }),
    stored: Type.Optional(OffsetsSchema),
  },
  { additionalProperties: false },
);
export type EventsBody = Static<typeof EventsSchema>;

/**
 * An attempt's outcome. Flat rather than a union, so that a mistake is named by its field;
 * `outcomeOf` checks what goes with which state.
 */
const OutcomeSchema = Type.Object(
  {
    state: enumOf(["succeeded", "failed", "cancelled"] as const),
    exitCode: Nullable(Type.Integer()),
    signal: Nullable(Type.String({ minLength: 1, maxLength: 64 })),
    failure: Type.Optional(
      Type.Object(
        { reason: enumOf(FAILURE_REASONS), message: Message },
        { additionalProperties: false },
      ),
    ),
    result: Type.Optional(Type.Unknown()),
    /** A handler's NonRetryableError: no further attempts. */
    final: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
type OutcomeBody = Static<typeof OutcomeSchema>;

export const CompleteSchema = Type.Object(
  { ...PathLease, outcome: OutcomeSchema },
  { additionalProperties: false },
);
export type CompleteBody = Static<typeof CompleteSchema>;

export const CompleteBatchSchema = Type.Object(
  {
    items: Type.Array(
      Type.Object({ lease: LeaseSchema, outcome: OutcomeSchema }, { additionalProperties: false }),
      { minItems: 1, maxItems: MAX_WORKER_BATCH },
    ),
  },
  { additionalProperties: false },
);
export type CompleteBatchBody = Static<typeof CompleteBatchSchema>;

export const ReleaseSchema = Type.Object(
  { ...PathLease, message: Message },
  { additionalProperties: false },
);
export type ReleaseBody = Static<typeof ReleaseSchema>;

/** `POST /v1/worker/held` and `/v1/worker/cancel-requests`. */
export const WorkerIdSchema = Type.Object({ workerId: WorkerId }, { additionalProperties: false });

/** `POST /v1/worker/beat`: a WorkerBeat. */
export const BeatSchema = Type.Object(
  {
    name: WorkerId,
    host: Type.String({ maxLength: 255 }),
    pid: Type.Integer({ minimum: 0 }),
    queues: Queues,
    // Absent from workers of an earlier version: counted as running anything.
    runs: Type.Optional(
      Nullable(
        Type.Object(
          {
            shell: Type.Boolean(),
            handlers: Type.Array(Type.String({ minLength: 1, maxLength: 256 }), {
              maxItems: 10_000,
            }),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    concurrency: Type.Integer({ minimum: 0, maximum: 100_000 }),
    cpus: Type.Number({ minimum: 0 }),
    memoryMb: Nullable(Type.Number({ minimum: 0 })),
    ttlMs: TtlMs,
    fresh: Type.Boolean(),
  },
  { additionalProperties: false },
);

export const StopSchema = Type.Object({ name: WorkerId }, { additionalProperties: false });

/** Checks what goes with the outcome's state (`prefix`: where it sits in the request). */
export function outcomeOf(body: OutcomeBody, prefix: string): AttemptOutcome {
  const field = (name: string) => `${prefix}outcome.${name}`;
  const { state, exitCode, signal, failure, result, final } = body;
  if (state !== "failed" && final !== undefined) {
    throw invalid(field("final"), `must be absent when state is ${state}`);
  }
  if (state !== "failed" && failure !== undefined) {
    throw invalid(field("failure"), `must be absent when state is ${state}`);
  }
  if (state !== "succeeded" && result !== undefined) {
    throw invalid(field("result"), `must be absent when state is ${state}`);
  }
  switch (state) {
    case "succeeded":
      if (signal !== null) throw invalid(field("signal"), "must be null when state is succeeded");
      return result === undefined
        ? { state, exitCode, signal }
        : { state, exitCode, signal, result };
    case "failed":
      if (failure === undefined)
        throw invalid(field("failure"), "is required when state is failed");
      return final === undefined
        ? { state, exitCode, signal, failure }
        : { state, exitCode, signal, failure, final };
    case "cancelled":
      return { state, exitCode, signal };
  }
}

// What a worker sends fits these schemas; this fails to compile if they drift apart.
type Assert<T extends true> = T;
export type _OutcomeFits = Assert<AttemptOutcome extends OutcomeBody ? true : false>;
export type _OutputLineFits = Assert<
  OutputLine extends Static<typeof OutputLineSchema> ? true : false
>;

/* ---- Answers ---- */

export interface ClaimJson {
  job: WorkerJobJson;
  lease: Lease;
  expiresAt: string;
}

export interface HeldLeaseJson extends ClaimJson {
  stored: OutputOffsets;
}

export type HeartbeatAnswerJson =
  { held: true; cancel: boolean; expiresAt: string } | { held: false; cancel: false };

export type FencedAnswerJson =
  { applied: true; job: WorkerJobJson } | { applied: false; job: WorkerJobJson | null };

export function claimToJson(claim: Claim): ClaimJson {
  return { job: jobToWorkerJson(claim.job), lease: claim.lease, expiresAt: iso(claim.expiresAt) };
}

export function claimFromJson(json: ClaimJson): Claim {
  return { job: jobFromWorkerJson(json.job), lease: json.lease, expiresAt: ms(json.expiresAt) };
}

export function heldToJson(held: HeldLease): HeldLeaseJson {
  return { ...claimToJson(held), stored: held.stored };
}

export function heldFromJson(json: HeldLeaseJson): HeldLease {
  return { ...claimFromJson(json), stored: json.stored };
}

export function heartbeatToJson(answer: HeartbeatAnswer): HeartbeatAnswerJson {
  return answer.held
    ? { held: true, cancel: answer.cancel, expiresAt: iso(answer.expiresAt) }
    : { held: false, cancel: false };
}

export function heartbeatFromJson(json: HeartbeatAnswerJson): HeartbeatAnswer {
  return json.held
    ? { held: true, cancel: json.cancel, expiresAt: ms(json.expiresAt) }
    : { held: false, cancel: false };
}

export function fencedToJson(answer: FencedAnswer): FencedAnswerJson {
  return answer.applied
    ? { applied: true, job: jobToWorkerJson(answer.job) }
    : { applied: false, job: answer.job && jobToWorkerJson(answer.job) };
}

export function fencedFromJson(json: FencedAnswerJson): FencedAnswer {
  return json.applied
    ? { applied: true, job: jobFromWorkerJson(json.job) }
    : { applied: false, job: json.job && jobFromWorkerJson(json.job) };
}
