import { BatonError, invalid } from "./errors.js";
import type { JobSpec } from "./job.js";
import { type JobInput, normalizeJobInput } from "./jobInput.js";

/**
 * Cron schedules: a named cron expression and the job each firing submits. Each firing is
 * created exactly once however many servers look at the schedule; firings that nobody looked
 * at in time (everything was down, or the schedule was paused) follow the schedule's policy.
 */

/** `skip`: no job for missed firings. `run-once`: one job for all of them together. */
export const MISSED_POLICIES = ["skip", "run-once"] as const;
export type MissedPolicy = (typeof MISSED_POLICIES)[number];

export const DEFAULT_MISSED_POLICY: MissedPolicy = "skip";
export const DEFAULT_TIMEZONE = "UTC";

/** A firing older than this when a server first looks at it was missed. */
export const MISSED_GRACE_MS = 60_000;

/** A schedule as a client creates or replaces it, with defaults applied. */
export interface ScheduleSpec {
  name: string;
  cron: string;
  timezone: string;
  missed: MissedPolicy;
  /** The job each firing submits, as `POST /v1/jobs` takes it. */
  job: JobInput;
}

export interface Schedule {
  name: string;
  cron: string;
  timezone: string;
  missed: MissedPolicy;
  paused: boolean;
  job: JobInput;
  /** The next firing not yet handled; null when the expression never fires again. */
  nextFireAt: number | null;
  lastFiredAt: number | null;
  lastJobId: string | null;
  createdAt: number;
}

/** What to do about a due firing. */
export interface FiringPlan {
  /** The firing time the job is created for, or null: no job. */
  jobFor: number | null;
  /** The firing was older than the grace: the missed policy decided. */
  missed: boolean;
  nextFireAt: number | null;
}

/**
 * Decides a due firing (`due` <= `now`). Within the grace it is simply fired and the schedule
 * moves to the following occurrence (which may be due as well: each gets its own job).
 * Past the grace, it and every other firing up to `now` count as missed, handled together by
 * the policy, and the schedule moves to the first occurrence after `now`.
 */
export function planFiring(
  due: number,
  now: number,
  policy: MissedPolicy,
  graceMs: number,
  nextAfter: (ms: number) => number | null,
): FiringPlan {
  if (now - due <= graceMs) return { jobFor: due, missed: false, nextFireAt: nextAfter(due) };
  return { jobFor: policy === "run-once" ? due : null, missed: true, nextFireAt: nextAfter(now) };
}

/** The idempotency key of a schedule's firing: a second guard against a duplicate firing. */
export function firingKey(name: string, firingAt: number): string {
  return `schedule:${name}:${new Date(firingAt).toISOString()}`;
}

/** The job a firing submits: the template, labelled `schedule=<name>`, keyed by the firing. */
export function firingJobSpec(name: string, template: JobInput, firingAt: number): JobSpec {
  const spec = normalizeJobInput(template, firingAt);
  return {
    ...spec,
    idempotencyKey: firingKey(name, firingAt),
    labels: { ...spec.labels, schedule: name },
  };
}

/**
 * Checks a schedule's job template as `POST /v1/jobs` would check a job, naming fields under
 * `job.`. A template may not fix its own start time or idempotency key: each firing sets them.
 */
export function checkJobTemplate(template: JobInput, now: number): void {
  if (template.runAt !== undefined) {
    throw invalid(
      "job.runAt",
      "a schedule's job starts when it fires; delayMs (--delay) starts it later",
    );
  }
  if (template.idempotencyKey !== undefined) {
    throw invalid("job.idempotencyKey", "each firing gets its own key (schedule:NAME:TIME)");
  }
  try {
    normalizeJobInput(template, now);
  } catch (error) {
    if (!(error instanceof BatonError)) throw error;
    const errors = error.errors.map((e) => ({ ...e, field: `job.${e.field}` }));
    const detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    throw new BatonError(error.code, detail || `job: ${error.message}`, errors);
  }
}
