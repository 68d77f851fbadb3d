import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { createStandardRepository } from "../../../test/harness/git-fixtures.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../../test/harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import { waitFor } from "../../shared/net.js";
import { loadPraefectConfig } from "../config/load.js";
import { type PraefectConfig, storageNames } from "../config/schema.js";
import { migrate } from "../datastore/migrate.js";
import { type ReplicationJob, ReplicationQueue } from "../datastore/queue.js";
import { deriveReplicaPath } from "../datastore/replica-path.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { createNodeManager, type PraefectNodeManager } from "../nodes/manager.js";
import type { NodeManager } from "../nodes/types.js";
import { startVerifier } from "./verifier.js";
import { type ReplicationManager, startReplication } from "./workers.js";

/** A pino logger whose JSON lines the test can read. */
function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) lines.push(JSON.parse(line));
      callback();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

const FAST = { backoffStartMs: 20, backoffMaxMs: 100, heartbeatMs: 50, staleSweepMs: 50 };

describe("replication against real Gitaly nodes", () => {
  let db: TestDatabase;
  let gitaly1: GitalyProcess;
  let gitaly2: GitalyProcess;
  let config: PraefectConfig;
  let nodes: PraefectNodeManager;
  let store: RepositoryStore;
  let queue: ReplicationQueue;
  let running: ReplicationManager | null = null;
  let nextPath = 0;

  const storagePath = (g: GitalyProcess) => g.storages[0]?.path as string;

  /** A repository whose only replica is on gitaly-1 (at generation `generation`), assigned to both. */
  async function repositoryOnGitaly1(generation = 0) {
    const relativePath = `group/project-${nextPath++}.git`;
    const repositoryId = await store.reserveRepositoryId("default", relativePath);
    const replicaPath = deriveReplicaPath(repositoryId);
    const diskPath = join(storagePath(gitaly1), replicaPath);
    mkdirSync(dirname(diskPath), { recursive: true });
    createStandardRepository(diskPath);
    await store.createRepository({
      repositoryId,
      virtualStorage: "default",
      relativePath,
      replicaPath,
      primary: "gitaly-1",
      outdatedSecondaries: ["gitaly-2"],
    });
    for (let g = 0; g < generation; g++) await store.incrementGeneration(repositoryId, "gitaly-1", []);
    return { repositoryId, relativePath, replicaPath };
  }

  function job(
    repo: { repositoryId: number; relativePath: string; replicaPath: string },
    change: ReplicationJob["change"],
    target: string,
    source = "",
  ): ReplicationJob {
    return {
      repositoryId: repo.repositoryId,
      replicaPath: repo.replicaPath,
      relativePath: repo.relativePath,
      change,
      targetNodeStorage: target,
      sourceNodeStorage: source,
      virtualStorage: "default",
      params: null,
    };
  }

  async function checksum(g: GitalyProcess, storage: string, relativePath: string): Promise<string> {
    const client = createClient(RepositoryService, g.channel());
    return (await client.calculateChecksum({ repository: { storageName: storage, relativePath } })).checksum;
  }

  async function exists(g: GitalyProcess, storage: string, relativePath: string): Promise<boolean> {
    const client = createClient(RepositoryService, g.channel());
    return (await client.repositoryExists({ repository: { storageName: storage, relativePath } })).exists;
  }

  async function queuedJobs(): Promise<{ id: string; state: string; change: string }[]> {
    const { rows } = await db.pool.query(
      "SELECT id, state, job ->> 'change' AS change FROM replication_queue ORDER BY id",
    );
    return rows;
  }

  function start(options: { nodes?: NodeManager; logger?: pino.Logger; registry?: Registry } = {}) {
    running = startReplication({
      config,
      nodes: options.nodes ?? nodes,
      db: db.pool,
      logger: options.logger ?? pino({ level: "silent" }),
      registry: options.registry ?? new Registry(),
      intervals: FAST,
    });
    return running;
  }

  beforeAll(async () => {
    db = await freshDatabase("praefect_replication");
    await migrate(db.pool);
    [gitaly1, gitaly2] = await Promise.all([
      startGitaly({ storages: ["gitaly-1"], token: "token-1" }),
      startGitaly({ storages: ["gitaly-2"], token: "token-2" }),
    ]);
    config = loadPraefectConfig(`listen_addr = "127.0.0.1:2305"
[reconciliation]
scheduling_interval = "0"
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://${gitaly1.address}"
token = "token-1"
[[virtual_storage.node]]
storage = "gitaly-2"
address = "tcp://${gitaly2.address}"
token = "token-2"
`).config;
    nodes = createNodeManager({
      config,
      db: db.pool,
      praefectName: "praefect-replication",
      logger: pino({ level: "silent" }),
    });
    await nodes.start();
    store = new RepositoryStore(db.pool, storageNames(config));
    queue = new ReplicationQueue(db.pool);
  });

  afterEach(async () => {
    await running?.stop();
    running = null;
    await db.pool.query(
      "DELETE FROM replication_queue_job_lock; DELETE FROM replication_queue; DELETE FROM replication_queue_lock",
    );
  });

  afterAll(async () => {
    await nodes?.stop();
    await Promise.all([gitaly1?.stop(), gitaly2?.stop()]);
    await db?.drop();
  });

  test("an update job replicates the repository to the target and records the source's generation", async () => {
    const repo = await repositoryOnGitaly1(2);
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"), { correlation_id: "test-update" });
    const registry = new Registry();
    start({ registry });
    await waitFor("the job to finish", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });

    expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(2);
    const source = await checksum(gitaly1, "gitaly-1", repo.replicaPath);
    expect(source).toMatch(/^[0-9a-f]{40}$/);
    expect(source).not.toBe("0".repeat(40));
    expect(await checksum(gitaly2, "gitaly-2", repo.replicaPath)).toBe(source);
    // Only the replica path is used on disk: nothing appears under the virtual relative path.
    expect(await exists(gitaly2, "gitaly-2", repo.relativePath)).toBe(false);
    const metrics = await registry.metrics();
    expect(metricValue(metrics, "gitaly_praefect_replication_latency_count", { type: "update" })).toBe(1);
    expect(metricValue(metrics, "gitaly_praefect_replication_delay_count", { type: "update" })).toBe(1);
    expect(metrics).toContain(
      'gitaly_praefect_replication_jobs{virtual_storage="default",gitaly_storage="gitaly-2",change_type="update"} 0',
    );
  });

  test("a job whose target already has the generation is completed without replicating", async () => {
    const repo = await repositoryOnGitaly1(1);
    await store.setGeneration(repo.repositoryId, "gitaly-2", repo.relativePath, 1);
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"));
    start();
    await waitFor("the job to finish", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });
    // Nothing was copied: the target still has no repository on disk.
    expect(await exists(gitaly2, "gitaly-2", repo.replicaPath)).toBe(false);
    expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(1);
  });

  test("a source without the repository loses its replica record", async () => {
    const repo = await repositoryOnGitaly1(0);
    // gitaly-2 claims a replica it does not have, and is made the source.
    await store.setGeneration(repo.repositoryId, "gitaly-2", repo.relativePath, 0);
    await queue.enqueue(job(repo, "update", "gitaly-1", "gitaly-2"));
    await db.pool.query(
      "UPDATE storage_repositories SET generation = -1 WHERE repository_id = $1 AND storage = 'gitaly-1'",
      [repo.repositoryId],
    );
    start();
    await waitFor("the job to finish", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });
    expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(-1);
  });

  test("a delete_replica job removes the replica from disk and its record", async () => {
    const repo = await repositoryOnGitaly1(0);
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"));
    start();
    await waitFor("the replica on gitaly-2", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });
    expect(await exists(gitaly2, "gitaly-2", repo.replicaPath)).toBe(true);

    await queue.enqueue(job(repo, "delete_replica", "gitaly-2"));
    await waitFor("the delete_replica job to finish", async () => (await queuedJobs()).length === 0, {
      timeoutMs: 30_000,
    });
    expect(await exists(gitaly2, "gitaly-2", repo.replicaPath)).toBe(false);
    expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(-1);
    // The source is untouched.
    expect(await exists(gitaly1, "gitaly-1", repo.replicaPath)).toBe(true);
  });

  test("a failing job is retried while attempts remain, then dead and dropped", async () => {
    const repo = await repositoryOnGitaly1(0);
    const event = await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-404"));
    expect(event.attempt).toBe(3);
    const { logger, lines } = capturingLogger();
    start({ logger });
    await waitFor("the job to be dropped", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });
    const finished = lines.filter((l) => l.msg === "replication job processing finished" && l.event_id === event.id);
    expect(finished.map((l) => l.new_state)).toEqual(["failed", "failed", "dead"]);
    expect(String(finished[0]?.err)).toContain('no connection to source node "default"/"gitaly-404"');
    expect(await exists(gitaly2, "gitaly-2", repo.replicaPath)).toBe(false);
  });

  test("jobs left in progress by a dead Praefect are picked up again", async () => {
    const repo = await repositoryOnGitaly1(1);
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"));
    // Another Praefect took the job and died: its job lock stopped being refreshed long ago.
    const [taken] = await queue.dequeue("default", "gitaly-2", 10);
    expect(taken?.state).toBe("in_progress");
    await db.pool.query("UPDATE replication_queue_job_lock SET triggered_at = triggered_at - interval '10 minutes'");
    start();
    await waitFor("the abandoned job to be done", async () => (await queuedJobs()).length === 0, { timeoutMs: 30_000 });
    expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(1);
    expect(await checksum(gitaly2, "gitaly-2", repo.replicaPath)).toBe(
      await checksum(gitaly1, "gitaly-1", repo.replicaPath),
    );
  });

  test("targets that are not locally healthy are skipped", async () => {
    const repo = await repositoryOnGitaly1(0);
    const asked: string[] = [];
    class RecordingSet extends Set<string> {
      override has(storage: string): boolean {
        asked.push(storage);
        return super.has(storage);
      }
    }
    const gitaly2Down: NodeManager = {
      ...nodes,
      locallyHealthy: (vs) => new RecordingSet([...nodes.locallyHealthy(vs)].filter((s) => s !== "gitaly-2")),
    };
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"));
    start({ nodes: gitaly2Down });
    await waitFor("gitaly-2 to be considered twice", async () => asked.filter((s) => s === "gitaly-2").length >= 2, {
      timeoutMs: 30_000,
    });
    expect(await queuedJobs()).toEqual([expect.objectContaining({ state: "ready", change: "update" })]);
  });

  test("the reconciler queues an update for an outdated assigned replica, and the workers run it", async () => {
    const repo = await repositoryOnGitaly1(3);
    const registry = new Registry();
    const manager = start({ registry });
    expect(await manager.reconcileNow()).toBeGreaterThanOrEqual(1);
    await waitFor(
      "the reconciled replica",
      async () => (await store.getGeneration(repo.repositoryId, "gitaly-2")) === 3,
      { timeoutMs: 30_000 },
    );
    expect(await checksum(gitaly2, "gitaly-2", repo.replicaPath)).toBe(
      await checksum(gitaly1, "gitaly-1", repo.replicaPath),
    );
    expect(metricValue(await registry.metrics(), "gitaly_praefect_reconciliation_scheduling_seconds_count")).toBe(1);
  });

  test("the database gauges report waiting jobs and unavailable repositories", async () => {
    const repo = await repositoryOnGitaly1(0);
    await queue.enqueue(job(repo, "update", "gitaly-2", "gitaly-1"));
    const gitaly2Down: NodeManager = {
      ...nodes,
      locallyHealthy: (vs) => new Set([...nodes.locallyHealthy(vs)].filter((s) => s !== "gitaly-2")),
    };
    const registry = new Registry();
    start({ nodes: gitaly2Down, registry });
    const metrics = await registry.metrics();
    expect(
      metricValue(metrics, "gitaly_praefect_replication_queue_depth", {
        virtual_storage: "default",
        target_node: "gitaly-2",
        state: "ready",
      }),
    ).toBe(1);
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM repositories
       WHERE NOT EXISTS (SELECT FROM valid_primaries AS vp WHERE vp.repository_id = repositories.repository_id)`,
    );
    expect(metricValue(metrics, "gitaly_praefect_unavailable_repositories", { virtual_storage: "default" })).toBe(
      rows[0]?.n,
    );
  });

  test("the verifier drops the record of a replica its node does not have", async () => {
    const repo = await repositoryOnGitaly1(0);
    await store.setGeneration(repo.repositoryId, "gitaly-2", repo.relativePath, 0);
    const verifier = startVerifier({
      config,
      nodes,
      db: db.pool,
      logger: pino({ level: "silent" }),
      registry: new Registry(),
      intervalMs: 60_000,
      leaseReleaseIntervalMs: 60_000,
    });
    try {
      const results = await verifier.runOnce();
      expect(results).toEqual(
        expect.arrayContaining([
          { repositoryId: repo.repositoryId, storage: "gitaly-1", succeeded: true, exists: true },
          { repositoryId: repo.repositoryId, storage: "gitaly-2", succeeded: true, exists: false },
        ]),
      );
      expect(await store.getGeneration(repo.repositoryId, "gitaly-2")).toBe(-1);
      expect(await store.getGeneration(repo.repositoryId, "gitaly-1")).toBe(0);
    } finally {
      await verifier.stop();
    }
  });
});
