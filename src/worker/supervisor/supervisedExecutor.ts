import { PassThrough } from "node:stream";
import type { OutputOffsets } from "../../core/logEvent.js";
import type {
  Execution,
  ExecutionRequest,
  Executor,
  ExitStatus,
} from "../../executors/executor.js";
import { readProcStat, signalGroup } from "../../executors/processGroup.js";
import { commandOf } from "../../executors/shellExecutor.js";
import type { Logger } from "../../logger.js";
import type { SupervisedJob } from "./protocol.js";
import {
  SupervisorConnection,
  type SupervisorPaths,
  type Welcome,
} from "./supervisorConnection.js";

/**
 * Runs shell jobs through the worker's job supervisor (see supervisorMain.ts), so that
 * they survive the worker's crash and can be adopted by its next life.
 */
export class SupervisedExecutor implements Executor {
  private connection: Promise<SupervisorConnection> | null = null;
  private readonly executions = new Map<number, RemoteExecution>();
  private readonly log: Logger;

  constructor(
    private readonly paths: SupervisorPaths,
    logger: Logger,
  ) {
    this.log = logger.child({ component: "supervisor" });
  }

  /**
   * Connects (starting the supervisor if needed); says which jobs it holds. Adopting and
   * discarding those jobs happens on this very connection: job numbers mean nothing to
   * another supervisor.
   */
  async connect(): Promise<Welcome & { connection: SupervisorConnection }> {
    const connection = await this.connected();
    return { ...connection.welcome, connection };
  }

  start(request: ExecutionRequest): Execution {
    const execution = new RemoteExecution();
    void this.spawn(request, execution);
    return execution;
  }

  /** Takes over a job the supervisor holds; its output resumes at `from`. */
  adopt(connection: SupervisorConnection, job: SupervisedJob, from: OutputOffsets): Execution {
    const execution = new RemoteExecution();
    if (connection.isClosed) {
      execution.lose("the job supervisor went away while the job was being adopted");
      return execution;
    }
    this.bind(connection, execution, job);
    connection.send({ op: "attach", no: job.no, from });
    return execution;
  }

  /** Drops a job the supervisor holds that is no longer ours (stopping it if it runs). */
  discard(connection: SupervisorConnection, job: SupervisedJob): void {
    connection.send({ op: "forget", no: job.no });
  }

  close(): void {
    this.connection?.then(
      (connection) => connection.close(),
      () => {},
    );
    this.connection = null;
  }

  private connected(): Promise<SupervisorConnection> {
    if (!this.connection) {
      const opening = SupervisorConnection.open(
        this.paths,
        {
          output: (no, stream, data) => this.executions.get(no)?.output(stream, data),
          exited: (no, status, pauses) => this.executions.get(no)?.exited(status, pauses),
          closed: () => this.onClosed(opening),
        },
        this.log,
      );
      this.connection = opening;
      // A failed open is retried by the next caller.
      opening.catch(() => {
        if (this.connection === opening) this.connection = null;
      });
    }
    return this.connection;
  }

  private async spawn(request: ExecutionRequest, execution: RemoteExecution): Promise<void> {
    let connection: SupervisorConnection;
    let command: { file: string; args: string[] };
    try {
      connection = await this.connected();
      command = commandOf(request.job, request.workDir);
    } catch (error) {
      execution.exited({
        exitCode: null,
        signal: null,
        spawnError: `could not start the job: ${(error as Error).message}`,
      });
      return;
    }
    connection.request(
      {
        op: "spawn",
        key: `${request.job.id}#${request.job.attempt}`,
        ...command,
        cwd: request.job.cwd ?? request.workDir,
        env: request.env,
        killGraceMs: request.killGraceMs,
        leaseExpiresAt: request.leaseExpiresAt,
      },
      (reply) => {
        if (reply.op === "spawned") {
          this.bind(connection, execution, reply.job);
        } else if (reply.op === "refused" && reply.reason !== "") {
          execution.exited({ exitCode: null, signal: null, spawnError: reply.reason });
        } else {
          execution.lose("the job supervisor went away before it confirmed the start");
        }
      },
    );
  }

  private bind(connection: SupervisorConnection, execution: RemoteExecution, job: SupervisedJob) {
    this.executions.set(job.no, execution);
    execution.bind(connection, job);
    void execution.done.finally(() => this.executions.delete(job.no));
  }

  /** The supervisor died: its jobs lost their pipes and their parent; stop what is left. */
  private onClosed(closed: Promise<SupervisorConnection>): void {
    if (this.connection === closed) this.connection = null;
    if (this.executions.size === 0) return;
    this.log.error(
      { jobs: this.executions.size },
      "the job supervisor exited unexpectedly; stopping the jobs it held",
    );
    for (const execution of this.executions.values()) {
      execution.lose("the job supervisor exited unexpectedly; the job's exit status is unknown");
    }
    this.executions.clear();
  }
}

/** A job run by the supervisor, seen from the worker. */
class RemoteExecution implements Execution {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly done: Promise<ExitStatus>;
  private settle: (status: ExitStatus) => void = () => {};
  private connection: SupervisorConnection | null = null;
  private job: SupervisedJob | null = null;
  private stopRequested = false;
  private ended = false;
  private pendingLease: number | null = null;
  outputPauses = 0;

  constructor() {
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  get pid(): number | null {
    return this.job?.pid ?? null;
  }

  bind(connection: SupervisorConnection, job: SupervisedJob): void {
    this.connection = connection;
    this.job = job;
    if (this.pendingLease !== null) this.leaseExtended(this.pendingLease);
    if (this.stopRequested) connection.send({ op: "stop", no: job.no });
  }

  stop(): void {
    this.stopRequested = true;
    if (this.job && !this.ended) this.connection?.send({ op: "stop", no: this.job.no });
  }

  leaseExtended(expiresAt: number): void {
    if (!this.job) {
      this.pendingLease = expiresAt;
      return;
    }
    this.connection?.send({ op: "lease", no: this.job.no, expiresAt });
  }

  acknowledge(stored: OutputOffsets): void {
    if (this.job) this.connection?.send({ op: "ack", no: this.job.no, upTo: stored });
  }

  dispose(): void {
    if (this.job) this.connection?.send({ op: "forget", no: this.job.no });
  }

  output(stream: 0 | 1, data: Buffer): void {
    (stream === 0 ? this.stdout : this.stderr).write(data);
  }

  exited(status: ExitStatus, pauses = 0): void {
    if (this.ended) return;
    this.outputPauses = pauses;
    this.ended = true;
    this.stdout.end();
    this.stderr.end();
    this.settle(status);
  }

  /** The supervisor is gone: stop the job's group if it is still ours, and report it lost. */
  lose(why: string): void {
    const { job } = this;
    if (job?.pid && job.startTime !== null && readProcStat(job.pid)?.startTime === job.startTime) {
      signalGroup(job.pid, "SIGKILL");
    }
    this.job = null;
    if (this.ended) return;
    this.ended = true;
    this.stdout.end();
    this.stderr.end();
    this.settle({ exitCode: null, signal: null, spawnError: null, lost: why });
  }
}
