/**
 * Runs a task in rounds, one at a time: asked while a round runs, it runs one more round
 * after it (however often it was asked meanwhile), so no request is lost and none piles up.
 */
export class Rounds {
  private running = false;
  private again = false;

  constructor(private readonly round: () => Promise<void>) {}

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.round().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    });
  }
}
