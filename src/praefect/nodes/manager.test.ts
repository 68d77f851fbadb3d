import pg from "pg";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type GitalyProcess, startGitaly } from "../../../test/harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import { freePort, waitFor } from "../../shared/net.js";
import { loadPraefectConfig } from "../config/load.js";
import type { PraefectConfig } from "../config/schema.js";
import { migrate } from "../datastore/migrate.js";
import { reportNodes } from "../datastore/testing.js";
import { ErrorTracker } from "./error-tracker.js";
import { createNodeManager, type PraefectNodeManager } from "./manager.js";
import { praefectNameFor } from "./praefect-name.js";

const logger = pino({ level: "silent" });

function configFor(nodes: { storage: string; address: string; token: string }[], extra = ""): PraefectConfig {
  const nodeToml = nodes
    .map((n) => `[[virtual_storage.node]]\nstorage = "${n.storage}"\naddress = "${n.address}"\ntoken = "${n.token}"\n`)
    .join("");
  return loadPraefectConfig(
    `listen_addr = "127.0.0.1:2305"\n${extra}\n[[virtual_storage]]\nname = "default"\n${nodeToml}`,
  ).config;
}

describe("praefectNameFor", () => {
  test("is <hostname>:<listen_addr>, else <hostname>:<socket_path>", () => {
    expect(praefectNameFor({ listen_addr: "0.0.0.0:2305", socket_path: "/s" }, "host-a")).toBe("host-a:0.0.0.0:2305");
    expect(praefectNameFor({ listen_addr: "", socket_path: "/run/praefect.sock" }, "host-a")).toBe(
      "host-a:/run/praefect.sock",
    );
  });
});

describe("ErrorTracker", () => {
  test("trips at the threshold inside the window and recovers when the errors age out", () => {
    let now = 1_000_000;
    const tracker = new ErrorTracker({ windowMs: 10_000, read: 3, write: 2 }, () => now);
    tracker.record("a", "read");
    tracker.record("a", "read");
    expect(tracker.thresholdReached("a")).toBeNull();
    tracker.record("a", "read");
    expect(tracker.thresholdReached("a")).toBe("read");
    expect(tracker.thresholdReached("b")).toBeNull();
    now += 5_000;
    tracker.record("a", "write");
    now += 5_001;
    // The three reads are now older than the window; the one write is not enough.
    expect(tracker.thresholdReached("a")).toBeNull();
    tracker.record("a", "write");
    expect(tracker.thresholdReached("a")).toBe("write");
    now += 20_000;
    expect(tracker.thresholdReached("a")).toBeNull();
    expect(tracker.empty).toBe(true);
  });

  test("errors spread wider than the window never trip it", () => {
    let now = 0;
    const tracker = new ErrorTracker({ windowMs: 1_000, read: 2, write: 2 }, () => now);
    for (let i = 0; i < 10; i++) {
      tracker.record("a", "read");
      now += 1_500;
      expect(tracker.thresholdReached("a")).toBeNull();
    }
  });
});

describe("createNodeManager against real Gitaly nodes", () => {
  let db: TestDatabase;
  let gitaly1: GitalyProcess;
  let gitaly2: GitalyProcess;
  let config: PraefectConfig;
  const managers: PraefectNodeManager[] = [];

  const manage = (m: PraefectNodeManager) => {
    managers.push(m);
    return m;
  };

  beforeAll(async () => {
    db = await freshDatabase("praefect_nodes");
    await migrate(db.pool);
    [gitaly1, gitaly2] = await Promise.all([
      startGitaly({ storages: ["gitaly-1"], token: "token-1" }),
      startGitaly({ storages: ["gitaly-2"], token: "token-2" }),
    ]);
    config = configFor([
      { storage: "gitaly-1", address: `tcp://${gitaly1.address}`, token: "token-1" },
      { storage: "gitaly-2", address: `tcp://${gitaly2.address}`, token: "token-2" },
    ]);
  });

  afterAll(async () => {
    for (const m of managers) await m.stop();
    await Promise.all([gitaly1?.stop(), gitaly2?.stop()]);
    await db?.drop();
  });

  test("sees both nodes healthy after start, records them and reads the consensus back", async () => {
    const nodes = manage(createNodeManager({ config, db: db.pool, praefectName: "praefect-a", logger }));
    await nodes.start();
    expect(nodes.virtualStorages()).toEqual(["default"]);
    expect(nodes.nodes("default").map((n) => n.storage)).toEqual(["gitaly-1", "gitaly-2"]);
    expect([...nodes.locallyHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    expect([...nodes.consensusHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    expect(nodes.healthyNodes()).toEqual({ default: expect.arrayContaining(["gitaly-1", "gitaly-2"]) });
    const { rows } = await db.pool.query(
      "SELECT node_name, last_seen_active_at IS NOT NULL AS seen FROM node_status WHERE praefect_name = 'praefect-a' ORDER BY node_name",
    );
    expect(rows).toEqual([
      { node_name: "gitaly-1", seen: true },
      { node_name: "gitaly-2", seen: true },
    ]);
    await nodes.stop();
  });

  test("the node channels sign calls with each node's own token", async () => {
    const nodes = manage(createNodeManager({ config, db: db.pool, praefectName: "praefect-tokens", logger }));
    const node = nodes.node("default", "gitaly-2");
    expect(node?.token).toBe("token-2");
    if (!node) throw new Error("no node");
    const repo = createClient(RepositoryService, node.channel);
    const answer = await repo.repositoryExists({ repository: { storageName: "gitaly-2", relativePath: "nope.git" } });
    expect(answer.exists).toBe(false);
    // A channel with the other node's token is refused, so the token above did the work.
    const wrong = configFor([{ storage: "gitaly-2", address: `tcp://${gitaly2.address}`, token: "token-1" }]);
    const other = manage(createNodeManager({ config: wrong, db: db.pool, praefectName: "praefect-wrong", logger }));
    const wrongNode = other.node("default", "gitaly-2");
    if (!wrongNode) throw new Error("no node");
    await expect(
      createClient(RepositoryService, wrongNode.channel).repositoryExists({
        repository: { storageName: "gitaly-2", relativePath: "nope.git" },
      }),
    ).rejects.toMatchObject({ code: 7 });
    await other.stop();
    await nodes.stop();
  });

  test("dials the backchannel lazily and reuses it", async () => {
    const nodes = manage(createNodeManager({ config, db: db.pool, praefectName: "praefect-bc", logger }));
    const node = nodes.node("default", "gitaly-1");
    if (!node) throw new Error("no node");
    const first = await node.backchannel();
    expect(await node.backchannel()).toBe(first);
    await first.close();
    const second = await node.backchannel();
    expect(second).not.toBe(first);
    expect(second.closed).toBe(false);
    await nodes.stop();
  });

  test("the consensus comes from the database, not from the local view", async () => {
    const nodes = manage(createNodeManager({ config, db: db.pool, praefectName: "praefect-c", logger }));
    // Two other Praefects, active right now, both see gitaly-2 down: two of three votes are missing.
    await reportNodes(
      db.pool,
      ["praefect-x", "praefect-y"].flatMap((praefect) => [
        { praefect, virtualStorage: "default", storage: "gitaly-1", contactedSecondsAgo: 0, seenActiveSecondsAgo: 0 },
        {
          praefect,
          virtualStorage: "default",
          storage: "gitaly-2",
          contactedSecondsAgo: 0,
          seenActiveSecondsAgo: null,
        },
      ]),
    );
    await db.pool.query(
      "DELETE FROM node_status WHERE praefect_name NOT IN ('praefect-c', 'praefect-x', 'praefect-y')",
    );
    await nodes.start();
    expect([...nodes.locallyHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    expect([...nodes.consensusHealthy("default")]).toEqual(["gitaly-1"]);
    await nodes.stop();
    await db.pool.query("DELETE FROM node_status WHERE praefect_name IN ('praefect-x', 'praefect-y')");
  });

  test("error-based detection takes a node out of the local view at the threshold", async () => {
    let now = 5_000_000;
    const withThresholds = configFor(
      [
        { storage: "gitaly-1", address: `tcp://${gitaly1.address}`, token: "token-1" },
        { storage: "gitaly-2", address: `tcp://${gitaly2.address}`, token: "token-2" },
      ],
      '[failover]\nerror_threshold_window = "1m"\nread_error_threshold_count = 2\nwrite_error_threshold_count = 3\n',
    );
    const nodes = manage(
      createNodeManager({
        config: withThresholds,
        db: db.pool,
        praefectName: "praefect-errors",
        logger,
        now: () => now,
      }),
    );
    await nodes.start();
    expect(nodes.locallyHealthy("default").has("gitaly-2")).toBe(true);
    nodes.reportError("default", "gitaly-2", "read");
    expect(nodes.locallyHealthy("default").has("gitaly-2")).toBe(true);
    nodes.reportError("default", "gitaly-2", "read");
    expect([...nodes.locallyHealthy("default")]).toEqual(["gitaly-1"]);
    // The circuit breaker also reports the node unhealthy to the database on the next round.
    await nodes.checkNow();
    const { rows } = await db.pool.query<{ node_name: string; healthy: boolean }>(
      `SELECT node_name, last_seen_active_at >= last_contact_attempt_at AS healthy
       FROM node_status WHERE praefect_name = 'praefect-errors' ORDER BY node_name`,
    );
    expect(rows).toEqual([
      { node_name: "gitaly-1", healthy: true },
      { node_name: "gitaly-2", healthy: false },
    ]);
    // Once the errors are older than the window, the next health check brings the node back.
    now += 61_000;
    await nodes.checkNow();
    expect([...nodes.locallyHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    await nodes.stop();
  });

  test("without thresholds configured reported errors change nothing", async () => {
    const nodes = manage(createNodeManager({ config, db: db.pool, praefectName: "praefect-noerr", logger }));
    await nodes.start();
    for (let i = 0; i < 100; i++) nodes.reportError("default", "gitaly-1", "write");
    expect([...nodes.locallyHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    await nodes.stop();
  });

  test("keeps checking and routing on the local view when the database is unreachable", async () => {
    const deadDb = new pg.Pool({ host: "127.0.0.1", port: await freePort(), user: "x", database: "x" });
    deadDb.on("error", () => undefined);
    const nodes = manage(createNodeManager({ config, db: deadDb, praefectName: "praefect-nodb", logger }));
    await nodes.start();
    expect(nodes.databaseReachable).toBe(false);
    expect([...nodes.locallyHealthy("default")].sort()).toEqual(["gitaly-1", "gitaly-2"]);
    expect(nodes.consensusHealthy("default").size).toBe(0);
    await nodes.checkNow();
    expect(nodes.databaseReachable).toBe(false);
    await nodes.stop();
    await deadDb.end();
  });

  // Last: it kills a node.
  test("a killed node drops out of the local view within a few ticks", async () => {
    const nodes = manage(
      createNodeManager({ config, db: db.pool, praefectName: "praefect-kill", logger, healthCheckIntervalMs: 200 }),
    );
    await nodes.start();
    expect(nodes.locallyHealthy("default").has("gitaly-2")).toBe(true);
    await gitaly2.proc.stop("SIGKILL");
    await waitFor("gitaly-2 to be seen unhealthy", async () => !nodes.locallyHealthy("default").has("gitaly-2"), {
      timeoutMs: 20_000,
    });
    expect([...nodes.locallyHealthy("default")]).toEqual(["gitaly-1"]);
    await nodes.checkNow();
    const { rows } = await db.pool.query<{ healthy: boolean }>(
      `SELECT last_seen_active_at >= last_contact_attempt_at AS healthy
       FROM node_status WHERE praefect_name = 'praefect-kill' AND node_name = 'gitaly-2'`,
    );
    expect(rows).toEqual([{ healthy: false }]);
    await nodes.stop();
  });
});
