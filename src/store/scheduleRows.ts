import type { JobSpec } from "../core/job.js";
import type { JobInput } from "../core/jobInput.js";
import {
  firingJobSpec,
  type FiringPlan,
  type MissedPolicy,
  planFiring,
  type Schedule,
} from "../core/schedule.js";
import { type CronExpression, parseCron } from "../scheduling/cron.js";

/** A row of `schedules`, as both stores read it. */
export interface ScheduleRow {
  name: string;
  cron: string;
  timezone: string;
  missed: string;
  paused: number;
  job: string;
  next_fire_at: number | null;
  last_fired_at: number | null;
  last_job_id: number | null;
  created_at: number;
}

export function scheduleFromRow(row: ScheduleRow): Schedule {
  return {
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    missed: row.missed as MissedPolicy,
    paused: row.paused === 1,
    job: JSON.parse(row.job) as JobInput,
    nextFireAt: row.next_fire_at,
    lastFiredAt: row.last_fired_at,
    lastJobId: row.last_job_id === null ? null : String(row.last_job_id),
    createdAt: row.created_at,
  };
}

/** The first firing of an expression after `now` (when a schedule is created or changed). */
export function firstFiring(cron: string, timezone: string, now: number): number | null {
  return parseCron(cron, timezone).nextAfter(now);
}

/**
 * What a due schedule's firing does: the plan, and the job to submit if any. A schedule that
 * can no longer be read (its expression, or its job, is refused by this version of Baton)
 * yields no job and an error to report, and moves on, so that it cannot hold up the others:
 * past its firing if only its job is bad, to never if its expression is.
 */
export function firingOf(
  row: ScheduleRow & { next_fire_at: number },
  now: number,
  graceMs: number,
): { plan: FiringPlan; spec: JobSpec | null; error: string | null } {
  let cron: CronExpression;
  try {
    cron = parseCron(row.cron, row.timezone);
  } catch (error) {
    const plan = { jobFor: null, missed: false, nextFireAt: null };
    return { plan, spec: null, error: (error as Error).message };
  }
  const plan = planFiring(row.next_fire_at, now, row.missed as MissedPolicy, graceMs, (ms) =>
    cron.nextAfter(ms),
  );
  if (plan.jobFor === null) return { plan, spec: null, error: null };
  try {
    const template = JSON.parse(row.job) as JobInput;
    return { plan, spec: firingJobSpec(row.name, template, plan.jobFor), error: null };
  } catch (error) {
    return {
      plan: { ...plan, jobFor: null },
      spec: null,
      error: `job: ${(error as Error).message}`,
    };
  }
}
