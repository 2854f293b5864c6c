/**
 * Cuts a byte stream into frames: a 4-byte big-endian length, then that many bytes (the
 * frame handed on). Both of the supervisor's conversations use it: with its worker, and
 * with the spawner that starts its jobs.
 */
export class FrameSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= 4) {
      const length = this.peek(4).readUInt32BE(0);
      if (this.pendingBytes < 4 + length) return;
      this.onFrame(this.take(4 + length).subarray(4));
    }
  }

  private peek(bytes: number): Buffer {
    const first = this.pending[0] as Buffer;
    if (first.length >= bytes) return first;
    return Buffer.concat(this.pending).subarray(0, bytes);
  }

  private take(bytes: number): Buffer {
    const all =
      this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const taken = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return taken;
  }
}
