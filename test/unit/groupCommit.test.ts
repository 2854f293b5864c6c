import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../src/groupCommit.js";

/** Lets the write that calls of this turn of the event loop wait for begin. */
const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A writer that answers only when told to, recording each group it was given. It doubles
 * each number; a group holding a negative number fails as a whole (all or nothing).
 */
function slowWriter() {
  const groups: number[][] = [];
  const pending: Array<() => void> = [];
  const write = (items: number[]) =>
    new Promise<number[]>((resolve, reject) => {
      groups.push([...items]);
      pending.push(() =>
        items.some((n) => n < 0)
          ? reject(new Error(`cannot write ${items.join(",")}`))
          : resolve(items.map((n) => n * 2)),
      );
    });
  const answerNext = () => pending.shift()?.();
  return { write, groups, answerNext };
}

describe("GroupCommit", () => {
  it("writes the calls of one turn together, and those made during a write in the next", async () => {
    const { write, groups, answerNext } = slowWriter();
    const group = new GroupCommit(write);
    const first = [1, 2].map((n) => group.call(n));
    await nextTurn();
    expect(groups).toEqual([[1, 2]]);
    const second = [3, 4, 5].map((n) => group.call(n));
    await nextTurn();
    expect(groups).toHaveLength(1); // nothing is written while a write is in flight
    answerNext();
    expect(await Promise.all(first)).toEqual([2, 4]);
    await nextTurn();
    expect(groups).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    answerNext();
    expect(await Promise.all(second)).toEqual([6, 8, 10]);
  });

  it("lets callers answered by a write join the next group rather than go first alone", async () => {
    // Each caller awaits its answer, then calls again at once: a writer that took the first
    // new call alone would write groups of 1 and 3 in turn.
    const writes: number[][] = [];
    const group = new GroupCommit(async (items: number[]) => {
      writes.push(items);
      await nextTurn();
      return items;
    });
    await Promise.all(
      [0, 1, 2, 3].map(async (caller) => {
        for (let round = 0; round < 3; round++) await group.call(caller * 10 + round);
      }),
    );
    expect(writes.map((items) => items.length)).toEqual([4, 4, 4]);
  });

  it("splits what waits into writes of at most `max`", async () => {
    const { write, groups, answerNext } = slowWriter();
    const group = new GroupCommit(write, { max: 2 });
    const calls = [1, 2, 3, 4, 5].map((n) => group.call(n));
    for (let i = 0; i < 3; i++) {
      await nextTurn();
      answerNext();
      await nextTurn(); // the answered callers go on; the next write waits a turn for company
    }
    expect(await Promise.all(calls)).toEqual([2, 4, 6, 8, 10]);
    expect(groups).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("rejects every call of a failed write by default, and goes on with the next", async () => {
    const { write, answerNext } = slowWriter();
    const group = new GroupCommit(write);
    const failed = [1, -1].map((n) => group.call(n));
    await nextTurn();
    answerNext();
    const settled = await Promise.allSettled(failed);
    expect(settled.map((s) => s.status === "rejected" && String(s.reason))).toEqual([
      "Error: cannot write 1,-1",
      "Error: cannot write 1,-1",
    ]);
    const later = group.call(7);
    await nextTurn();
    answerNext();
    expect(await later).toBe(14);
  });

  it("retries the calls of a failed write alone, each answered for itself, when asked", async () => {
    const { write, groups, answerNext } = slowWriter();
    const group = new GroupCommit(write, { onFailure: "retry-alone" });
    const settling = Promise.allSettled([1, -1, 3].map((n) => group.call(n)));
    await nextTurn();
    for (let i = 0; i < 4; i++) {
      answerNext();
      await nextTurn();
    }
    const settled = await settling;
    expect(settled.map((s) => (s.status === "fulfilled" ? s.value : String(s.reason)))).toEqual([
      2,
      "Error: cannot write -1",
      6,
    ]);
    expect(groups).toEqual([[1, -1, 3], [1], [-1], [3]]);
  });

  it("does not retry alone when the failure says the write may have happened", async () => {
    const { write, groups, answerNext } = slowWriter();
    const group = new GroupCommit(write, { onFailure: "retry-alone", retryable: () => false });
    const calls = [1, -1].map((n) => group.call(n));
    await nextTurn();
    answerNext();
    const settled = await Promise.allSettled(calls);
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected"]);
    expect(groups).toEqual([[1, -1]]);
  });

  it("rejects the calls a writer gave no answer for", async () => {
    const group = new GroupCommit(async (items: number[]) => items.slice(1));
    const [first, second] = await Promise.allSettled([1, 2].map((n) => group.call(n)));
    expect(first).toEqual({ status: "fulfilled", value: 2 });
    expect(second?.status === "rejected" && String(second.reason)).toBe(
      "Error: the write answered 1 of 2",
    );
  });

  it("with two writers, writes a second group while the first is in flight, not a third", async () => {
    const { write, groups, answerNext } = slowWriter();
    const group = new GroupCommit(write, { writers: 2 });
    const first = [1, 2].map((n) => group.call(n));
    await nextTurn();
    const second = [3].map((n) => group.call(n));
    await nextTurn();
    expect(groups).toEqual([[1, 2], [3]]);
    const third = [4, 5].map((n) => group.call(n));
    await nextTurn();
    expect(groups).toHaveLength(2); // both writers are busy: the calls wait
    answerNext();
    expect(await Promise.all(first)).toEqual([2, 4]);
    await nextTurn();
    expect(groups).toEqual([[1, 2], [3], [4, 5]]);
    answerNext();
    answerNext();
    expect(await Promise.all([...second, ...third])).toEqual([6, 8, 10]);
    await group.idle();
  });

  it("answers a caller that calls again as soon as its write is answered, with any writers", async () => {
    for (const writers of [1, 2, 3]) {
      const group = new GroupCommit(async (items: number[]) => items, { writers });
      const answers: number[] = [];
      for (let round = 0; round < 5; round++) answers.push(await group.call(round));
      expect(answers).toEqual([0, 1, 2, 3, 4]);
    }
  });

  it("idle() resolves once everything called is written", async () => {
    const { write, answerNext } = slowWriter();
    const group = new GroupCommit(write);
    let answered = 0;
    for (const n of [1, 2]) void group.call(n).then(() => answered++);
    let idle = false;
    const waiting = group.idle().then(() => (idle = true));
    await nextTurn();
    expect(idle).toBe(false);
    answerNext();
    await waiting;
    expect(answered).toBe(2);
  });
});
