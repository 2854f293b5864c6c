import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { figure } from "../../src/tools/bench/harness.js";
import {
  best,
  PEERS,
  peerSystems,
  queueBench,
  ratios,
  WORKLOAD,
} from "../../src/tools/bench/queueBench.js";
import { postgresAvailable } from "../helpers/stores.js";

const REDIS_URL = process.env.BATON_TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * Whether the test Redis answers PING. When it does not, the BullMQ smoke tests are skipped
 * with a message saying so, except under CI=true, where they must run: then this throws.
 */
async function redisAvailable(): Promise<boolean> {
  const { hostname, port } = new URL(REDIS_URL);
  const why = await new Promise<string | null>((resolve) => {
    const socket = connect({ host: hostname, port: Number(port || 6379) });
    const finish = (problem: string | null) => {
      socket.destroy();
      resolve(problem);
    };
    socket.setTimeout(3_000, () => finish("no answer in 3 s"));
    socket.once("error", (error) => finish(error.message));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (reply: Buffer) =>
      finish(reply.toString().startsWith("+PONG") ? null : `answered ${reply.toString().trim()}`),
    );
  });
  if (why === null) return true;
  const message = `Redis at ${REDIS_URL} is unreachable (${why})`;
  if (process.env.CI === "true") throw new Error(`${message}; CI requires it`);
  process.stderr.write(`skipping BullMQ benchmark tests: ${message}\n`);
  return false;
}

const onPostgres = await postgresAvailable();
const onRedis = await redisAvailable();
// Schemas and a key prefix of this test process's own: apart from Baton's, other tests'
// and a benchmark running at the same time.
const systems = peerSystems({ namespace: `benchtest_${process.pid}` }).filter((system) =>
  system.system === "BullMQ" ? onRedis : onPostgres,
);

/** Tiny sizes: this checks that every adapter runs every workload, not how fast. */
const TINY = {
  jobs: 20,
  callers: 4,
  batchSize: 10,
  pickupJobs: 10,
  pickupGapMs: 2,
  pickupIdleMs: 100,
  timeLimitMs: 10_000,
  warmUp: false,
  progress: () => {},
};

describe.skipIf(systems.length === 0)("queue benchmark, peer adapters", () => {
  it.each(systems.map((system) => [`${system.system} (${system.variant})`, system] as const))(
    "%s: a positive figure for every workload, and its durability",
    async (_label, system) => {
      const { figures, summary } = await queueBench(1, [system], TINY);
      expect(figures.map((f) => f.workload)).toEqual(Object.values(WORKLOAD));
      for (const f of figures) {
        expect(Number.isFinite(f.median), `${f.workload}: ${f.median}`).toBe(true);
        expect(f.median, f.workload).toBeGreaterThan(0);
        expect(f.runs).toBe(1);
        expect(f.note ?? "", f.workload).not.toContain("time limit");
      }
      expect(system.durability).not.toBe("");
      expect(summary).toContain(system.durability);
    },
    30_000,
  );
});

describe("best and ratios", () => {
  const figures = [
    figure(WORKLOAD.processing, "Baton (defaults)", "jobs/s", [900, 1_000, 1_100]),
    figure(WORKLOAD.processing, "pg-boss (defaults)", "jobs/s", [5]),
    figure(WORKLOAD.processing, "pg-boss (tuned)", "jobs/s", [2_000]),
    figure(WORKLOAD.processing, "BullMQ (tuned)", "jobs/s", [4_000]),
    figure(WORKLOAD.pickupP50, "Baton (defaults)", "ms", [3]),
    figure(WORKLOAD.pickupP50, "pg-boss (tuned)", "ms", [250]),
    figure(WORKLOAD.pickupP50, "BullMQ (tuned)", "ms", [0.5]),
  ];

  it("picks the highest rate and the lowest latency, among systems named by product or label", () => {
    expect(best(figures, WORKLOAD.processing, PEERS)?.system).toBe("BullMQ (tuned)");
    expect(best(figures, WORKLOAD.processing, ["pg-boss"])?.system).toBe("pg-boss (tuned)");
    expect(best(figures, WORKLOAD.processing, ["pg-boss (defaults)"])?.median).toBe(5);
    expect(best(figures, WORKLOAD.pickupP50, PEERS)?.system).toBe("BullMQ (tuned)");
    expect(best(figures, WORKLOAD.enqueueOne, PEERS)).toBeUndefined();
  });

  it("divides a system's median by the best peer's, per workload", () => {
    expect(ratios(figures, "Baton", PEERS)).toEqual([
      { workload: WORKLOAD.processing, ratio: 0.25, best: "BullMQ (tuned)" },
      { workload: WORKLOAD.pickupP50, ratio: 6, best: "BullMQ (tuned)" },
    ]);
  });
});
