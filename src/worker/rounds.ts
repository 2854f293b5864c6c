/**
 * Runs a task in rounds, one at a time: asked while a round runs, it runs one more round
 * after it (however often it was asked meanwhile), so no request is lost and none piles up.
 */
export class Rounds {
  private running = false;
  private again = false;
  /** Resolves when the round running now ends (a failed round included). */
  private current: Promise<void> = Promise.resolve();

  /** `onIdle`: called whenever the last round asked for has ended. */
  constructor(
    private readonly round: () => Promise<void>,
    private readonly onIdle: () => void = () => {},
  ) {}

  /** Whether a round runs now. */
  get busy(): boolean {
    return this.running;
  }

  request(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    let settled = () => {};
    this.current = new Promise((resolve) => (settled = resolve));
    void this.round().finally(() => {
      this.running = false;
      settled();
      if (this.again) {
        this.again = false;
        this.request();
      } else {
        this.onIdle();
      }
    });
  }

  /** Resolves once no round runs, the rounds asked for meanwhile included. */
  async idle(): Promise<void> {
    while (this.running) await this.current;
  }
}
