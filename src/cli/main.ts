#!/usr/bin/env node
import { Command, CommanderError } from "commander";
import { ApiError, UnreachableError } from "../client/errors.js";
import { ConfigError } from "../core/config.js";
import {
  cancelCommand,
  jobsCommand,
  logsCommand,
  runCommand,
  submitCommand,
} from "./commands/clientCommands.js";
import { dlqCommand, retryCommand } from "./commands/dlqCommands.js";
import { statsCommand, workersCommand } from "./commands/poolCommands.js";
import { queuesCommand } from "./commands/queueCommands.js";
import { schedulesCommand } from "./commands/scheduleCommands.js";
import { serverCommand, upCommand, workerCommand } from "./commands/daemons.js";
import { EXIT, ExitError, UsageError } from "./exit.js";

function program(): Command {
  const root = new Command("baton")
    .description("Baton: a durable job runner. Submit shell jobs; workers run them under leases.")
    .version("0.1.0")
    .enablePositionalOptions()
    // Also accepted before the command: `baton --server URL jobs`.
    .option("--server <url>", "Baton server for client commands [env BATON_SERVER]")
    .option("--token <token>", "bearer token [env BATON_TOKEN]")
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      "\nExamples:\n  baton up                                   # server + worker on embedded SQLite\n  baton run -- sh -c 'echo hello; exit 3'    # prints hello, exits 3\n  baton jobs                                 # recent jobs",
    );
  for (const command of [
    upCommand(),
    serverCommand(),
    workerCommand(),
    submitCommand(),
    runCommand(),
    jobsCommand(),
    logsCommand(),
    cancelCommand(),
    retryCommand(),
    queuesCommand(),
    dlqCommand(),
    workersCommand(),
    statsCommand(),
    schedulesCommand(),
  ]) {
    root.addCommand(command);
  }
  // Usage errors exit 2 (commander would exit 1).
  const configure = (command: Command) => {
    command.exitOverride();
    for (const sub of command.commands) configure(sub);
  };
  configure(root);
  return root;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return EXIT.ok;
  } catch (error) {
    return report(error);
  }
}

function report(error: unknown): number {
  if (error instanceof ExitError) {
    if (error.message) process.stderr.write(`baton: ${error.message}\n`);
    return error.code;
  }
  if (error instanceof CommanderError) {
    // commander has printed the message already.
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (error instanceof UsageError || error instanceof ConfigError) {
    process.stderr.write(`baton: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof UnreachableError) {
    process.stderr.write(`baton: ${error.message}\n`);
    return EXIT.unreachable;
  }
  if (error instanceof ApiError) {
    process.stderr.write(`baton: ${error.message}\n`);
    return error.problem.code === "validation_failed" ? EXIT.usage : EXIT.failed;
  }
  process.stderr.write(`baton: ${(error as Error)?.stack ?? String(error)}\n`);
  return EXIT.failed;
}

process.exitCode = await main(process.argv);
