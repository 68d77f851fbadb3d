import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { migrate } from "./migrate.js";
import { ReplicationQueue } from "./queue.js";
import { RECONCILE_ADVISORY_LOCK, scheduleReconciliationJobs } from "./reconciler.js";
import { RepositoryStore } from "./repositories.js";

describe("reconciliation scheduling", () => {
  let db: TestDatabase;
  let store: RepositoryStore;
  const allHealthy = { vs: ["s1", "s2", "s3"] };

  beforeAll(async () => {
    db = await freshDatabase("reconciler");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, allHealthy);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query(
      "TRUNCATE repositories, storage_repositories, repository_assignments, replication_queue_job_lock, replication_queue, replication_queue_lock",
    );
  });

  /** A repository with the given replica generations; `assigned` null leaves it without assignments. */
  async function repo(relativePath: string, replicas: Record<string, number>, assigned: string[] | null = null) {
    const id = await store.reserveRepositoryId("vs", relativePath);
    const generation = Math.max(...Object.values(replicas));
    await db.pool.query(
      `INSERT INTO repositories (repository_id, virtual_storage, relative_path, replica_path, generation, "primary")
       VALUES ($1, 'vs', $2, $3, $4, 's1')`,
      [id, relativePath, `replica/${relativePath}`, generation],
    );
    for (const [storage, gen] of Object.entries(replicas)) {
      await db.pool.query(
        "INSERT INTO storage_repositories (repository_id, virtual_storage, relative_path, storage, generation) VALUES ($1, 'vs', $2, $3, $4)",
        [id, relativePath, storage, gen],
      );
    }
    for (const storage of assigned ?? []) {
      await db.pool.query(
        "INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage) VALUES ($1, 'vs', $2, $3)",
        [id, relativePath, storage],
      );
    }
    return id;
  }

  const summary = (jobs: Awaited<ReturnType<typeof scheduleReconciliationJobs>>) =>
    jobs.map((j) => `${j.change} ${j.relativePath} ${j.sourceStorage ?? "-"}->${j.targetStorage}`).sort();

  it("needs two healthy storages in a virtual storage", async () => {
    await repo("a.git", { s1: 1, s2: 0 });
    expect(await scheduleReconciliationJobs(db.pool, { vs: ["s1"] })).toEqual([]);
    expect(await scheduleReconciliationJobs(db.pool, {})).toEqual([]);
  });

  it("repairs outdated and missing replicas from an up-to-date one, once", async () => {
    const id = await repo("a.git", { s1: 1, s2: 0 });
    const jobs = await scheduleReconciliationJobs(db.pool, allHealthy);
    expect(summary(jobs)).toEqual(["update a.git s1->s2", "update a.git s1->s3"]);
    expect(jobs[0]).toMatchObject({ repositoryId: id, replicaPath: "replica/a.git", virtualStorage: "vs" });
    expect(jobs[0]?.correlationId).toMatch(/\w+/);

    const queue = new ReplicationQueue(db.pool);
    const [event] = await queue.dequeue("vs", "s2", 1);
    expect(event?.job).toEqual({
      repositoryId: id,
      replicaPath: "replica/a.git",
      change: "update",
      relativePath: "a.git",
      targetNodeStorage: "s2",
      sourceNodeStorage: "s1",
      virtualStorage: "vs",
      params: null,
    });
    expect(event?.lockId).toBe("vs|s2|a.git");

    // Pending (or in-progress) updates are not queued again.
    expect(await scheduleReconciliationJobs(db.pool, allHealthy)).toEqual([]);
  });

  it("uses only healthy sources and targets", async () => {
    await repo("a.git", { s1: 1, s2: 0 });
    expect(summary(await scheduleReconciliationJobs(db.pool, { vs: ["s2", "s3"] }))).toEqual([]);
    expect(summary(await scheduleReconciliationJobs(db.pool, { vs: ["s1", "s3"] }))).toEqual(["update a.git s1->s3"]);
  });

  it("targets only assigned storages when assignments exist", async () => {
    await repo("a.git", { s1: 1 }, ["s1", "s2"]);
    expect(summary(await scheduleReconciliationJobs(db.pool, allHealthy))).toEqual(["update a.git s1->s2"]);
  });

  it("deletes an unassigned replica once the assigned ones are current, one at a time", async () => {
    await repo("extra.git", { s1: 1, s2: 1, s3: 1 }, ["s1"]);
    const first = await scheduleReconciliationJobs(db.pool, allHealthy);
    expect(first).toHaveLength(1);
    expect(first[0]?.change).toBe("delete_replica");
    expect(["s2", "s3"]).toContain(first[0]?.targetStorage);
    expect(first[0]?.sourceStorage).toBeNull();
    // The first deletion is still queued: no second one.
    expect(await scheduleReconciliationJobs(db.pool, allHealthy)).toEqual([]);
  });

  it("keeps unassigned replicas while an assigned one is behind or missing, or without assignments", async () => {
    await repo("behind.git", { s1: 1, s2: 0, s3: 1 }, ["s1", "s2"]);
    await repo("missing.git", { s1: 1, s3: 1 }, ["s1", "s2"]);
    await repo("unassigned.git", { s1: 1, s2: 1, s3: 1 });
    const jobs = await scheduleReconciliationJobs(db.pool, allHealthy);
    // The source is a random healthy up-to-date replica: s1 or s3.
    expect(jobs.map((j) => `${j.change} ${j.relativePath} ->${j.targetStorage}`).sort()).toEqual([
      "update behind.git ->s2",
      "update missing.git ->s2",
    ]);
    for (const j of jobs) expect(["s1", "s3"]).toContain(j.sourceStorage);
  });

  it("schedules nothing while another Praefect holds the reconciliation lock", async () => {
    await repo("a.git", { s1: 1, s2: 0 });
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query("SELECT pg_advisory_lock($1)", [RECONCILE_ADVISORY_LOCK]);
      expect(await scheduleReconciliationJobs(db.pool, allHealthy)).toEqual([]);
      await other.query("SELECT pg_advisory_unlock($1)", [RECONCILE_ADVISORY_LOCK]);
      expect(await scheduleReconciliationJobs(db.pool, allHealthy)).toHaveLength(2);
    } finally {
      await other.end();
    }
  });

  it("does not source from a replica that is being deleted", async () => {
    const id = await repo("a.git", { s1: 1, s2: 1 });
    await new ReplicationQueue(db.pool).enqueue({
      repositoryId: id,
      replicaPath: "replica/a.git",
      change: "delete_replica",
      relativePath: "a.git",
      targetNodeStorage: "s1",
      sourceNodeStorage: "",
      virtualStorage: "vs",
      params: null,
    });
    for (let i = 0; i < 5; i++) {
      const jobs = await scheduleReconciliationJobs(db.pool, allHealthy);
      expect(summary(jobs)).toEqual(i === 0 ? ["update a.git s2->s3"] : []);
    }
  });
});
