// A whole cluster of real processes: PostgreSQL, three Gitaly nodes, the Praefect program (one
// or two of them) and the HTTP gateway, driven with real git. Replication, health consensus,
// failover, dataloss and the recovery of replication jobs left behind by a killed Praefect are
// the programs' own doing here; the test only kills, restarts and observes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { PraefectInfoService } from "../../../src/gen/praefect_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { git } from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";
import { type GatewayProcess, gitClient, startGatewayProcess } from "../gateway-helpers.js";

const VS = "default";
const TOKEN = "praefect-cluster-token";
const STORAGES = ["gitaly-1", "gitaly-2", "gitaly-3"];
const tokenOf = (storage: string) => `node-token-${storage}`;

interface Metadata {
  primary: string;
  generation: number;
  replicaPath: string;
  replicas: { storage: string; generation: number; healthy: boolean; validPrimary: boolean }[];
}

describe("a Praefect cluster of real processes", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-cluster-"));
  const gitalys = new Map<string, GitalyProcess>();
  /** Where each node lives, so a killed node can be restarted on its own data and address. */
  const homes = new Map<string, { dir: string; port: number }>();
  let db: TestDatabase;
  let praefect: PraefectProcess;
  let gateway: GatewayProcess;
  const extra: { stop(): Promise<void> }[] = [];

  const gitalyOf = (storage: string) => gitalys.get(storage) as GitalyProcess;
  const dbConfig = () => {
    const pg = inject("postgres");
    return { host: pg.host, port: pg.port, user: pg.user, password: pg.password, name: db.name };
  };
  const nodes = () =>
    STORAGES.map((storage) => ({ storage, address: `127.0.0.1:${homes.get(storage)?.port}`, token: tokenOf(storage) }));

  async function startNode(storage: string): Promise<GitalyProcess> {
    const home = homes.get(storage);
    const g = await startGitaly({ storages: [storage], token: tokenOf(storage), ...(home ?? {}) });
    if (!home) homes.set(storage, { dir: g.dir, port: Number(g.address.split(":")[1]) });
    gitalys.set(storage, g);
    return g;
  }

  async function killNode(storage: string): Promise<void> {
    await gitalyOf(storage).proc.stop("SIGKILL");
  }

  async function metadata(relativePath: string, via: PraefectProcess = praefect): Promise<Metadata> {
    const info = createClient(PraefectInfoService, via.channel());
    const res = await info.getRepositoryMetadata({
      query: { case: "path", value: { virtualStorage: VS, relativePath } },
    });
    return {
      primary: res.primary,
      generation: Number(res.generation),
      replicaPath: res.replicaPath,
      replicas: res.replicas.map((r) => ({
        storage: r.storage,
        generation: Number(r.generation),
        healthy: r.healthy,
        validPrimary: r.validPrimary,
      })),
    };
  }

  /** CalculateChecksum on each node directly, on the replica path Praefect reports. */
  async function checksums(relativePath: string): Promise<Record<string, string>> {
    const { replicaPath } = await metadata(relativePath);
    const out: Record<string, string> = {};
    for (const storage of STORAGES) {
      const client = createClient(RepositoryService, gitalyOf(storage).channel(tokenOf(storage)));
      const res = await client.calculateChecksum({ repository: { storageName: storage, relativePath: replicaPath } });
      out[storage] = res.checksum;
    }
    return out;
  }

  /** Waits until every replica holds the repository's generation and all checksums agree. */
  async function converged(relativePath: string, timeoutMs = 30_000): Promise<Record<string, string>> {
    let sums: Record<string, string> = {};
    await waitFor(
      `${relativePath} to reach all storages`,
      async () => {
        const meta = await metadata(relativePath);
        if (meta.replicas.length !== STORAGES.length) return false;
        if (!meta.replicas.every((r) => r.generation === meta.generation)) return false;
        sums = await checksums(relativePath);
        return new Set(Object.values(sums)).size === 1;
      },
      { timeoutMs, intervalMs: 100 },
    );
    return sums;
  }

  /** A local repository whose every push carries one new commit (on the empty tree). */
  function workingCopy(name: string): { dir: string; push(url: string): Promise<void> } {
    const dir = join(work, `${name}.git`);
    git(work, ["init", "--quiet", "--bare", dir]);
    const emptyTree = git(dir, ["hash-object", "-t", "tree", "-w", "--stdin"], "").trim();
    let parent: string | undefined;
    let n = 0;
    return {
      dir,
      async push(url: string) {
        n++;
        const args = [
          "-c",
          "user.name=T",
          "-c",
          "user.email=t@t.invalid",
          "commit-tree",
          emptyTree,
          "-m",
          `commit ${n}`,
          ...(parent ? ["-p", parent] : []),
        ];
        parent = git(dir, args).trim();
        git(dir, ["update-ref", "refs/heads/main", parent]);
        await gitClient(["push", "--quiet", url, "refs/heads/main:refs/heads/main"], { cwd: dir });
      },
    };
  }

  async function healthyStorages(): Promise<string[]> {
    const { rows } = await db.pool.query<{ storage: string }>(
      "SELECT storage FROM healthy_storages WHERE virtual_storage = $1 ORDER BY storage",
      [VS],
    );
    return rows.map((r) => r.storage);
  }

  beforeAll(async () => {
    for (const s of STORAGES) await startNode(s);
    db = await freshDatabase("praefect_cluster");
    praefect = await startPraefect({ db: dbConfig(), gitalys: nodes(), token: TOKEN, virtualStorage: VS });
    gateway = await startGatewayProcess({ upstream: `tcp://${praefect.address}`, token: TOKEN, createOnPush: true });
    await waitFor("all storages healthy", async () => (await healthyStorages()).length === 3, { timeoutMs: 20_000 });
  });

  afterAll(async () => {
    for (const e of extra) await e.stop().catch(() => undefined);
    await gateway?.stop();
    await praefect?.stop();
    await db?.drop();
    await Promise.all([...gitalys.values()].map((g) => g.stop()));
    rmSync(work, { recursive: true, force: true });
  });

  it("replicates a git push through the gateway to all three storages with equal checksums", async () => {
    const path = "cluster/pushed.git";
    const wc = workingCopy("pushed");
    await wc.push(`${gateway.url}/${path}`);
    const sums = await converged(path);
    expect(Object.keys(sums).sort()).toEqual(STORAGES);
    expect(Object.values(sums)[0]).toMatch(/^[0-9a-f]{40}$/);
    expect(Object.values(sums)[0]).not.toBe("0".repeat(40));

    const meta = await metadata(path);
    const shown = await praefect.cli(["metadata", "-virtual-storage", VS, "-relative-path", path]);
    expect(shown.code, shown.err).toBe(0);
    expect(shown.out).toContain(`Relative Path: "${path}"`);
    expect(shown.out).toContain(`Replica Path: "${meta.replicaPath}"`);
    expect(shown.out).toContain(`Primary: "${meta.primary}"`);
    for (const s of STORAGES) expect(shown.out).toContain(`- Storage: "${s}"`);
    expect(shown.out.match(/Generation: \d+, fully up to date/g)).toHaveLength(3);

    const clone = join(work, "pushed-clone.git");
    await gitClient(["clone", "--bare", "--quiet", `${gateway.url}/${path}`, clone]);
    expect(git(clone, ["rev-parse", "refs/heads/main"])).toBe(git(wc.dir, ["rev-parse", "refs/heads/main"]));
  });

  it("fails over when the primary Gitaly is killed while pushes go on, and the node catches up on return", async () => {
    const path = "cluster/failover.git";
    const url = `${gateway.url}/${path}`;
    const wc = workingCopy("failover");
    await wc.push(url);
    await converged(path);

    let paused = false;
    let stopped = false;
    const attempts: { start: number; end: number; ok: boolean; err?: string }[] = [];
    const loop = (async () => {
      const deadline = Date.now() + 90_000;
      while (!stopped && Date.now() < deadline) {
        const start = Date.now();
        if (!paused) {
          try {
            await wc.push(url);
            attempts.push({ start, end: Date.now(), ok: true });
          } catch (err) {
            attempts.push({ start, end: Date.now(), ok: false, err: (err as Error).message.slice(0, 300) });
          }
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 200 - (Date.now() - start))));
      }
    })();
    try {
      await waitFor("a few pushes", async () => attempts.filter((a) => a.ok).length >= 3, { timeoutMs: 30_000 });
      // Without reference transactions a secondary only has what replication copied; a primary
      // killed with writes not yet replicated leaves no up-to-date replica to fail over to (the
      // dataloss case, shown separately). So the kill comes at a moment the replicas are in sync.
      paused = true;
      await new Promise((r) => setTimeout(r, 300));
      await converged(path);
      const old = (await metadata(path)).primary;
      await killNode(old);
      const killedAt = Date.now();
      paused = false;

      await waitFor("a push to succeed after the kill", async () => attempts.some((a) => a.ok && a.start >= killedAt), {
        timeoutMs: 60_000,
        intervalMs: 50,
      });
      const first = attempts.find((a) => a.ok && a.start >= killedAt) as { end: number };
      const failoverMs = first.end - killedAt;
      const failed = attempts.filter((a) => !a.ok && a.start >= killedAt).length;
      console.log(
        `[cluster] failover: first successful push ${failoverMs} ms after SIGKILL of ${old} (${failed} pushes failed meanwhile)`,
      );

      const after = await metadata(path);
      expect(after.primary).not.toBe(old);
      expect(STORAGES).toContain(after.primary);
      stopped = true;
      await loop;

      // The killed node returns on its own data: the jobs queued for it drain and it converges.
      await startNode(old);
      const sums = await converged(path, 60_000);
      expect(new Set(Object.values(sums)).size).toBe(1);
      const { rows } = await db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM replication_queue
         WHERE job ->> 'relative_path' = $1 AND job ->> 'target_node_storage' = $2 AND state IN ('ready', 'in_progress')`,
        [path, old],
      );
      expect(rows[0]?.n).toBe(0);
    } finally {
      stopped = true;
      await loop;
    }
  });

  it("lists a repository whose only up-to-date replica is down as lost, and takes writes after accept-dataloss", async () => {
    const path = "cluster/dataloss.git";
    const url = `${gateway.url}/${path}`;
    const wc = workingCopy("dataloss");
    await wc.push(url);
    await converged(path);
    const { primary } = await metadata(path);
    const others = STORAGES.filter((s) => s !== primary);

    // The secondaries go down; a write lands on the primary alone, then the primary goes down too.
    for (const s of others) await killNode(s);
    // Until the cluster sees them down, reads (the push's ref advertisement) may still pick them.
    await waitFor("the secondaries to be seen down", async () => (await healthyStorages()).join() === primary, {
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await wc.push(url);
    const written = await metadata(path);
    expect(written.replicas.find((r) => r.storage === primary)?.generation).toBe(written.generation);
    await killNode(primary);
    for (const s of others) await startNode(s);
    await waitFor(
      "the secondaries back and the primary gone",
      async () => {
        const healthy = await healthyStorages();
        return !healthy.includes(primary) && others.every((s) => healthy.includes(s));
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );

    const lost = await praefect.cli(["dataloss", "-virtual-storage", VS]);
    expect(lost.code, lost.err).toBe(0);
    expect(lost.out).toContain(`    ${path} (unavailable):\n`);
    expect(lost.out).toContain(`      Primary: ${primary}\n`);
    expect(lost.out).toMatch(new RegExp(`In-Sync Storages:\\n        ${primary}, assigned host, unhealthy\\n`));
    for (const s of others) expect(lost.out).toContain(`        ${s} is behind by 1 change or less, assigned host\n`);
    await expect(wc.push(url)).rejects.toThrow();

    const authoritative = others[0] as string;
    const accepted = await praefect.cli([
      "accept-dataloss",
      "-virtual-storage",
      VS,
      "-relative-path",
      path,
      "-authoritative-storage",
      authoritative,
    ]);
    expect(accepted, accepted.err).toMatchObject({ code: 0 });
    await waitFor(
      "writes to resume",
      async () => {
        try {
          await wc.push(url);
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const after = await metadata(path);
    expect(others).toContain(after.primary);
    const again = await praefect.cli(["dataloss", "-virtual-storage", VS]);
    expect(again.out).not.toContain(`${path} (unavailable)`);

    // The old primary returns and is brought in line with the accepted history.
    await startNode(primary);
    await converged(path, 60_000);
  });

  it("shares node health between two Praefects through the database; stopping one leaves the other's clients alone", async () => {
    const second = await startPraefect({ db: dbConfig(), gitalys: nodes(), token: TOKEN, virtualStorage: VS });
    extra.push(second);
    const path = "cluster/two-praefects.git";
    const wc = workingCopy("two-praefects");
    await wc.push(`${gateway.url}/${path}`);
    await converged(path);

    // Each Praefect records what it sees; the consensus view is the same through either one.
    await waitFor(
      "both Praefects to report every node",
      async () => {
        const { rows } = await db.pool.query<{ praefect_name: string; n: number }>(
          `SELECT praefect_name, count(*)::int AS n FROM node_status
         WHERE shard_name = $1 AND last_seen_active_at >= now() - interval '10 seconds' GROUP BY praefect_name`,
          [VS],
        );
        return rows.length === 2 && rows.every((r) => r.n === 3);
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(await healthyStorages()).toEqual(STORAGES);
    const viaFirst = await metadata(path, praefect);
    const viaSecond = await metadata(path, second);
    expect(viaSecond).toEqual(viaFirst);
    expect(viaFirst.replicas.every((r) => r.healthy && r.validPrimary)).toBe(true);

    // Clients of the first keep cloning while the second stops.
    let stopped = false;
    const clones: { ok: boolean; err?: string }[] = [];
    const loop = (async () => {
      for (let i = 0; !stopped && i < 200; i++) {
        const dest = join(work, `two-clone-${i}.git`);
        try {
          await gitClient(["clone", "--bare", "--quiet", `${gateway.url}/${path}`, dest]);
          clones.push({ ok: true });
        } catch (err) {
          clones.push({ ok: false, err: (err as Error).message });
        }
        rmSync(dest, { recursive: true, force: true });
      }
    })();
    try {
      await waitFor("a first clone", async () => clones.length > 0, { timeoutMs: 20_000 });
      await second.stop();
      extra.splice(extra.indexOf(second), 1);
      const afterStop = clones.length;
      await waitFor("clones after the stop", async () => clones.length >= afterStop + 5, { timeoutMs: 30_000 });
    } finally {
      stopped = true;
      await loop;
    }
    expect(clones.filter((c) => !c.ok)).toEqual([]);
    expect(await healthyStorages()).toEqual(STORAGES);
  });
});
