// A replication job taken by a Praefect that is then SIGKILLed stays `in_progress`, holding its
// replica lock, with a heartbeat nobody refreshes any more. Another Praefect's stale-job sweep must
// release it (back to `failed`, lock freed) so the job runs again and the replica converges.
//
// To catch the job in progress, the job's source node is paused (SIGSTOP) before its target comes
// back: the target's ReplicateRepository then waits on the source, and the job cannot finish.
// The sweep's threshold and period are brought down from upstream's 1 min / 30 s through the
// environment (see src/praefect/replication/stale-jobs.ts), which the Praefect processes inherit.
import { rmSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { PraefectInfoService } from "../../../src/gen/praefect_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { STALE_JOB_SWEEP_INTERVAL_ENV, STALE_JOB_THRESHOLD_ENV } from "../../../src/praefect/replication/stale-jobs.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";

const VS = "default";
const TOKEN = "praefect-stale-token";
const SOURCE = "gitaly-1";
const TARGET = "gitaly-2";
const STORAGES = [SOURCE, TARGET];
const tokenOf = (storage: string) => `node-token-${storage}`;

interface QueueRow {
  id: string;
  state: string;
  attempt: number;
  job_locks: number;
  acquired: boolean;
}

describe("replication jobs left in progress by a killed Praefect", () => {
  const gitalys = new Map<string, GitalyProcess>();
  const homes = new Map<string, { dir: string; port: number }>();
  const praefects: PraefectProcess[] = [];
  const paused = new Set<number>();
  let db: TestDatabase;

  const dbConfig = () => {
    const pg = inject("postgres");
    return { host: pg.host, port: pg.port, user: pg.user, password: pg.password, name: db.name };
  };
  const nodes = () =>
    STORAGES.map((storage) => ({ storage, address: `127.0.0.1:${homes.get(storage)?.port}`, token: tokenOf(storage) }));
  const gitalyOf = (storage: string) => gitalys.get(storage) as GitalyProcess;

  async function startNode(storage: string): Promise<GitalyProcess> {
    const home = homes.get(storage);
    const g = await startGitaly({ storages: [storage], token: tokenOf(storage), ...(home ?? {}) });
    if (!home) homes.set(storage, { dir: g.dir, port: Number(g.address.split(":")[1]) });
    gitalys.set(storage, g);
    return g;
  }

  async function startRouter(): Promise<PraefectProcess> {
    const p = await startPraefect({ db: dbConfig(), gitalys: nodes(), token: TOKEN, virtualStorage: VS });
    praefects.push(p);
    return p;
  }

  function signal(g: GitalyProcess, sig: "SIGSTOP" | "SIGCONT"): void {
    process.kill(g.proc.pid, sig);
    if (sig === "SIGSTOP") paused.add(g.proc.pid);
    else paused.delete(g.proc.pid);
  }

  async function healthyStorages(): Promise<string[]> {
    const { rows } = await db.pool.query<{ storage: string }>(
      "SELECT storage FROM healthy_storages WHERE virtual_storage = $1 ORDER BY storage",
      [VS],
    );
    return rows.map((r) => r.storage);
  }

  /** The jobs targeting `storage` for `relativePath`, with their job locks and replica lock. */
  async function jobsFor(relativePath: string, storage: string): Promise<QueueRow[]> {
    const { rows } = await db.pool.query<QueueRow>(
      `SELECT queue.id, queue.state, queue.attempt,
              (SELECT count(*)::int FROM replication_queue_job_lock AS held WHERE held.job_id = queue.id) AS job_locks,
              lock.acquired
       FROM replication_queue AS queue JOIN replication_queue_lock AS lock ON lock.id = queue.lock_id
       WHERE queue.job ->> 'relative_path' = $1 AND queue.job ->> 'target_node_storage' = $2
       ORDER BY queue.id`,
      [relativePath, storage],
    );
    return rows;
  }

  beforeAll(async () => {
    process.env[STALE_JOB_THRESHOLD_ENV] = "2s";
    process.env[STALE_JOB_SWEEP_INTERVAL_ENV] = "250ms";
    for (const storage of STORAGES) await startNode(storage);
    db = await freshDatabase("praefect_stale_jobs");
  });

  afterAll(async () => {
    for (const pid of paused) process.kill(pid, "SIGCONT");
    for (const p of praefects) await p.stop().catch(() => undefined);
    await db?.drop();
    const dirs = [...homes.values()].map((h) => h.dir);
    await Promise.all([...gitalys.values()].map((g) => g.stop()));
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    delete process.env[STALE_JOB_THRESHOLD_ENV];
    delete process.env[STALE_JOB_SWEEP_INTERVAL_ENV];
  });

  it("are released by another Praefect's stale-job sweep, run again and completed", async () => {
    const path = "stale/left-behind.git";
    const first = await startRouter();
    await waitFor("both storages healthy", async () => (await healthyStorages()).join() === STORAGES.join(), {
      timeoutMs: 20_000,
    });

    // The target is down when the repository is created: Praefect queues a job to replicate it there.
    await gitalyOf(TARGET).proc.stop("SIGKILL");
    await waitFor("the target to be seen down", async () => (await healthyStorages()).join() === SOURCE, {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    const client = createClient(RepositoryService, first.channel());
    await client.createRepository({ repository: { storageName: VS, relativePath: path } });
    const queued = await jobsFor(path, TARGET);
    expect(queued.map((j) => j.state)).toEqual(["ready"]);
    const jobId = (queued[0] as QueueRow).id;

    // The source pauses, the target returns: the first Praefect takes the job, which then waits on the source.
    signal(gitalyOf(SOURCE), "SIGSTOP");
    await startNode(TARGET);
    await waitFor(
      "the first Praefect to take the job",
      async () => (await jobsFor(path, TARGET)).some((j) => j.id === jobId && j.state === "in_progress"),
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    await first.kill();

    const left = (await jobsFor(path, TARGET)).find((j) => j.id === jobId);
    expect(left).toMatchObject({ state: "in_progress", job_locks: 1, acquired: true, attempt: 2 });

    signal(gitalyOf(SOURCE), "SIGCONT");
    const second = await startRouter();

    // The second Praefect releases the abandoned job and runs it to completion (completed jobs are deleted).
    await waitFor(
      "the abandoned job to be completed by the second Praefect",
      async () => !(await jobsFor(path, TARGET)).some((j) => j.id === jobId),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const events = second
      .log()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { msg?: string; event_id?: number; new_state?: string; count?: number });
    expect(events.some((e) => e.msg === "stale replication jobs deleted" && (e.count ?? 0) >= 1)).toBe(true);
    expect(
      events.some(
        (e) =>
          e.msg === "replication job processing finished" &&
          e.event_id === Number(jobId) &&
          e.new_state === "completed",
      ),
    ).toBe(true);
    expect(await jobsFor(path, TARGET)).toEqual([]);
    const { rows: locks } = await db.pool.query("SELECT * FROM replication_queue_job_lock");
    expect(locks).toEqual([]);

    // The replica converged: on the target's disk, at the repository's generation.
    const info = createClient(PraefectInfoService, second.channel());
    const meta = await info.getRepositoryMetadata({
      query: { case: "path", value: { virtualStorage: VS, relativePath: path } },
    });
    const replica = meta.replicas.find((r) => r.storage === TARGET);
    expect(replica?.generation).toBe(meta.generation);
    const onTarget = createClient(RepositoryService, gitalyOf(TARGET).channel(tokenOf(TARGET)));
    const exists = await onTarget.repositoryExists(
      { repository: { storageName: TARGET, relativePath: meta.replicaPath } },
      { deadline: Date.now() + 10_000 },
    );
    expect(exists.exists).toBe(true);
  }, 120_000);
});
