import { type Static, Type } from "@sinclair/typebox";
import { MAX_PRIORITY, MIN_PRIORITY } from "../core/job.js";
import { LOG_STREAMS } from "../core/logEvent.js";
import type { JobInput } from "../core/jobInput.js";
import { MISSED_POLICIES, type MissedPolicy } from "../core/schedule.js";

/**
 * JSON schemas of the HTTP API's requests. Strict on purpose: unknown fields are rejected
 * (additionalProperties: false) and the server's Ajv neither coerces nor removes anything.
 */

/** Text handed to exec(2) or the environment, which cannot carry a NUL byte. */
const NO_NUL = "^[^\\u0000]*$";

const Name = Type.String({ minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9_.:-]+$" });
const StringMap = (keyPattern: string) =>
  Type.Record(
    Type.String({ pattern: keyPattern }),
    Type.String({ maxLength: 65_536, pattern: NO_NUL }),
    {
      maxProperties: 1_000,
    },
  );

export const JobInputSchema = Type.Object(
  {
    queue: Type.Optional(Name),
    command: Type.Optional(
      Type.Array(Type.String({ maxLength: 131_072, pattern: NO_NUL }), {
        minItems: 1,
        maxItems: 10_000,
      }),
    ),
    script: Type.Optional(Type.String({ minLength: 1 })),
    handler: Type.Optional(Name),
    payload: Type.Optional(Type.Unknown()),
    priority: Type.Optional(Type.Integer({ minimum: MIN_PRIORITY, maximum: MAX_PRIORITY })),
    resources: Type.Optional(
      Type.Object(
        {
          cpus: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 4096 })),
          memoryMb: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1 })),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })),
    maxLogBytes: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 40 })),
    backoff: Type.Optional(
      Type.Object(
        {
          baseMs: Type.Optional(Type.Integer({ minimum: 0 })),
          maxMs: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
    runAt: Type.Optional(Type.String({ format: "date-time" })),
    delayMs: Type.Optional(Type.Integer({ minimum: 0 })),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    concurrencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    concurrencyLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })),
    env: Type.Optional(StringMap("^[A-Za-z_][A-Za-z0-9_]*$")),
    cwd: Type.Optional(Type.String({ minLength: 1, pattern: NO_NUL })),
    labels: Type.Optional(StringMap("^[A-Za-z0-9_.:/-]{1,128}$")),
  },
  { additionalProperties: false },
);

// The schema and the core's JobInput describe the same thing; this fails to compile if
// they drift apart.
type Assert<T extends true> = T;
export type _SchemaMatchesJobInput = Assert<
  Static<typeof JobInputSchema> extends JobInput ? true : false
>;

/** Most jobs one batch may hold: one transaction, all or nothing. */
export const MAX_BATCH_JOBS = 10_000;

export const JobBatchSchema = Type.Object(
  { jobs: Type.Array(JobInputSchema, { minItems: 1, maxItems: MAX_BATCH_JOBS }) },
  { additionalProperties: false },
);

export const QueueParams = Type.Object({ name: Name }, { additionalProperties: false });

export const QueueUpdateSchema = Type.Object(
  {
    paused: Type.Optional(Type.Boolean()),
    maxRunning: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: 1_000_000 }), Type.Null()]),
    ),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const WorkerParams = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 200 }) },
  { additionalProperties: false },
);

export const WorkerUpdateSchema = Type.Object(
  {
    concurrency: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    drain: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const StatsQuery = Type.Object(
  { window: Type.Optional(Type.String({ minLength: 1 })) },
  { additionalProperties: false },
);

export const DlqQuery = Type.Object(
  {
    queue: Type.Optional(Type.String({ minLength: 1 })),
    limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })),
    cursor: Type.Optional(Type.String({ pattern: "^[0-9]+$" })),
  },
  { additionalProperties: false },
);

/** Either named jobs, or every dead job (of one queue). */
export const DlqReplaySchema = Type.Union([
  Type.Object(
    { ids: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 10_000 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { all: Type.Literal(true), queue: Type.Optional(Type.String({ minLength: 1 })) },
    { additionalProperties: false },
  ),
]);

export const ScheduleParams = Type.Object({ name: Name }, { additionalProperties: false });

/** `PUT /v1/schedules/:name`: the expression is checked by the cron parser, not here. */
export const ScheduleInputSchema = Type.Object(
  {
    cron: Type.String({ minLength: 1, maxLength: 256 }),
    missed: Type.Optional(
      Type.Unsafe<MissedPolicy>({ type: "string", enum: [...MISSED_POLICIES] }),
    ),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    job: JobInputSchema,
  },
  { additionalProperties: false },
);
export type ScheduleInput = Static<typeof ScheduleInputSchema>;

export const ScheduleUpdateSchema = Type.Object(
  { paused: Type.Boolean() },
  { additionalProperties: false },
);

export const JobIdParams = Type.Object({ id: Type.String() }, { additionalProperties: false });

const JOB_STATE_PATTERN = "^(pending|blocked|running|succeeded|failed|cancelled|skipped)$";

export const ListJobsQuery = Type.Object(
  {
    state: Type.Optional(Type.String({ pattern: JOB_STATE_PATTERN })),
    queue: Type.Optional(Type.String({ minLength: 1 })),
    limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,4}$" })),
    cursor: Type.Optional(Type.String({ pattern: "^[0-9]+$" })),
  },
  { additionalProperties: false },
);

export const LogsQuery = Type.Object(
  {
    after: Type.Optional(Type.String({ pattern: "^[0-9]{1,15}$" })),
    limit: Type.Optional(Type.String({ pattern: "^[0-9]{1,5}$" })),
    attempt: Type.Optional(Type.String({ pattern: "^[0-9]{1,9}$" })),
    stream: Type.Optional(Type.String({ pattern: `^(${LOG_STREAMS.join("|")})$` })),
    follow: Type.Optional(Type.String({ pattern: "^(0|1|true|false)$" })),
  },
  { additionalProperties: false },
);
