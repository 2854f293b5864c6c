/**
 * `npm run bench`: runs the benchmarks on this machine and prints a table for each; the
 * figures are also written as JSON and Markdown under bench/results/.
 *
 *   npm run bench -- [--repetitions 3] [--only logs,claims,shell,queues]
 */
import { cpus, totalmem } from "node:os";
import { parseArgs } from "node:util";
import { claimCost } from "./claimCost.js";
import { type Figure, save, table } from "./harness.js";
import { logThroughput } from "./logThroughput.js";
import { batonSystems, batonVersusPeers } from "./batonSystems.js";
import { peerSystems, queueBench } from "./queueBench.js";
import { shellJobs } from "./shellJobs.js";

interface Benchmark {
  title: string;
  /**
   * `summary` (Markdown) stands in for the table of figures when printed, and goes before
   * them in the saved file; `verdict` follows the figures in both.
   */
  run(repetitions: number): Promise<{ figures: Figure[]; summary?: string; verdict?: string }>;
}

const BENCHMARKS: Record<string, Benchmark> = {
  logs: {
    title: "Log throughput and worker memory (SQLite)",
    run: async (repetitions) => ({ figures: await logThroughput(repetitions) }),
  },
  claims: {
    title: "Claim cost with 10k and 1M pending jobs",
    run: claimCost,
  },
  shell: {
    title: "Shell jobs end to end",
    run: shellJobs,
  },
  queues: {
    title: "Queue systems: enqueue, processing and pickup latency (Baton and its peers)",
    // Baton in-process on SQLite and PostgreSQL and through its server; Graphile Worker and
    // pg-boss on the same PostgreSQL, BullMQ on Redis.
    run: async (repetitions) => {
      const { figures, summary } = await queueBench(repetitions, [
        ...(await batonSystems()),
        ...peerSystems(),
      ]);
      return { figures, summary: `${batonVersusPeers(figures)}\n\n${summary}` };
    },
  },
};

const { values } = parseArgs({
  options: {
    repetitions: { type: "string", default: "3" },
    only: { type: "string" },
  },
});
const repetitions = Math.max(1, Number(values.repetitions));
const chosen = values.only?.split(",").map((name) => name.trim()) ?? Object.keys(BENCHMARKS);
const unknown = chosen.filter((name) => !(name in BENCHMARKS));
if (unknown.length > 0) {
  process.stderr.write(
    `--only ${values.only}: no benchmark named ${unknown.join(", ")}; ` +
      `choose from ${Object.keys(BENCHMARKS).join(", ")}\n`,
  );
  process.exit(2);
}
const machine =
  `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
  `Node ${process.version}`;

process.stdout.write(`Baton benchmarks on ${machine}; ${repetitions} repetitions each\n`);
for (const name of chosen) {
  const benchmark = BENCHMARKS[name];
  if (!benchmark) continue;
  process.stdout.write(`\n## ${benchmark.title}\n\n`);
  process.stderr.write(`running ${name}…\n`);
  const { figures, summary, verdict } = await benchmark.run(repetitions);
  process.stdout.write(`${summary ?? table(figures)}\n`);
  if (verdict !== undefined) process.stdout.write(`\n${verdict}\n`);
  const dir = save(name, figures, machine, summary, verdict);
  process.stdout.write(`\nwritten to ${dir}/${name}.{json,md}\n`);
}
