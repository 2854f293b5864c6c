import { Cron } from "croner";
import { invalid } from "../core/errors.js";

/** A parsed cron expression in its time zone. */
export interface CronExpression {
  /** The first occurrence strictly after `afterMs`, or null if there is none. */
  nextAfter(afterMs: number): number | null;
}

/**
 * Parses a cron expression of 5 fields (minute hour day month weekday) or 6 (with seconds
 * first), or a nickname such as @daily, read in an IANA time zone. Throws a validation
 * error naming `cron` or `timezone` and what is wrong.
 */
export function parseCron(expression: string, timezone: string): CronExpression {
  try {
    new Intl.DateTimeFormat("en", { timeZone: timezone });
  } catch {
    throw invalid(
      "timezone",
      `unknown time zone ${JSON.stringify(timezone)}; use an IANA name such as UTC or Europe/Paris`,
    );
  }
  let cron: Cron;
  try {
    // Without a function, croner only evaluates: it starts no timer.
    cron = new Cron(expression, { timezone, mode: "5-or-6-parts" });
  } catch (error) {
    const why = (error as Error).message.replace(/^CronPattern: /, "");
    throw invalid("cron", `${JSON.stringify(expression)} is not a cron expression: ${why}`);
  }
  return {
    nextAfter: (afterMs) => cron.nextRun(new Date(afterMs))?.getTime() ?? null,
  };
}

/** Like `parseCron`, but also refuses an expression that never fires (e.g. 30 February). */
export function parseLiveCron(expression: string, timezone: string, now: number): CronExpression {
  const cron = parseCron(expression, timezone);
  if (cron.nextAfter(now) === null) {
    throw invalid("cron", `${JSON.stringify(expression)} never fires`);
  }
  return cron;
}
