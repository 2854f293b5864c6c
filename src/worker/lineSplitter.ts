/** Longest line stored as one event, in bytes; longer ones are cut into pieces. */
export const MAX_LINE_BYTES = 64 * 1024;
const NEWLINE = 0x0a;

/**
 * Turns a byte stream into lines, exactly as written (a trailing "\r" is kept). Splits on
 * bytes, where a newline can never be part of a multi-byte UTF-8 character, and reports
 * with each line the stream offset just past it, so that a reader can resume there, and
 * whether it is a piece of a longer line that continues in the next one.
 * A final line without a newline is still a line.
 */
export class LineSplitter {
  private partial: Buffer[] = [];
  private partialBytes = 0;
  private offset: number;

  /** `start`: offset of the first byte this splitter will see. */
  constructor(
    private readonly onLine: (line: string, end: number, cut: boolean) => void,
    start = 0,
  ) {
    this.offset = start;
  }

  write(chunk: Buffer): void {
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline !== -1;) {
      const piece = chunk.subarray(start, newline);
      const line = this.partialBytes === 0 ? piece : this.takePartial(piece);
      this.offset += newline + 1 - start;
      this.emit(line, 1);
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.partial.push(rest);
      this.partialBytes += rest.length;
      this.offset += rest.length;
      if (this.partialBytes > MAX_LINE_BYTES) this.emit(this.takePartial(), null);
    }
  }

  end(): void {
    if (this.partialBytes > 0) this.emit(this.takePartial(), 0);
  }

  private takePartial(tail?: Buffer): Buffer {
    const joined = Buffer.concat(tail ? [...this.partial, tail] : this.partial);
    this.partial = [];
    this.partialBytes = 0;
    return joined;
  }

  /**
   * Emits `bytes` as lines of at most MAX_LINE_BYTES, never cutting a UTF-8 character.
   * `terminator`: bytes of the line's end after it (1 for a newline, 0 at the end of the
   * stream), or null when the line goes on: its last piece then stays partial.
   */
  private emit(bytes: Buffer, terminator: 0 | 1 | null): void {
    const complete = terminator !== null;
    let start = 0;
    let consumedBefore = this.offset - bytes.length - (terminator ?? 0);
    while (bytes.length - start > MAX_LINE_BYTES) {
      let cut = start + MAX_LINE_BYTES;
      // Back up to the first byte of a character (continuation bytes are 10xxxxxx); a
      // character has at most 3 of them, so anything longer is not UTF-8: cut anywhere.
      const limit = cut;
      while (cut > limit - 3 && ((bytes[cut] as number) & 0xc0) === 0x80) cut--;
      if (((bytes[cut] as number) & 0xc0) === 0x80) cut = limit;
      consumedBefore += cut - start;
      this.onLine(bytes.toString("utf8", start, cut), consumedBefore, true);
      start = cut;
    }
    if (complete) {
      this.onLine(bytes.toString("utf8", start), this.offset, false);
    } else if (start < bytes.length) {
      const rest = bytes.subarray(start);
      this.partial = [rest];
      this.partialBytes = rest.length;
    }
  }
}
