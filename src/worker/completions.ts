import type { AttemptOutcome } from "../core/outcome.js";
import { GroupCommit } from "../groupCommit.js";
import type { Completion, CompletionAnswer, Lease, WorkerStore } from "../store/store.js";

/**
 * Records the outcomes of a worker's attempts in batches (group commit): an outcome is
 * written at once when no write is in flight; those that come while one is are written
 * together by the next (at most 500), in one transaction. Each answer is the store's for
 * that attempt (fenced on its own) and comes only once the transaction is durable. When the
 * write fails, every outcome of the batch is rejected for its caller to retry.
 */
export class Completions {
  private readonly group: GroupCommit<Completion, CompletionAnswer>;

  constructor(store: Pick<WorkerStore, "completeBatch">) {
    this.group = new GroupCommit((items) => store.completeBatch(items));
  }

  complete(lease: Lease, outcome: AttemptOutcome): Promise<CompletionAnswer> {
    return this.group.call({ lease, outcome });
  }
}
