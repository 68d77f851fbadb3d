// A network partition between one Praefect and the Gitaly nodes: three Gitaly nodes, two
// Praefects sharing one PostgreSQL (error thresholds set, so the election counts each Praefect's
// latest check), the second Praefect reaching the nodes only through TCP proxies the test cuts.
// Its view then differs from the majority's (the first Praefect sees every node healthy): it
// must not move any primary nor bump any generation, alone or by its votes, and once the
// partition heals both Praefects agree again and writes go through either.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LATEST_CHECK_HEALTHY_STORAGES } from "../../../src/praefect/datastore/health.js";
import { waitFor } from "../../../src/shared/net.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";
import { type GatewayProcess, startGatewayProcess } from "../gateway-helpers.js";
import {
  checksums,
  converged,
  ERROR_THRESHOLDS_TOML,
  GitalyTrio,
  type Metadata,
  metadata,
  PartitionProxy,
  praefectDatabase,
  STORAGES,
  VS,
  type WorkingCopy,
  workingCopy,
} from "./failover-helpers.js";

const TOKEN = "praefect-partition-token";

describe("a Praefect partitioned from the Gitaly nodes", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-partition-"));
  const trio = new GitalyTrio();
  const proxies = new Map<string, PartitionProxy>();
  let db: TestDatabase;
  let p1: PraefectProcess;
  let p2: PraefectProcess;
  let viaP1: GatewayProcess;
  let viaP2: GatewayProcess;

  const proxyOf = (storage: string) => proxies.get(storage) as PartitionProxy;

  /** Storages healthy by consensus: upstream's view and the latest-check consensus the election uses. */
  async function consensus(): Promise<{ view: string[]; latestCheck: string[] }> {
    const query = async (relation: string) =>
      (
        await db.pool.query<{ storage: string }>(
          `SELECT storage FROM ${relation} AS h WHERE virtual_storage = $1 ORDER BY storage`,
          [VS],
        )
      ).rows.map((r) => r.storage);
    return { view: await query("healthy_storages"), latestCheck: await query(LATEST_CHECK_HEALTHY_STORAGES) };
  }

  /** P2's own record of each node: whether its latest check passed, and how long ago it last did. */
  async function p2Votes(): Promise<Record<string, { passed: boolean; seenSecondsAgo: number | null }>> {
    const { rows } = await db.pool.query<{ node_name: string; passed: boolean; seen_ago: number | null }>(
      `SELECT node_name,
              coalesce(last_seen_active_at >= last_contact_attempt_at, false) AS passed,
              extract(epoch FROM now() - last_seen_active_at)::float8 AS seen_ago
       FROM node_status WHERE shard_name = $1 AND praefect_name LIKE $2`,
      [VS, `%:${p2.address}`],
    );
    return Object.fromEntries(rows.map((r) => [r.node_name, { passed: r.passed, seenSecondsAgo: r.seen_ago }]));
  }

  async function generations(relativePath: string): Promise<Record<string, number>> {
    const meta = await metadata(p1, relativePath);
    return Object.fromEntries(meta.replicas.map((r) => [r.storage, r.generation]));
  }

  async function pushFails(wc: WorkingCopy, url: string): Promise<string> {
    try {
      await wc.push(url);
    } catch (err) {
      return (err as Error).message;
    }
    throw new Error(`push to ${url} succeeded through the partitioned Praefect`);
  }

  beforeAll(async () => {
    await trio.startAll();
    for (const s of STORAGES) proxies.set(s, await new PartitionProxy(`127.0.0.1:${trio.port(s)}`).listen());
    db = await freshDatabase("praefect_partition");
    const common = { db: praefectDatabase(db), token: TOKEN, virtualStorage: VS, extraToml: ERROR_THRESHOLDS_TOML };
    p1 = await startPraefect({ ...common, gitalys: trio.nodes() });
    p2 = await startPraefect({ ...common, gitalys: trio.nodes((s) => proxyOf(s).address) });
    viaP1 = await startGatewayProcess({ upstream: `tcp://${p1.address}`, token: TOKEN, createOnPush: true });
    viaP2 = await startGatewayProcess({ upstream: `tcp://${p2.address}`, token: TOKEN, createOnPush: true });
    await waitFor(
      "all storages healthy by both Praefects",
      async () => {
        const votes = await p2Votes();
        return (await consensus()).latestCheck.length === 3 && STORAGES.every((s) => votes[s]?.passed);
      },
      { timeoutMs: 20_000 },
    );
  });

  afterAll(async () => {
    await viaP2?.stop();
    await viaP1?.stop();
    await p2?.stop();
    await p1?.stop();
    await db?.drop();
    for (const p of proxies.values()) await p.close();
    await trio.stopAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("moves no primary and bumps no generation, and all agrees again once the partition heals", async () => {
    const path = "partition/repo.git";
    const wc = workingCopy(work, "partition");
    await wc.push(`${viaP1.url}/${path}`);
    await wc.push(`${viaP2.url}/${path}`);
    const before: Metadata = await converged(p1, trio, path);
    const { primary } = before;

    // Step 1: P2 loses only the primary. Were its view enough to elect, this is when the primary
    // would move: P2 still sees two up-to-date healthy candidates.
    proxyOf(primary).cut();
    await waitFor(
      "P2's checks of the primary to have failed for over 10 s",
      async () => {
        const vote = (await p2Votes())[primary];
        return vote !== undefined && !vote.passed && (vote.seenSecondsAgo ?? 0) > 11;
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(await consensus()).toEqual({ view: STORAGES, latestCheck: STORAGES });
    // A write through P2 runs its lazy election (GetPrimary) and fails: P2 cannot reach the primary.
    await pushFails(wc, `${viaP2.url}/${path}`);
    let now = await metadata(p1, path);
    expect(now.primary).toBe(primary);
    expect(now.generation).toBe(before.generation);
    expect(await generations(path)).toEqual(Object.fromEntries(STORAGES.map((s) => [s, before.generation])));
    expect((await metadata(p2, path)).primary).toBe(primary);

    // Step 2: P2 loses every node.
    for (const s of STORAGES) proxyOf(s).cut();
    await waitFor(
      "P2's checks of every node to have failed for over 10 s",
      async () => {
        const votes = await p2Votes();
        return STORAGES.every((s) => votes[s] !== undefined && !votes[s].passed && (votes[s].seenSecondsAgo ?? 0) > 11);
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(await consensus()).toEqual({ view: STORAGES, latestCheck: STORAGES });
    await pushFails(wc, `${viaP2.url}/${path}`);
    now = await metadata(p1, path);
    expect(now.primary).toBe(primary);
    expect(now.generation).toBe(before.generation);
    expect(await generations(path)).toEqual(Object.fromEntries(STORAGES.map((s) => [s, before.generation])));

    // Writes through P1 still work on the same primary (its elections see P2's failing votes).
    await wc.push(`${viaP1.url}/${path}`);
    now = await converged(p1, trio, path);
    expect(now.primary).toBe(primary);
    expect(now.generation).toBe(before.generation + 1);

    // Heal: P2 sees every node again, and writes through either Praefect land on the same primary.
    for (const s of STORAGES) proxyOf(s).heal();
    await waitFor(
      "P2's checks to pass again",
      async () => {
        const votes = await p2Votes();
        return STORAGES.every((s) => votes[s]?.passed === true);
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor(
      "a push through P2 to succeed",
      async () => {
        try {
          await wc.push(`${viaP2.url}/${path}`);
          return true;
        } catch {
          return false;
        }
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    await wc.push(`${viaP1.url}/${path}`);
    const after = await converged(p1, trio, path);
    expect(after.primary).toBe(primary);
    expect(after.generation).toBeGreaterThanOrEqual(before.generation + 3);
    expect(await metadata(p2, path)).toEqual(after);
    const sums = await checksums(trio, after.replicaPath);
    expect(new Set(Object.values(sums)).size).toBe(1);
  });
});
