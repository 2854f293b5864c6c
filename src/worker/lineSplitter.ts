import { StringDecoder } from "node:string_decoder";

/** Longest line stored as one event; longer ones are cut into pieces of this size. */
export const MAX_LINE_CHARS = 64 * 1024;

/**
 * Turns a byte stream into lines, exactly as written (a trailing "\r" is kept), decoding
 * UTF-8 across chunk boundaries. A final line without a newline is still a line.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private partial = "";

  constructor(private readonly onLine: (line: string) => void) {}

  write(chunk: Buffer): void {
    this.consume(this.partial + this.decoder.write(chunk));
  }

  end(): void {
    this.consume(this.partial + this.decoder.end());
    if (this.partial !== "") this.onLine(this.partial);
    this.partial = "";
  }

  private consume(text: string): void {
    let start = 0;
    for (let newline = text.indexOf("\n"); newline !== -1; newline = text.indexOf("\n", start)) {
      this.emitCut(text.slice(start, newline));
      start = newline + 1;
    }
    let rest = text.slice(start);
    while (rest.length > MAX_LINE_CHARS) {
      this.onLine(rest.slice(0, MAX_LINE_CHARS));
      rest = rest.slice(MAX_LINE_CHARS);
    }
    this.partial = rest;
  }

  private emitCut(line: string): void {
    for (let i = 0; i < line.length; i += MAX_LINE_CHARS) {
      this.onLine(line.slice(i, i + MAX_LINE_CHARS));
    }
    if (line.length === 0) this.onLine("");
  }
}
