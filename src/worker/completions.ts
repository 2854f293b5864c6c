import type { AttemptOutcome } from "../core/outcome.js";
import type { Completion, CompletionAnswer, Lease, WorkerStore } from "../store/store.js";

/** Outcomes written at once at most; more wait for the next write. */
const MAX_BATCH = 500;

interface Waiting {
  item: Completion;
  resolve: (answer: CompletionAnswer) => void;
  reject: (error: unknown) => void;
}

/**
 * Records the outcomes of a worker's attempts in batches (group commit): an outcome is
 * written at once when no write is in flight; those that come while one is are written
 * together by the next, in one transaction. Each answer is the store's for that attempt
 * (fenced on its own) and comes only once the transaction is durable. When the write
 * fails, every outcome of the batch is rejected for its caller to retry.
 */
export class Completions {
  private waiting: Waiting[] = [];
  private writing = false;

  constructor(private readonly store: Pick<WorkerStore, "completeBatch">) {}

  complete(lease: Lease, outcome: AttemptOutcome): Promise<CompletionAnswer> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ item: { lease, outcome }, resolve, reject });
      if (!this.writing) void this.write();
    });
  }

  private async write(): Promise<void> {
    this.writing = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting.splice(0, MAX_BATCH);
        try {
          const answers = await this.store.completeBatch(batch.map((waiting) => waiting.item));
          batch.forEach((waiting, i) => {
            const answer = answers[i];
            if (answer) waiting.resolve(answer);
            else
              waiting.reject(new Error(`the store answered ${answers.length} of ${batch.length}`));
          });
        } catch (error) {
          for (const waiting of batch) waiting.reject(error);
        }
      }
    } finally {
      this.writing = false;
    }
  }
}
