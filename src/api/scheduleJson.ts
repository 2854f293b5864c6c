import type { JobInput } from "../core/jobInput.js";
import type { MissedPolicy, Schedule } from "../core/schedule.js";
import { iso, isoOrNull } from "./jobJson.js";

/** A schedule as the HTTP API, the CLI's --json and the SDK show it: times in ISO 8601. */
export interface ScheduleJson {
  name: string;
  cron: string;
  timezone: string;
  missed: MissedPolicy;
  paused: boolean;
  /** The job each firing submits, as `POST /v1/jobs` takes it. */
  job: JobInput;
  nextFireAt: string | null;
  lastFiredAt: string | null;
  lastJobId: string | null;
  createdAt: string;
}

export function scheduleToJson(schedule: Schedule): ScheduleJson {
  return {
    name: schedule.name,
    cron: schedule.cron,
    timezone: schedule.timezone,
    missed: schedule.missed,
    paused: schedule.paused,
    job: schedule.job,
    nextFireAt: isoOrNull(schedule.nextFireAt),
    lastFiredAt: isoOrNull(schedule.lastFiredAt),
    lastJobId: schedule.lastJobId,
    createdAt: iso(schedule.createdAt),
  };
}
