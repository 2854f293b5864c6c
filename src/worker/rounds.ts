/**
 * Runs a task in rounds, one at a time: asked while a round runs, it runs one more round
 * after it (however often it was asked meanwhile), so no request is lost and none piles up.
 * A round starts at the end of this turn of the event loop, not at once: the requests of
 * one turn (say, a hundred handlers returning together) make one round, not one each.
 */
export class Rounds {
  private state: "idle" | "scheduled" | "running" = "idle";
  private again = false;

  constructor(private readonly round: () => Promise<void>) {}

  request(): void {
    if (this.state === "running") this.again = true;
    if (this.state !== "idle") return;
    this.state = "scheduled";
    setImmediate(() => {
      this.state = "running";
      void this.round().finally(() => {
        this.state = "idle";
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
    });
  }
}
