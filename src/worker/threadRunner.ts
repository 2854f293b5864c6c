import { Worker as Thread } from "node:worker_threads";
import type { OutputLine } from "../core/logEvent.js";
import type { ToThread } from "./handlerThread.js";
import type { HandlerRunner, HandlerSettled, HandlerTask } from "./handlerRunner.js";
import { JobStopped } from "./handlerTypes.js";
import { moduleUrl } from "./handlerModule.js";

type FromThread =
  | { type: "ready"; names: string[] }
  | { type: "output"; id: number; line: OutputLine }
  | { type: "done"; id: number; settled: HandlerSettled };

const THREAD_MAIN = new URL("./handlerThread.js", import.meta.url);

interface PooledThread {
  thread: Thread;
  /** The run it is busy with, or null when idle. */
  current: { id: number; task: HandlerTask; settle: (settled: HandlerSettled) => void } | null;
}

/**
 * Runs each handler in a worker thread of its own (one job per thread at a time, threads
 * reused): a handler that blocks its thread cannot starve the heartbeats, and one that does
 * not return after its signal aborts is stopped hard, by terminating its thread.
 */
export class ThreadRunner implements HandlerRunner {
  private readonly idle: PooledThread[] = [];
  private readonly all = new Set<PooledThread>();
  private nextId = 1;
  private closed = false;

  private constructor(
    private readonly module: string,
    readonly names: readonly string[],
    private readonly killGraceMs: number,
  ) {}

  /** Loads the module in a first thread, which checks it and tells its handlers' names. */
  static async start(module: string | URL, killGraceMs: number): Promise<ThreadRunner> {
    const url = moduleUrl(module);
    const first = new Thread(THREAD_MAIN, { workerData: { module: url } });
    const names = await new Promise<string[]>((resolve, reject) => {
      first.once("message", (message: FromThread) => {
        if (message.type === "ready") resolve(message.names);
      });
      first.once("error", reject);
      first.once("exit", (code) => reject(new Error(`the handler thread exited (${code})`)));
    });
    first.removeAllListeners();
    const runner = new ThreadRunner(url, names, killGraceMs);
    runner.adopt(first);
    return runner;
  }

  async run(task: HandlerTask): Promise<HandlerSettled> {
    const pooled = this.idle.pop() ?? this.spawn();
    const id = this.nextId++;
    return new Promise<HandlerSettled>((resolve) => {
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        const reason: unknown = task.signal.reason;
        const stopped =
          reason instanceof JobStopped ? reason : new JobStopped("shutdown", String(reason));
        this.post(pooled, {
          type: "abort",
          id,
          cause: stopped.stopCause,
          message: stopped.message,
        });
        killTimer = setTimeout(() => {
          this.discard(pooled);
          settle({
            ok: false,
            message:
              `${stopped.message}; the handler did not return within ${this.killGraceMs} ms ` +
              "of being stopped, so its thread was terminated",
            final: false,
          });
        }, this.killGraceMs);
      };
      const settle = (settled: HandlerSettled) => {
        if (pooled.current?.id !== id) return;
        pooled.current = null;
        clearTimeout(killTimer);
        task.signal.removeEventListener("abort", onAbort);
        resolve(settled);
        if (this.all.has(pooled) && !this.closed) this.idle.push(pooled);
      };
      pooled.current = { id, task, settle };
      task.signal.addEventListener("abort", onAbort, { once: true });
      this.post(pooled, { type: "run", id, job: task.job, attempt: task.attempt });
      if (task.signal.aborted) onAbort();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.all].map((pooled) => pooled.thread.terminate()));
    this.all.clear();
    this.idle.length = 0;
  }

  private post(pooled: PooledThread, message: ToThread): void {
    pooled.thread.postMessage(message);
  }

  private spawn(): PooledThread {
    return this.adopt(new Thread(THREAD_MAIN, { workerData: { module: this.module } }));
  }

  private adopt(thread: Thread): PooledThread {
    const pooled: PooledThread = { thread, current: null };
    this.all.add(pooled);
    thread.on("message", (message: FromThread) => {
      const current = pooled.current;
      if (!current || message.type === "ready" || message.id !== current.id) return;
      if (message.type === "output") current.task.output(message.line);
      else current.settle(message.settled);
    });
    thread.on("error", (error) => {
      pooled.current?.settle({
        ok: false,
        message: `the handler's thread failed: ${error.message}`,
        final: false,
      });
    });
    thread.on("exit", (code) => {
      this.all.delete(pooled);
      const at = this.idle.indexOf(pooled);
      if (at >= 0) this.idle.splice(at, 1);
      pooled.current?.settle({
        ok: false,
        message: `the handler's thread exited (code ${code}) before the handler returned`,
        final: false,
      });
    });
    return pooled;
  }

  private discard(pooled: PooledThread): void {
    this.all.delete(pooled);
    void pooled.thread.terminate();
  }
}
