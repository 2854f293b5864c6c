import { describe, expect, it } from "vitest";
import type { AttemptOutcome } from "../../src/core/outcome.js";
import type { Completion, CompletionAnswer, Lease } from "../../src/store/store.js";
import { Completions } from "../../src/worker/completions.js";

const lease = (n: number): Lease => ({ jobId: String(n), attempt: 1, workerId: "w" });
const SUCCEEDED: AttemptOutcome = { state: "succeeded", exitCode: 0, signal: null };

/** A store whose completeBatch answers only when told to, recording each batch. */
function slowStore() {
  const batches: Completion[][] = [];
  const pending: Array<{ settle: (error?: Error) => void }> = [];
  const store = {
    completeBatch: (items: readonly Completion[]) =>
      new Promise<CompletionAnswer[]>((resolve, reject) => {
        batches.push([...items]);
        pending.push({
          settle: (error) =>
            error
              ? reject(error)
              : resolve(
                  // Odd job ids lost their lease: each answer is the store's own.
                  items.map((item) =>
                    Number(item.lease.jobId) % 2 === 1
                      ? { applied: false, state: null }
                      : { applied: true, state: "succeeded" },
                  ),
                ),
        });
      }),
  };
  const settleNext = (error?: Error) => pending.shift()?.settle(error);
  return { store, batches, settleNext };
}

/** Lets the write that calls of this turn of the event loop wait for begin. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("Completions", () => {
  it("writes the first outcome at once and those that come meanwhile together", async () => {
    const { store, batches, settleNext } = slowStore();
    const completions = new Completions(store);
    const first = completions.complete(lease(2), SUCCEEDED);
    await nextTurn();
    expect(batches.map((b) => b.map((item) => item.lease.jobId))).toEqual([["2"]]);
    const rest = [3, 4, 6].map((n) => completions.complete(lease(n), SUCCEEDED));
    settleNext();
    expect(await first).toEqual({ applied: true, state: "succeeded" });
    await nextTurn();
    expect(batches.map((b) => b.map((item) => item.lease.jobId))).toEqual([["2"], ["3", "4", "6"]]);
    settleNext();
    expect(await Promise.all(rest)).toEqual([
      { applied: false, state: null },
      { applied: true, state: "succeeded" },
      { applied: true, state: "succeeded" },
    ]);
  });

  it("rejects every outcome of a failed write, and writes the next ones again", async () => {
    const { store, batches, settleNext } = slowStore();
    const completions = new Completions(store);
    const first = completions.complete(lease(2), SUCCEEDED);
    await nextTurn();
    const second = completions.complete(lease(4), SUCCEEDED);
    const third = completions.complete(lease(6), SUCCEEDED);
    settleNext();
    await first;
    await nextTurn();
    settleNext(new Error("store unreachable"));
    await expect(second).rejects.toThrow("store unreachable");
    await expect(third).rejects.toThrow("store unreachable");
    const retried = completions.complete(lease(4), SUCCEEDED);
    await nextTurn();
    settleNext();
    expect(await retried).toEqual({ applied: true, state: "succeeded" });
    expect(batches).toHaveLength(3);
  });
});
