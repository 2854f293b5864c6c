import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JobSpec } from "../../src/core/job.js";
import type { JobInput } from "../../src/core/jobInput.js";
import { normalizeJobInput } from "../../src/core/jobInput.js";
import type { AttemptOutcome } from "../../src/core/outcome.js";
import type { Claim, ClaimRequest, Store, StoreChange } from "../../src/store/store.js";
import { eventually } from "../helpers/processes.js";
import { backends, PG_URL } from "../helpers/stores.js";

/**
 * Conformance of the batch operations (claimBatch, completeBatch, heartbeatBatch) and of
 * grouped submits: each must do what the one-at-a-time operations would, on every store.
 */
let clock = 1_000_000;
let store: Store;
const clockOptions = { now: () => clock, random: () => 0.5 };

const spec = (input: Partial<JobInput> = {}): JobSpec =>
  normalizeJobInput({ command: ["true"], ...input }, clock);
const submit = (input: Partial<JobInput> = {}) => store.submit(spec(input)).then((r) => r.job);
const request = (overrides: Partial<ClaimRequest> = {}): ClaimRequest => ({
  workerId: "w1",
  queues: null,
  kinds: ["shell"],
  freeCpus: 100,
  freeMemoryMb: null,
  leaseTtlMs: 30_000,
  ...overrides,
});
const ok = { state: "succeeded", exitCode: 0, signal: null } as const;
const failed: AttemptOutcome = {
  state: "failed",
  exitCode: 1,
  signal: null,
  failure: { reason: "exit_code", message: "exited with code 1" },
};
const ids = (claims: readonly Claim[]) => claims.map((claim) => claim.job.id);

describe.each(await backends())("$name store, batches", (backend) => {
  beforeEach(async () => {
    clock = 1_000_000;
    await backend.setup();
    store = await backend.open(clockOptions);
  });
  afterEach(async () => {
    await store.close();
    await backend.teardown();
  });

  describe("claimBatch", () => {
    it.runIf(backend.name === "postgres")(
      "tells other workers to look again when it leaves a job for want of its capacity",
      async () => {
        // Its candidates were locked, so other claimers skipped them; one may have room.
        const other = await backend.open(clockOptions);
        try {
          let heard = 0;
          let listening = false;
          other.watch((change) => {
            // "external": its LISTEN took effect.
            if (change.type === "external") listening = true;
            if (change.type === "job_available") heard++;
          });
          await eventually(async () => (listening ? true : undefined), 5_000);
          const fits = spec({ resources: { cpus: 1 } });
          await store.submitBatch([fits, fits]);
          // The submit's own announcement, heard: after it, only the claim announces.
          await eventually(async () => (heard > 0 ? true : undefined), 5_000);
          const before = heard;
          // Workers sharing the claiming store (a server's remote workers) are told too.
          let heardHere = 0;
          store.watch((change) => {
            if (change.type === "job_available") heardHere++;
          });
          const claims = await store.claimBatch(request({ freeCpus: 1 }), 2);
          expect(claims).toHaveLength(1);
          await eventually(async () => (heardHere === 1 ? true : undefined), 5_000);
          await eventually(async () => (heard > before ? true : undefined), 5_000);
          expect(heardHere).toBe(1);
        } finally {
          await other.close();
        }
      },
    );
    it.runIf(backend.name === "postgres")(
      "waits for a key another claimer is counting rather than pass over its job, once",
      async () => {
        // Key a admits one job at a time; k's and y's locks are held by other "claimers".
        const a = await submit({ concurrencyKey: "a" });
        await submit({ concurrencyKey: "a" });
        await submit({ concurrencyKey: "a" });
        const k = await submit({ concurrencyKey: "k" });
        const y = await submit({ concurrencyKey: "y" });
        let heard = 0;
        store.watch((change) => {
          if (change.type === "job_available") heard++;
        });
        const schema = backend.url().args[1];
        const holdKey = async (key: string) => {
          const client = new pg.Client({ connectionString: PG_URL });
          await client.connect();
          await client.query("BEGIN");
          await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [
            `${schema}:key:${key}`,
          ]);
          return client;
        };
        const waiting = async () => {
          const { rows } = await admin.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
          );
          return rows[0]?.n === 1 ? true : undefined;
        };
        const admin = new pg.Client({ connectionString: PG_URL });
        await admin.connect();
        const countingK = await holdKey("k");
        let countingY: pg.Client | null = null;
        try {
          // The first try takes a's first job, meets k's lock busy past a's other jobs, is
          // undone, and the second waits for k's lock.
          let claims: Claim[] | null = null;
          void store.claimBatch(request(), 3).then((claimed) => (claims = claimed));
          await eventually(waiting, 5_000);
          // Meanwhile y's lock is taken: the second try meets it busy and leaves y's job.
          countingY = await holdKey("y");
          await countingK.end();
          const done = await eventually(async () => claims ?? undefined, 5_000);
          expect(ids(done)).toEqual([a.id, k.id]);
          expect((await store.get(y.id))?.state).toBe("pending");
          // That job was locked here, so other claimers skipped it too: they are told.
          await eventually(async () => (heard === 1 ? true : undefined), 5_000);
        } finally {
          await Promise.all([countingK.end().catch(() => {}), countingY?.end(), admin.end()]);
        }
      },
    );
    it("takes jobs in priority, then runAt, then id order, up to max, recording attempts", async () => {
      const late = await submit({ priority: 2, delayMs: 10 });
      const low = await submit({ priority: 9 });
      const first = await submit({ priority: 2 });
      const second = await submit({ priority: 2 });
      const future = await submit({ priority: 1, delayMs: 60_000 });
      clock += 10;
      const claims = await store.claimBatch(request(), 3);
      expect(ids(claims)).toEqual([first.id, second.id, late.id]);
      for (const claim of claims) {
        expect(claim.job.state).toBe("running");
        expect(claim.lease).toEqual({ jobId: claim.job.id, attempt: 1, workerId: "w1" });
        expect(claim.expiresAt).toBe(clock + 30_000);
        const detail = await store.get(claim.job.id);
        expect(detail?.attempts.map((a) => [a.attempt, a.workerId, a.finishedAt])).toEqual([
          [1, "w1", null],
        ]);
      }
      expect(ids(await store.claimBatch(request(), 10))).toEqual([low.id]);
      expect(await store.claimBatch(request(), 10)).toEqual([]);
      clock += 60_000;
      expect(ids(await store.claimBatch(request(), 10))).toEqual([future.id]);
      expect(await store.claimBatch(request(), 0)).toEqual([]);
    });

    it("claims what successive claims would, each job fitting what the ones before it left", async () => {
      const specs: Array<Partial<JobInput>> = [
        { resources: { cpus: 2 } },
        { resources: { cpus: 3 } }, // 2 left: skipped
        { resources: { cpus: 1, memoryMb: 600 } },
        { resources: { cpus: 1, memoryMb: 600 } }, // 400 MB left: skipped
        { resources: { cpus: 1, memoryMb: 300 } },
        { resources: { cpus: 1 } }, // no cpu left
        { queue: "elsewhere", resources: { cpus: 0 } },
        { resources: { cpus: 0 } },
      ];
      for (const [i, input] of specs.entries()) await submit({ ...input, priority: i + 1 });
      const jobs = (await store.list({ limit: 10 })).jobs.reverse();
      const batch = await store.claimBatch(
        request({ freeCpus: 4, freeMemoryMb: 1_000, queues: ["default"] }),
        10,
      );
      expect(ids(batch)).toEqual([0, 2, 4, 7].map((i) => jobs[i]?.id));
    });

    it("takes only the kinds asked for, and nothing from a paused queue", async () => {
      const handler = await store.submit({
        ...spec({ queue: "h" }),
        kind: "handler",
        command: null,
        handler: "noop",
      });
      const shell = await submit({ queue: "s" });
      await submit({ queue: "paused" });
      await store.updateQueue("paused", { paused: true });
      expect(ids(await store.claimBatch(request({ kinds: ["handler"] }), 10))).toEqual([
        handler.job.id,
      ]);
      expect(ids(await store.claimBatch(request(), 10))).toEqual([shell.id]);
    });

    it("counts the jobs it takes against queue limits and key limits", async () => {
      await store.updateQueue("q", { maxRunning: 3 });
      const running = await submit({ queue: "q", priority: 1 });
      expect(ids(await store.claimBatch(request(), 1))).toEqual([running.id]);
      // Jobs before the first limited one are claimed without the limits' locks (PostgreSQL):
      // the rest of the batch is still claimed, in order.
      const urgent = await submit({ priority: 0 });
      const q = [];
      for (let i = 0; i < 4; i++) q.push(await submit({ queue: "q", priority: 2 }));
      const a1 = await submit({ concurrencyKey: "a", priority: 3 });
      await submit({ concurrencyKey: "a", priority: 3 });
      const b = [];
      for (let i = 0; i < 3; i++) {
        b.push(await submit({ concurrencyKey: "b", concurrencyLimit: 2, priority: 4 }));
      }
      const free = await submit({ priority: 5 });
      const claims = await store.claimBatch(request(), 100);
      expect(ids(claims)).toEqual([
        urgent.id,
        q[0]?.id,
        q[1]?.id,
        a1.id,
        b[0]?.id,
        b[1]?.id,
        free.id,
      ]);
      expect(await store.claimBatch(request(), 100)).toEqual([]);
      // A finished job frees its queue's slot: the next batch takes one more, no more.
      await store.complete(claims[1]!.lease, ok);
      expect(ids(await store.claimBatch(request(), 100))).toEqual([q[2]?.id]);
    });

    it("never hands one job to two concurrent batch claimers", async () => {
      const other = await backend.open(clockOptions);
      try {
        await store.submitBatch(Array.from({ length: 300 }, () => spec()));
        const rounds = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 === 0 ? store : other).claimBatch(request({ workerId: `w${i}` }), 50),
          ),
        );
        const taken = rounds.flatMap(ids);
        expect(new Set(taken).size).toBe(taken.length);
        const rest = ids(await store.claimBatch(request(), 1_000));
        expect(new Set([...taken, ...rest]).size).toBe(300);
        expect(taken.length + rest.length).toBe(300);
      } finally {
        await other.close();
      }
    });

    it("never exceeds a queue or key limit when batches race from several connections", async () => {
      const other = await backend.open(clockOptions);
      try {
        await store.updateQueue("limited", { maxRunning: 3 });
        const specs = [];
        for (let i = 0; i < 20; i++) {
          specs.push(
            spec({ queue: "limited" }),
            spec({ concurrencyKey: "k", concurrencyLimit: 2 }),
          );
        }
        await store.submitBatch(specs);
        const rounds = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            (i % 2 === 0 ? store : other).claimBatch(request({ workerId: `w${i}` }), 10),
          ),
        );
        const taken = rounds.flat().map((claim) => claim.job);
        expect(taken.filter((job) => job.queue === "limited")).toHaveLength(3);
        expect(taken.filter((job) => job.concurrencyKey === "k")).toHaveLength(2);
      } finally {
        await other.close();
      }
    });
  });

  describe("completeBatch", () => {
    it("applies each completion on its own: a stale lease is refused, the others applied", async () => {
      const [a, b, c] = [await submit({ maxAttempts: 2 }), await submit(), await submit()];
      const first = await store.claimBatch(request(), 3);
      expect(ids(first)).toEqual([a.id, b.id, c.id]);
      clock += 31_000; // every lease expired
      expect(await store.reapExpired()).toBe(3);
      clock += 60_000;
      const again = await store.claimBatch(request({ workerId: "w2" }), 3);
      expect(ids(again)).toEqual([a.id]);
      const stale = first[0]!;
      const fresh = again[0]!;
      const fenced = store.counters().fencedWrites;
      const answers = await store.completeBatch([
        { lease: stale.lease, outcome: ok },
        { lease: fresh.lease, outcome: ok },
        { lease: fresh.lease, outcome: ok }, // the same attempt twice: the second is refused
        { lease: { ...fresh.lease, jobId: "999999" }, outcome: ok },
        { lease: { ...fresh.lease, jobId: "nonsense" }, outcome: ok },
      ]);
      expect(answers).toEqual([
        { applied: false, state: "running" },
        { applied: true, state: "succeeded" },
        { applied: false, state: "succeeded" },
        { applied: false, state: null },
        { applied: false, state: null },
      ]);
      expect(store.counters().fencedWrites).toBe(fenced + 4);
      const detail = await store.get(a.id);
      expect(detail?.attempts.map((x) => [x.attempt, x.failure?.reason ?? null])).toEqual([
        [1, "worker_lost"],
        [2, null],
      ]);
      expect(detail?.attempts[1]?.finishedAt).toBe(clock);
    });

    it("fences a batch of successes alike: a stale lease refused with its job's state", async () => {
      const [a, b] = [await submit({ maxAttempts: 2 }), await submit()];
      const first = await store.claimBatch(request(), 1);
      clock += 31_000;
      expect(await store.reapExpired()).toBe(1);
      clock += 60_000;
      const again = await store.claimBatch(request({ workerId: "w2" }), 2);
      expect(ids(again).sort()).toEqual([a.id, b.id].sort());
      const current = again.find((claim) => claim.job.id === b.id)!;
      await store.cancel(b.id); // a success still ends the job succeeded
      clock += 1_000;
      const fenced = store.counters().fencedWrites;
      const answers = await store.completeBatch([
        { lease: current.lease, outcome: { ...ok, result: { n: 2 } } },
        { lease: first[0]!.lease, outcome: ok },
        { lease: { ...current.lease, jobId: "999999" }, outcome: ok },
      ]);
      expect(answers).toEqual([
        { applied: true, state: "succeeded" },
        { applied: false, state: "running" },
        { applied: false, state: null },
      ]);
      expect(store.counters().fencedWrites).toBe(fenced + 2);
      const done = await store.get(b.id);
      expect(done).toMatchObject({ state: "succeeded", exitCode: 0, result: { n: 2 } });
      expect(done?.finishedAt).toBe(clock);
      expect(done?.attempts.map((x) => [x.attempt, x.workerId, x.finishedAt, x.exitCode])).toEqual([
        [1, "w2", clock, 0],
      ]);
      expect((await store.get(a.id))?.state).toBe("running");
    });

    it("retries with backoff, fails with no attempts left, cancels when asked", async () => {
      const retried = await submit({ maxAttempts: 3, backoff: { baseMs: 2_000 } });
      const last = await submit({ maxAttempts: 1 });
      const cancelled = await submit({ maxAttempts: 3 });
      const done = await submit();
      const claims = await store.claimBatch(request(), 4);
      await store.cancel(cancelled.id);
      const answers = await store.completeBatch([
        { lease: claims[0]!.lease, outcome: failed },
        { lease: claims[1]!.lease, outcome: failed },
        { lease: claims[2]!.lease, outcome: failed },
        { lease: claims[3]!.lease, outcome: { ...ok, result: { n: 1 } } },
      ]);
      expect(answers.map((a) => a.state)).toEqual(["pending", "failed", "cancelled", "succeeded"]);
      const again = await store.get(retried.id);
      expect(again).toMatchObject({ state: "pending", runAt: clock + 2_000, workerId: null });
      expect(again?.failure?.reason).toBe("exit_code");
      expect(await store.get(last.id)).toMatchObject({ state: "failed", exitCode: 1 });
      expect((await store.get(cancelled.id))?.failure?.reason).toBe("cancelled");
      expect(await store.get(done.id)).toMatchObject({ state: "succeeded", result: { n: 1 } });
      expect(await store.claimBatch(request(), 10)).toEqual([]);
      clock += 2_000;
      const retry = await store.claimBatch(request(), 10);
      expect(retry.map((c) => [c.job.id, c.lease.attempt])).toEqual([[retried.id, 2]]);
    });

    it("tells listeners which jobs finished and that one is available again", async () => {
      const changes: string[] = [];
      const stop = store.watch((change) => {
        if (change.type === "job_finished") changes.push(`finished ${change.jobId}`);
        if (change.type === "job_available") changes.push("available");
      });
      try {
        const a = await submit({ maxAttempts: 2, backoff: { baseMs: 1 } });
        const b = await submit();
        const claims = await store.claimBatch(request(), 2);
        changes.length = 0;
        await store.completeBatch([
          { lease: claims[0]!.lease, outcome: failed },
          { lease: claims[1]!.lease, outcome: ok },
        ]);
        expect(changes).toEqual(expect.arrayContaining([`finished ${a.id}`, `finished ${b.id}`]));
        // PostgreSQL's own NOTIFY brings it (see emitAvailable).
        await eventually(async () => (changes.includes("available") ? true : undefined), 5_000);
      } finally {
        stop();
      }
    });
    it("announces work available when a job that held a limited slot ends, and only then", async () => {
      await store.updateQueue("limited", { maxRunning: 5 });
      const other = await backend.open(clockOptions);
      const here: string[] = [];
      const there: string[] = [];
      const listen = (into: string[]) => (change: StoreChange) => {
        if (change.type === "job_available") into.push("available");
        if (change.type === "job_finished") into.push(`finished ${change.jobId}`);
      };
      const stopHere = store.watch(listen(here));
      other.watch(listen(there));
      const onPostgres = backend.name === "postgres";
      const heardThere = (what: string) =>
        eventually(async () => (there.includes(what) ? true : undefined), 5_000);
      // "external": the other connection's LISTEN took effect.
      other.watch((change) => {
        if (change.type === "external") there.push("listening");
      });
      if (onPostgres) await heardThere("listening");
      // Handler jobs, which the shell claims below leave alone: once the other connection
      // hears one cancelled, it has heard every change committed before (NOTIFYs arrive in
      // commit order).
      const markers = await store.submitBatch(
        Array.from({ length: 18 }, () => spec({ command: undefined, handler: "marker" })),
      );
      const caughtUp = async () => {
        if (!onPostgres) return;
        const marker = markers.pop()!.job.id;
        await store.cancel(marker);
        await heardThere(`finished ${marker}`);
      };
      /** What ending two jobs of this input in this way announces, here and there. */
      const end = async (input: Partial<JobInput>, how: (claims: Claim[]) => Promise<unknown>) => {
        await submit(input);
        await submit(input);
        const claims = await store.claimBatch(request(), 2);
        expect(claims).toHaveLength(2);
        await caughtUp();
        here.length = 0;
        there.length = 0;
        await how(claims);
        // Caught up, this store has heard back whatever its own NOTIFYs would bring too.
        await caughtUp();
        const available = (heard: string[]) => heard.filter((c) => c === "available");
        return { here: available(here), there: available(there) };
      };
      const succeed = (claims: Claim[]) =>
        store.completeBatch(claims.map(({ lease }) => ({ lease, outcome: ok })));
      const fail = (claims: Claim[]) =>
        store.completeBatch(claims.map(({ lease }) => ({ lease, outcome: failed })));
      const oneByOne = async (claims: Claim[]) => {
        for (const { lease } of claims) await store.complete(lease, ok);
      };
      try {
        for (const how of [succeed, fail, oneByOne]) {
          // Jobs without limits ending: nothing for claimers.
          expect(await end({}, how)).toEqual({ here: [], there: [] });
          // A job with a concurrency key, or in a queue with a running limit: announced (by a
          // batch once), also to other servers through PostgreSQL's NOTIFY (SQLite's other
          // connections only hear that something changed).
          const announced = Array<string>(how === oneByOne ? 2 : 1).fill("available");
          const elsewhere = onPostgres ? announced : [];
          for (const input of [
            { concurrencyKey: "k", concurrencyLimit: 2 },
            { queue: "limited" },
          ]) {
            expect(await end(input, how)).toEqual({ here: announced, there: elsewhere });
          }
        }
      } finally {
        stopHere();
        await other.close();
      }
    });

    it("tells a listener on another connection that the jobs finished", async () => {
      const other = await backend.open(clockOptions);
      try {
        const heard = new Set<string>();
        other.watch((change) => {
          // SQLite can only say "something changed"; PostgreSQL says what (NOTIFY).
          if (change.type === "external") heard.add("external");
          if (change.type === "job_finished") heard.add(change.jobId);
        });
        // The listener may start after a first change: complete batches until one is heard.
        // More jobs than one notification carries (PostgreSQL announces them 200 at a time).
        await eventually(async () => {
          await store.submitBatch(Array.from({ length: 250 }, () => spec()));
          const claims = await store.claimBatch(request(), 250);
          await store.completeBatch(claims.map((claim) => ({ lease: claim.lease, outcome: ok })));
          await new Promise((resolve) => setTimeout(resolve, 50));
          const expected = backend.name === "sqlite" ? ["external"] : ids(claims);
          return expected.every((id) => heard.has(id)) ? true : undefined;
        }, 5_000);
      } finally {
        await other.close();
      }
    });
  });

  describe("heartbeatBatch", () => {
    it("extends held leases and answers held, not held and cancel, in order", async () => {
      const [a, b, c] = [await submit(), await submit(), await submit()];
      const claims = await store.claimBatch(request(), 3);
      expect(ids(claims)).toEqual([a.id, b.id, c.id]);
      await store.complete(claims[1]!.lease, ok);
      await store.cancel(c.id);
      clock += 20_000;
      const fenced = store.counters().fencedWrites;
      const answers = await store.heartbeatBatch(
        [
          claims[0]!.lease,
          claims[1]!.lease,
          claims[2]!.lease,
          { ...claims[0]!.lease, attempt: 7 },
          { ...claims[0]!.lease, workerId: "intruder" },
          claims[0]!.lease,
        ],
        30_000,
      );
      const expiresAt = clock + 30_000;
      expect(answers).toEqual([
        { held: true, cancel: false, expiresAt },
        { held: false, cancel: false },
        { held: true, cancel: true, expiresAt },
        { held: false, cancel: false },
        { held: false, cancel: false },
        { held: true, cancel: false, expiresAt },
      ]);
      expect(store.counters().fencedWrites).toBe(fenced + 3);
      expect(await store.heartbeatBatch([], 30_000)).toEqual([]);
      clock += 20_000; // past the first lease, within the extended one
      expect(await store.reapExpired()).toBe(0);
    });
  });

  describe("grouped submits", () => {
    it("gives each of many concurrent submits its own answer, one job per idempotency key", async () => {
      const existing = await submit({ idempotencyKey: "key-0" });
      const inputs = Array.from({ length: 200 }, (_, i) => ({
        command: ["echo", String(i)],
        idempotencyKey: i % 4 === 0 ? `key-${i % 12}` : undefined,
      }));
      const answers = await Promise.all(
        inputs.map(({ command, idempotencyKey }) =>
          store.submit(spec(idempotencyKey ? { command, idempotencyKey } : { command })),
        ),
      );
      const firstOfKey = new Map<string, number>();
      answers.forEach((answer, i) => {
        const key = inputs[i]?.idempotencyKey;
        if (key === undefined) {
          expect(answer.created).toBe(true);
          expect(answer.job.command).toEqual(["echo", String(i)]);
          return;
        }
        if (key === "key-0") {
          expect(answer).toMatchObject({ created: false, job: { id: existing.id } });
          return;
        }
        const first = firstOfKey.get(key);
        if (first === undefined) {
          firstOfKey.set(key, i);
          expect(answer.created).toBe(true);
          expect(answer.job.command).toEqual(["echo", String(i)]);
        } else {
          expect(answer.created).toBe(false);
          expect(answer.job.id).toBe(answers[first]?.job.id);
        }
      });
      const created = answers.filter((answer) => answer.created);
      expect(new Set(created.map((a) => a.job.id)).size).toBe(created.length);
      const stored = (await store.list({ limit: 1_000 })).jobs;
      expect(stored).toHaveLength(1 + created.length);
      // Each answer is the job as stored.
      for (const answer of answers.slice(0, 20)) {
        expect(answer.job).toEqual(await store.get(answer.job.id));
      }
    });

    it("fails only the submit that cannot be stored, not the others of its group", async () => {
      const bad = { ...spec(), queue: null as unknown as string }; // violates NOT NULL
      const results = await Promise.allSettled([
        store.submit(spec({ command: ["a"] })),
        store.submit(bad),
        store.submit(spec({ command: ["b"], idempotencyKey: "k" })),
        store.submit(spec({ command: ["c"], idempotencyKey: "k" })),
      ]);
      expect(results.map((r) => r.status)).toEqual([
        "fulfilled",
        "rejected",
        "fulfilled",
        "fulfilled",
      ]);
      const answers = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(answers.map((a) => [a.job.command?.[0], a.created])).toEqual([
        ["a", true],
        ["b", true],
        ["b", false],
      ]);
      expect((await store.list({ limit: 10 })).jobs).toHaveLength(2);
    });

    it("writes the submits already made when the store closes", async () => {
      const pending = ["a", "b", "c"].map((c) => store.submit(spec({ command: [c] })));
      await store.close();
      const answers = await Promise.all(pending);
      store = await backend.open(clockOptions);
      for (const answer of answers) expect(await store.get(answer.job.id)).toEqual(answer.job);
    });

    it("answers a batch with the jobs as stored, in order", async () => {
      const answers = await store.submitBatch([
        spec({ command: ["a"], labels: { team: "x" } }),
        normalizeJobInput(
          { script: "echo b", priority: 1, resources: { cpus: 0.5, memoryMb: 64 } },
          clock,
        ),
      ]);
      expect(Number(answers[0]?.job.id)).toBeLessThan(Number(answers[1]?.job.id));
      for (const answer of answers) expect(answer.job).toEqual(await store.get(answer.job.id));
      expect(await store.submitBatch([])).toEqual([]);
    });
  });
});
