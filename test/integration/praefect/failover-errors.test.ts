// Failover with error-based failure detection: three Gitaly nodes, two Praefects sharing one
// PostgreSQL, [failover] error thresholds set. The repository's primary is killed (SIGKILL) while
// a client writes (WriteRef, as GitLab does for branch updates) every 200 ms through the first
// Praefect; writes must resume on a new primary that both Praefects agree on. The time to the
// first successful write is logged, not asserted.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { git } from "../../harness/git-fixtures.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";
import { type GatewayProcess, startGatewayProcess } from "../gateway-helpers.js";
import {
  converged,
  ERROR_THRESHOLDS_TOML,
  GitalyTrio,
  metadata,
  praefectDatabase,
  STORAGES,
  VS,
  workingCopy,
} from "./failover-helpers.js";

const TOKEN = "praefect-failover-errors-token";

describe("failover with error thresholds configured", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-failover-errors-"));
  const trio = new GitalyTrio();
  let db: TestDatabase;
  const praefects: PraefectProcess[] = [];
  let gateway: GatewayProcess;

  async function healthyStorages(): Promise<string[]> {
    const { rows } = await db.pool.query<{ storage: string }>(
      "SELECT storage FROM healthy_storages WHERE virtual_storage = $1 ORDER BY storage",
      [VS],
    );
    return rows.map((r) => r.storage);
  }

  beforeAll(async () => {
    await trio.startAll();
    db = await freshDatabase("praefect_failover_errors");
    for (let i = 0; i < 2; i++) {
      praefects.push(
        await startPraefect({
          db: praefectDatabase(db),
          gitalys: trio.nodes(),
          token: TOKEN,
          virtualStorage: VS,
          extraToml: ERROR_THRESHOLDS_TOML,
        }),
      );
    }
    gateway = await startGatewayProcess({
      upstream: `tcp://${praefects[0]?.address}`,
      token: TOKEN,
      createOnPush: true,
    });
    await waitFor("all storages healthy", async () => (await healthyStorages()).length === 3, { timeoutMs: 20_000 });
  });

  afterAll(async () => {
    await gateway?.stop();
    for (const p of praefects) await p.stop();
    await db?.drop();
    await trio.stopAll();
    rmSync(work, { recursive: true, force: true });
  });

  it("takes writes on a new primary soon after the primary is killed, on both Praefects", async () => {
    const [p1, p2] = praefects as [PraefectProcess, PraefectProcess];
    const path = "failover/errors.git";
    const url = `${gateway.url}/${path}`;
    const wc = workingCopy(work, "errors");
    await wc.push(url);
    await converged(p1, trio, path);
    const commit = git(wc.dir, ["rev-parse", "refs/heads/main"]).trim();
    const repository = createClient(RepositoryService, p1.channel());
    let n = 0;
    const write = async () => {
      n++;
      await repository.writeRef(
        {
          repository: { storageName: VS, relativePath: path },
          ref: new TextEncoder().encode(`refs/heads/w-${n}`),
          revision: new TextEncoder().encode(commit),
        },
        { deadline: Date.now() + 15_000 },
      );
    };

    let paused = false;
    let stopped = false;
    const attempts: { start: number; end: number; ok: boolean; err?: string }[] = [];
    const loop = (async () => {
      const deadline = Date.now() + 90_000;
      while (!stopped && Date.now() < deadline) {
        const start = Date.now();
        if (!paused) {
          try {
            await write();
            attempts.push({ start, end: Date.now(), ok: true });
          } catch (err) {
            attempts.push({ start, end: Date.now(), ok: false, err: (err as Error).message.slice(0, 300) });
          }
        }
        await new Promise((r) => setTimeout(r, Math.max(0, 200 - (Date.now() - start))));
      }
    })();
    try {
      await waitFor("a few writes", async () => attempts.filter((a) => a.ok).length >= 3, { timeoutMs: 30_000 });
      // The kill comes with the replicas in sync: otherwise there may be no up-to-date replica to
      // fail over to (the dataloss case, which cluster.test.ts covers).
      paused = true;
      await new Promise((r) => setTimeout(r, 300));
      await converged(p1, trio, path);
      const old = (await metadata(p1, path)).primary;
      await trio.kill(old);
      const killedAt = Date.now();
      paused = false;

      await waitFor(
        "a write to succeed after the kill",
        async () => attempts.some((a) => a.ok && a.start >= killedAt),
        {
          timeoutMs: 60_000,
          intervalMs: 20,
        },
      );
      const first = attempts.find((a) => a.ok && a.start >= killedAt) as { start: number; end: number };
      const failed = attempts.filter((a) => !a.ok && a.start >= killedAt);
      const timeline = attempts
        .filter((a) => a.start >= killedAt && a.start <= first.end)
        .map((a) => `${a.start - killedAt}-${a.end - killedAt}${a.ok ? "ok" : "x"}`)
        .join(" ");
      console.log(
        `[failover-errors] first successful write ${first.end - killedAt} ms after SIGKILL of ${old} ` +
          `(${failed.length} writes failed meanwhile; attempts in ms after the kill: ${timeline})` +
          (failed[0] ? `\nfirst error: ${failed[0].err}` : ""),
      );

      const after = await metadata(p1, path);
      expect(after.primary).not.toBe(old);
      expect(STORAGES).toContain(after.primary);
      // The election is in the database: the other Praefect reports the same primary.
      expect((await metadata(p2, path)).primary).toBe(after.primary);
      // And the new primary holds the pushed history: the latest generation.
      expect(after.replicas.find((r) => r.storage === after.primary)?.generation).toBe(after.generation);
    } finally {
      stopped = true;
      await loop;
    }
    expect(attempts.filter((a) => a.ok).length).toBeGreaterThan(3);
  });
});
