import { describe, expect, it } from "vitest";
import { JOB_STATES } from "../../src/core/job.js";
import { assertTransition, canTransition, isTerminal } from "../../src/core/states.js";

describe("job states", () => {
  it("allows the lifecycle of a shell job", () => {
    expect(canTransition("pending", "running")).toBe(true);
    expect(canTransition("running", "succeeded")).toBe(true);
    expect(canTransition("running", "failed")).toBe(true);
    expect(canTransition("running", "cancelled")).toBe(true);
    expect(canTransition("running", "pending")).toBe(true); // retry or shutdown release
  });

  it("refuses to leave a finished state except by an explicit retry", () => {
    expect(canTransition("succeeded", "running")).toBe(false);
    expect(canTransition("succeeded", "pending")).toBe(false);
    expect(canTransition("cancelled", "running")).toBe(false);
    expect(canTransition("failed", "pending")).toBe(true);
    expect(() => assertTransition("succeeded", "failed")).toThrow(/succeeded -> failed/);
  });

  it("never lets a job skip the claim", () => {
    expect(canTransition("pending", "succeeded")).toBe(false);
    expect(canTransition("blocked", "running")).toBe(false);
  });

  it("knows which states are terminal", () => {
    const terminal = JOB_STATES.filter(isTerminal);
    expect(terminal).toEqual(["succeeded", "failed", "cancelled", "skipped"]);
  });
});
