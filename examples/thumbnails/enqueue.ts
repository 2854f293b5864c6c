/**
 * The application's side: enqueues a thumbnail job per picture in one batch, waits for the
 * results, then enqueues a report with them. Run it on its own beside a worker
 * (`node examples/thumbnails/dist/enqueue.js [picture.png …]`) or through main.js.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { basename, relative, resolve } from "node:path";
import { type BatchEntry, createClient, JobFailedError } from "baton";
import { connection, dirs, isMain } from "./config.js";
import type { handlers, Report, Thumbnail, ThumbnailRequest } from "./handlers.js";
import { writeSamples } from "./samples.js";

const WIDTH = 240;
const REPORT_TO = "photos@example.com";

export interface PipelineResult {
  thumbnails: Thumbnail[];
  failed: Array<{ source: string; reason: string }>;
  report: Report;
}

/** Makes a thumbnail of each picture, then sends a report with them. */
export async function runPipeline(pictures: string[]): Promise<PipelineResult> {
  const client = await createClient<typeof handlers>(connection);
  try {
    // One batch, stored in one transaction. The idempotency key names the work (these bytes
    // at this width, to this place): run the pipeline again and the same jobs come back,
    // finished, instead of new ones.
    // Entries of one handler: `waitFor` then knows each job's result is a Thumbnail.
    const entries: Array<Extract<BatchEntry<typeof handlers>, { handler: "makeThumbnail" }>> = [];
    for (const source of pictures) {
      const payload: ThumbnailRequest = { source, width: WIDTH, outputDir: dirs.thumbnails };
      const idempotencyKey = `thumbnail:${await fingerprint(payload)}`;
      entries.push({ handler: "makeThumbnail", payload, options: { idempotencyKey } });
    }
    const jobs = await client.enqueueBatch(entries);
    const created = jobs.filter((job) => job.created).length;
    console.log(
      `enqueued ${jobs.length} thumbnail jobs in one batch: ${created} new, ${jobs.length - created} found by their idempotency key`,
    );

    const settled = await Promise.allSettled(
      jobs.map((job) => client.waitFor(job, { timeout: "2m" })),
    );
    const thumbnails: Thumbnail[] = [];
    const failed: PipelineResult["failed"] = [];
    console.log("thumbnails:");
    for (const [i, outcome] of settled.entries()) {
      const source = pictures[i] ?? "?";
      if (outcome.status === "fulfilled") {
        const t = outcome.value;
        thumbnails.push(t);
        console.log(
          `  ok      job ${jobs[i]?.id}  ${basename(source)} -> ${shown(t.output)}  ${t.width}x${t.height}, ${t.bytes} bytes`,
        );
      } else if (outcome.reason instanceof JobFailedError) {
        const { job } = outcome.reason;
        const reason = job.failure?.message ?? job.state;
        failed.push({ source, reason });
        console.log(
          `  FAILED  job ${job.id}  ${basename(source)}: ${reason} (${job.state} after ${job.attempts?.length ?? job.attempt} attempt(s))`,
        );
      } else {
        throw outcome.reason;
      }
    }

    // The follow-up job takes the results. Its key is the set of thumbnail jobs, so a second
    // run of the same batch does not send a second report.
    const reportJob = await client.enqueue(
      "sendReport",
      { to: REPORT_TO, thumbnails, failed, outbox: dirs.outbox },
      { idempotencyKey: `report:${jobs.map((job) => job.id).join(",")}`, maxAttempts: 5 },
    );
    const report = await client.waitFor(reportJob, { timeout: "1m" }); // typed: Report
    const how = reportJob.created ? "new" : "found by its idempotency key, not sent again";
    console.log(`report: job ${reportJob.id} (${how})`);
    console.log(
      `  ${report.messageId}, ${report.attachments} attachment(s), ${report.bytes} bytes -> ${shown(report.file)}`,
    );
    return { thumbnails, failed, report };
  } finally {
    await client.close();
  }
}

/** The pictures named on the command line, or else the samples. */
export async function picturesToProcess(args: string[]): Promise<string[]> {
  if (args.length > 0) return args.map((path) => resolve(path));
  const samples = await writeSamples(dirs.images);
  const names = samples.map((path) => basename(path)).join(", ");
  console.log(`pictures in ${shown(dirs.images)}: ${names}, and missing.png (there is none)`);
  // A picture that does not exist shows a job that fails for good, at its first attempt.
  return [...samples, resolve(dirs.images, "missing.png")];
}

/** A digest of the request and the picture's bytes (if there is a picture). */
async function fingerprint(request: ThumbnailRequest): Promise<string> {
  const hash = createHash("sha256").update(JSON.stringify(request));
  try {
    hash.update(await readFile(request.source));
  } catch {
    hash.update("(unreadable)");
  }
  return hash.digest("hex").slice(0, 32);
}

/** A path as shown: relative to the working directory when inside it. */
export function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith("..") ? path : rel;
}

if (isMain(import.meta.url)) {
  console.log(`store: ${connection.store}`);
  await runPipeline(await picturesToProcess(process.argv.slice(2)));
}
