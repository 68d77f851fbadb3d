// `gitaly-cluster up`: a Gitaly Cluster from a GitalyCluster manifest on this machine, on
// loopback only: the embedded PostgreSQL, `praefect sql-migrate`, the Gitaly nodes, the
// Praefect routers (all with configs from src/shared/render, as the operator renders them),
// and the HTTP gateway in front of the first Praefect. Every start step registers its stop
// step, so a failure or a Ctrl-C at any point stops what runs, in the order of teardown.ts.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import pino from "pino";
import { parseDuration } from "../../controller/api/index.js";
import { createLogger, type LogLevel } from "../../shared/logging.js";
import { waitFor } from "../../shared/net.js";
import { startGateway } from "../gateway/gateway.js";
import { postgresServerUser, startPostgres } from "../postgres.js";
import type { ReadyInfo } from "./banner.js";
import { type Child, programPaths, runNodeChild, startNodeChild, waitServing } from "./children.js";
import { DEMO_RELATIVE_PATH, ensureDemoRepository } from "./demo.js";
import {
  type ClusterPlan,
  clusterPorts,
  LOCAL_GRACE_MS,
  LOOPBACK,
  listenerNames,
  PRAEFECT_DATABASE,
  planCluster,
} from "./plan.js";
import { assignPorts, requireFreePort } from "./ports.js";
import { type RotationInProgress, rotationInProgress } from "./rotate.js";
import { loadSample, localDeviations, localTlsEnabled } from "./sample.js";
import {
  claimStateDir,
  createStateDirs,
  ensureSecret,
  lockStateDir,
  postgresDataDir,
  readRememberedPorts,
  rememberPorts,
  resetStateDir,
  type StateLayout,
  stateLayout,
  writePrivateFile,
} from "./state.js";
import type { Teardown } from "./teardown.js";
import { ensureLocalTls, trustEnv } from "./tls.js";

export interface UpOptions {
  /** The GitalyCluster manifest. */
  sample: string;
  stateDir: string;
  reset: boolean;
  /** The gateway's port (0: any free one). */
  httpPort: number;
  /** The first Praefect's plaintext port (0: any free one). */
  praefectPort: number;
  /** The first Praefect's TLS port when the cluster runs TLS (0: any free one). */
  praefectTlsPort: number;
  logLevel: LogLevel;
}

export interface UpIo {
  /** Progress and notes, for people (stderr). */
  progress(line: string): void;
}

/** Keeps the previous run's logs as *.log.1 and starts each file afresh. */
function rotateLogs(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.endsWith(".log")) renameSync(join(dir, name), join(dir, `${name}.1`));
  }
}

/**
 * Puts the tokens a rotation in progress delivers in its phase into the token files (a stop
 * between the record's save and its delivery may have left the previous step's), so that the
 * servers start the way the rotation left them and `gitaly-cluster rotate` resumes from there.
 */
function restoreRotationTokens(layout: StateLayout, rotation: RotationInProgress): void {
  const files: [string, string][] = [
    [layout.gitalyTokenFile, rotation.tokens.internal],
    [layout.praefectTokenFile, rotation.tokens.client],
  ];
  for (const [file, token] of files) {
    if (readFileSync(file, "utf8").trim() !== token) writePrivateFile(file, `${token}\n`);
  }
}

function writeConfigs(plan: ClusterPlan): void {
  for (const g of plan.gitaly) {
    mkdirSync(g.storagePath, { recursive: true });
    mkdirSync(g.runtimeDir, { recursive: true, mode: 0o700 });
    writeFileSync(g.configPath, g.config);
  }
  for (const p of plan.praefect) {
    mkdirSync(p.dir, { recursive: true });
    writeFileSync(p.configPath, p.config);
  }
}

async function ensureDatabase(url: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (rowCount === 0) await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

/** Waits until the Praefects agree every Gitaly node is healthy (the healthy_storages view). */
async function waitHealthyStorages(url: string, plan: ClusterPlan, praefects: Child[]): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const outcome = await waitFor(
      `the Praefects to see all ${plan.gitaly.length} Gitaly nodes healthy`,
      async () => {
        const dead = praefects.find((p) => p.exited());
        if (dead) return `${dead.name} exited; see ${dead.logFile}`;
        const { rows } = await client.query<{ n: string }>(
          "SELECT count(*) AS n FROM healthy_storages WHERE virtual_storage = $1",
          [plan.virtualStorage],
        );
        return Number(rows[0]?.n) === plan.gitaly.length ? "healthy" : false;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    if (outcome !== "healthy") throw new Error(outcome);
  } finally {
    await client.end();
  }
}

function hostPortOf(address: string): string {
  return address.replace(/^[a-z]+:\/\//, "");
}

/**
 * Starts the cluster, registering each stop step with `teardown`; resolves once it serves
 * (the demo repository exists) with what the banner shows. Throws when a step fails: the
 * caller then runs the teardown.
 */
export async function startLocalCluster(options: UpOptions, io: UpIo, teardown: Teardown): Promise<ReadyInfo> {
  const started = performance.now();
  const abortIfStopping = () => {
    if (teardown.started) throw new Error("stopped while starting");
  };
  const { name, spec } = loadSample(options.sample);
  for (const note of localDeviations(spec)) io.progress(`note: ${note}`);
  const layout: StateLayout = stateLayout(options.stateDir);
  claimStateDir(layout);
  const lock = lockStateDir(layout);
  teardown.push("lock", "state dir lock", async () => lock.release());
  if (options.reset) {
    io.progress(`--reset: deleting the state in ${layout.root}`);
    resetStateDir(layout);
  }
  createStateDirs(layout);
  rotateLogs(layout.logsDir);
  // The ports a user typed are checked before anything starts: a busy one ends the run at once.
  await requireFreePort(options.httpPort, "--http-port");
  const tls = localTlsEnabled(spec);

  ensureSecret(layout.praefectTokenFile);
  ensureSecret(layout.gitalyTokenFile);
  // Configs are rendered afresh on every start: in the middle of a token rotation they must say
  // what the rotation's phase says, or enforcement would come back before every client has the new token.
  const rotation = await rotationInProgress(layout);
  if (rotation) {
    const { phase, targetGeneration, aborting } = rotation.state;
    io.progress(
      `a token rotation ${aborting ? "being aborted " : ""}is in progress (to generation ${targetGeneration}, phase ${phase}): ` +
        `starting with [auth] transitioning = ${rotation.transitioning}; run "gitaly-cluster rotate --state-dir ${layout.root}" to finish it`,
    );
    restoreRotationTokens(layout, rotation);
  }
  const postgresPassword = ensureSecret(layout.postgresPasswordFile);
  const localTls = tls
    ? await ensureLocalTls(layout.tlsDir, name, parseDuration(spec.tls.duration) / 86_400_000)
    : undefined;

  // Every port is assigned before anything starts, so the Gitaly nodes can come up while
  // PostgreSQL does: they do not need it.
  const remembered = readRememberedPorts(layout);
  const reserved = options.httpPort === 0 ? [] : [options.httpPort];
  const assigned = await assignPorts(["postgres", ...listenerNames(spec)], {
    fixed: {
      "praefect-0.grpc": { port: options.praefectPort, flag: "--praefect-port" },
      ...(tls ? { "praefect-0.tls": { port: options.praefectTlsPort, flag: "--praefect-tls-port" } } : {}),
    },
    remembered,
    reserved,
  });
  rememberPorts(layout, assigned);
  const postgresPort = assigned.postgres as number;
  const plan = planCluster({
    name,
    spec,
    layout,
    ports: clusterPorts(spec, postgresPort, assigned),
    ...(localTls ? { tls: localTls } : {}),
    logLevel: options.logLevel,
    shortRuntimeBase: tmpdir(),
    authTransitioning: rotation?.transitioning ?? false,
  });
  writeConfigs(plan);
  const programs = programPaths();
  // Praefect dials the nodes over tls://, and so do the nodes each other for replication.
  const trust = localTls ? trustEnv(localTls) : {};
  const praefectEnv = { ...process.env, ...trust, PGPASSWORD: postgresPassword };
  const stopChild = (child: Child) => () => child.proc.stop("SIGTERM", LOCAL_GRACE_MS + 5_000);

  abortIfStopping();
  io.progress(`starting ${plan.gitaly.length} Gitaly nodes`);
  const gitalys = plan.gitaly.map((g) => {
    const child = startNodeChild(g.storage, programs.gitaly, ["serve", g.configPath], {
      logFile: g.logFile,
      env: { ...process.env, ...trust },
    });
    teardown.push("gitaly", g.storage, stopChild(child));
    return child;
  });
  const gitalysServing = Promise.all(gitalys.map((c, i) => waitServing(c, hostPortOf(plan.gitaly[i]?.address ?? ""))));
  // Awaited below; until then a failure must not count as unhandled.
  gitalysServing.catch(() => {});

  const dataDir = postgresDataDir(layout, postgresServerUser());
  io.progress(`starting PostgreSQL (data: ${dataDir})`);
  const postgres = await startPostgres({
    dataDir,
    password: postgresPassword,
    port: postgresPort,
    logFile: join(layout.logsDir, "postgres.log"),
    durable: true,
    ownSession: true,
  });
  teardown.push("postgres", "PostgreSQL", () => postgres.stop());
  await ensureDatabase(postgres.url(), PRAEFECT_DATABASE);

  abortIfStopping();
  io.progress("migrating Praefect's database");
  const firstPraefect = plan.praefect[0] as ClusterPlan["praefect"][number];
  await runNodeChild("praefect sql-migrate", programs.praefect, ["-config", firstPraefect.configPath, "sql-migrate"], {
    logFile: join(layout.logsDir, "sql-migrate.log"),
    env: praefectEnv,
  });

  abortIfStopping();
  // Praefect copes with nodes that are not serving yet: they turn healthy when they do.
  io.progress(`starting ${plan.praefect.length} Praefect routers`);
  const praefects = plan.praefect.map((p) => {
    const child = startNodeChild(p.name, programs.praefect, ["-config", p.configPath, "serve"], {
      logFile: p.logFile,
      env: praefectEnv,
    });
    teardown.push("praefect", p.name, stopChild(child));
    return child;
  });
  await gitalysServing;
  await Promise.all(praefects.map((c, i) => waitServing(c, hostPortOf(plan.praefect[i]?.address ?? ""))));
  await waitHealthyStorages(postgres.url(PRAEFECT_DATABASE), plan, praefects);

  abortIfStopping();
  // Synchronous writes: a request still finishing while the runner exits must not find the
  // log closed, and a local gateway's few lines a second cost nothing.
  const destination = pino.destination({ dest: join(layout.logsDir, "gateway.log"), sync: true });
  const logger = createLogger({ component: "gateway", level: options.logLevel, destination });
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway({
      host: LOOPBACK,
      port: options.httpPort,
      upstream: plan.clientAddress,
      tokenFile: layout.praefectTokenFile,
      storage: plan.virtualStorage,
      createOnPush: true,
      // The certificates name localhost too; a name (not an IP) is what TLS's SNI may carry.
      ...(localTls ? { tlsCaFile: localTls.caFile, tlsServerName: "localhost" } : {}),
      logger,
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new Error(`${LOOPBACK}:${options.httpPort} is already in use; pick another port with --http-port`);
    }
    throw err;
  }
  teardown.push("gateway", "gateway", () => gateway.close(5_000));

  abortIfStopping();
  const created = await ensureDemoRepository({
    gatewayUrl: gateway.url,
    workDir: layout.workDir,
    clusterName: name,
    replicationFactor: plan.replicationFactor,
  });
  if (created) io.progress(`created the demo repository ${DEMO_RELATIVE_PATH}`);

  const node = (
    n: { address: string; tlsAddress?: string; metricsUrl: string },
    nodeName: string,
    child: Child | undefined,
  ) => ({
    name: nodeName,
    address: n.address,
    ...(n.tlsAddress ? { tlsAddress: n.tlsAddress } : {}),
    metricsUrl: n.metricsUrl,
    pid: child?.proc.pid ?? -1,
  });
  return {
    name,
    stateDir: layout.root,
    pid: process.pid,
    startupMs: Math.round(performance.now() - started),
    gatewayUrl: gateway.url,
    demo: { relativePath: DEMO_RELATIVE_PATH, cloneUrl: `${gateway.url}/${DEMO_RELATIVE_PATH}` },
    virtualStorage: plan.virtualStorage,
    replicationFactor: plan.replicationFactor,
    praefectAddress: plan.clientAddress,
    praefect: plan.praefect.map((p, i) => node(p, p.name, praefects[i])),
    gitaly: plan.gitaly.map((g, i) => node(g, g.storage, gitalys[i])),
    tokenFiles: { praefect: layout.praefectTokenFile, gitaly: layout.gitalyTokenFile },
    ...(localTls ? { caFile: localTls.caFile } : {}),
    logDir: layout.logsDir,
    postgres: {
      address: `${LOOPBACK}:${postgres.port}`,
      database: PRAEFECT_DATABASE,
      dataDir,
      pid: postgres.pid,
    },
  };
}
