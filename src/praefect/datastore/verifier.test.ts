import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { migrate } from "./migrate.js";
import { RepositoryStore } from "./repositories.js";
import { leaseVerificationJobs, recordVerificationResults, releaseExpiredLeases } from "./verifier.js";

describe("verifier queries", () => {
  let db: TestDatabase;
  let store: RepositoryStore;
  const lease = { batchSize: 25, verificationIntervalMs: 7 * 24 * 3600 * 1000, leaseDurationMs: 30_000 };

  beforeAll(async () => {
    db = await freshDatabase("verifier");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, { vs: ["s1", "s2"] });
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query("TRUNCATE repositories, storage_repositories, repository_assignments");
  });

  async function createRepo(relativePath: string): Promise<number> {
    const id = await store.reserveRepositoryId("vs", relativePath);
    await store.createRepository({
      repositoryId: id,
      virtualStorage: "vs",
      relativePath,
      replicaPath: `replica/${relativePath}`,
      primary: "s1",
      updatedSecondaries: ["s2"],
    });
    return id;
  }

  async function replicaState(id: number) {
    const { rows } = await db.pool.query<{ storage: string; verified: boolean; leased: boolean }>(
      `SELECT storage, verified_at IS NOT NULL AS verified, verification_leased_until IS NOT NULL AS leased
       FROM storage_repositories WHERE repository_id = $1 ORDER BY storage`,
      [id],
    );
    return rows;
  }

  it("leases unverified replicas on healthy storages once", async () => {
    const id = await createRepo("a.git");
    const jobs = await leaseVerificationJobs(db.pool, { vs: ["s1"] }, lease);
    expect(jobs).toEqual([
      { repositoryId: id, replicaPath: "replica/a.git", virtualStorage: "vs", relativePath: "a.git", storage: "s1" },
    ]);
    expect(await leaseVerificationJobs(db.pool, { vs: ["s1"] }, lease)).toEqual([]);
    expect(await replicaState(id)).toEqual([
      { storage: "s1", verified: false, leased: true },
      { storage: "s2", verified: false, leased: false },
    ]);
    expect(await leaseVerificationJobs(db.pool, { vs: ["s1", "s2"] }, { ...lease, batchSize: 1 })).toHaveLength(1);
  });

  it("records results and deletes missing replicas only when told to", async () => {
    const id = await createRepo("b.git");
    await leaseVerificationJobs(db.pool, { vs: ["s1", "s2"] }, lease);
    await recordVerificationResults(
      db.pool,
      [
        { repositoryId: id, storage: "s1", succeeded: true, exists: true },
        { repositoryId: id, storage: "s2", succeeded: true, exists: false },
      ],
      false,
    );
    expect(await replicaState(id)).toEqual([
      { storage: "s1", verified: true, leased: false },
      { storage: "s2", verified: true, leased: false },
    ]);

    await db.pool.query("UPDATE storage_repositories SET verified_at = NULL");
    await leaseVerificationJobs(db.pool, { vs: ["s1", "s2"] }, lease);
    await recordVerificationResults(
      db.pool,
      [
        { repositoryId: id, storage: "s1", succeeded: false, exists: false },
        { repositoryId: id, storage: "s2", succeeded: true, exists: false },
      ],
      true,
    );
    // A failed check proves nothing: s1 stays, unverified. s2 is gone.
    expect(await replicaState(id)).toEqual([{ storage: "s1", verified: false, leased: false }]);
  });

  it("releases leases whose holder died", async () => {
    const id = await createRepo("c.git");
    await leaseVerificationJobs(db.pool, { vs: ["s1", "s2"] }, lease);
    expect(await releaseExpiredLeases(db.pool, 30_000, 10)).toEqual([]);
    await db.pool.query("UPDATE storage_repositories SET verification_leased_until = now() - interval '2 minutes'");
    const released = await releaseExpiredLeases(db.pool, 30_000, 10);
    expect(released.map((r) => r.storage).sort()).toEqual(["s1", "s2"]);
    expect((await replicaState(id)).every((r) => !r.leased)).toBe(true);
  });
});
