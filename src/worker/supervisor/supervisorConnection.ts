import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync } from "node:fs";
import { type Socket, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../core/config.js";
import type { ExitStatus } from "../../executors/executor.js";
import type { Logger } from "../../logger.js";
import {
  FRAME_MESSAGE,
  type Frame,
  FrameReader,
  type SupervisedJob,
  type SupervisorMessage,
  type WorkerMessage,
  encodeMessage,
} from "./protocol.js";

export interface SupervisorPaths {
  socketPath: string;
  logPath: string;
}

/** The longest unix socket path Linux accepts (sun_path holds 108 bytes with the NUL). */
const MAX_SOCKET_PATH = 107;
const CONNECT_ATTEMPTS = 100;
const HELLO_TIMEOUT_MS = 5_000;

/**
 * Where the supervisor of the worker whose state lives in `stateDir` listens and logs. A
 * state directory too deep for a socket path gets its socket in a private directory of
 * this user under the temporary directory instead.
 */
export function supervisorPaths(stateDir: string): SupervisorPaths {
  let socketPath = join(stateDir, "supervisor.sock");
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    const digest = createHash("sha256").update(stateDir).digest("hex").slice(0, 20);
    const dir = privateDir(join(tmpdir(), `baton-${process.getuid?.() ?? "user"}`));
    socketPath = join(dir, `${digest}.sock`);
  }
  return { socketPath, logPath: join(stateDir, "supervisor.log") };
}

/** A directory only this user can enter, created if missing; refused if anyone else could. */
function privateDir(path: string): string {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const stat = lstatSync(path);
  const uid = process.getuid?.();
  const foreign = uid !== undefined && stat.uid !== uid;
  if (!stat.isDirectory() || foreign || (stat.mode & 0o077) !== 0) {
    throw new ConfigError(
      `${path} must be a directory of this user that no one else can enter; ` +
        "remove it, or give the worker a shorter --state-dir",
    );
  }
  return path;
}

/** Refuses a socket that another user created: it could be an impostor's. */
function checkOwner(socketPath: string): void {
  const uid = process.getuid?.();
  if (uid === undefined) return;
  let owner: number;
  try {
    owner = lstatSync(socketPath).uid;
  } catch {
    return; // not there: connecting fails with ENOENT and starts the supervisor
  }
  if (owner !== uid) {
    throw new ConfigError(
      `${socketPath} belongs to another user (uid ${owner}); ` +
        "refusing to use it as the job supervisor",
    );
  }
}

export interface Welcome {
  pid: number;
  /** Epoch ms at which the supervisor started: it knows of every job spawned since. */
  startedAt: number;
  jobs: SupervisedJob[];
  /** Keys of jobs it dropped unrecorded when their lease ran out: they did run. */
  dropped: string[];
}

export interface ConnectionEvents {
  output(no: number, stream: 0 | 1, data: Buffer): void;
  exited(no: number, status: ExitStatus, pauses: number): void;
  closed(): void;
}

/**
 * A worker's connection to its job supervisor. Opening it starts the supervisor when none
 * listens yet; a supervisor that already holds another live worker of the same identity
 * refuses, which keeps two workers from sharing one name and state directory.
 */
export class SupervisorConnection {
  private readonly pending = new Map<number, (reply: SupervisorMessage) => void>();
  private nextRid = 1;
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    readonly welcome: Welcome,
    private readonly events: ConnectionEvents,
    reader: FrameReader,
    early: Frame[],
  ) {
    const handle = (frame: Frame) => {
      if (frame.type === FRAME_MESSAGE) this.onMessage(frame.message as SupervisorMessage);
      else events.output(frame.no, frame.stream, frame.data);
    };
    reader.setHandler(handle);
    for (const frame of early) handle(frame);
    socket.on("close", () => {
      this.closed = true;
      for (const resolve of this.pending.values()) resolve({ op: "refused", rid: 0, reason: "" });
      this.pending.clear();
      events.closed();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  static async open(
    paths: SupervisorPaths,
    events: ConnectionEvents,
    log: Logger,
  ): Promise<SupervisorConnection> {
    let started = false;
    let lastError: unknown = null;
    for (let attempt = 0; attempt < CONNECT_ATTEMPTS; attempt++) {
      try {
        checkOwner(paths.socketPath);
        const { socket, reader, reply, early } = await hello(paths.socketPath);
        if (reply.op === "refused") {
          socket.destroy();
          throw new ConfigError(
            `${reply.reason} (${paths.socketPath}); give each worker its own --name and --state-dir`,
          );
        }
        if (reply.op !== "welcome") throw new Error(`unexpected reply ${reply.op}`);
        const { pid, startedAt, jobs, dropped } = reply;
        log.info(
          { supervisorPid: pid, jobs: jobs.length, socket: paths.socketPath },
          "connected to the job supervisor",
        );
        const welcome = { pid, startedAt, jobs, dropped };
        return new SupervisorConnection(socket, welcome, events, reader, early);
      } catch (error) {
        if (error instanceof ConfigError) throw error;
        lastError = error;
        const code = (error as NodeJS.ErrnoException).code;
        if (!started && (code === "ENOENT" || code === "ECONNREFUSED")) {
          startSupervisor(paths, log);
          started = true;
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(200, 10 * (attempt + 1))));
      }
    }
    throw new Error(
      `could not reach the job supervisor at ${paths.socketPath} (see ${paths.logPath}): ` +
        String(lastError),
    );
  }

  send(message: WorkerMessage): void {
    if (!this.closed) this.socket.write(encodeMessage(message));
  }

  /**
   * Sends a request; `onReply` gets its reply ("refused" with an empty reason if the
   * connection closes first) synchronously, before any frame that follows the reply is
   * handled: output of a just-spawned job must find its reader in place.
   */
  request(
    message: Omit<Extract<WorkerMessage, { op: "spawn" }>, "rid">,
    onReply: (reply: SupervisorMessage) => void,
  ): void {
    const rid = this.nextRid++;
    if (this.closed) {
      onReply({ op: "refused", rid, reason: "" });
      return;
    }
    this.pending.set(rid, onReply);
    this.send({ ...message, rid });
  }

  close(): void {
    this.socket.end();
  }

  private onMessage(message: SupervisorMessage): void {
    if (message.op === "exited") {
      this.events.exited(message.no, message.status, message.pauses);
      return;
    }
    const resolve = this.pending.get(message.rid);
    this.pending.delete(message.rid);
    resolve?.(message);
  }
}

/** Connects and says hello; resolves with the first reply. */
function hello(
  socketPath: string,
): Promise<{ socket: Socket; reader: FrameReader; reply: SupervisorMessage; early: Frame[] }> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let replied = false;
    // Frames after the reply but in the same chunk, for the connection to handle.
    const early: Frame[] = [];
    const reader = new FrameReader((frame) => {
      if (replied || frame.type !== FRAME_MESSAGE) {
        early.push(frame);
        return;
      }
      replied = true;
      socket.setTimeout(0);
      socket.off("close", onClose);
      resolve({ socket, reader, reply: frame.message as SupervisorMessage, early });
    });
    const onClose = () =>
      reject(Object.assign(new Error("closed before it answered"), { code: "ECONNRESET" }));
    // A supervisor that accepts but never answers is as good as none.
    socket.setTimeout(HELLO_TIMEOUT_MS, () => socket.destroy(new Error("no answer to hello")));
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    socket.once("error", (error) => {
      socket.destroy();
      reject(error);
    });
    socket.once("close", onClose);
    socket.once("connect", () => {
      socket.write(encodeMessage({ op: "hello", rid: 0, workerPid: process.pid }));
    });
  });
}

function startSupervisor(paths: SupervisorPaths, log: Logger): void {
  const script = fileURLToPath(new URL("./supervisorMain.js", import.meta.url));
  const child = spawn(process.execPath, [script, paths.socketPath, paths.logPath], {
    detached: true,
    stdio: "ignore",
  });
  child.on("error", (error) => log.error({ err: error }, "could not start the job supervisor"));
  child.unref();
  log.info({ supervisorPid: child.pid, log: paths.logPath }, "job supervisor started");
}
