import { Command } from "commander";
import { UsageError } from "../exit.js";
import { jobTable } from "../format.js";
import { clientCommand, clientOf, printJson } from "./clientCommands.js";

export function dlqCommand(): Command {
  const dlq = new Command("dlq")
    .description("dead letters: failed jobs with no attempts left; list and replay them")
    .addHelpText(
      "after",
      "\nExample:\n  baton dlq\n  baton dlq replay 42 43\n  baton dlq replay --all --queue builds",
    );
  dlq.addCommand(
    clientCommand("ls", "list dead letters, newest first", "  baton dlq ls --queue builds")
      .option("--queue <queue>", "only this queue's")
      .option("--json", "print {jobs, nextCursor} as JSON")
      .action(async (flags: { queue?: string; json?: boolean }, command: Command) => {
        const page = await clientOf(command).deadLetters({ queue: flags.queue });
        if (flags.json) printJson(page);
        else if (page.jobs.length === 0) process.stdout.write("no dead letters\n");
        else process.stdout.write(`${jobTable(page.jobs)}\n`);
      }),
    { isDefault: true },
  );
  dlq.addCommand(
    clientCommand(
      "replay",
      "put dead letters back in line with a fresh set of attempts; their history stays",
      "  baton dlq replay 42 43\n  baton dlq replay --all --queue builds",
    )
      .argument("[ids...]", "job ids")
      .option("--all", "every dead letter (of --queue, if given)")
      .option("--queue <queue>", "with --all: only this queue's")
      .option("--json", "print {jobs, skipped} as JSON")
      .action(
        async (
          ids: string[],
          flags: { all?: boolean; queue?: string; json?: boolean },
          command: Command,
        ) => {
          if (flags.all === true && ids.length > 0) {
            throw new UsageError("give job ids or --all, not both");
          }
          if (flags.queue !== undefined && flags.all !== true) {
            throw new UsageError("--queue goes with --all");
          }
          if (flags.all !== true && ids.length === 0) {
            throw new UsageError("give the ids of the jobs to replay, or --all");
          }
          const which =
            flags.all === true
              ? { all: true as const, ...(flags.queue === undefined ? {} : { queue: flags.queue }) }
              : { ids };
          const answer = await clientOf(command).replay(which);
          if (flags.json) {
            printJson(answer);
            return;
          }
          for (const job of answer.jobs) process.stdout.write(`${job.id}\n`);
          for (const id of answer.skipped) {
            process.stderr.write(`baton: job ${id} is not a dead letter (unknown or not failed)\n`);
          }
          if (answer.skipped.length > 0) process.exitCode = 1;
        },
      ),
  );
  return dlq;
}

export function retryCommand(): Command {
  return clientCommand(
    "retry",
    "put a failed or cancelled job back in line with a fresh set of attempts",
    "  baton retry 42",
  )
    .argument("<id>", "job id")
    .option("--json", "print the job as JSON")
    .action(async (id: string, flags: { json?: boolean }, command: Command) => {
      const job = await clientOf(command).retry(id);
      if (flags.json) printJson(job);
      else process.stdout.write(`${job.id}\n`);
    });
}
