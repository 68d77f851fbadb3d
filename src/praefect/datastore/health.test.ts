import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { NodeStatusStore, praefectName } from "./health.js";
import { migrate } from "./migrate.js";
import { reportNodes } from "./testing.js";

describe("node health consensus", () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await freshDatabase("health");
    await migrate(db.pool);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query("DELETE FROM node_status");
  });

  const seen = (praefect: string, storage: string, vs = "vs") => ({
    praefect,
    virtualStorage: vs,
    storage,
    contactedSecondsAgo: 0,
    seenActiveSecondsAgo: 0,
  });
  const notSeen = (praefect: string, storage: string, vs = "vs") => ({
    praefect,
    virtualStorage: vs,
    storage,
    contactedSecondsAgo: 0,
    seenActiveSecondsAgo: null,
  });

  it("names a Praefect by host and listen address", () => {
    expect(praefectName("host-a", "127.0.0.1:2305")).toBe("host-a:127.0.0.1:2305");
  });

  it("records health checks, keeping the last sighting of a node that went unhealthy", async () => {
    const store = new NodeStatusStore(db.pool, "host-a:2305");
    await store.recordHealthChecks([
      { virtualStorage: "vs", storage: "s1", healthy: true },
      { virtualStorage: "vs", storage: "s2", healthy: false },
    ]);
    const first = await db.pool.query<{ node_name: string; seen: Date | null; contacted: Date }>(
      `SELECT node_name, last_seen_active_at AS seen, last_contact_attempt_at AS contacted
       FROM node_status WHERE praefect_name = 'host-a:2305' ORDER BY node_name`,
    );
    expect(first.rows.map((r) => [r.node_name, r.seen !== null, r.contacted !== null])).toEqual([
      ["s1", true, true],
      ["s2", false, true],
    ]);
    expect(await store.consensusHealthyStorages()).toEqual({ vs: ["s1"] });

    // Age the sighting so the next round's values are distinguishable without waiting.
    await db.pool.query(
      "UPDATE node_status SET last_seen_active_at = now() - interval '5 seconds' WHERE node_name = 's1'",
    );
    const before = await db.pool.query<{ seen: Date }>(
      "SELECT last_seen_active_at AS seen FROM node_status WHERE node_name = 's1'",
    );
    await store.recordHealthChecks([
      { virtualStorage: "vs", storage: "s1", healthy: false },
      { virtualStorage: "vs", storage: "s2", healthy: true },
    ]);
    const after = await db.pool.query<{ seen: Date }>(
      "SELECT last_seen_active_at AS seen FROM node_status WHERE node_name = 's1'",
    );
    expect(after.rows[0]?.seen.getTime()).toBe(before.rows[0]?.seen.getTime());
    // s1 was seen 5 s ago, still within the 10 s window; s2 is now seen too.
    expect(await store.consensusHealthyStorages()).toEqual({ vs: ["s1", "s2"] });
    expect(await store.isHealthyByConsensus("vs", "s2")).toBe(true);
    expect(await store.activePraefects("vs")).toEqual(["host-a:2305"]);
  });

  it("needs at least half of the active Praefects, rounded up", async () => {
    await reportNodes(db.pool, [
      seen("p1", "s1"),
      seen("p2", "s1"),
      notSeen("p3", "s1"),
      seen("p1", "s2"),
      notSeen("p2", "s2"),
      notSeen("p3", "s2"),
    ]);
    const store = new NodeStatusStore(db.pool, "p1");
    // 3 Praefects: quorum is 2. s1 has 2 votes, s2 only 1.
    expect(await store.consensusHealthyStorages()).toEqual({ vs: ["s1"] });
  });

  it("lets one of two Praefects' sighting suffice (ceil(2/2) = 1)", async () => {
    await reportNodes(db.pool, [seen("p1", "s1"), notSeen("p2", "s1")]);
    expect(await new NodeStatusStore(db.pool, "p1").consensusHealthyStorages()).toEqual({ vs: ["s1"] });
  });

  it("does not let a partitioned Praefect declare nodes healthy on its own", async () => {
    // p3 can reach s1, the majority cannot.
    await reportNodes(db.pool, [notSeen("p1", "s1"), notSeen("p2", "s1"), seen("p3", "s1")]);
    const store = new NodeStatusStore(db.pool, "p3");
    expect(await store.consensusHealthyStorages()).toEqual({});
    expect(await store.isHealthyByConsensus("vs", "s1")).toBe(false);
  });

  it("ignores sightings older than 10 s and Praefects silent for over a minute", async () => {
    await reportNodes(db.pool, [
      { praefect: "p1", virtualStorage: "vs", storage: "s1", contactedSecondsAgo: 0, seenActiveSecondsAgo: 30 },
      seen("p1", "s2"),
      // p2 and p3 stopped a while ago: they no longer count towards the quorum.
      { praefect: "p2", virtualStorage: "vs", storage: "s2", contactedSecondsAgo: 120, seenActiveSecondsAgo: 120 },
      { praefect: "p3", virtualStorage: "vs", storage: "s2", contactedSecondsAgo: 120, seenActiveSecondsAgo: 120 },
    ]);
    const store = new NodeStatusStore(db.pool, "p1");
    expect(await store.consensusHealthyStorages()).toEqual({ vs: ["s2"] });
    expect(await store.activePraefects("vs")).toEqual(["p1"]);
  });

  it("counts each virtual storage's quorum separately", async () => {
    await reportNodes(db.pool, [
      seen("p1", "a1", "vs-a"),
      seen("p1", "b1", "vs-b"),
      notSeen("p2", "b1", "vs-b"),
      notSeen("p3", "b1", "vs-b"),
    ]);
    expect(await new NodeStatusStore(db.pool, "p1").consensusHealthyStorages()).toEqual({ "vs-a": ["a1"] });
  });

  describe("with each Praefect's latest check as its vote", () => {
    const failedNow = (praefect: string, storage: string, vs = "vs") => ({
      praefect,
      virtualStorage: vs,
      storage,
      contactedSecondsAgo: 0,
      seenActiveSecondsAgo: 2,
    });

    it("drops a node once a majority's latest check failed, while the 10 s view still counts it", async () => {
      await reportNodes(db.pool, [failedNow("p1", "s1"), failedNow("p2", "s1"), seen("p1", "s2"), seen("p2", "s2")]);
      expect(await new NodeStatusStore(db.pool, "p1").consensusHealthyStorages()).toEqual({ vs: ["s1", "s2"] });
      const fast = new NodeStatusStore(db.pool, "p1", "latest-check");
      expect(await fast.consensusHealthyStorages()).toEqual({ vs: ["s2"] });
      expect(await fast.isHealthyByConsensus("vs", "s1")).toBe(false);
      expect(await fast.isHealthyByConsensus("vs", "s2")).toBe(true);
    });

    it("keeps the quorum: a partitioned Praefect's failed checks change nothing", async () => {
      // p3 reaches no node; p1 and p2 reach all of them.
      await reportNodes(db.pool, [...["s1", "s2"].flatMap((s) => [seen("p1", s), seen("p2", s), failedNow("p3", s)])]);
      const fast = new NodeStatusStore(db.pool, "p3", "latest-check");
      expect(await fast.consensusHealthyStorages()).toEqual({ vs: ["s1", "s2"] });
    });

    it("does not let a partitioned Praefect declare nodes healthy on its own either", async () => {
      await reportNodes(db.pool, [failedNow("p1", "s1"), failedNow("p2", "s1"), seen("p3", "s1")]);
      expect(await new NodeStatusStore(db.pool, "p3", "latest-check").consensusHealthyStorages()).toEqual({});
    });

    it("still ignores sightings older than 10 s", async () => {
      await reportNodes(db.pool, [
        { praefect: "p1", virtualStorage: "vs", storage: "s1", contactedSecondsAgo: 30, seenActiveSecondsAgo: 30 },
        seen("p1", "s2"),
      ]);
      expect(await new NodeStatusStore(db.pool, "p1", "latest-check").consensusHealthyStorages()).toEqual({
        vs: ["s2"],
      });
    });
  });
});
