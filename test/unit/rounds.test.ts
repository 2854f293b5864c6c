import { setImmediate as turn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { Rounds } from "../../src/worker/rounds.js";

describe("Rounds", () => {
  it("makes one round of the requests of one turn, and one more of those made during it", async () => {
    const sizes: number[] = [];
    let asked = 0;
    let finishRound: () => void = () => {};
    const rounds = new Rounds(async () => {
      sizes.push(asked);
      asked = 0;
      await new Promise<void>((resolve) => {
        finishRound = resolve;
      });
    });
    for (let i = 0; i < 100; i++) {
      asked++;
      rounds.request();
    }
    await turn();
    expect(sizes).toEqual([100]);
    // Asked while the round runs: exactly one more round, after it.
    for (let i = 0; i < 5; i++) {
      asked++;
      rounds.request();
    }
    await turn();
    expect(sizes).toEqual([100]);
    finishRound();
    await turn();
    await turn();
    expect(sizes).toEqual([100, 5]);
    finishRound();
    await turn();
    await turn();
    expect(sizes).toEqual([100, 5]);
  });
});
