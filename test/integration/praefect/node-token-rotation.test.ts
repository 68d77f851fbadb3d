// Rotating the internal token (Praefect → Gitaly) with no failed request, as the operator does it,
// on real processes: two Gitaly nodes enforcing token A and a Praefect reading A from a node
// token_file. The nodes go to auth transitioning, B is written to Praefect's node token file and
// to the nodes' token files, Praefect picks B up live (its node token metric says so), and the
// nodes enforce again. A loop of calls through Praefect that reach the nodes (a mutator and the
// replication jobs it queues, an accessor, a fan-out to every node) runs all along.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { ServerService } from "../../../src/gen/server_pb.js";
import { tokenGeneration } from "../../../src/gitaly/auth/authenticator.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";

const VS = "default";
const STORAGES = ["gitaly-1", "gitaly-2"];
const PRAEFECT_TOKEN = "praefect-client-token";
const TOKEN_A = "internal-token-generation-a";
const TOKEN_B = "internal-token-generation-b";
const NODE_TOKEN_INFO = "gitaly_praefect_node_token_info";

/** Write-then-rename, as a kubelet swaps a Secret: readers see the old or the new content. */
function writeSecret(path: string, content: string | Buffer): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp`);
  writeFileSync(tmp, content, { mode: 0o600 });
  renameSync(tmp, path);
}

/** GET on a connection of its own: a kept-alive one can be closed by the server as it is reused. */
function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve(body));
      res.on("error", reject);
    }).on("error", reject);
  });
}

describe("Praefect rotating the token it presents to its Gitaly nodes, live", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-node-token-"));
  const nodeTokenFile = join(work, "gitaly-token");
  const gitalys: GitalyProcess[] = [];
  let db: TestDatabase;
  let praefect: PraefectProcess;

  const gitalyMetric = async (g: GitalyProcess, name: string, labels: Record<string, string>) =>
    metricValue(await scrape(g.metricsUrl), name, labels);
  const sumOver = async (name: string, labels: Record<string, string>) => {
    let total = 0;
    for (const g of gitalys) total += await gitalyMetric(g, name, labels);
    return total;
  };
  /** The generations each storage has in Praefect's metric, e.g. {"gitaly-1": ["ab12…"]}. */
  const praefectGenerations = async (): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {};
    for (const line of (await scrape(praefect.metricsUrl)).split("\n")) {
      if (!line.startsWith(`${NODE_TOKEN_INFO}{`) || !line.endsWith(" 1")) continue;
      const storage = /[{,]storage="([^"]*)"/.exec(line)?.[1] ?? "";
      const generation = /generation="([^"]*)"/.exec(line)?.[1] ?? "";
      out[storage] = [...(out[storage] ?? []), generation];
    }
    return out;
  };
  const logLines = (): { msg?: string; err?: string; [k: string]: unknown }[] =>
    praefect
      .log()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));

  beforeAll(async () => {
    writeSecret(nodeTokenFile, `${TOKEN_A}\n`);
    for (const storage of STORAGES) gitalys.push(await startGitaly({ storages: [storage], token: TOKEN_A }));
    db = await freshDatabase("praefect_node_token_rotation");
    const pg = inject("postgres");
    praefect = await startPraefect({
      db: { host: pg.host, port: pg.port, user: pg.user, password: pg.password, name: db.name },
      // The nodes are written below with token_file, which the harness does not know.
      gitalys: [],
      token: PRAEFECT_TOKEN,
      virtualStorage: VS,
      extraToml: gitalys
        .map(
          (g, i) =>
            `[[virtual_storage.node]]\nstorage = "${STORAGES[i]}"\naddress = "tcp://${g.address}"\ntoken_file = "${nodeTokenFile}"\n`,
        )
        .join("\n"),
    });
    await waitFor(
      "both storages healthy",
      async () => {
        const { rows } = await db.pool.query("SELECT storage FROM healthy_storages WHERE virtual_storage = $1", [VS]);
        return rows.length === STORAGES.length;
      },
      { timeoutMs: 20_000 },
    );
  });

  afterAll(async () => {
    await praefect?.stop();
    await db?.drop();
    await Promise.all(gitalys.map((g) => g.stop()));
    rmSync(work, { recursive: true, force: true });
  });

  it("moves from A to B through auth transitioning without one failed call", { timeout: 180_000 }, async () => {
    const genA = tokenGeneration(TOKEN_A);
    const genB = tokenGeneration(TOKEN_B);
    expect(await praefectGenerations()).toEqual({ "gitaly-1": [genA], "gitaly-2": [genA] });

    const repositories = createClient(RepositoryService, praefect.channel());
    const server = createClient(ServerService, praefect.channel());
    const base = { storageName: VS, relativePath: "rotation/base.git" };
    await repositories.createRepository({ repository: base });

    const failures: string[] = [];
    let calls = 0;
    let stopped = false;
    const loop = (async () => {
      for (let i = 0; !stopped; i++) {
        const results = await Promise.allSettled([
          repositories.repositorySize({ repository: base }),
          // Fans out to every node and fails if any one refuses.
          server.diskStatistics({}),
          // A mutator now and then: each queues a replication job, which takes a while to run.
          ...(i % 20 === 0
            ? [
                repositories.createRepository({
                  repository: { storageName: VS, relativePath: `rotation/loop-${i}.git` },
                }),
              ]
            : []),
        ]);
        for (const [n, r] of results.entries()) {
          calls++;
          if (r.status === "rejected") failures.push(`iteration ${i}, call ${n}: ${(r.reason as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const progress = async (what: string, more = 60) => {
      const target = calls + more;
      await waitFor(what, async () => calls >= target, { timeoutMs: 30_000, intervalMs: 20 });
    };

    try {
      await progress("calls with token A enforced");

      // (a) The nodes accept any token, and count.
      for (const g of gitalys) g.writeConfig({ transitioning: true });
      for (const g of gitalys) {
        await waitFor(
          "the node to transition",
          async () =>
            (await gitalyMetric(g, "gitaly_auth_token_info", { generation: genA, transitioning: "true" })) === 1,
          { timeoutMs: 20_000 },
        );
      }
      const wouldBeOkBefore = await sumOver("gitaly_authentications_total", {
        enforced: "false",
        status: "would be ok",
      });

      // (b) B to Praefect (the client) and to the nodes (the servers), in no particular order.
      writeSecret(nodeTokenFile, `${TOKEN_B}\n`);
      for (const g of gitalys) writeSecret(g.tokenFile, TOKEN_B);

      // (c) Praefect presents B; the nodes hold B.
      await waitFor(
        "Praefect to present token B",
        async () =>
          JSON.stringify(await praefectGenerations()) === JSON.stringify({ "gitaly-1": [genB], "gitaly-2": [genB] }),
        { timeoutMs: 20_000 },
      );
      for (const g of gitalys) {
        await waitFor(
          "the node to hold token B",
          async () =>
            (await gitalyMetric(g, "gitaly_auth_token_info", { generation: genB, transitioning: "true" })) === 1,
          { timeoutMs: 20_000 },
        );
      }
      await progress("calls with token B, transitioning");
      // A replication job hands the token it started with to the target node (gitaly-servers),
      // which uses it to fetch from the source while the job runs: jobs started before the swap
      // must end before the nodes enforce B, as in-flight calls must in any rotation.
      const { rows } = await db.pool.query<{ last: string }>(
        "SELECT coalesce(max(id), 0)::text AS last FROM replication_queue",
      );
      const lastBeforeSwap = rows[0]?.last ?? "0";
      await waitFor(
        "replication jobs started with token A to end",
        async () =>
          (
            await db.pool.query("SELECT FROM replication_queue WHERE id <= $1::bigint AND state = 'in_progress'", [
              lastBeforeSwap,
            ])
          ).rowCount === 0,
        { timeoutMs: 30_000, intervalMs: 50 },
      );
      const wouldBeOkAfter = await sumOver("gitaly_authentications_total", {
        enforced: "false",
        status: "would be ok",
      });
      expect(wouldBeOkAfter).toBeGreaterThan(wouldBeOkBefore);

      // (d) Enforce again, now B.
      for (const g of gitalys) g.writeConfig({ transitioning: false });
      for (const g of gitalys) {
        await waitFor(
          "the node to enforce token B",
          async () =>
            (await gitalyMetric(g, "gitaly_auth_token_info", { generation: genB, transitioning: "false" })) === 1,
          { timeoutMs: 20_000 },
        );
      }
      const enforcedOk = await sumOver("gitaly_authentications_total", { enforced: "true", status: "ok" });
      await progress("calls with token B enforced");
      expect(await sumOver("gitaly_authentications_total", { enforced: "true", status: "ok" })).toBeGreaterThan(
        enforcedOk,
      );
    } finally {
      stopped = true;
      await loop;
    }

    expect(failures).toEqual([]);
    // The readiness check dials every node from the configuration: with the token in force now.
    const readiness = await server.readinessCheck({});
    const failedChecks =
      readiness.Result.case === "failureResponse"
        ? readiness.Result.value.failedChecks.map((f) => `${f.name}: ${f.errorMessage}`)
        : [];
    expect(failedChecks.filter((f) => f.startsWith("gitaly node connectivity"))).toEqual([]);
    // Whenever a node enforced, it refused nothing: every enforced authentication was "ok".
    for (const g of gitalys) {
      const text = await scrape(g.metricsUrl);
      expect(metricValue(text, "gitaly_authentications_total", { enforced: "true" })).toBe(
        metricValue(text, "gitaly_authentications_total", { enforced: "true", status: "ok" }),
      );
    }
    // The replication jobs, some of them run after the swap, brought every repository to both nodes.
    await waitFor(
      "every repository replicated to both storages",
      async () => {
        const { rows } = await db.pool.query(
          `SELECT r.relative_path FROM repositories AS r
           WHERE (SELECT count(*) FROM storage_repositories AS s
                  WHERE s.repository_id = r.repository_id AND s.generation = r.generation) < $1`,
          [STORAGES.length],
        );
        return rows.length === 0;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );

    const changes = logLines().filter((l) => l.msg === "token presented to the node changed");
    expect(changes.map((l) => [l.storage, l.previous_generation, l.generation]).sort()).toEqual([
      ["gitaly-1", genA, genB],
      ["gitaly-2", genA, genB],
    ]);
  });

  it("keeps the previous token when the node token file holds garbage or nothing, and says so", async () => {
    const genB = tokenGeneration(TOKEN_B);
    const repositories = createClient(RepositoryService, praefect.channel());
    const server = createClient(ServerService, praefect.channel());
    const failedReloads = () =>
      logLines().filter((l) => l.msg?.startsWith("reload failed") && String(l.err).includes(nodeTokenFile)).length;

    for (const [i, content] of [Buffer.from([0x00, 0xff, 0x13, 0x37]), Buffer.alloc(0)].entries()) {
      const before = failedReloads();
      writeSecret(nodeTokenFile, content);
      await waitFor("the reload to fail", async () => failedReloads() > before, { timeoutMs: 20_000 });
      expect(await praefectGenerations()).toEqual({ "gitaly-1": [genB], "gitaly-2": [genB] });
      // The nodes enforce B, and Praefect still presents it.
      await repositories.createRepository({ repository: { storageName: VS, relativePath: `garbage/${i}.git` } });
      await server.diskStatistics({});
    }

    const changesBefore = logLines().filter((l) => l.msg === "token presented to the node changed").length;
    writeSecret(nodeTokenFile, `${TOKEN_B}\n`);
    await server.diskStatistics({});
    expect(logLines().filter((l) => l.msg === "token presented to the node changed").length).toBe(changesBefore);
    expect(praefect.log()).not.toContain(TOKEN_A);
    expect(praefect.log()).not.toContain(TOKEN_B);
  });
});
