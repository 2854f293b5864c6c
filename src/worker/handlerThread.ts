/**
 * The body of a handler thread (`isolation: "thread"`): loads the handlers module and runs
 * one job at a time as the worker's main thread asks. Heartbeats stay on the main thread,
 * so a handler that blocks its thread cannot starve them.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { Job } from "../core/job.js";
import { loadHandlers } from "./handlerModule.js";
import { runHandler } from "./handlerRunner.js";
import { JobStopped, type StopCause } from "./handlerTypes.js";

export type ToThread =
  | { type: "run"; id: number; job: Job; attempt: number }
  | { type: "abort"; id: number; cause: StopCause; message: string };

const port = parentPort;
if (!port) throw new Error("handlerThread.js runs only as a worker thread");
const handlers = await loadHandlers((workerData as { module: string }).module);
const controllers = new Map<number, AbortController>();

port.on("message", (message: ToThread) => {
  if (message.type === "abort") {
    controllers.get(message.id)?.abort(new JobStopped(message.cause, message.message));
    return;
  }
  const { id, job, attempt } = message;
  const controller = new AbortController();
  controllers.set(id, controller);
  void runHandler(handlers, {
    job,
    attempt,
    signal: controller.signal,
    output: (line) => port.postMessage({ type: "output", id, line }),
  }).then((settled) => {
    controllers.delete(id);
    port.postMessage({ type: "done", id, settled });
  });
});
port.postMessage({ type: "ready", names: Object.keys(handlers) });
