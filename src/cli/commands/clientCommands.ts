import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { Command, InvalidArgumentError } from "commander";
import type { JobJson } from "../../api/jobJson.js";
import {
  BatonClient,
  type FollowItem,
  type JobEnd,
  type LogFilter,
} from "../../client/httpClient.js";
import type { Explanation } from "../../core/explain.js";
import { JOB_STATES } from "../../core/job.js";
import type { JobInput } from "../../core/jobInput.js";
import { LOG_STREAMS, type LogEvent } from "../../core/logEvent.js";
import { EXIT, ExitError, UsageError } from "../exit.js";
import { jobDetails, jobTable } from "../format.js";
import { type JobFlags, jobInputFrom, withJobOptions } from "../jobOptions.js";
import { configOf, withSettings } from "../settings.js";

export function clientCommand(name: string, description: string, example: string): Command {
  return withSettings(
    new Command(name).description(description).addHelpText("after", `\nExample:\n${example}`),
    ["server", "token"],
  );
}

export function clientOf(command: Command): BatonClient {
  const config = configOf(command);
  return new BatonClient({ server: config.server, token: config.token });
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function submitCommand(): Command {
  return withJobOptions(
    clientCommand(
      "submit",
      "submit a job and print its id",
      "  baton submit -- ./backup.sh --full\n  baton submit --timeout 10m --cpus 2 -- make -j2\n  baton submit --script nightly.sh --label team=data\n  baton submit --batch jobs.jsonl          # one job (API JSON) per line, all or none",
    ),
  )
    .option("--json", "print the job as JSON")
    .option(
      "--batch <file>",
      "submit the jobs of a JSON Lines file (- reads stdin) in one transaction",
    )
    .action(
      async (
        args: string[],
        flags: JobFlags & { json?: boolean; batch?: string },
        command: Command,
      ) => {
        if (flags.batch !== undefined) {
          if (args.length > 0 || flags.script !== undefined) {
            throw new UsageError("give --batch FILE or a command, not both");
          }
          const { jobs } = await clientOf(command).submitBatch(readBatch(flags.batch));
          if (flags.json) printJson(jobs);
          else process.stdout.write(jobs.map((job) => `${job.id}\n`).join(""));
          return;
        }
        const input = jobInputFrom(args, flags);
        const client = clientOf(command);
        const { job } = await client.submit(input);
        if (flags.json) printJson(job);
        else process.stdout.write(`${job.id}\n`);
        await warnIfTooBig(client, job);
      },
    );
}

/** A job bigger than every live worker that serves its queue would wait forever: say so. */
async function warnIfTooBig(client: BatonClient, job: JobJson): Promise<void> {
  if (job.state !== "pending") return;
  const explanation = await client.explain(job.id).catch(() => null);
  const tooBig = explanation?.reasons.find((reason) => reason.code === "too_big");
  if (tooBig) process.stderr.write(`baton: warning: job ${job.id} ${tooBig.message}\n`);
}

/** The jobs of a JSON Lines file: one job per non-empty line, as the API takes it. */
function readBatch(file: string): JobInput[] {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (error) {
    throw new UsageError(`--batch ${file}: ${(error as Error).message}`);
  }
  const jobs: JobInput[] = [];
  text.split("\n").forEach((line, index) => {
    if (line.trim() === "") return;
    try {
      jobs.push(JSON.parse(line) as JobInput);
    } catch (error) {
      throw new UsageError(`--batch ${file}, line ${index + 1}: ${(error as Error).message}`);
    }
  });
  if (jobs.length === 0) throw new UsageError(`--batch ${file}: no jobs in it`);
  return jobs;
}

export function runCommand(): Command {
  return withJobOptions(
    clientCommand(
      "run",
      "submit a job, stream its output, and exit with its exit code",
      "  baton run -- sh -c 'echo hello; exit 3'   # prints hello, exits 3\n  baton run --timeout 1m -- ./integration-tests.sh",
    ),
  ).action(async (args: string[], flags: JobFlags, command: Command) => {
    const client = clientOf(command);
    const { job } = await client.submit(jobInputFrom(args, flags));
    const detach = cancelOnInterrupt(client, job.id);
    try {
      const end = await printFollowed(client.follow(job.id), false);
      throw new ExitError(exitCodeOf(job.id, end));
    } finally {
      detach();
    }
  });
}

/** Ctrl-C cancels the job (and keeps streaming until it ends); a second Ctrl-C detaches. */
function cancelOnInterrupt(client: BatonClient, id: string): () => void {
  let interrupts = 0;
  const onInterrupt = () => {
    interrupts++;
    if (interrupts > 1) {
      process.stderr.write(`baton: detached; job ${id} goes on being cancelled\n`);
      process.exit(130);
    }
    process.stderr.write(`baton: cancelling job ${id} (Ctrl-C again to detach)\n`);
    client.cancel(id).catch((error: unknown) => {
      process.stderr.write(`baton: cancel failed: ${(error as Error).message}\n`);
    });
  };
  process.on("SIGINT", onInterrupt);
  return () => process.off("SIGINT", onInterrupt);
}

/** The exit code of a finished job as a shell would report it; explains failures on stderr. */
function exitCodeOf(id: string, end: JobEnd): number {
  if (end.state === "succeeded") return end.exitCode ?? 0;
  if (end.failure && end.failure.reason !== "exit_code") {
    process.stderr.write(
      `baton: job ${id} ${end.state}: ${end.failure.reason} (${end.failure.message})\n`,
    );
  } else if (end.signal) {
    process.stderr.write(`baton: job ${id} was killed by ${end.signal}\n`);
  }
  if (end.exitCode !== null) return end.exitCode;
  if (end.signal) {
    const number = constants.signals[end.signal as NodeJS.Signals];
    if (number !== undefined) return 128 + number;
  }
  return EXIT.failed;
}

async function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise((resolve) => stream.once("drain", resolve));
}

/**
 * Prints events as the job wrote them: stdout to stdout, stderr to stderr, a line cut at the
 * length limit joined again, Baton's own events (warnings, the truncation marker) to stderr
 * marked "baton:". Consecutive events of one stream are written together.
 */
async function printEvents(
  events: readonly LogEvent[],
  json: boolean,
  timestamps = false,
): Promise<void> {
  if (json) {
    await write(process.stdout, events.map((event) => `${JSON.stringify(event)}\n`).join(""));
    return;
  }
  let target: NodeJS.WriteStream = process.stdout;
  let text = "";
  for (const event of events) {
    const to = event.stream === "stdout" ? process.stdout : process.stderr;
    if (to !== target && text !== "") {
      await write(target, text);
      text = "";
    }
    target = to;
    if (timestamps) text += `${new Date(event.ts).toISOString()} `;
    if (event.stream === "system") text += "baton: ";
    text += event.cut ? event.line : `${event.line}\n`;
  }
  if (text !== "") await write(target, text);
}

async function printFollowed(
  items: AsyncGenerator<FollowItem>,
  json: boolean,
  timestamps = false,
): Promise<JobEnd> {
  for await (const item of items) {
    if (item.type === "end") return item.end;
    await printEvents([item.event], json, timestamps);
  }
  throw new Error("the log stream ended before the job did");
}

export function logsCommand(): Command {
  return clientCommand(
    "logs",
    "print a job's output (stdout to stdout, stderr to stderr)",
    "  baton logs 42\n  baton logs -f 42              # follow until the job ends\n  baton logs 42 --stream stderr --attempt 2",
  )
    .argument("<id>", "job id")
    .option("-f, --follow", "follow new output until the job ends, then exit with its exit code")
    .option("--stream <stream>", "only stdout, stderr or system (Baton's own)", (value: string) => {
      if (!(LOG_STREAMS as readonly string[]).includes(value))
        throw new InvalidArgumentError(`expected one of ${LOG_STREAMS.join(", ")}`);
      return value;
    })
    .option("--attempt <n>", "only this attempt", (value: string) => {
      if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError("expected an attempt number");
      return Number(value);
    })
    .option("--timestamps", "prefix each line with the time it was written")
    .option(
      "--json",
      "print each event as a JSON object {seq, attempt, stream, line, ts, kind, data, cut}",
    )
    .action(
      async (
        id: string,
        flags: LogFilter & { follow?: boolean; json?: boolean; timestamps?: boolean },
        command: Command,
      ) => {
        const client = clientOf(command);
        const filter: LogFilter = { stream: flags.stream, attempt: flags.attempt };
        const json = flags.json ?? false;
        if (flags.follow) {
          const end = await printFollowed(client.follow(id, 0, filter), json, flags.timestamps);
          throw new ExitError(exitCodeOf(id, end));
        }
        let after = 0;
        for (;;) {
          const page = await client.logs(id, after, filter);
          await printEvents(page.events, json, flags.timestamps);
          if (page.events.length === 0) break;
          after = page.next;
        }
      },
    );
}

export function cancelCommand(): Command {
  return clientCommand(
    "cancel",
    "cancel jobs: pending ones at once, running ones by stopping their process group",
    "  baton cancel 42\n  baton cancel 42 43 44",
  )
    .argument("<id...>", "job ids")
    .option("--json", "print the jobs as JSON")
    .action(async (ids: string[], flags: { json?: boolean }, command: Command) => {
      const client = clientOf(command);
      const jobs: JobJson[] = [];
      for (const id of ids) jobs.push(await client.cancel(id));
      if (flags.json) {
        printJson(jobs.length === 1 ? jobs[0] : jobs);
        return;
      }
      for (const job of jobs) {
        const what =
          job.state === "cancelled"
            ? "cancelled"
            : job.state === "running"
              ? "cancel requested; stopping it"
              : `already ${job.state}, left unchanged`;
        process.stdout.write(`${job.id}: ${what}\n`);
      }
    });
}

export function jobsCommand(): Command {
  const jobs = new Command("jobs")
    .description("list and inspect jobs")
    .addHelpText(
      "after",
      "\nExample:\n  baton jobs                    # same as baton jobs ls\n  baton jobs show 42",
    );
  jobs.addCommand(
    clientCommand(
      "ls",
      "list jobs, newest first",
      "  baton jobs\n  baton jobs ls --state failed --queue builds --json",
    )
      .option(
        "--state <state>",
        `only jobs in this state (${JOB_STATES.join(", ")})`,
        (value: string) => {
          if (!(JOB_STATES as readonly string[]).includes(value)) {
            throw new InvalidArgumentError(`expected one of ${JOB_STATES.join(", ")}`);
          }
          return value;
        },
      )
      .option("--queue <queue>", "only jobs of this queue")
      .option("--limit <n>", "at most this many (default 50)", (value: string) => {
        if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 1000) {
          throw new InvalidArgumentError("expected an integer 1..1000");
        }
        return Number(value);
      })
      .option("--json", "print {jobs, nextCursor} as JSON")
      .action(
        async (
          flags: { state?: string; queue?: string; limit?: number; json?: boolean },
          command: Command,
        ) => {
          const { state, queue, limit } = flags;
          const page = await clientOf(command).list({ state, queue, limit });
          if (flags.json) printJson(page);
          else if (page.jobs.length === 0) process.stdout.write("no jobs\n");
          else process.stdout.write(`${jobTable(page.jobs)}\n`);
        },
      ),
    { isDefault: true },
  );
  jobs.addCommand(
    clientCommand(
      "show",
      "show a job and every attempt",
      "  baton jobs show 42\n  baton jobs show 42 --json",
    )
      .argument("<id>", "job id")
      .option("--json", "print the job as JSON")
      .action(async (id: string, flags: { json?: boolean }, command: Command) => {
        const job = await clientOf(command).get(id);
        if (flags.json) printJson(job);
        else process.stdout.write(`${jobDetails(job)}\n`);
      }),
  );
  jobs.addCommand(explainCommand());
  return jobs;
}

function explainText(explanation: Explanation): string {
  const lines = [`job ${explanation.jobId} is ${explanation.state}`];
  for (const reason of explanation.reasons) {
    lines.push(`- ${reason.message}`);
    if (reason.holders && reason.holders.length > 0) {
      lines.push(
        `  held by job${reason.holders.length === 1 ? "" : "s"} ${reason.holders.join(", ")}`,
      );
    }
  }
  return lines.join("\n");
}

export function explainCommand(): Command {
  return clientCommand("explain", "say why a job is not running", "  baton jobs explain 42")
    .argument("<id>", "job id")
    .option("--json", "print the explanation as JSON")
    .action(async (id: string, flags: { json?: boolean }, command: Command) => {
      const explanation = await clientOf(command).explain(id);
      if (flags.json) printJson(explanation);
      else process.stdout.write(`${explainText(explanation)}\n`);
    });
}
