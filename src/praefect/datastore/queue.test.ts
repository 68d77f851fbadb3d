import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { waitFor } from "../../shared/net.js";
import { ReplicationEventExistsError } from "./errors.js";
import { migrate } from "./migrate.js";
import { failureState, jobFromJson, lockIdOf, type ReplicationJob, ReplicationQueue } from "./queue.js";

function job(overrides: Partial<ReplicationJob> = {}): ReplicationJob {
  return {
    repositoryId: 1,
    replicaPath: "@cluster/repositories/6b/86/1",
    change: "update",
    relativePath: "repo.git",
    targetNodeStorage: "s2",
    sourceNodeStorage: "s1",
    virtualStorage: "vs",
    params: null,
    ...overrides,
  };
}

describe("ReplicationQueue", () => {
  let db: TestDatabase;
  let queue: ReplicationQueue;

  beforeAll(async () => {
    db = await freshDatabase("queue");
    await migrate(db.pool);
    queue = new ReplicationQueue(db.pool);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query("TRUNCATE replication_queue_job_lock, replication_queue, replication_queue_lock");
  });

  async function lockAcquired(lockId: string): Promise<boolean | undefined> {
    const { rows } = await db.pool.query<{ acquired: boolean }>(
      "SELECT acquired FROM replication_queue_lock WHERE id = $1",
      [lockId],
    );
    return rows[0]?.acquired;
  }

  async function jobLockCount(): Promise<number> {
    const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM replication_queue_job_lock");
    return rows[0]?.n ?? -1;
  }

  it("enqueues a ready job with three attempts and its lock", async () => {
    const event = await queue.enqueue(job({ params: { key: "value" } }), { correlation_id: "abc" });
    expect(event).toMatchObject({
      state: "ready",
      attempt: 3,
      lockId: "vs|s2|repo.git",
      updatedAt: null,
      job: job({ params: { key: "value" } }),
      meta: { correlation_id: "abc" },
    });
    expect(event.createdAt).toBeInstanceOf(Date);
    const { rows } = await db.pool.query<{ utc: Date }>(
      "SELECT created_at AT TIME ZONE 'UTC' AS utc FROM replication_queue WHERE id = $1",
      [event.id],
    );
    expect(event.createdAt.getTime()).toBe(rows[0]?.utc.getTime());
    expect(await lockAcquired("vs|s2|repo.git")).toBe(false);
    // The stored JSON uses upstream's field names.
    const stored = await db.pool.query<{ job: Record<string, unknown> }>("SELECT job FROM replication_queue");
    expect(stored.rows[0]?.job).toEqual({
      repository_id: 1,
      replica_path: "@cluster/repositories/6b/86/1",
      change: "update",
      relative_path: "repo.git",
      target_node_storage: "s2",
      source_node_storage: "s1",
      virtual_storage: "vs",
      params: { key: "value" },
    });
    expect(jobFromJson(stored.rows[0]?.job ?? {})).toEqual(job({ params: { key: "value" } }));
  });

  it("skips a job identical to one still waiting", async () => {
    await queue.enqueue(job());
    await expect(queue.enqueue(job())).rejects.toThrow(ReplicationEventExistsError);
    await expect(queue.enqueue(job())).rejects.toThrow(
      'replication event "ready" -> "vs" -> "s2" -> "repo.git" already exists',
    );
    expect(await queue.enqueueUnlessWaiting(job())).toBeNull();
    expect(await queue.enqueueUnlessWaiting(job({ change: "delete_replica", sourceNodeStorage: "" }))).not.toBeNull();
    expect(await queue.enqueueUnlessWaiting(job({ targetNodeStorage: "s3" }))).not.toBeNull();

    // Once the waiting job is taken, a new identical job is needed again.
    const [taken] = await queue.dequeue("vs", "s2", 10);
    expect(taken?.job.change).toBe("update");
    expect(await queue.enqueueUnlessWaiting(job())).not.toBeNull();
  });

  it("dequeues the oldest job per replica and change, taking an attempt and the lock", async () => {
    const first = await queue.enqueue(job());
    await queue.dequeue("vs", "s2", 10).then((events) =>
      queue.acknowledge(
        "failed",
        events.map((e) => e.id),
      ),
    );
    // `first` is now failed; a newer ready job for the same replica exists too.
    const second = await queue.enqueue(job());
    const other = await queue.enqueue(job({ relativePath: "other.git" }));
    await queue.enqueue(job({ targetNodeStorage: "s3" }));
    await queue.enqueue(job({ virtualStorage: "vs2" }));

    const events = await queue.dequeue("vs", "s2", 10);
    expect(events.map((e) => e.id)).toEqual([first.id, other.id]);
    expect(events[0]).toMatchObject({ state: "in_progress", attempt: 1 });
    expect(events[1]).toMatchObject({ state: "in_progress", attempt: 2 });
    expect(events[1]?.updatedAt).toBeInstanceOf(Date);
    expect(await lockAcquired("vs|s2|repo.git")).toBe(true);
    expect(await jobLockCount()).toBe(2);

    // The replica is locked: its remaining job waits.
    expect(await queue.dequeue("vs", "s2", 10)).toEqual([]);
    expect((await queue.getEvent(second.id))?.state).toBe("ready");
  });

  it("honours the batch size, oldest first", async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await queue.enqueue(job({ relativePath: `r${i}.git` }))).id);
    expect((await queue.dequeue("vs", "s2", 2)).map((e) => e.id)).toEqual(ids.slice(0, 2));
    expect((await queue.dequeue("vs", "s2", 2)).map((e) => e.id)).toEqual(ids.slice(2, 4));
    expect((await queue.dequeue("vs", "s2", 2)).map((e) => e.id)).toEqual(ids.slice(4));
  });

  it("completes a job, dropping older waiting duplicates from the same source", async () => {
    const taken = await queue.enqueue(job());
    const [inProgress] = await queue.dequeue("vs", "s2", 1);
    expect(inProgress?.id).toBe(taken.id);
    // Backdate the newer jobs so they count as created before the job was taken.
    const dup = await queue.enqueue(job());
    // Enqueue refuses a second waiting update whatever its source, so insert that one directly.
    const inserted = await db.pool.query<{ id: string }>(
      `INSERT INTO replication_queue (lock_id, job)
       SELECT lock_id, jsonb_set(job, '{source_node_storage}', '"s3"') FROM replication_queue WHERE id = $1
       RETURNING id`,
      [dup.id],
    );
    const otherSource = { id: Number(inserted.rows[0]?.id) };
    await db.pool.query(
      "UPDATE replication_queue SET created_at = created_at - interval '1 hour' WHERE id = ANY($1::bigint[])",
      [[dup.id, otherSource.id]],
    );
    const notYet = await queue.enqueueUnlessWaiting(job());
    expect(notYet).toBeNull();

    expect(await queue.acknowledge("completed", [taken.id])).toEqual([taken.id]);
    expect(await queue.getEvent(taken.id)).toBeNull();
    expect(await queue.getEvent(dup.id)).toBeNull();
    expect(await queue.getEvent(otherSource.id)).not.toBeNull();
    expect(await lockAcquired("vs|s2|repo.git")).toBe(false);
    expect(await jobLockCount()).toBe(0);
  });

  it("retries failed jobs until their attempts run out", async () => {
    const event = await queue.enqueue(job());
    const attempts: number[] = [];
    for (;;) {
      const [taken] = await queue.dequeue("vs", "s2", 1);
      if (!taken) break;
      attempts.push(taken.attempt);
      const next = failureState(taken);
      expect(await queue.acknowledge(next, [taken.id])).toEqual([taken.id]);
      if (next === "dead") break;
      expect((await queue.getEvent(event.id))?.state).toBe("failed");
    }
    expect(attempts).toEqual([2, 1, 0]);
    expect(await queue.getEvent(event.id)).toBeNull();
    expect(await lockAcquired("vs|s2|repo.git")).toBe(false);
  });

  it("never uses up the attempts of delete_replica jobs", async () => {
    await queue.enqueue(job({ change: "delete_replica", sourceNodeStorage: "" }));
    for (let i = 0; i < 5; i++) {
      const [taken] = await queue.dequeue("vs", "s2", 1);
      expect(taken?.attempt).toBe(3);
      await queue.acknowledge("failed", [taken?.id ?? -1]);
    }
  });

  it("acknowledges only jobs in progress and validates the state", async () => {
    const waiting = await queue.enqueue(job());
    expect(await queue.acknowledge("completed", [waiting.id, 999_999])).toEqual([]);
    expect(await queue.acknowledge("completed", [])).toEqual([]);
    expect((await queue.getEvent(waiting.id))?.state).toBe("ready");
    await expect(queue.acknowledge("ready" as "completed", [waiting.id])).rejects.toThrow(
      'event state is not supported: "ready"',
    );
  });

  it("keeps a replica locked until all its jobs are acknowledged", async () => {
    const update = await queue.enqueue(job());
    const deletion = await queue.enqueue(job({ change: "delete_replica", sourceNodeStorage: "" }));
    const taken = await queue.dequeue("vs", "s2", 10);
    expect(taken.map((e) => e.id)).toEqual([update.id, deletion.id]);
    await queue.acknowledge("completed", [update.id]);
    expect(await lockAcquired("vs|s2|repo.git")).toBe(true);
    await queue.acknowledge("dead", [deletion.id]);
    expect(await lockAcquired("vs|s2|repo.git")).toBe(false);
    expect(await queue.getEvent(deletion.id)).toBeNull();
  });

  it("hands each job to exactly one of several concurrent dequeuers", async () => {
    const enqueued = new Set<number>();
    for (let i = 0; i < 40; i++) enqueued.add((await queue.enqueue(job({ relativePath: `r${i}.git` }))).id);
    // Plus jobs sharing one replica: only one of them may be in progress at a time.
    for (const change of ["update", "delete_replica"] as const) {
      enqueued.add((await queue.enqueue(job({ relativePath: "shared.git", change, sourceNodeStorage: "s9" }))).id);
    }
    const seen: number[] = [];
    const worker = async () => {
      for (;;) {
        const events = await queue.dequeue("vs", "s2", 3);
        if (events.length === 0) return;
        seen.push(...events.map((e) => e.id));
        await queue.acknowledge(
          "completed",
          events.map((e) => e.id),
        );
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    // A worker can stop while the shared replica's lock was held by another; drain the rest.
    await worker();
    expect(seen).toHaveLength(new Set(seen).size);
    expect(new Set(seen)).toEqual(enqueued);
  });

  it("never dequeues the same job twice when dequeuers race for one replica", async () => {
    await queue.enqueue(job());
    const results = await Promise.all(Array.from({ length: 6 }, () => queue.dequeue("vs", "s2", 5)));
    expect(results.flat()).toHaveLength(1);
  });

  it("refreshes heartbeats and sweeps stale job locks", async () => {
    const retryable = await queue.enqueue(job());
    const exhausted = await queue.enqueue(job({ relativePath: "last.git" }));
    await db.pool.query("UPDATE replication_queue SET attempt = 1 WHERE id = $1", [exhausted.id]);
    const taken = await queue.dequeue("vs", "s2", 10);
    expect(taken.map((e) => e.attempt)).toEqual([2, 0]);
    const ageLocks = () =>
      db.pool.query("UPDATE replication_queue_job_lock SET triggered_at = triggered_at - interval '2 minutes'");

    await ageLocks();
    expect(await queue.refreshJobLocks(taken)).toBe(2);
    expect(await queue.acknowledgeStale(60_000)).toBe(0);
    expect(await jobLockCount()).toBe(2);

    await ageLocks();
    expect(await queue.acknowledgeStale(60_000)).toBe(2);
    expect((await queue.getEvent(retryable.id))?.state).toBe("failed");
    expect(await queue.getEvent(exhausted.id)).toBeNull();
    expect(await jobLockCount()).toBe(0);
    expect(await lockAcquired(lockIdOf(retryable.job))).toBe(false);
    expect(await queue.refreshJobLocks(taken)).toBe(0);

    // The retried job can be taken again.
    expect((await queue.dequeue("vs", "s2", 10)).map((e) => e.id)).toEqual([retryable.id]);
  });

  it("runs a heartbeat until stopped", async () => {
    await queue.enqueue(job());
    const taken = await queue.dequeue("vs", "s2", 1);
    await db.pool.query("UPDATE replication_queue_job_lock SET triggered_at = triggered_at - interval '2 minutes'");
    const heartbeat = queue.startHeartbeat(taken, 20);
    await waitFor("the heartbeat to refresh the job lock", async () => {
      const { rows } = await db.pool.query<{ fresh: boolean }>(
        "SELECT triggered_at > now() AT TIME ZONE 'UTC' - interval '1 minute' AS fresh FROM replication_queue_job_lock",
      );
      return rows[0]?.fresh;
    });
    await heartbeat.stop();
    expect(await queue.acknowledgeStale(60_000)).toBe(0);
  });

  it("removes orphaned locks only", async () => {
    const kept = await queue.enqueue(job());
    await queue.enqueue(job({ relativePath: "done.git" }));
    const [a, b] = await queue.dequeue("vs", "s2", 10);
    await queue.acknowledge("completed", [b?.id ?? -1]);
    expect(a?.id).toBe(kept.id);
    await db.pool.query("INSERT INTO replication_queue_lock (id) VALUES ('vs|s9|orphan.git')");
    expect(await queue.cleanUpLocks()).toBe(2);
    const { rows } = await db.pool.query<{ id: string }>("SELECT id FROM replication_queue_lock ORDER BY id");
    expect(rows.map((r) => r.id)).toEqual(["vs|s2|repo.git"]);
  });

  it("reports the queue depth per virtual storage, target and state", async () => {
    await queue.enqueue(job());
    await queue.enqueue(job({ relativePath: "b.git" }));
    await queue.enqueue(job({ targetNodeStorage: "s3" }));
    await queue.dequeue("vs", "s3", 1);
    expect(await queue.queueDepth()).toEqual([
      { virtualStorage: "vs", targetStorage: "s2", state: "ready", count: 2 },
      { virtualStorage: "vs", targetStorage: "s3", state: "in_progress", count: 1 },
    ]);
  });
});
