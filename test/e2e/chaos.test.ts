import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";

const CHAOS = resolve(import.meta.dirname, "../../dist/tools/chaos.js");

/**
 * A short chaos run (kill -9 of random workers every 1–3 s). It checks what Baton guarantees
 * today: no job lost, no two attempts of a job running at once, none stuck. Runs again after
 * success are reported but not asserted: they need adoption after a worker restart, which is
 * not built yet (see the README).
 */
describe("chaos", () => {
  it("loses no job and never runs one twice at once while workers are killed", async () => {
    const output = await new Promise<string>((done, fail) => {
      const child = spawn(
        process.execPath,
        [CHAOS, "--jobs", "150", "--workers", "3", "--duration", "15s", "--lease-ttl", "2s"],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let text = "";
      child.stdout.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      child.on("error", fail);
      child.on("close", () => done(text));
    });
    process.stdout.write(output);
    const count = (label: string) => Number(new RegExp(`${label} (\\d+)`).exec(output)?.[1] ?? NaN);
    expect(count("jobs")).toBe(150);
    expect(count("lost")).toBe(0);
    expect(count("overlapping executions")).toBe(0);
    expect(count("stuck")).toBe(0);
    expect(count("succeeded") + count("failed")).toBe(150);
    expect(count("kills")).toBeGreaterThan(3);
  }, 120_000);
});
