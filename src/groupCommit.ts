/** What a group does when its write fails. */
export type OnGroupFailure =
  /** Every caller of the group gets the error. */
  | "reject"
  /**
   * Each caller's item is written again alone, so that every caller gets its own answer or
   * error: for writes that are all or nothing, where one bad item fails the group.
   */
  | "retry-alone";

export interface GroupCommitOptions {
  /** Most items one write holds; more wait for the next. @defaultValue 500 */
  max?: number;
  /**
   * Most writes in flight at once. With more than one, a group gathers while another is
   * being written, for stores that commit concurrent writes in parallel. @defaultValue 1
   */
  writers?: number;
  /** @defaultValue "reject" */
  onFailure?: OnGroupFailure;
  /** Whether a failure of a group is worth retrying alone (`retry-alone` only). @defaultValue always */
  retryable?: (error: unknown) => boolean;
}

interface Waiting<In, Out> {
  item: In;
  resolve: (answer: Out) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: the first call is written at the end of this turn of the event loop; calls
 * made until then, or while every allowed write is in flight, go together, in order, in the
 * next write. `write` answers item for item; each caller's promise settles only when the
 * write holding its item is done (durable), so many concurrent callers share one commit
 * instead of queueing for one each.
 */
export class GroupCommit<In, Out> {
  private waiting: Waiting<In, Out>[] = [];
  /**
   * Write loops running, each gathering a group or writing one; counted down synchronously
   * as each ends, so that a call made right after always finds a loop or starts one.
   */
  private running = 0;
  /** Those loops' promises, for `idle`. */
  private readonly loops = new Set<Promise<void>>();
  /** Loops between waking and taking their group: items that come now join that group. */
  private gathering = 0;
  private readonly max: number;
  private readonly writers: number;

  constructor(
    private readonly write: (items: In[]) => Promise<Out[]>,
    private readonly options: GroupCommitOptions = {},
  ) {
    this.max = options.max ?? 500;
    this.writers = options.writers ?? 1;
  }

  call(item: In): Promise<Out> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      // A new loop only when every loop is busy writing: a gathering one takes this item.
      if (this.gathering === 0 && this.running < this.writers) {
        this.running++;
        const loop = this.drain().finally(() => this.loops.delete(loop));
        this.loops.add(loop);
      }
    });
  }

  /** Resolves once nothing is waiting or being written. */
  async idle(): Promise<void> {
    while (this.loops.size > 0) await Promise.all(this.loops);
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        // Callers answered by the last write make their next calls in the microtasks that
        // follow it: let them, so that they join this group rather than wait for the next.
        this.gathering++;
        await new Promise((resolve) => setImmediate(resolve));
        this.gathering--;
        const group = this.waiting.splice(0, this.max);
        if (group.length === 0) continue;
        try {
          this.settle(group, await this.write(group.map((waiting) => waiting.item)));
        } catch (error) {
          await this.failed(group, error);
        }
      }
    } finally {
      // Synchronously after the loop saw nothing waiting: no call can slip in between.
      this.running--;
    }
  }

  private settle(group: readonly Waiting<In, Out>[], answers: readonly Out[]): void {
    group.forEach((waiting, i) => {
      if (i < answers.length) waiting.resolve(answers[i] as Out);
      else waiting.reject(new Error(`the write answered ${answers.length} of ${group.length}`));
    });
  }

  private async failed(group: readonly Waiting<In, Out>[], error: unknown): Promise<void> {
    const { onFailure = "reject", retryable = () => true } = this.options;
    if (onFailure === "reject" || group.length === 1 || !retryable(error)) {
      for (const waiting of group) waiting.reject(error);
      return;
    }
    for (const waiting of group) {
      try {
        this.settle([waiting], await this.write([waiting.item]));
      } catch (alone) {
        waiting.reject(alone);
      }
    }
  }
}
