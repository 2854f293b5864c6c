/**
 * `npm run bench`: runs the benchmarks on this machine and prints a table; the figures are
 * also written as JSON and Markdown under bench/results/.
 *
 *   npm run bench -- [--repetitions 3]
 */
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { save, table } from "./harness.js";
import { logThroughput } from "./logThroughput.js";

const { values } = parseArgs({ options: { repetitions: { type: "string", default: "3" } } });
const repetitions = Math.max(1, Number(values.repetitions));
const machine =
  `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
  `Node ${process.version}`;

process.stdout.write(`Baton benchmarks on ${machine}; ${repetitions} repetitions each\n\n`);
const figures = await logThroughput(repetitions);
process.stdout.write(`${table(figures)}\n`);
const dir = save("logs", figures, machine);
process.stdout.write(`\nwritten to ${dir}/logs.{json,md}\n`);
