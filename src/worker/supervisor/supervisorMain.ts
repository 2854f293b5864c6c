import { appendFileSync, chmodSync, rmSync } from "node:fs";
import { type Server, type Socket, connect, createServer } from "node:net";
import type { OutputOffsets } from "../../core/logEvent.js";
import type { Execution, ExitStatus } from "../../executors/executor.js";
import { readProcStat } from "../../executors/processGroup.js";
import { spawnGroup, superviseGroup } from "../../executors/shellExecutor.js";
import { Spawner } from "../../executors/spawner.js";
import {
  FRAME_MESSAGE,
  FrameReader,
  OUTPUT_WINDOW,
  type SpawnRequest,
  type SupervisedJob,
  type SupervisorMessage,
  type WorkerMessage,
  encodeMessage,
  encodeOutput,
} from "./protocol.js";

/**
 * The job supervisor: one small process per worker identity, in a session of its own so
 * that it outlives its worker. It is the parent of the worker's jobs: it holds their pipes
 * and learns their exact exit status. It keeps each job's output until the worker says it
 * is stored, so a worker restarted after a crash adopts its jobs where they were: output
 * resumes at the first byte not stored, and the real exit status is reported even for a job
 * that ended while no worker was there. It also stops every job whose lease is about to
 * expire unrenewed (SIGTERM at expiry minus the kill grace, SIGKILL at expiry), so a job's
 * process never outlives its lease. It exits once no worker is connected and it holds
 * nothing a worker could still record.
 *
 * Usage: node supervisorMain.js SOCKET_PATH LOG_PATH
 */
const [socketArg, logArg] = process.argv.slice(2);
if (!socketArg || !logArg) {
  process.stderr.write("usage: supervisorMain SOCKET_PATH LOG_PATH\n");
  process.exit(2);
}
const socketPath: string = socketArg;
const logPath: string = logArg;
const STARTED_AT = Date.now();
const TICK_MS = Number(process.env.BATON_SUPERVISOR_TICK_MS ?? 100);
/** How long the supervisor waits, with nothing to hold, for a worker to (re)connect. */
const IDLE_EXIT_MS = 5_000;

/** One line per action, for the operator who wonders what happened. */
function note(message: string): void {
  try {
    appendFileSync(logPath, `${new Date().toISOString()} ${message}\n`);
  } catch {
    // Nowhere else to report to: the supervisor has no terminal and its worker may be gone.
  }
}

/** Output of one stream kept since the last acknowledgement. */
class Spool {
  private chunks: Buffer[] = [];
  /** Offset of the first byte kept. */
  base = 0;
  /** Offset just past the last byte read. */
  read = 0;
  /** Offset just past the last byte sent to the worker. */
  sent = 0;

  append(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.read += chunk.length;
  }

  get kept(): number {
    return this.read - this.base;
  }

  /** Forgets the bytes before `offset`. */
  dropBefore(offset: number): void {
    while (this.base < offset && this.chunks.length > 0) {
      const first = this.chunks[0] as Buffer;
      const drop = Math.min(first.length, offset - this.base);
      if (drop === first.length) this.chunks.shift();
      else this.chunks[0] = first.subarray(drop);
      this.base += drop;
    }
  }

  /** The bytes from `sent` to `read`, and marks them sent. */
  unsent(): Buffer[] {
    const out: Buffer[] = [];
    let position = this.base;
    for (const chunk of this.chunks) {
      const end = position + chunk.length;
      if (end > this.sent) out.push(chunk.subarray(Math.max(0, this.sent - position)));
      position = end;
    }
    this.sent = this.read;
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.base = this.read;
    this.sent = this.read;
  }
}

class Job {
  readonly spools = [new Spool(), new Spool()] as const;
  status: ExitStatus | null = null;
  attached = false;
  /** Dropped by the worker: its output goes nowhere while it is stopped. */
  forgotten = false;
  paused = false;
  /** Times reading its pipes was paused because the worker had not stored enough. */
  pauses = 0;
  stopping = false;

  constructor(
    readonly no: number,
    readonly key: string,
    readonly execution: Execution,
    /** With the pid, identifies the job's process for a worker that adopts it. */
    readonly startTime: number | null,
    public expiresAt: number,
    readonly killGraceMs: number,
  ) {}

  describe(): SupervisedJob {
    return {
      key: this.key,
      no: this.no,
      pid: this.execution.pid,
      startTime: this.startTime,
      status: this.status,
      stoppedAtLeaseExpiry: this.stopping,
    };
  }

  /** The lease is gone: nothing of this job can be recorded any more. */
  get expired(): boolean {
    return Date.now() >= this.expiresAt;
  }
}

const jobs = new Map<number, Job>();
/** Jobs dropped by the worker that are still being stopped: held until they are dead. */
const dying = new Set<Job>();
/** Keys of jobs dropped unrecorded, so that a late worker knows they ran (bounded). */
const dropped = new Set<string>();
const MAX_DROPPED = 10_000;

function dropUnrecorded(job: Job): void {
  jobs.delete(job.no);
  dropped.add(job.key);
  if (dropped.size > MAX_DROPPED) dropped.delete(dropped.values().next().value as string);
}
let nextNo = 1;
let worker: Socket | null = null;
let workerPid = 0;
let workerLeftAt = Date.now();
let server: Server;

function send(message: SupervisorMessage): void {
  worker?.write(encodeMessage(message));
}

/** Sends what the worker has not seen of the job's output, then its end if it ended. */
function flush(job: Job): void {
  if (!job.attached || !worker) return;
  job.spools.forEach((spool, stream) => {
    for (const data of spool.unsent()) {
      for (const part of encodeOutput(job.no, stream as 0 | 1, data)) worker?.write(part);
    }
  });
  if (job.status) send({ op: "exited", no: job.no, status: job.status, pauses: job.pauses });
}

/** Stops reading a job's pipes while too much of its output waits for the worker. */
function applyBackpressure(job: Job): void {
  const kept = job.spools[0].kept + job.spools[1].kept;
  const streams = [job.execution.stdout, job.execution.stderr];
  if (!job.paused && kept >= OUTPUT_WINDOW) {
    job.paused = true;
    job.pauses++;
    for (const stream of streams) stream.pause();
  } else if (job.paused && kept < OUTPUT_WINDOW / 2) {
    job.paused = false;
    for (const stream of streams) stream.resume();
  }
}

/** The job spawner (null when Node starts the jobs), and the one last known to run. */
let spawner: Promise<Spawner | null> | undefined;
let running: Spawner | null = null;
/** Spawns under way: a welcome waits for them, so that it lists every job that runs. */
const spawning = new Set<Promise<unknown>>();

/**
 * Jobs are started by the spawner (a small C program, much cheaper to fork than this
 * process) when it was built and runs here; by Node otherwise. One that died is replaced.
 */
async function startExecution(
  request: SpawnRequest,
): Promise<{ execution: Execution; startTime: number | null }> {
  // Decided before any await, so that spawns at the same moment share one spawner.
  if (spawner === undefined || (running && !running.alive)) {
    running = null;
    spawner = Spawner.start((cause) =>
      note(`the job spawner died (${cause}); the jobs it ran were killed and are reported lost`),
    ).then((started) => {
      if ("unusable" in started) {
        note(`no job spawner (${started.unusable}): Node starts the jobs`);
        return null;
      }
      note(`job spawner ${started.spawner.pid} started`);
      running = started.spawner;
      return running;
    });
  }
  const current = await spawner;
  if (!current) {
    const execution = spawnGroup(request);
    // Not reaped before this process's event loop goes round: there, at worst a zombie.
    const startTime =
      execution.pid === null ? null : (readProcStat(execution.pid)?.startTime ?? null);
    return { execution, startTime };
  }
  const child = current.start(request);
  const execution = superviseGroup(child, request);
  await child.ready;
  return { execution, startTime: child.startTime };
}

async function spawnJob(request: SpawnRequest): Promise<Job> {
  const { execution, startTime } = await startExecution(request);
  const job = new Job(
    nextNo++,
    request.key,
    execution,
    startTime,
    request.leaseExpiresAt,
    request.killGraceMs,
  );
  jobs.set(job.no, job);
  const streams = [execution.stdout, execution.stderr] as const;
  streams.forEach((stream, index) => {
    stream.on("data", (chunk: Buffer) => {
      if (job.forgotten) return;
      const spool = job.spools[index as 0 | 1];
      spool.append(chunk);
      if (job.expired && !job.attached) spool.clear();
      flush(job);
      applyBackpressure(job);
    });
  });
  void execution.done.then((status) => {
    job.status = status;
    flush(job);
  });
  return job;
}

function onMessage(socket: Socket, message: WorkerMessage): void {
  if (message.op === "hello") {
    if (worker && worker !== socket) {
      socket.end(
        encodeMessage({
          op: "refused",
          rid: message.rid,
          reason: `another worker process (pid ${workerPid}) is running with this state directory`,
        }),
      );
      return;
    }
    worker = socket;
    workerPid = message.workerPid;
    // A job an earlier worker asked for may be starting: the welcome must list it, or this
    // worker would take it for never started while it runs.
    void Promise.allSettled([...spawning]).then(() => {
      if (socket !== worker) return;
      send({
        op: "welcome",
        rid: message.rid,
        pid: process.pid,
        startedAt: STARTED_AT,
        jobs: [...jobs.values()].map((job) => job.describe()),
        dropped: [...dropped],
      });
    });
    return;
  }
  if (socket !== worker) return;
  if (message.op === "spawn") {
    const started = spawnJob(message).then(
      (job) => {
        // A worker that left meanwhile never learns of it: it runs on unattached, as the
        // jobs of a worker that left do, for a worker that connects to adopt.
        if (socket !== worker) return;
        job.attached = true;
        send({ op: "spawned", rid: message.rid, job: job.describe() });
        flush(job);
      },
      (error: unknown) => {
        if (socket !== worker) return;
        send({
          op: "refused",
          rid: message.rid,
          reason: `could not start the job: ${String(error)}`,
        });
      },
    );
    spawning.add(started);
    void started.finally(() => spawning.delete(started));
    return;
  }
  const job = jobs.get(message.no);
  if (!job) return;
  switch (message.op) {
    case "attach":
      dropStored(job, message.from);
      job.spools.forEach((spool) => {
        spool.sent = spool.base;
      });
      job.attached = true;
      flush(job);
      break;
    case "ack":
      dropStored(job, message.upTo);
      break;
    case "lease":
      job.expiresAt = message.expiresAt;
      break;
    case "stop":
      job.execution.stop();
      break;
    case "forget":
      forget(job);
      break;
    default:
      break;
  }
}

/** Drops a job, stopping it if alive: held in `dying` until it is dead. */
function forget(job: Job): void {
  job.forgotten = true;
  job.attached = false;
  job.execution.stop();
  job.spools[0].clear();
  job.spools[1].clear();
  applyBackpressure(job);
  jobs.delete(job.no);
  if (job.status === null) {
    dying.add(job);
    void job.execution.done.then(() => dying.delete(job));
  }
}

function dropStored(job: Job, stored: OutputOffsets): void {
  job.spools[0].dropBefore(stored.stdout);
  job.spools[1].dropBefore(stored.stderr);
  applyBackpressure(job);
}

function onConnection(socket: Socket): void {
  const reader = new FrameReader((frame) => {
    if (frame.type === FRAME_MESSAGE) onMessage(socket, frame.message as WorkerMessage);
  });
  socket.on("data", (chunk: Buffer) => {
    try {
      reader.push(chunk);
    } catch (error) {
      note(`dropping a connection that sent a malformed frame: ${String(error)}`);
      socket.destroy();
    }
  });
  socket.on("error", () => socket.destroy());
  socket.on("close", () => {
    if (socket !== worker) return;
    worker = null;
    workerLeftAt = Date.now();
    for (const job of jobs.values()) job.attached = false;
    note("worker disconnected; its jobs run on until their leases expire unrenewed");
  });
}

/** Stops jobs whose lease expires unrenewed; exits once nothing is left to hold. */
function tick(): void {
  const now = Date.now();
  for (const job of jobs.values()) {
    if (job.status === null && !job.stopping && now >= job.expiresAt - job.killGraceMs) {
      job.stopping = true;
      job.execution.stop();
      note(
        `SIGTERM job ${job.key} (group ${job.execution.pid}): lease expires ` +
          `${new Date(job.expiresAt).toISOString()} unrenewed`,
      );
    }
    // Once the lease is gone nothing of the job can be recorded: let its pipes drain away.
    if (job.expired && !worker) {
      job.spools[0].clear();
      job.spools[1].clear();
      applyBackpressure(job);
      if (job.status) dropUnrecorded(job);
    }
  }
  if (!worker && jobs.size === 0 && dying.size === 0 && now - workerLeftAt >= IDLE_EXIT_MS) {
    server.close();
    rmSync(socketPath, { force: true });
    process.exit(0);
  }
}

function listen(retry: boolean): void {
  server = createServer(onConnection);
  server.once("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EADDRINUSE" || !retry) {
      note(`cannot listen on ${socketPath}: ${error.message}`);
      process.exit(1);
    }
    // A live supervisor answers there (then this one is not needed), or a dead one left it.
    const probe = connect(socketPath);
    probe.once("connect", () => {
      probe.destroy();
      process.exit(0);
    });
    probe.once("error", () => {
      try {
        rmSync(socketPath, { force: true });
      } catch (removeError) {
        note(`cannot remove the stale socket ${socketPath}: ${String(removeError)}`);
        process.exit(1);
      }
      listen(false);
    });
  });
  // The socket is created (synchronously) under a private umask: never connectable by
  // others, not even for a moment. Jobs keep the umask they inherited.
  const umask = process.umask(0o077);
  server.listen(socketPath, () => {
    // Whoever can connect can run programs as this user: only this user may.
    chmodSync(socketPath, 0o600);
    note(`supervisor ${process.pid} listening on ${socketPath}`);
    setInterval(tick, TICK_MS);
  });
  process.umask(umask);
}

// A stopped supervisor stops its jobs first: they would otherwise lose their pipes.
process.on("SIGTERM", () => {
  note("SIGTERM: stopping every job");
  void Promise.allSettled([...spawning])
    .then(() => {
      for (const job of jobs.values()) job.execution.stop();
      const waits = [...jobs.values(), ...dying].map((job) => job.execution.done);
      return Promise.all(waits);
    })
    .then(() => {
      rmSync(socketPath, { force: true });
      process.exit(0);
    });
});
process.on("SIGINT", () => {});

listen(true);
