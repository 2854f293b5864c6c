/**
 * The jobs of the thumbnail pipeline. Workers load this module (in threads: see worker.ts);
 * the enqueuer imports only its type, for `createClient<typeof handlers>`.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { basename, extname, join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { defineHandlers, type HandlerContext, NonRetryableError } from "baton/handlers";
import { decodePng, encodePng, type Image, PngError } from "./png.js";

export interface ThumbnailRequest {
  /** The picture: a PNG file the worker can read. */
  source: string;
  /** The thumbnail's width in pixels (its height keeps the proportions). */
  width: number;
  outputDir: string;
}

export interface Thumbnail {
  source: string;
  output: string;
  width: number;
  height: number;
  bytes: number;
}

export interface ReportRequest {
  to: string;
  thumbnails: Thumbnail[];
  /** Pictures that could not be made into thumbnails, and why. */
  failed: Array<{ source: string; reason: string }>;
  /** The directory where messages are dropped for the mail relay to pick up. */
  outbox: string;
}

export interface Report {
  messageId: string;
  file: string;
  attachments: number;
  bytes: number;
}

export const handlers = defineHandlers({
  /** Scales a PNG down to `width` pixels across, keeping its proportions. */
  async makeThumbnail(request: ThumbnailRequest, ctx): Promise<Thumbnail> {
    const { source, width, outputDir } = request;
    if (!Number.isInteger(width) || width < 1 || width > 4096) {
      throw new NonRetryableError(`width must be a whole number from 1 to 4096, got ${width}`);
    }
    ctx.log(`attempt ${ctx.attempt} of ${ctx.job.maxAttempts}: ${source} at ${width} px`);
    const image = decode(source, await readPicture(source, ctx.signal));
    const scaled = await scale(image, width, ctx);
    const file = encodePng(scaled);
    const output = join(outputDir, `${basename(source, extname(source))}-${width}w.png`);
    await writeAtomically(output, file, ctx);
    ctx.emit({ source, from: [image.width, image.height], to: [scaled.width, scaled.height] });
    return { source, output, width: scaled.width, height: scaled.height, bytes: file.length };
  },

  /**
   * Writes a report with the thumbnails attached to the outbox, as an .eml file that a mail
   * relay would send. One message per job, whatever the attempts: a retry replaces the file
   * an earlier attempt may have left, under the same Message-ID.
   */
  async sendReport(request: ReportRequest, ctx): Promise<Report> {
    const { to, thumbnails, failed, outbox } = request;
    if (!/^[^\s@<>]+@[^\s@<>]+$/.test(to)) {
      throw new NonRetryableError(`"${to}" is not an e-mail address`);
    }
    // Stable across attempts (same job), unique across stores (the job's creation time).
    const created = Date.parse(ctx.job.createdAt);
    const messageId = `<report-${ctx.job.id}.${created}@thumbnails.baton.example>`;
    const boundary = `baton-report-${ctx.job.id}`;
    const lines = [
      `${thumbnails.length} thumbnail(s) ready:`,
      ...thumbnails.map((t) => `  ${basename(t.output)}: ${t.width}x${t.height}, ${t.bytes} bytes`),
      ...(failed.length > 0 ? ["", `${failed.length} picture(s) failed:`] : []),
      ...failed.map((f) => `  ${basename(f.source)}: ${f.reason}`),
    ];
    const parts = [
      `From: Baton thumbnails <thumbnails@baton.example>`,
      `To: ${to}`,
      `Subject: ${thumbnails.length} thumbnail(s) ready`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: ${messageId}`,
      "MIME-Version: 1.0",
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      "",
      `--${boundary}`,
      "Content-Type: text/plain; charset=utf-8",
      "",
      ...lines,
    ];
    for (const [i, thumbnail] of thumbnails.entries()) {
      ctx.signal.throwIfAborted();
      let png: Buffer;
      try {
        png = await readFile(thumbnail.output, { signal: ctx.signal });
      } catch (error) {
        if (errorCode(error) !== "ENOENT") throw error;
        throw new NonRetryableError(`the thumbnail ${thumbnail.output} is gone`);
      }
      const name = basename(thumbnail.output);
      parts.push(
        `--${boundary}`,
        `Content-Type: image/png; name="${name}"`,
        `Content-Disposition: attachment; filename="${name}"`,
        "Content-Transfer-Encoding: base64",
        "",
        ...(png.toString("base64").match(/.{1,76}/g) ?? []),
      );
      ctx.progress(Math.round((100 * (i + 1)) / thumbnails.length));
    }
    parts.push(`--${boundary}--`, "");
    const message = Buffer.from(parts.join("\r\n"));
    const file = join(outbox, `report-${ctx.job.id}.${created}.eml`);
    await writeAtomically(file, message, ctx);
    ctx.log(`${messageId} to ${to}: ${message.length} bytes in ${file}`);
    return { messageId, file, attachments: thumbnails.length, bytes: message.length };
  },
});

/** The picture's bytes. A missing file fails the job at once: no retry will make it appear. */
async function readPicture(path: string, signal: AbortSignal): Promise<Buffer> {
  try {
    return await readFile(path, { signal });
  } catch (error) {
    // Other errors (EMFILE, EIO, …) may pass: those are retried by the job's policy.
    if (errorCode(error) === "ENOENT") throw new NonRetryableError(`no such picture: ${path}`);
    if (errorCode(error) === "EISDIR") throw new NonRetryableError(`${path} is a directory`);
    throw error;
  }
}

/** The picture's pixels; one that is not a PNG (that this example reads) fails at once. */
function decode(source: string, bytes: Buffer): Image {
  try {
    return decodePng(bytes);
  } catch (error) {
    if (error instanceof PngError) throw new NonRetryableError(`${source}: ${error.message}`);
    throw error;
  }
}

/**
 * The image `width` pixels across (never wider than it was): each pixel is the average of
 * the block of pixels it covers. Reports progress, and hands the event loop back between
 * rows, where it stops if the job was cancelled, timed out or the worker is stopping.
 */
async function scale(image: Image, width: number, ctx: HandlerContext): Promise<Image> {
  const w = Math.min(width, image.width);
  const h = Math.max(1, Math.round((image.height * w) / image.width));
  const rgb = new Uint8Array(w * h * 3);
  const column = (x: number) => Math.floor((x * image.width) / w);
  const row = (y: number) => Math.floor((y * image.height) / h);
  let reported = 0;
  let turn = performance.now();
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let [r, g, b, count] = [0, 0, 0, 0];
      for (let sy = row(y); sy < Math.max(row(y) + 1, row(y + 1)); sy++) {
        for (let sx = column(x); sx < Math.max(column(x) + 1, column(x + 1)); sx++) {
          const at = (sy * image.width + sx) * 3;
          r += image.rgb[at] ?? 0;
          g += image.rgb[at + 1] ?? 0;
          b += image.rgb[at + 2] ?? 0;
          count++;
        }
      }
      rgb.set([r / count, g / count, b / count].map(Math.round), (y * w + x) * 3);
    }
    const percent = Math.floor((100 * (y + 1)) / h / 25) * 25;
    if (percent > reported) ctx.progress((reported = percent));
    if (performance.now() - turn > 10) {
      await nextTurn();
      turn = performance.now();
    }
    ctx.signal.throwIfAborted();
  }
  return { width: w, height: h, rgb };
}

/**
 * Writes through a temporary file and a rename, so that a reader never sees half a file,
 * whenever the attempt is stopped.
 */
async function writeAtomically(path: string, data: Uint8Array, ctx: HandlerContext) {
  await mkdir(join(path, ".."), { recursive: true });
  const temporary = `${path}.${ctx.job.id}-${ctx.attempt}.tmp`;
  await writeFile(temporary, data, { signal: ctx.signal });
  await rename(temporary, path);
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}
