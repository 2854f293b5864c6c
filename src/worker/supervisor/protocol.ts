import type { OutputOffsets } from "../../core/logEvent.js";
import type { ExitStatus } from "../../executors/executor.js";
import { FrameSplitter } from "../../executors/frameSplitter.js";

/**
 * The conversation between a worker and its job supervisor, over a unix socket. Frames are
 * a 4-byte big-endian length, a type byte and a body: a JSON message, or a chunk of a job's
 * output (job number, stream number, bytes), which stays binary because it is the bulk of
 * the traffic.
 */
export const FRAME_MESSAGE = 0;
export const FRAME_OUTPUT = 1;
const HEADER = 5;
/** Bytes of a job's output kept unacknowledged before its pipes stop being read. */
export const OUTPUT_WINDOW = 8 * 1024 * 1024;

export interface SupervisedJob {
  /** `jobId#attempt` */
  key: string;
  /** Number of the job in output frames. */
  no: number;
  pid: number | null;
  startTime: number | null;
  /** Set once the job's process has ended and every byte of its output was read. */
  status: ExitStatus | null;
  /** The supervisor stopped it because its lease was about to expire unrenewed. */
  stoppedAtLeaseExpiry: boolean;
}

export interface SpawnRequest {
  key: string;
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  killGraceMs: number;
  leaseExpiresAt: number;
}

/** Worker to supervisor. `rid` pairs a request with its reply. */
export type WorkerMessage =
  | { op: "hello"; rid: number; workerPid: number }
  | ({ op: "spawn"; rid: number } & SpawnRequest)
  /** Send the job's output from these offsets on, then its exit status once it ends. */
  | { op: "attach"; no: number; from: OutputOffsets }
  /** Output up to these offsets is safely stored: the supervisor may forget it. */
  | { op: "ack"; no: number; upTo: OutputOffsets }
  | { op: "lease"; no: number; expiresAt: number }
  | { op: "stop"; no: number }
  /** The outcome is recorded (or not ours to record): drop the job, stopping it if alive. */
  | { op: "forget"; no: number };

/** Supervisor to worker. */
export type SupervisorMessage =
  | {
      op: "welcome";
      rid: number;
      pid: number;
      startedAt: number;
      jobs: SupervisedJob[];
      /** Keys of jobs it held and dropped unrecorded (their lease ran out): they did run. */
      dropped: string[];
    }
  | { op: "refused"; rid: number; reason: string }
  | { op: "spawned"; rid: number; job: SupervisedJob }
  /** Every byte of output was sent before this message. `pauses`: backpressure applied. */
  | { op: "exited"; no: number; status: ExitStatus; pauses: number };

export function encodeMessage(message: WorkerMessage | SupervisorMessage): Buffer {
  const body = Buffer.from(JSON.stringify(message));
  const frame = Buffer.allocUnsafe(HEADER + body.length);
  frame.writeUInt32BE(body.length + 1, 0);
  frame.writeUInt8(FRAME_MESSAGE, 4);
  body.copy(frame, HEADER);
  return frame;
}

export function encodeOutput(no: number, stream: 0 | 1, data: Buffer): Buffer[] {
  const header = Buffer.allocUnsafe(HEADER + 5);
  header.writeUInt32BE(data.length + 6, 0);
  header.writeUInt8(FRAME_OUTPUT, 4);
  header.writeUInt32BE(no, 5);
  header.writeUInt8(stream, 9);
  return [header, data];
}

export type Frame =
  | { type: typeof FRAME_MESSAGE; message: unknown }
  | { type: typeof FRAME_OUTPUT; no: number; stream: 0 | 1; data: Buffer };

/** Reassembles frames from the chunks a socket delivers. */
export class FrameReader {
  private readonly splitter = new FrameSplitter((frame) => this.onFrame(decodeFrame(frame)));

  constructor(private onFrame: (frame: Frame) => void) {}

  setHandler(onFrame: (frame: Frame) => void): void {
    this.onFrame = onFrame;
  }

  push(chunk: Buffer): void {
    this.splitter.push(chunk);
  }
}

function decodeFrame(frame: Buffer): Frame {
  if (frame.readUInt8(0) === FRAME_OUTPUT) {
    const stream = frame.readUInt8(5) === 1 ? 1 : 0;
    return { type: FRAME_OUTPUT, no: frame.readUInt32BE(1), stream, data: frame.subarray(6) };
  }
  return { type: FRAME_MESSAGE, message: JSON.parse(frame.toString("utf8", 1)) };
}
