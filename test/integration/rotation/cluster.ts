// A Gitaly Cluster of real processes laid out the way the local runner lays one out: configs
// rendered by src/shared/render and written to disk, one internal token file (Gitaly's [auth]
// token_file and every Praefect node's token_file) and one client token file (Praefect's [auth]
// token_file), plus a second client token file read by the gateways and the load generator.
// The harness's startGitaly/startPraefect write their own configs from options (inline Praefect
// tokens), so these processes are started here from rendered files.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import type pg from "pg";
import type { ServerFiles } from "../../../src/controller/rotation/files.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/grpc/health/v1/health_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { freePort, waitFor } from "../../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../../src/shared/process.js";
import {
  type GitalyRenderParams,
  type PraefectRenderParams,
  renderGitalyConfig,
  renderPraefectConfig,
} from "../../../src/shared/render/index.js";
import { gitalyMain } from "../../harness/gitaly.js";
import { praefectMain, runPraefect } from "../../harness/praefect.js";
import { clusterMain } from "../gateway-helpers.js";

export const VIRTUAL_STORAGE = "default";

export interface Proc {
  name: string;
  logFile: string;
  proc: ManagedProcess;
}

export interface ServerProc extends Proc {
  /** host:port of the plaintext gRPC listener. */
  address: string;
  files: ServerFiles;
}

export interface GatewayProc extends Proc {
  url: string;
}

export interface RotationCluster {
  dir: string;
  internalTokenFile: string;
  /** Praefect's [auth] token_file. */
  praefectTokenFile: string;
  /** What the clients (gateways, load generator) read; the same token as praefectTokenFile. */
  clientTokenFile: string;
  gitalys: ServerProc[];
  praefects: ServerProc[];
  gateways: GatewayProc[];
  /** Every process's log, sql-migrate's included. */
  logFiles: string[];
  /** Tokens written at the start; the test checks none of them reaches a log. */
  initialTokens: { internal: string; client: string };
  stop(): Promise<void>;
}

function writeSecret(path: string, value: string): void {
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
}

async function waitServing(p: Proc, address: string): Promise<void> {
  const channel = new grpc.Client(address, grpc.credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 200,
  });
  try {
    const health = createClient(Health, channel);
    const outcome = await waitFor(
      `${p.name} to serve on ${address}`,
      async () => {
        // An exit ends the wait at once (waitFor would retry a thrown error until its timeout).
        if (p.proc.child.exitCode !== null) return "exited";
        const res = await health.check({ service: "" }, { deadline: Date.now() + 1_000 });
        return res.status === HealthCheckResponse_ServingStatus.SERVING ? "serving" : false;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    if (outcome === "exited") {
      throw new Error(`${p.name} exited (${p.proc.child.exitCode}):\n${readFileSync(p.logFile, "utf8").slice(-3000)}`);
    }
  } finally {
    channel.close();
  }
}

export interface StartOptions {
  dir: string;
  db: { host: string; port: number; user: string; password: string; name: string; pool: pg.Pool };
  gitalyCount: number;
  praefectCount: number;
}

/**
 * Starts the cluster. Every process is pushed to `started` as soon as it is spawned, so the
 * caller's cleanup stops it even when a later step fails.
 */
export async function startRotationCluster(options: StartOptions, started: Proc[]): Promise<RotationCluster> {
  const { dir, db } = options;
  const secrets = join(dir, "secrets");
  const logs = join(dir, "logs");
  mkdirSync(secrets, { recursive: true, mode: 0o700 });
  mkdirSync(logs, { recursive: true });
  const internalTokenFile = join(secrets, "gitaly-token");
  const praefectTokenFile = join(secrets, "praefect-token");
  const clientTokenFile = join(secrets, "client-token");
  const initialTokens = {
    internal: randomBytes(32).toString("base64url"),
    client: randomBytes(32).toString("base64url"),
  };
  writeSecret(internalTokenFile, initialTokens.internal);
  writeSecret(praefectTokenFile, initialTokens.client);
  writeSecret(clientTokenFile, initialTokens.client);
  const logFiles: string[] = [];
  const logging = { format: "json" as const, level: "info" as const };

  const gitalys: ServerProc[] = [];
  for (let i = 0; i < options.gitalyCount; i++) {
    const name = `gitaly-${i}`;
    const home = join(dir, `g${i}`);
    mkdirSync(join(home, "repositories"), { recursive: true });
    mkdirSync(join(home, "run"), { recursive: true, mode: 0o700 });
    const [port, metricsPort] = [await freePort(), await freePort()];
    const params = (transitioning: boolean): GitalyRenderParams => ({
      listenAddr: `127.0.0.1:${port}`,
      prometheusListenAddr: `127.0.0.1:${metricsPort}`,
      runtimeDir: join(home, "run"),
      gracefulRestartTimeoutMs: 5_000,
      auth: { tokenFile: internalTokenFile, transitioning },
      storage: { name, path: join(home, "repositories") },
      logging,
    });
    const configPath = join(home, "config.toml");
    writeFileSync(configPath, renderGitalyConfig(params(false)));
    const logFile = join(logs, `${name}.log`);
    logFiles.push(logFile);
    const proc = startProcess(process.execPath, [gitalyMain, "serve", configPath], { logFile });
    const p: ServerProc = {
      name,
      logFile,
      proc,
      address: `127.0.0.1:${port}`,
      // Gitaly's config is re-rendered from its parameters; Praefect's is edited in place (below),
      // so both ways of delivering [auth] transitioning run here.
      files: {
        name,
        role: "gitaly",
        configPath,
        metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
        renderConfig: (t) => renderGitalyConfig(params(t)),
      },
    };
    started.push(p);
    gitalys.push(p);
  }

  const praefectPorts = await Promise.all(
    Array.from({ length: options.praefectCount }, async () => [await freePort(), await freePort()] as const),
  );
  const praefectConfigs = praefectPorts.map(([port, metricsPort], i) => {
    const params: PraefectRenderParams = {
      listenAddr: `127.0.0.1:${port}`,
      prometheusListenAddr: `127.0.0.1:${metricsPort}`,
      gracefulStopTimeoutMs: 5_000,
      auth: { tokenFile: praefectTokenFile, transitioning: false },
      logging,
      virtualStorages: [
        {
          name: VIRTUAL_STORAGE,
          defaultReplicationFactor: options.gitalyCount,
          nodes: gitalys.map((g) => ({
            storage: g.name,
            address: `tcp://${g.address}`,
            tokenFile: internalTokenFile,
          })),
        },
      ],
      database: { host: db.host, port: db.port, user: db.user, dbname: db.name, sslmode: "disable" },
    };
    const home = join(dir, `p${i}`);
    mkdirSync(home, { recursive: true });
    const configPath = join(home, "config.toml");
    writeFileSync(configPath, renderPraefectConfig(params));
    return { configPath, port, metricsPort };
  });
  const pgEnv = { ...process.env, PGPASSWORD: db.password };

  const first = praefectConfigs[0];
  if (!first) throw new Error("a cluster needs a Praefect");
  const migrate = await runPraefect(["-config", first.configPath, "sql-migrate"], { PGPASSWORD: db.password });
  const migrateLog = join(logs, "sql-migrate.log");
  writeFileSync(migrateLog, migrate.out + migrate.err);
  logFiles.push(migrateLog);
  if (migrate.code !== 0) throw new Error(`praefect sql-migrate failed (${migrate.code}):\n${migrate.err}`);

  const praefects: ServerProc[] = praefectConfigs.map(({ configPath, port, metricsPort }, i) => {
    const name = `praefect-${i}`;
    const logFile = join(logs, `${name}.log`);
    logFiles.push(logFile);
    const proc = startProcess(process.execPath, [praefectMain, "-config", configPath, "serve"], {
      logFile,
      env: pgEnv,
    });
    const p: ServerProc = {
      name,
      logFile,
      proc,
      address: `127.0.0.1:${port}`,
      files: { name, role: "praefect", configPath, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` },
    };
    started.push(p);
    return p;
  });

  await Promise.all([...gitalys, ...praefects].map((p) => waitServing(p, p.address)));
  await waitFor(
    `the Praefects to see all ${gitalys.length} Gitaly nodes healthy`,
    async () => {
      const { rows } = await db.pool.query<{ n: string }>(
        "SELECT count(*) AS n FROM healthy_storages WHERE virtual_storage = $1",
        [VIRTUAL_STORAGE],
      );
      return Number(rows[0]?.n) === gitalys.length;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );

  // One gateway per Praefect, both reading the clients' token file.
  const gateways: GatewayProc[] = [];
  for (const [i, p] of praefects.entries()) {
    const name = `gateway-${i}`;
    const port = await freePort();
    const logFile = join(logs, `${name}.log`);
    logFiles.push(logFile);
    const proc = startProcess(
      process.execPath,
      [
        clusterMain,
        "gateway",
        "--listen",
        `127.0.0.1:${port}`,
        "--upstream",
        `tcp://${p.address}`,
        "--token-file",
        clientTokenFile,
        "--storage",
        VIRTUAL_STORAGE,
        "--create-on-push",
      ],
      { logFile },
    );
    const g: GatewayProc = { name, logFile, proc, url: `http://127.0.0.1:${port}` };
    started.push(g);
    gateways.push(g);
    const listening = await waitFor(
      `${name} to listen`,
      async () => {
        if (proc.child.exitCode !== null) return "exited";
        return (await fetch(`${g.url}/-/health`)).ok ? "listening" : false;
      },
      { timeoutMs: 15_000, intervalMs: 25 },
    );
    if (listening === "exited") throw new Error(`${name} exited:\n${readFileSync(logFile, "utf8")}`);
  }

  return {
    dir,
    internalTokenFile,
    praefectTokenFile,
    clientTokenFile,
    gitalys,
    praefects,
    gateways,
    logFiles,
    initialTokens,
    async stop() {
      await stopAll(started);
    },
  };
}

/** Stops clients first, then routers, then nodes; every stop is attempted even if one fails. */
export async function stopAll(procs: Proc[]): Promise<void> {
  const order = (p: Proc) => (p.name.startsWith("gateway") ? 0 : p.name.startsWith("praefect") ? 1 : 2);
  for (const rank of [0, 1, 2]) {
    await Promise.allSettled(procs.filter((p) => order(p) === rank).map((p) => p.proc.stop("SIGTERM", 10_000)));
  }
}
