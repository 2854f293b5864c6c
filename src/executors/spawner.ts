import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { FrameSplitter } from "./frameSplitter.js";
import { signalGroup } from "./processGroup.js";

/** Where `npm run build` puts the compiled spawner (`native/spawner.c`). */
export const SPAWNER_PATH = fileURLToPath(
  new URL("../../dist/native/baton-spawner", import.meta.url),
);

/** Frame types of the spawner's protocol (see `native/spawner.c`). */
const SPAWN = 1;
const PAUSE = 2;
const RESUME = 3;
const CLOSE = 4;
const SPAWNED = 1;
const FAILED = 2;
const OUTPUT = 3;
const EOF = 4;
const EXITED = 5;
const READY = 6;

type StreamCommand = typeof PAUSE | typeof RESUME | typeof CLOSE;

export interface SpawnSpec {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, no]) => [no, name]));
const SIGNAL_NAMES = new Map(
  Object.entries(constants.signals).map(([name, no]) => [no, name as NodeJS.Signals]),
);

/**
 * Starts processes through `baton-spawner`, a small C program: forking it costs a fraction
 * of forking Node. Each process it starts is handed out as a {@link SpawnedChild}, which
 * behaves as a `ChildProcess` spawned detached with piped stdout and stderr does.
 */
export class Spawner {
  private readonly children = new Map<number, SpawnedChild>();
  private readonly starting = new Map<number, SpawnedChild>();
  private nextNo = 1;
  /** Why the spawner is gone, once it is. */
  private deathCause: string | null = null;
  private onReady: () => void = () => {};

  private constructor(
    private readonly process: ChildProcess,
    private readonly onDeath: (cause: string) => void,
  ) {
    const splitter = new FrameSplitter((frame) => this.onEvent(frame));
    process.stdout?.on("data", (chunk: Buffer) => splitter.push(chunk));
    let errors = "";
    process.stderr?.on("data", (chunk: Buffer) => {
      errors = (errors + chunk.toString()).slice(-2_000);
    });
    process.stdin?.on("error", () => {});
    process.once("error", (error) => this.died(`could not run it: ${error.message}`));
    process.once("close", (code, signal) =>
      this.died(`it exited (${signal ?? `code ${code}`})${errors ? `: ${errors.trim()}` : ""}`),
    );
  }

  /**
   * Starts the spawner and waits for it to say it runs. Says why not when it cannot be used
   * here: not built (no C compiler at install), or built for another machine.
   */
  static async start(
    onDeath: (cause: string) => void,
    path = SPAWNER_PATH,
  ): Promise<{ spawner: Spawner } | { unusable: string }> {
    if (!existsSync(path)) return { unusable: `${path} was not built` };
    // A session of its own: signals meant for the supervisor's group must not reach it.
    const child = spawn(path, [], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    // Its first word: READY (null), or why it died before saying it.
    let answer: (cause: string | null) => void = () => {};
    const first = new Promise<string | null>((resolve) => {
      answer = resolve;
    });
    let ready = false;
    const spawner = new Spawner(child, (cause) => (ready ? onDeath(cause) : answer(cause)));
    spawner.onReady = () => {
      ready = true;
      answer(null);
    };
    const cause = await first;
    if (cause === null) return { spawner };
    return { unusable: `${path} does not run here: ${cause}` };
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  get alive(): boolean {
    return this.deathCause === null;
  }

  /**
   * Starts a program as the leader of a new session, stdin on /dev/null, its output on
   * pipes. The child has a pid once `ready` settles; one that could not start reports why
   * as Node's does, with an `error` event and no pid.
   */
  start(spec: SpawnSpec): SpawnedChild {
    const no = this.nextNo++;
    const child = new SpawnedChild((type, stream) => this.sendStream(type, no, stream));
    if (!this.alive) {
      child.failed(spawnerGone(this.deathCause));
      return child;
    }
    const strings = [spec.cwd, spec.file, spec.file, ...spec.args];
    for (const [name, value] of Object.entries(spec.env)) strings.push(`${name}=${value}`);
    const bad = strings.find((value) => value.includes("\0"));
    if (bad !== undefined) {
      const message = `a NUL byte in ${JSON.stringify(bad)}`;
      child.failed(Object.assign(new Error(message), { code: "ERR_INVALID_ARG_VALUE" }));
      return child;
    }
    const body = Buffer.from(strings.join("\0") + "\0");
    const head = Buffer.allocUnsafe(17);
    head.writeUInt32BE(13 + body.length, 0);
    head.writeUInt8(SPAWN, 4);
    head.writeUInt32BE(no, 5);
    head.writeUInt32BE(1 + spec.args.length, 9);
    head.writeUInt32BE(Object.keys(spec.env).length, 13);
    this.starting.set(no, child);
    this.process.stdin?.write(Buffer.concat([head, body]));
    return child;
  }

  /** Stops the spawner; it is not needed for processes that were started and ended. */
  stop(): void {
    this.process.stdin?.end();
  }

  private sendStream(type: StreamCommand, no: number, stream: 0 | 1): void {
    if (!this.alive) return;
    const frame = Buffer.allocUnsafe(10);
    frame.writeUInt32BE(6, 0);
    frame.writeUInt8(type, 4);
    frame.writeUInt32BE(no, 5);
    frame.writeUInt8(stream, 9);
    this.process.stdin?.write(frame);
  }

  private onEvent(frame: Buffer): void {
    const type = frame.readUInt8(0);
    if (type === READY) {
      this.onReady();
      return;
    }
    const no = frame.readUInt32BE(1);
    switch (type) {
      case SPAWNED: {
        const child = this.take(no);
        if (!child) return;
        this.children.set(no, child);
        child.once("close", () => this.children.delete(no));
        const startTime = frame.readUInt32BE(9) * 2 ** 32 + frame.readUInt32BE(13);
        child.started(frame.readUInt32BE(5), startTime === 0 ? null : startTime);
        return;
      }
      case FAILED: {
        const errno = frame.readUInt32BE(5);
        const code = ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
        this.take(no)?.failed(Object.assign(new Error(`spawn failed: ${code}`), { code }));
        return;
      }
      case OUTPUT:
        this.children.get(no)?.output(frame.readUInt8(5), frame.subarray(6));
        return;
      case EOF:
        this.children.get(no)?.output(frame.readUInt8(5), null);
        return;
      case EXITED: {
        const child = this.children.get(no);
        if (!child) return;
        const code = frame.readInt32BE(5);
        const signal = frame.readUInt32BE(9);
        child.exited(code < 0 ? null : code, SIGNAL_NAMES.get(signal) ?? null);
        return;
      }
      default:
        return;
    }
  }

  private take(no: number): SpawnedChild | undefined {
    const child = this.starting.get(no);
    this.starting.delete(no);
    return child;
  }

  private died(cause: string): void {
    if (this.deathCause !== null) return;
    this.deathCause = cause;
    for (const child of this.starting.values()) child.failed(spawnerGone(cause));
    this.starting.clear();
    // Nobody holds their pipes or can learn their exit status any more: stop them.
    for (const child of [...this.children.values()]) child.lost(`the job spawner died: ${cause}`);
    this.onDeath(cause);
  }
}

function spawnerGone(cause: string | null): NodeJS.ErrnoException {
  return Object.assign(new Error(`the job spawner is gone: ${cause ?? "unknown"}`), {
    code: "ESPAWNER",
  });
}

/** A process started by the spawner, shaped as far as `spawnGroup` needs like a ChildProcess. */
export class SpawnedChild extends EventEmitter {
  pid: number | undefined = undefined;
  readonly stdout: SpawnedOutput;
  readonly stderr: SpawnedOutput;
  /** Why the process's fate is unknown, if it is (the spawner died). */
  lostCause: string | null = null;
  /** Clock ticks after boot when it started: with the pid, identifies the process. */
  startTime: number | null = null;
  /** Settles once the process runs (it has a pid) or could not be started. */
  readonly ready: Promise<void>;
  private markReady: () => void = () => {};
  private hasExited = false;
  private openStreams = 2;

  constructor(command: (type: StreamCommand, stream: 0 | 1) => void) {
    super();
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    this.stdout = new SpawnedOutput((type) => command(type, 0));
    this.stderr = new SpawnedOutput((type) => command(type, 1));
    for (const stream of [this.stdout, this.stderr]) {
      stream.once("close", () => {
        this.openStreams--;
        this.closeIfDone();
      });
    }
  }

  started(pid: number, startTime: number | null): void {
    this.pid = pid;
    this.startTime = startTime;
    this.markReady();
  }

  failed(error: NodeJS.ErrnoException): void {
    this.stdout.deliver(null);
    this.stderr.deliver(null);
    this.markReady();
    // As Node does: the error comes after the caller could listen for it.
    setImmediate(() => {
      this.emit("error", error);
      this.hasExited = true;
      this.closeIfDone();
    });
  }

  output(stream: number, data: Buffer | null): void {
    (stream === 1 ? this.stderr : this.stdout).deliver(data);
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.hasExited = true;
    this.emit("exit", code, signal);
    // As Node does: output nobody reads is drained, so that the pipes can close. Later, not
    // now: whoever awaits `ready` may not have started reading yet.
    setImmediate(() => {
      for (const stream of [this.stdout, this.stderr]) {
        if (stream.readableFlowing === null) stream.resume();
      }
    });
    this.closeIfDone();
  }

  /** The spawner died: the process is killed if it still ran, its pipes end here. */
  lost(cause: string): void {
    this.stdout.deliver(null);
    this.stderr.deliver(null);
    if (this.hasExited) return;
    this.lostCause = cause;
    if (this.pid !== undefined) signalGroup(this.pid, "SIGKILL");
    this.exited(null, "SIGKILL");
  }

  private closeIfDone(): void {
    if (this.hasExited && this.openStreams === 0) this.emit("close");
  }
}

/**
 * One output pipe of a spawned process. Backpressure reaches the pipe itself: when the
 * reader falls behind, the spawner stops reading it, and the process blocks on write.
 */
class SpawnedOutput extends Readable {
  private pausedAtSpawner = false;
  private ended = false;

  constructor(private readonly command: (type: StreamCommand) => void) {
    super();
  }

  deliver(data: Buffer | null): void {
    if (this.ended) return;
    if (data === null) {
      this.ended = true;
      this.push(null);
      return;
    }
    if (!this.push(data) && !this.pausedAtSpawner) {
      this.pausedAtSpawner = true;
      this.command(PAUSE);
    }
  }

  override _read(): void {
    if (!this.pausedAtSpawner) return;
    this.pausedAtSpawner = false;
    this.command(RESUME);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.ended) {
      this.ended = true;
      this.command(CLOSE);
    }
    callback(error);
  }
}
