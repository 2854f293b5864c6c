import { Command, InvalidArgumentError } from "commander";
import type { ScheduleJson } from "../../api/scheduleJson.js";
import type { ScheduleInput } from "../../api/schemas.js";
import { MISSED_POLICIES, type MissedPolicy } from "../../core/schedule.js";
import { describeCommand, table, truncate } from "../format.js";
import { type JobFlags, jobInputFrom, withJobOptions } from "../jobOptions.js";
import { clientCommand, clientOf, printJson } from "./clientCommands.js";

function scheduleTable(schedules: readonly ScheduleJson[]): string {
  return table(
    ["NAME", "CRON", "TIMEZONE", "MISSED", "STATE", "NEXT", "LAST", "LAST JOB", "COMMAND"],
    schedules.map((s) => [
      s.name,
      s.cron,
      s.timezone,
      s.missed,
      s.paused ? "paused" : "active",
      s.nextFireAt ?? "never",
      s.lastFiredAt ?? "-",
      s.lastJobId ?? "-",
      truncate(
        describeCommand({ command: s.job.command ?? null, script: s.job.script ?? null }),
        50,
      ),
    ]),
  );
}

function print(schedule: ScheduleJson, json: boolean | undefined): void {
  if (json) printJson(schedule);
  else process.stdout.write(`${scheduleTable([schedule])}\n`);
}

function missedPolicy(value: string): MissedPolicy {
  const policy = MISSED_POLICIES.find((p) => p === value);
  if (!policy) throw new InvalidArgumentError(`expected one of ${MISSED_POLICIES.join(", ")}`);
  return policy;
}

function addCommand(): Command {
  const add = clientCommand(
    "add",
    "create (or replace) a schedule: each firing of the cron expression submits the job",
    "  baton schedules add backup --cron '0 3 * * *' -- ./backup.sh\n" +
      "  baton schedules add tick --cron '*/10 * * * * *' --missed run-once -- date   # seconds first\n" +
      "  baton schedules add report --cron '0 9 * * MON' --timezone Europe/Paris --script report.sh",
  )
    .argument("<name>", "schedule name (letters, digits, _ . : -)")
    .requiredOption(
      "--cron <expression>",
      "5 fields (min hour day month weekday), or 6 with seconds first",
    )
    .option(
      "--missed <policy>",
      "firings missed while everything was down or paused: skip (default) or run-once",
      missedPolicy,
    )
    .option("--timezone <zone>", "IANA time zone the expression is read in (default UTC)");
  return (
    withJobOptions(add)
      // Options may follow the name; the command comes after --.
      .passThroughOptions(false)
      .option("--json", "print the schedule as JSON")
      .action(
        async (
          name: string,
          args: string[],
          flags: JobFlags & {
            cron: string;
            missed?: MissedPolicy;
            timezone?: string;
            json?: boolean;
          },
          command: Command,
        ) => {
          const input: ScheduleInput = { cron: flags.cron, job: jobInputFrom(args, flags) };
          if (flags.missed !== undefined) input.missed = flags.missed;
          if (flags.timezone !== undefined) input.timezone = flags.timezone;
          const { schedule } = await clientOf(command).putSchedule(name, input);
          print(schedule, flags.json);
        },
      )
  );
}

/** `pause` and `resume`. */
function pausing(name: string, paused: boolean, description: string): Command {
  return clientCommand(name, description, `  baton schedules ${name} backup`)
    .argument("<name>", "schedule name")
    .option("--json", "print the schedule as JSON")
    .action(async (schedule: string, flags: { json?: boolean }, command: Command) =>
      print(await clientOf(command).pauseSchedule(schedule, paused), flags.json),
    );
}

export function schedulesCommand(): Command {
  const schedules = new Command("schedules")
    .description("cron schedules: jobs submitted at times given by a cron expression")
    .addHelpText(
      "after",
      "\nExample:\n  baton schedules add backup --cron '0 3 * * *' -- ./backup.sh\n  baton schedules ls\n  baton schedules pause backup",
    );
  schedules.addCommand(
    clientCommand("ls", "list schedules with their next firing", "  baton schedules ls --json")
      .option("--json", "print the schedules as JSON")
      .action(async (flags: { json?: boolean }, command: Command) => {
        const list = await clientOf(command).schedules();
        if (flags.json) printJson(list);
        else if (list.length === 0) process.stdout.write("no schedules\n");
        else process.stdout.write(`${scheduleTable(list)}\n`);
      }),
    { isDefault: true },
  );
  schedules.addCommand(addCommand());
  schedules.addCommand(
    clientCommand(
      "rm",
      "remove a schedule (the jobs it submitted stay)",
      "  baton schedules rm backup",
    )
      .argument("<name>", "schedule name")
      .action(async (name: string, _flags: object, command: Command) => {
        await clientOf(command).removeSchedule(name);
        process.stdout.write(`removed schedule ${name}\n`);
      }),
  );
  schedules.addCommand(pausing("pause", true, "stop firing the schedule until it is resumed"));
  schedules.addCommand(
    pausing(
      "resume",
      false,
      "fire the schedule again; firings passed while paused follow --missed",
    ),
  );
  return schedules;
}
