/**
 * The SDK's types, checked by the compiler (`npm run typecheck` covers this file): a
 * `@ts-expect-error` that stops being an error fails the typecheck.
 */
import { describe, expectTypeOf, it } from "vitest";
import {
  type Client,
  defineHandlers,
  type Enqueued,
  type HandlerContext,
  type Job,
  type PayloadOf,
  type ResultOf,
  Worker,
} from "../../src/sdk/index.js";

const handlers = defineHandlers({
  async sendEmail(payload: { to: string; subject: string }, ctx) {
    expectTypeOf(ctx).toEqualTypeOf<HandlerContext>();
    return { messageId: `${payload.to}-${ctx.attempt}` };
  },
  resize: (payload: { width: number }) => payload.width * 2,
});

describe("SDK types", () => {
  it("gives enqueue each handler's payload type, and waitFor its result type", () => {
    type H = typeof handlers;
    expectTypeOf<PayloadOf<H["sendEmail"]>>().toEqualTypeOf<{ to: string; subject: string }>();
    expectTypeOf<ResultOf<H["sendEmail"]>>().toEqualTypeOf<{ messageId: string }>();
    expectTypeOf<ResultOf<H["resize"]>>().toEqualTypeOf<number>();

    const typed = async (client: Client<H>) => {
      const job = await client.enqueue("sendEmail", { to: "a@example.com", subject: "hi" });
      expectTypeOf(job).toEqualTypeOf<Enqueued<{ messageId: string }>>();
      expectTypeOf(await client.waitFor(job)).toEqualTypeOf<{ messageId: string }>();
      expectTypeOf(await client.getJob(job.id)).toEqualTypeOf<Job | null>();
      // @ts-expect-error: no such handler
      await client.enqueue("sendSms", {});
      // @ts-expect-error: the payload lacks `subject`
      await client.enqueue("sendEmail", { to: "a@example.com" });
      // @ts-expect-error: width is a number
      await client.enqueue("resize", { width: "10" });
      const [resized, sent] = await client.enqueueBatch([
        { handler: "resize", payload: { width: 1 } },
        { handler: "sendEmail", payload: { to: "b", subject: "s" }, options: { priority: 1 } },
      ]);
      // Each entry of a batch keeps its own handler's result type.
      expectTypeOf(await client.waitFor(resized)).toEqualTypeOf<number>();
      expectTypeOf(await client.waitFor(sent)).toEqualTypeOf<{ messageId: string }>();
      const many = await client.enqueueBatch(
        [1, 2].map((width) => ({ handler: "resize" as const, payload: { width } })),
      );
      expectTypeOf(many).toEqualTypeOf<Array<Enqueued<number>>>();
      await client.enqueueBatch([
        // @ts-expect-error: a batch entry's payload is checked against its own handler
        { handler: "resize", payload: { to: "b", subject: "s" } },
      ]);
      // @ts-expect-error: options are checked too
      await client.enqueue("resize", { width: 1 }, { priorty: 1 });
    };
    expectTypeOf(typed).toBeFunction();
  });

  it("takes handlers by object or module, and types the worker's events", () => {
    const build = () => {
      const worker = new Worker({ store: "sqlite:./x.db", handlers, concurrency: 2 });
      worker.on("succeeded", (event) => {
        expectTypeOf(event.job).toEqualTypeOf<Job>();
        expectTypeOf(event.result).toBeUnknown();
      });
      worker.on("failed", (event) => expectTypeOf(event.retrying).toBeBoolean());
      // @ts-expect-error: no such event
      worker.on("exploded", () => {});
      new Worker({ server: "http://127.0.0.1:7070", token: "t", handlers: "./handlers.js" });
      // @ts-expect-error: a handler must be a function
      new Worker({ store: "sqlite:./x.db", handlers: { notAFunction: 42 } });
      return worker;
    };
    expectTypeOf(build).toBeFunction();
  });
});
