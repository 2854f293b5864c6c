import { Command } from "commander";
import type { QueueChange, QueueInfo } from "../../core/queue.js";
import { UsageError } from "../exit.js";
import { table } from "../format.js";
import { clientCommand, clientOf, printJson } from "./clientCommands.js";

function queueTable(queues: readonly QueueInfo[]): string {
  return table(
    ["QUEUE", "STATE", "LIMIT", "RUNNING", "PENDING"],
    queues.map((q) => [
      q.name,
      q.paused ? "paused" : "active",
      q.maxRunning === null ? "-" : String(q.maxRunning),
      String(q.running),
      String(q.pending),
    ]),
  );
}

/** Applies a change to a queue and prints the queue as it now is. */
async function applyChange(
  command: Command,
  queue: string,
  change: QueueChange,
  json: boolean | undefined,
): Promise<void> {
  const info = await clientOf(command).updateQueue(queue, change);
  if (json) printJson(info);
  else process.stdout.write(`${queueTable([info])}\n`);
}

/** `pause` and `resume`. */
function pausing(name: string, paused: boolean, description: string): Command {
  return clientCommand(name, description, `  baton queues ${name} nightly`)
    .argument("<queue>", "queue name")
    .option("--json", "print the queue as JSON")
    .action((queue: string, flags: { json?: boolean }, command: Command) =>
      applyChange(command, queue, { paused }, flags.json),
    );
}

function limitOf(value: string): number | null {
  if (value === "none") return null;
  if (!/^[1-9]\d{0,6}$/.test(value)) {
    throw new UsageError(`limit: expected a positive integer or "none", got "${value}"`);
  }
  return Number(value);
}

export function queuesCommand(): Command {
  const queues = new Command("queues")
    .description("list queues; pause, resume, or limit how many of a queue's jobs run at once")
    .addHelpText(
      "after",
      "\nExample:\n  baton queues ls\n  baton queues set-limit builds 4\n  baton queues pause nightly",
    );
  queues.addCommand(
    clientCommand("ls", "list queues with their limits and counts", "  baton queues ls --json")
      .option("--json", "print the queues as JSON")
      .action(async (flags: { json?: boolean }, command: Command) => {
        const list = await clientOf(command).queues();
        if (flags.json) printJson(list);
        else if (list.length === 0) process.stdout.write("no queues\n");
        else process.stdout.write(`${queueTable(list)}\n`);
      }),
    { isDefault: true },
  );
  queues.addCommand(
    clientCommand(
      "set-limit",
      "at most N of the queue's jobs run at once, across all workers (none: no limit)",
      "  baton queues set-limit builds 4\n  baton queues set-limit builds none",
    )
      .argument("<queue>", "queue name")
      .argument("<limit>", "running limit: a number, or none")
      .option("--json", "print the queue as JSON")
      .action((queue: string, limit: string, flags: { json?: boolean }, command: Command) =>
        applyChange(command, queue, { maxRunning: limitOf(limit) }, flags.json),
      ),
  );
  queues.addCommand(pausing("pause", true, "claim none of the queue's jobs (running ones go on)"));
  queues.addCommand(pausing("resume", false, "claim the queue's jobs again"));
  return queues;
}
