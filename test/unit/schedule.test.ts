import { describe, expect, it } from "vitest";
import type { BatonError } from "../../src/core/errors.js";
import { checkJobTemplate, firingJobSpec, planFiring } from "../../src/core/schedule.js";
import { parseCron, parseLiveCron } from "../../src/scheduling/cron.js";

const MINUTE = 60_000;
const everyMinute = (ms: number) => (Math.floor(ms / MINUTE) + 1) * MINUTE;

describe("planFiring", () => {
  it("fires a firing within the grace and moves to the following one", () => {
    expect(planFiring(10 * MINUTE, 10 * MINUTE + 5_000, "skip", MINUTE, everyMinute)).toEqual({
      jobFor: 10 * MINUTE,
      missed: false,
      nextFireAt: 11 * MINUTE,
    });
  });

  it("skips missed firings, or runs them once, and moves past now", () => {
    const now = 70 * MINUTE + 1;
    expect(planFiring(10 * MINUTE, now, "skip", MINUTE, everyMinute)).toEqual({
      jobFor: null,
      missed: true,
      nextFireAt: 71 * MINUTE,
    });
    expect(planFiring(10 * MINUTE, now, "run-once", MINUTE, everyMinute)).toEqual({
      jobFor: 10 * MINUTE,
      missed: true,
      nextFireAt: 71 * MINUTE,
    });
  });

  it("with no grace, counts anything already past as missed", () => {
    expect(planFiring(10 * MINUTE, 10 * MINUTE + 1, "skip", 0, everyMinute).missed).toBe(true);
    expect(planFiring(10 * MINUTE, 10 * MINUTE, "skip", 0, everyMinute).missed).toBe(false);
  });
});

describe("firingJobSpec", () => {
  it("labels the job with its schedule and keys it by the firing time", () => {
    const spec = firingJobSpec("nightly", { command: ["x"], labels: { team: "a" } }, 0);
    expect(spec).toMatchObject({
      command: ["x"],
      runAt: 0,
      labels: { team: "a", schedule: "nightly" },
      idempotencyKey: "schedule:nightly:1970-01-01T00:00:00.000Z",
    });
  });
});

describe("checkJobTemplate", () => {
  const fieldOf = (fn: () => void) => {
    try {
      fn();
    } catch (error) {
      return (error as BatonError).errors.map((e) => e.field);
    }
    return [];
  };

  it("names the template's bad fields under job.", () => {
    expect(fieldOf(() => checkJobTemplate({}, 0))).toEqual(["job.command"]);
    expect(
      fieldOf(() => checkJobTemplate({ command: ["x"], runAt: "2030-01-01T00:00:00Z" }, 0)),
    ).toEqual(["job.runAt"]);
    expect(fieldOf(() => checkJobTemplate({ command: ["x"], idempotencyKey: "k" }, 0))).toEqual([
      "job.idempotencyKey",
    ]);
    expect(fieldOf(() => checkJobTemplate({ command: ["x"], delayMs: 5 }, 0))).toEqual([]);
  });
});

describe("parseCron", () => {
  it("reads 5 fields, 6 with seconds first, and nicknames, in a time zone", () => {
    expect(parseCron("*/5 * * * *", "UTC").nextAfter(0)).toBe(5 * MINUTE);
    expect(parseCron("*/1 * * * * *", "UTC").nextAfter(1_500)).toBe(2_000);
    expect(parseCron("@daily", "UTC").nextAfter(0)).toBe(24 * 60 * MINUTE);
    const paris = parseCron("0 9 * * *", "Europe/Paris");
    expect(new Date(paris.nextAfter(Date.UTC(2026, 6, 1)) ?? 0).toISOString()).toBe(
      "2026-07-01T07:00:00.000Z",
    );
  });

  it("says what is wrong with a bad expression or time zone", () => {
    const failure = (cron: string, zone = "UTC") => {
      try {
        parseLiveCron(cron, zone, 0);
      } catch (error) {
        return (error as BatonError).errors[0];
      }
      return undefined;
    };
    expect(failure("61 * * * *")?.field).toBe("cron");
    expect(failure("61 * * * *")?.message).toMatch(/minute: 61/);
    expect(failure("* * * *")?.message).toMatch(/five, six, or seven/);
    expect(failure("* * * * * * *")?.message).toMatch(/5 or 6 parts/);
    expect(failure("0 0 30 2 *")).toEqual({ field: "cron", message: '"0 0 30 2 *" never fires' });
    expect(failure("* * * * *", "Mars/Olympus")?.field).toBe("timezone");
  });
});
