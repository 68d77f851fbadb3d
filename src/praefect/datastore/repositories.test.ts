import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import {
  DowngradeAttemptedError,
  InvalidArgumentError,
  NoPrimaryError,
  NoRowsAffectedError,
  RepositoryAlreadyExistsError,
  RepositoryNotFoundError,
  WriteToOutdatedNodesError,
} from "./errors.js";
import { migrate } from "./migrate.js";
import { ReplicationQueue } from "./queue.js";
import { deriveReplicaPath } from "./replica-path.js";
import { RepositoryStore } from "./repositories.js";
import { reportNodes, setHealthy } from "./testing.js";

const configured = { vs: ["s1", "s2", "s3"], other: ["o1"] };

describe("RepositoryStore", () => {
  let db: TestDatabase;
  let store: RepositoryStore;

  beforeAll(async () => {
    db = await freshDatabase("repositories");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, configured);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query(
      "TRUNCATE repositories, storage_repositories, repository_assignments, node_status, replication_queue_job_lock, replication_queue, replication_queue_lock",
    );
    await setHealthy(db.pool, "vs", ["s1", "s2", "s3"]);
  });

  async function create(
    relativePath: string,
    primary = "s1",
    updated: string[] = [],
    outdated: string[] = [],
    options: { storePrimary?: boolean; storeAssignments?: boolean } = {},
  ): Promise<number> {
    const id = await store.reserveRepositoryId("vs", relativePath);
    await store.createRepository({
      repositoryId: id,
      virtualStorage: "vs",
      relativePath,
      replicaPath: deriveReplicaPath(id),
      primary,
      updatedSecondaries: updated,
      outdatedSecondaries: outdated,
      ...options,
    });
    return id;
  }

  async function generations(id: number): Promise<Record<string, number>> {
    const { rows } = await db.pool.query<{ storage: string; generation: string }>(
      "SELECT storage, generation FROM storage_repositories WHERE repository_id = $1 ORDER BY storage",
      [id],
    );
    const repo = await store.getRepositoryById(id);
    return Object.fromEntries([
      ["repository", repo?.generation ?? -2],
      ...rows.map((r) => [r.storage, Number(r.generation)]),
    ]);
  }

  it("reserves increasing IDs and refuses paths already taken", async () => {
    const a = await store.reserveRepositoryId("vs", "a.git");
    const b = await store.reserveRepositoryId("vs", "a.git");
    expect(b).toBeGreaterThan(a);
    await create("taken.git");
    await expect(store.reserveRepositoryId("vs", "taken.git")).rejects.toThrow(RepositoryAlreadyExistsError);
    expect(await store.reserveRepositoryId("other", "taken.git")).toBeGreaterThan(b);
  });

  it("creates the repository, its generation-0 replicas, primary and assignments", async () => {
    const id = await create("new.git", "s1", ["s2"], ["s3"]);
    expect(await store.getRepository("vs", "new.git")).toEqual({
      repositoryId: id,
      virtualStorage: "vs",
      relativePath: "new.git",
      replicaPath: deriveReplicaPath(id),
      primary: "s1",
      generation: 0,
    });
    expect(await generations(id)).toEqual({ repository: 0, s1: 0, s2: 0 });
    expect(await store.getHostAssignments("vs", id)).toEqual(["s1", "s2", "s3"]);
    expect(await store.getRepositoryId("vs", "new.git")).toBe(id);
    expect(await store.repositoryExists("vs", "new.git")).toBe(true);
    expect(await store.repositoryExists("vs", "missing.git")).toBe(false);
    expect(await store.getReplicaPath(id)).toBe(deriveReplicaPath(id));
    expect(await store.listRepositoryPaths("vs")).toEqual(["new.git"]);
    expect(await store.hasRepositoryAssignments(deriveReplicaPath(id))).toBe(true);

    await expect(
      store.createRepository({
        repositoryId: id + 1000,
        virtualStorage: "vs",
        relativePath: "new.git",
        replicaPath: "x",
        primary: "s1",
      }),
    ).rejects.toThrow(RepositoryAlreadyExistsError);
    await expect(
      store.createRepository({
        repositoryId: id,
        virtualStorage: "vs",
        relativePath: "other.git",
        replicaPath: "x",
        primary: "s1",
      }),
    ).rejects.toThrow(`repository id ${id} already in use`);
  });

  it("can leave out the primary and the assignments", async () => {
    const id = await create("bare.git", "s2", [], [], { storePrimary: false, storeAssignments: false });
    expect((await store.getRepositoryById(id))?.primary).toBeNull();
    expect(await store.hasRepositoryAssignments(deriveReplicaPath(id))).toBe(false);
    // Without assignments every configured storage counts as assigned.
    expect(await store.getHostAssignments("vs", id)).toEqual(["s1", "s2", "s3"]);
  });

  it("reports missing repositories", async () => {
    await expect(store.getRepositoryId("vs", "nope.git")).rejects.toThrow(RepositoryNotFoundError);
    await expect(store.getReplicaPath(424242)).rejects.toThrow(RepositoryNotFoundError);
    expect(await store.getRepositoryById(424242)).toBeNull();
    await expect(store.getConsistentStorages("vs", "nope.git")).rejects.toThrow(RepositoryNotFoundError);
    await expect(store.deleteRepository("vs", "nope.git")).rejects.toThrow(RepositoryNotFoundError);
    await expect(store.incrementGeneration(424242, "s1", [])).rejects.toThrow(RepositoryNotFoundError);
    await expect(store.setAuthoritativeReplica("vs", "nope.git", "s1")).rejects.toThrow(RepositoryNotFoundError);
  });

  it("increments generations only on replicas that were up to date", async () => {
    const id = await create("gen.git", "s1", ["s2"], ["s3"]);
    expect(await store.getGeneration(id, "s3")).toBe(-1);

    await store.incrementGeneration(id, "s1", ["s2", "s3"]);
    expect(await generations(id)).toEqual({ repository: 1, s1: 1, s2: 1 });

    await store.incrementGeneration(id, "s1", []);
    expect(await generations(id)).toEqual({ repository: 2, s1: 2, s2: 1 });

    // s2 missed the last write: it must not be bumped to look current.
    await store.incrementGeneration(id, "s1", ["s2"]);
    expect(await generations(id)).toEqual({ repository: 3, s1: 3, s2: 1 });

    await expect(store.incrementGeneration(id, "s2", ["s3"])).rejects.toThrow(WriteToOutdatedNodesError);
    await expect(store.incrementGeneration(id, "s2", ["s3"])).rejects.toThrow("write to outdated nodes");
    expect(await generations(id)).toEqual({ repository: 3, s1: 3, s2: 1 });
    expect(await store.getConsistentStorages("vs", "gen.git")).toEqual({
      replicaPath: deriveReplicaPath(id),
      storages: ["s1"],
    });
    expect(await store.getConsistentStoragesById(id)).toEqual({ replicaPath: deriveReplicaPath(id), storages: ["s1"] });
  });

  it("serialises concurrent increments so none is lost", async () => {
    const id = await create("race.git", "s1", ["s2"], ["s3"]);
    await Promise.all(Array.from({ length: 8 }, () => store.incrementGeneration(id, "s1", ["s2", "s3"])));
    expect(await generations(id)).toEqual({ repository: 8, s1: 8, s2: 8 });
  });

  it("sets replicated generations, only ever raising the repository's", async () => {
    const id = await create("repl.git", "s1", [], ["s2"]);
    await store.incrementGeneration(id, "s1", []);
    await store.incrementGeneration(id, "s1", []);
    expect(await store.getReplicatedGeneration(id, "s1", "s2")).toBe(2);
    await store.setGeneration(id, "s2", "repl.git", 2);
    expect(await generations(id)).toEqual({ repository: 2, s1: 2, s2: 2 });
    await expect(store.getReplicatedGeneration(id, "s1", "s2")).rejects.toThrow(DowngradeAttemptedError);
    await expect(store.getReplicatedGeneration(id, "s1", "s2")).rejects.toThrow(
      'attempted downgrading storage "s2" from generation 2 to 2',
    );
    // A lower value does not lower the repository's generation.
    await store.setGeneration(id, "s3", "repl.git", 1);
    expect(await generations(id)).toEqual({ repository: 2, s1: 2, s2: 2, s3: 1 });
    await store.setGeneration(id, "s3", "repl.git", 5);
    expect(await generations(id)).toEqual({ repository: 5, s1: 2, s2: 2, s3: 5 });
  });

  it("makes one replica authoritative and every other one outdated", async () => {
    const id = await create("auth.git", "s1", ["s2"]);
    await store.setAuthoritativeReplica("vs", "auth.git", "s2");
    expect(await generations(id)).toEqual({ repository: 1, s1: 0, s2: 1 });
    await store.setAuthoritativeReplica("vs", "auth.git", "s3");
    expect(await generations(id)).toEqual({ repository: 2, s1: 0, s2: 1, s3: 2 });
  });

  it("deletes repositories and replicas", async () => {
    const id = await create("del.git", "s1", ["s2"], ["s3"]);
    await store.deleteReplica(id, "s2");
    await expect(store.deleteReplica(id, "s2")).rejects.toThrow(NoRowsAffectedError);
    expect(await store.deleteRepository("vs", "del.git")).toEqual({
      replicaPath: deriveReplicaPath(id),
      storages: ["s1"],
    });
    const left = await db.pool.query(
      "SELECT 1 FROM storage_repositories UNION ALL SELECT 1 FROM repository_assignments",
    );
    expect(left.rowCount).toBe(0);

    const lonely = await create("lonely.git", "s1");
    await store.deleteReplica(lonely, "s1");
    expect(await store.deleteRepository("vs", "lonely.git")).toEqual({
      replicaPath: deriveReplicaPath(lonely),
      storages: [],
    });
  });

  it("drops an invalid replica, and the repository with its last replica", async () => {
    const id = await create("invalid.git", "s1", ["s2"]);
    await store.deleteInvalidRepository(id, "s1");
    expect(await generations(id)).toEqual({ repository: 0, s2: 0 });
    await store.deleteInvalidRepository(id, "s2");
    expect(await store.getRepositoryById(id)).toBeNull();
  });

  it("deletes everything of a virtual storage", async () => {
    await create("x.git");
    const queue = new ReplicationQueue(db.pool);
    await queue.enqueue({
      repositoryId: 1,
      replicaPath: "x",
      change: "update",
      relativePath: "x.git",
      targetNodeStorage: "s2",
      sourceNodeStorage: "s1",
      virtualStorage: "vs",
      params: null,
    });
    await store.deleteAllRepositories("vs");
    const left = await db.pool.query(
      "SELECT 1 FROM repositories UNION ALL SELECT 1 FROM replication_queue UNION ALL SELECT 1 FROM replication_queue_lock",
    );
    expect(left.rowCount).toBe(0);
  });

  it("ignores assignments to storages no longer configured", async () => {
    const id = await create("assign.git", "s1");
    await db.pool.query(
      "INSERT INTO repository_assignments (virtual_storage, relative_path, storage, repository_id) VALUES ('vs', 'assign.git', 'gone', $1)",
      [id],
    );
    expect(await store.getHostAssignments("vs", id)).toEqual(["s1"]);
    await expect(store.getHostAssignments("nope", id)).rejects.toThrow(InvalidArgumentError);
  });

  it("sets the replication factor, never unassigning the primary", async () => {
    const id = await create("rf.git", "s2");
    expect(await store.setReplicationFactor("vs", "rf.git", 3)).toEqual(["s1", "s2", "s3"]);
    for (let i = 0; i < 5; i++) {
      expect(await store.setReplicationFactor("vs", "rf.git", 1)).toEqual(["s2"]);
      const two = await store.setReplicationFactor("vs", "rf.git", 2);
      expect(two).toHaveLength(2);
      expect(two).toContain("s2");
    }
    expect(await store.setReplicationFactor("vs", "rf.git", 2)).toEqual(await store.getHostAssignments("vs", id));
    await expect(store.setReplicationFactor("vs", "rf.git", 0)).rejects.toThrow(
      "attempted to set replication factor 0 but minimum is 1",
    );
    await expect(store.setReplicationFactor("vs", "rf.git", 4)).rejects.toThrow(
      "attempted to set replication factor 4 but virtual storage only contains 3 storages",
    );
    await expect(store.setReplicationFactor("nope", "rf.git", 1)).rejects.toThrow('virtual storage "nope" not found');
    await expect(store.setReplicationFactor("vs", "missing.git", 1)).rejects.toThrow(
      'repository "vs"/"missing.git" not found',
    );
  });

  it("assigns the primary first when a repository gets its first assignments", async () => {
    await create("first.git", "s3", [], [], { storeAssignments: false });
    for (let i = 0; i < 3; i++) {
      await db.pool.query("DELETE FROM repository_assignments");
      expect(await store.setReplicationFactor("vs", "first.git", 1)).toEqual(["s3"]);
    }
  });

  it("marks replicas unverified by repository, virtual storage and storage", async () => {
    const a = await create("va.git", "s1", ["s2"]);
    await create("vb.git", "s1", ["s2"]);
    const verifyAll = () => db.pool.query("UPDATE storage_repositories SET verified_at = now()");
    await verifyAll();
    expect(await store.markUnverified(a)).toBe(2);
    expect(await store.markUnverified(a)).toBe(0);
    await verifyAll();
    expect(await store.markVirtualStorageUnverified("vs")).toBe(4);
    await verifyAll();
    expect(await store.markStorageUnverified("vs", "s2")).toBe(2);
    expect(await store.markStorageUnverified("other", "s2")).toBe(0);
  });

  describe("primary election", () => {
    it("keeps a valid primary", async () => {
      const id = await create("keep.git", "s1", ["s2", "s3"]);
      for (let i = 0; i < 3; i++) {
        expect(await store.electPrimary(id)).toEqual({ primary: "s1", previous: "s1", valid: true });
      }
      expect(await store.getPrimary(id)).toBe("s1");
    });

    it("fails over to an up-to-date healthy replica when the primary is unhealthy", async () => {
      const id = await create("failover.git", "s1", ["s2"], ["s3"]);
      await setHealthy(db.pool, "vs", ["s2", "s3"], ["s1"]);
      await db.pool.query(
        "UPDATE node_status SET last_seen_active_at = now() - interval '1 minute' WHERE node_name = 's1'",
      );
      // s3 has no replica, so s2 is the only candidate.
      expect(await store.electPrimary(id)).toEqual({ primary: "s2", previous: "s1", valid: true });
      expect((await store.getRepositoryById(id))?.primary).toBe("s2");
      expect(await store.electPrimary(id)).toEqual({ primary: "s2", previous: "s2", valid: true });
    });

    it("replaces an outdated primary", async () => {
      const id = await create("stale.git", "s1", ["s2"]);
      await store.incrementGeneration(id, "s2", []);
      expect(await store.electPrimary(id)).toEqual({ primary: "s2", previous: "s1", valid: true });
    });

    it("never elects a replica with a pending delete_replica job", async () => {
      const id = await create("pending.git", "s1", ["s2", "s3"]);
      await setHealthy(db.pool, "vs", ["s2", "s3"]);
      await db.pool.query("UPDATE node_status SET last_seen_active_at = NULL WHERE node_name = 's1'");
      await new ReplicationQueue(db.pool).enqueue({
        repositoryId: id,
        replicaPath: deriveReplicaPath(id),
        change: "delete_replica",
        relativePath: "pending.git",
        targetNodeStorage: "s2",
        sourceNodeStorage: "",
        virtualStorage: "vs",
        params: null,
      });
      for (let i = 0; i < 5; i++) {
        await db.pool.query("UPDATE repositories SET \"primary\" = 's1' WHERE repository_id = $1", [id]);
        expect((await store.electPrimary(id)).primary).toBe("s3");
      }
    });

    it("leaves the repository unavailable when no replica qualifies", async () => {
      const id = await create("down.git", "s1", [], ["s2"]);
      await db.pool.query("UPDATE node_status SET last_seen_active_at = NULL WHERE node_name = 's1'");
      expect(await store.electPrimary(id)).toEqual({ primary: "s1", previous: "s1", valid: false });
      expect(await store.countUnavailableRepositories(["vs", "other"])).toEqual({ vs: 1, other: 0 });

      const none = await create("none.git", "s1", [], [], { storePrimary: false });
      expect(await store.electPrimary(none)).toMatchObject({ primary: null, valid: false });
      await expect(store.getPrimary(none)).rejects.toThrow(NoPrimaryError);
      await expect(store.getPrimary(424242)).rejects.toThrow(RepositoryNotFoundError);
    });

    it("elects one primary when Praefects race", async () => {
      const id = await create("contested.git", "s1", ["s2", "s3"]);
      await db.pool.query("UPDATE node_status SET last_seen_active_at = NULL WHERE node_name = 's1'");
      const results = await Promise.all(Array.from({ length: 6 }, () => store.electPrimary(id)));
      const stored = (await store.getRepositoryById(id))?.primary;
      expect(["s2", "s3"]).toContain(stored);
      expect(results.every((r) => r.primary === stored && r.valid)).toBe(true);
    });
  });

  describe("primary election on latest checks (fast failure detection)", () => {
    const failed = (praefect: string, storage: string) => ({
      praefect,
      virtualStorage: "vs",
      storage,
      contactedSecondsAgo: 0,
      seenActiveSecondsAgo: 1,
    });
    const passed = (praefect: string, storage: string) => ({
      praefect,
      virtualStorage: "vs",
      storage,
      contactedSecondsAgo: 0,
      seenActiveSecondsAgo: 0,
    });

    it("fails over as soon as a majority's latest check failed, where upstream's view still waits", async () => {
      const fast = new RepositoryStore(db.pool, configured, { electionVote: "latest-check" });
      const id = await create("fast.git", "s1", ["s2", "s3"]);
      // Both Praefects saw s1 healthy a second ago and failing now: within upstream's 10 s window.
      await reportNodes(db.pool, [
        failed("praefect-0", "s1"),
        failed("p2", "s1"),
        passed("p2", "s2"),
        passed("p2", "s3"),
      ]);
      expect(await store.electPrimary(id)).toEqual({ primary: "s1", previous: "s1", valid: true });
      const elected = await fast.electPrimary(id);
      expect(elected.previous).toBe("s1");
      expect(["s2", "s3"]).toContain(elected.primary);
      expect(elected.valid).toBe(true);
    });

    it("does not fail over on a minority's failed checks", async () => {
      const fast = new RepositoryStore(db.pool, configured, { electionVote: "latest-check" });
      const id = await create("minority.git", "s1", ["s2", "s3"]);
      // Three Praefects (quorum 2): only p3 cannot reach s1 (e.g. partitioned).
      await reportNodes(db.pool, [
        passed("p2", "s1"),
        failed("p3", "s1"),
        passed("p2", "s2"),
        failed("p3", "s2"),
        passed("p2", "s3"),
        failed("p3", "s3"),
      ]);
      for (let i = 0; i < 3; i++) {
        expect(await fast.electPrimary(id)).toEqual({ primary: "s1", previous: "s1", valid: true });
      }
    });
  });

  describe("metadata and dataloss", () => {
    it("describes every replica of a repository", async () => {
      const id = await create("meta.git", "s1", ["s2"], ["s3"]);
      await store.incrementGeneration(id, "s1", []);
      await db.pool.query("UPDATE storage_repositories SET verified_at = '2024-01-02T03:04:05Z' WHERE storage = 's1'");
      const metadata = await store.getRepositoryMetadataByPath("vs", "meta.git");
      expect(metadata).toEqual({
        repositoryId: id,
        virtualStorage: "vs",
        relativePath: "meta.git",
        replicaPath: deriveReplicaPath(id),
        primary: "s1",
        generation: 1,
        replicas: [
          {
            storage: "s1",
            generation: 1,
            assigned: true,
            healthy: true,
            validPrimary: true,
            verifiedAt: new Date("2024-01-02T03:04:05Z"),
          },
          { storage: "s2", generation: 0, assigned: true, healthy: true, validPrimary: false, verifiedAt: null },
          { storage: "s3", generation: -1, assigned: true, healthy: true, validPrimary: false, verifiedAt: null },
        ],
      });
      expect(await store.getRepositoryMetadata(id)).toEqual(metadata);
      await expect(store.getRepositoryMetadata(424242)).rejects.toThrow(RepositoryNotFoundError);
    });

    it("lists unavailable repositories, and partially replicated ones on request", async () => {
      const healthyRepo = await create("fine.git", "s1", ["s2", "s3"]);
      const partial = await create("partial.git", "s1", ["s2"], ["s3"]);
      const lost = await create("lost.git", "s1", ["s2"]);
      await store.incrementGeneration(lost, "s1", []);
      // Unassign s3 from lost.git: an unassigned missing replica does not matter.
      await db.pool.query("DELETE FROM repository_assignments WHERE repository_id = $1 AND storage = 's3'", [lost]);
      // s1 goes down: lost.git's only up-to-date replica.
      await reportNodes(db.pool, [
        {
          praefect: "praefect-0",
          virtualStorage: "vs",
          storage: "s1",
          contactedSecondsAgo: 0,
          seenActiveSecondsAgo: null,
        },
      ]);
      await db.pool.query("UPDATE node_status SET last_seen_active_at = NULL WHERE node_name = 's1'");

      expect(await store.dataloss("vs", false)).toEqual([
        {
          relativePath: "lost.git",
          primary: "s1",
          unavailable: true,
          storages: [
            { name: "s1", behindBy: 0, assigned: true, healthy: false, validPrimary: false },
            { name: "s2", behindBy: 1, assigned: true, healthy: true, validPrimary: false },
          ],
        },
      ]);
      const all = await store.dataloss("vs", true);
      expect(all.map((r) => [r.relativePath, r.unavailable])).toEqual([
        ["fine.git", false],
        ["partial.git", false],
        ["lost.git", true],
      ]);
      expect(all[1]?.storages).toEqual([
        { name: "s1", behindBy: 0, assigned: true, healthy: false, validPrimary: false },
        { name: "s2", behindBy: 0, assigned: true, healthy: true, validPrimary: true },
        { name: "s3", behindBy: 1, assigned: true, healthy: true, validPrimary: false },
      ]);
      expect(healthyRepo).toBeLessThan(partial);
      await expect(store.dataloss("nope", false)).rejects.toThrow('unknown virtual storage: "nope"');
    });
  });
});
