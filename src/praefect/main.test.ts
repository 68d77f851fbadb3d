// The built program (dist/praefect/main.js): command line, subcommands, and `serve` wiring the
// database, the health loop, the router, replication and the metrics endpoint together.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { type GitalyProcess, metricValue, repoRoot, startGitaly } from "../../test/harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../test/harness/postgres.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { createClient } from "../shared/grpc/service.js";
import { freePort, waitFor } from "../shared/net.js";
import { type ManagedProcess, startProcess } from "../shared/process.js";

const praefectMain = join(repoRoot, "dist/praefect/main.js");

function runPraefect(
  args: string[],
  options: { stdin?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [praefectMain, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, out, err }));
    child.stdin.end(options.stdin ?? "");
  });
}

describe("the praefect program", () => {
  let dir: string;
  let db: TestDatabase;
  let gitaly: GitalyProcess;
  let configPath: string;
  let listenPort: number;
  let metricsPort: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "praefect-main-"));
    db = await freshDatabase("praefect_main");
    gitaly = await startGitaly({ storages: ["gitaly-1"], token: "node-token" });
    listenPort = await freePort();
    metricsPort = await freePort();
    const pg = inject("postgres");
    configPath = join(dir, "config.toml");
    await writeFile(
      configPath,
      `listen_addr = "127.0.0.1:${listenPort}"
prometheus_listen_addr = "127.0.0.1:${metricsPort}"
graceful_stop_timeout = "5s"
[auth]
token = "praefect-token"
[logging]
format = "json"
level = "info"
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://${gitaly.address}"
token = "node-token"
[database]
host = "${pg.host}"
port = ${pg.port}
user = "${pg.user}"
password = "${pg.password}"
dbname = "${db.name}"
sslmode = "disable"
`,
    );
  });

  afterAll(async () => {
    await gitaly?.stop();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  test("-version and configuration validate need no configuration file", async () => {
    expect(await runPraefect(["-version"])).toMatchObject({
      code: 0,
      out: expect.stringMatching(/^Praefect, version \S+\n$/),
    });
    const valid = await runPraefect(["configuration", "validate"], { stdin: await readFile(configPath, "utf8") });
    expect(valid).toEqual({ code: 0, out: "", err: "" });
    const invalid = await runPraefect(["configuration", "validate"], { stdin: "" });
    expect(invalid.code).toBe(2);
    expect(JSON.parse(invalid.out).errors).toHaveLength(2);
  });

  test("subcommands take -config first, as upstream's", async () => {
    expect(await runPraefect(["-config", configPath, "list-storages"])).toEqual({
      code: 0,
      err: "",
      out: ` VIRTUAL_STORAGE  NODE      ADDRESS${" ".repeat(`tcp://${gitaly.address}`.length - 7)} \n default          gitaly-1  tcp://${gitaly.address} \n`,
    });
    expect(await runPraefect(["list-storages"])).toMatchObject({
      code: 2,
      err: expect.stringContaining('Required flag "config" not set'),
    });
    expect(await runPraefect([`--config=${configPath}`, "sql-ping"])).toEqual({
      code: 0,
      out: "praefect sql-ping: OK\n",
      err: "",
    });
  });

  test("serve refuses a database without the schema unless told to migrate", async () => {
    const refused = await runPraefect(["-config", configPath]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/migrations have not been run: run \\?"praefect -config .* sql-migrate\\?"/);
  });

  describe("serve", () => {
    let proc: ManagedProcess;
    let logFile: string;

    beforeAll(async () => {
      logFile = join(dir, "praefect.log");
      proc = startProcess(process.execPath, [praefectMain, "-config", configPath, "serve"], {
        logFile,
        env: { ...process.env, PRAEFECT_AUTO_MIGRATE: "1" },
      });
      const channel = new grpc.Client(`127.0.0.1:${listenPort}`, grpc.credentials.createInsecure(), {
        "grpc.initial_reconnect_backoff_ms": 50,
        "grpc.max_reconnect_backoff_ms": 200,
      });
      try {
        await waitFor(
          "praefect to serve",
          async () => {
            if (proc.child.exitCode !== null) {
              throw new Error(
                `praefect exited with ${proc.child.exitCode}:\n${(await readFile(logFile, "utf8")).slice(-3000)}`,
              );
            }
            const res = await createClient(Health, channel).check({ service: "" }, { deadline: Date.now() + 1000 });
            return res.status === HealthCheckResponse_ServingStatus.SERVING;
          },
          { timeoutMs: 30_000, intervalMs: 100 },
        );
      } finally {
        channel.close();
      }
    });

    afterAll(async () => {
      await proc?.stop("SIGKILL");
    });

    test("migrated the database, records node health and exports replication metrics", async () => {
      const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM schema_migrations");
      expect(rows[0]?.n).toBeGreaterThan(40);
      await waitFor(
        "a health check in node_status",
        async () =>
          (
            await db.pool.query(
              "SELECT 1 FROM node_status WHERE node_name = 'gitaly-1' AND praefect_name LIKE '%:127.0.0.1:' || $1",
              [String(listenPort)],
            )
          ).rows.length === 1,
        { timeoutMs: 10_000 },
      );
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      expect(metrics).toContain("gitaly_praefect_replication_latency_bucket");
      expect(metricValue(metrics, "gitaly_praefect_replication_delay_count", { type: "update" })).toBe(0);
      const dbMetrics = await (await fetch(`http://127.0.0.1:${metricsPort}/db_metrics`)).text();
      expect(dbMetrics).toContain("# TYPE gitaly_praefect_replication_queue_depth gauge");
      expect(dbMetrics).toContain('gitaly_praefect_unavailable_repositories{virtual_storage="default"} 0');
    });

    test("stops gracefully on SIGTERM", async () => {
      expect(await proc.stop("SIGTERM", 20_000)).toBe(0);
      expect(await readFile(logFile, "utf8")).toContain('"msg":"Praefect shutdown"');
    });
  });
});
