#!/usr/bin/env node
// gitaly-operator: watches GitalyClusters and provisions them. Flags follow the names
// controller-runtime operators use, each with an environment variable for Helm charts.
import { realpathSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { collectDefaultMetrics, Registry } from "prom-client";
import { createLogger, type LogLevel } from "../shared/logging.js";
import { GitalyClusterReconciler } from "./reconcile/gitaly-cluster.js";
import { LeaderElector } from "./reconcile/leader.js";
import { ControllerMetrics } from "./reconcile/metrics.js";

export const OPERATOR_VERSION = "0.1.0";

export const USAGE = `usage: gitaly-operator [flags]

Watches GitalyCluster resources (gitaly.dev/v1alpha1) and provisions Gitaly nodes,
Praefect routers, their database, TLS and tokens.

  --namespaces LIST                 namespaces to watch, comma separated; "" or "*" = all
                                    (env WATCH_NAMESPACES; default: all)
  --metrics-bind-address ADDR       Prometheus /metrics (env METRICS_BIND_ADDRESS; default :8080; "0" disables)
  --health-probe-bind-address ADDR  /healthz and /readyz (env HEALTH_PROBE_BIND_ADDRESS; default :8081)
  --leader-elect / --no-leader-elect
                                    run under a Lease so only one replica writes (env LEADER_ELECT; default on)
  --leader-election-namespace NS    namespace of the Lease (env POD_NAMESPACE; required with leader election
                                    outside a pod)
  --leader-election-id NAME         Lease name (default gitaly-operator)
  --lease-duration SECONDS          default 15
  --default-image IMAGE             gitaly/praefect image when a cluster sets none
                                    (env GITALY_IMAGE; default gitaly-operator:${OPERATOR_VERSION})
  --postgres-image IMAGE            managed PostgreSQL image (env POSTGRES_IMAGE)
  --cluster-domain DOMAIN           DNS domain for certificate SANs (env CLUSTER_DOMAIN; default cluster.local)
  --kubeconfig FILE                 (env KUBECONFIG; default: in-cluster, then ~/.kube/config)
  --concurrency N                   clusters reconciled at once (default 4)
  --log-level LEVEL                 debug, info, warn, error (default info)
  -h, --help
`;

export interface OperatorFlags {
  namespaces: readonly string[] | "all";
  metricsAddr: { host: string; port: number } | undefined;
  healthAddr: { host: string; port: number } | undefined;
  leaderElect: boolean;
  leaderElectionNamespace: string | undefined;
  leaderElectionId: string;
  leaseDurationSeconds: number;
  defaultImage: string;
  postgresImage: string | undefined;
  clusterDomain: string | undefined;
  kubeconfig: string | undefined;
  concurrency: number;
  logLevel: LogLevel;
}

export class UsageError extends Error {}

/** "host:port", ":port" (all interfaces), or "0" (disabled). */
export function parseBindAddress(flag: string, value: string): { host: string; port: number } | undefined {
  if (value === "0") return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535))
    throw new UsageError(`--${flag} ${JSON.stringify(value)}: want HOST:PORT, :PORT or 0`);
  return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/** Pure: argv and environment in, validated flags out (UsageError names the flag). */
export function parseOperatorFlags(argv: string[], env: NodeJS.ProcessEnv): OperatorFlags | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      namespaces: { type: "string" },
      "metrics-bind-address": { type: "string" },
      "health-probe-bind-address": { type: "string" },
      "leader-elect": { type: "boolean" },
      "no-leader-elect": { type: "boolean" },
      "leader-election-namespace": { type: "string" },
      "leader-election-id": { type: "string" },
      "lease-duration": { type: "string" },
      "default-image": { type: "string" },
      "postgres-image": { type: "string" },
      "cluster-domain": { type: "string" },
      kubeconfig: { type: "string" },
      concurrency: { type: "string" },
      "log-level": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const nsText = values.namespaces ?? env.WATCH_NAMESPACES ?? "";
  const list = nsText
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  for (const ns of list) {
    if (ns !== "*" && (ns.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns))) {
      throw new UsageError(`--namespaces: ${JSON.stringify(ns)} is not a namespace name`);
    }
  }
  const namespaces = list.length === 0 || list.includes("*") ? "all" : list;
  const envBool = (v: string | undefined) => (v === undefined ? undefined : !/^(0|false|no|off)$/i.test(v));
  const leaderElect = values["no-leader-elect"] ? false : (values["leader-elect"] ?? envBool(env.LEADER_ELECT) ?? true);
  const positiveInt = (flag: string, v: string | undefined, dflt: number) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} ${JSON.stringify(v)}: want a whole number >= 1`);
    return n;
  };
  const logLevel = (values["log-level"] ?? env.LOG_LEVEL ?? "info") as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(logLevel)) {
    throw new UsageError(`--log-level ${JSON.stringify(logLevel)}: want debug, info, warn or error`);
  }
  const leaderElectionNamespace = values["leader-election-namespace"] ?? env.POD_NAMESPACE;
  return {
    namespaces,
    metricsAddr: parseBindAddress(
      "metrics-bind-address",
      values["metrics-bind-address"] ?? env.METRICS_BIND_ADDRESS ?? ":8080",
    ),
    healthAddr: parseBindAddress(
      "health-probe-bind-address",
      values["health-probe-bind-address"] ?? env.HEALTH_PROBE_BIND_ADDRESS ?? ":8081",
    ),
    leaderElect,
    leaderElectionNamespace,
    leaderElectionId: values["leader-election-id"] ?? "gitaly-operator",
    leaseDurationSeconds: positiveInt("lease-duration", values["lease-duration"], 15),
    defaultImage: values["default-image"] ?? env.GITALY_IMAGE ?? `gitaly-operator:${OPERATOR_VERSION}`,
    postgresImage: values["postgres-image"] ?? env.POSTGRES_IMAGE,
    clusterDomain: values["cluster-domain"] ?? env.CLUSTER_DOMAIN ?? "cluster.local",
    kubeconfig: values.kubeconfig ?? env.KUBECONFIG,
    concurrency: positiveInt("concurrency", values.concurrency, 4),
    logLevel,
  };
}

function loadKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (file) kc.loadFromFile(file);
  else kc.loadFromDefault();
  return kc;
}

function listen(server: Server, addr: { host: string; port: number }): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(addr.port, addr.host, () => {
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : addr.port);
    });
  });
}

export async function runOperator(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let flags: OperatorFlags | "help";
  try {
    flags = parseOperatorFlags(argv, env);
  } catch (err) {
    process.stderr.write(`gitaly-operator: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (flags === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  if (flags.leaderElect && !flags.leaderElectionNamespace) {
    process.stderr.write(
      "gitaly-operator: leader election needs --leader-election-namespace (or POD_NAMESPACE), or --no-leader-elect\n",
    );
    return 2;
  }
  const log = createLogger({ component: "gitaly-operator", level: flags.logLevel });
  const kubeConfig = loadKubeConfig(flags.kubeconfig);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = ControllerMetrics.forRegistry(registry);
  const reconciler = new GitalyClusterReconciler({
    kubeConfig,
    namespaces: flags.namespaces,
    defaultImage: flags.defaultImage,
    ...(flags.postgresImage ? { defaultPostgresImage: flags.postgresImage } : {}),
    ...(flags.clusterDomain ? { clusterDomain: flags.clusterDomain } : {}),
    logger: log,
    registry,
    concurrency: flags.concurrency,
  });

  let started = false;
  let elector: LeaderElector | undefined;
  const servers: Server[] = [];
  const bound: Record<string, number> = {};
  if (flags.metricsAddr) {
    const server = createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    });
    bound.metrics = await listen(server, flags.metricsAddr);
    servers.push(server);
  }
  if (flags.healthAddr) {
    const server = createServer((req, res) => {
      // Live while the event loop turns; ready once this replica can do its job: a standby
      // (not leader) is ready too, or a rollout would wait for a lease it cannot get.
      if (req.url === "/healthz") res.writeHead(200).end("ok");
      else if (req.url === "/readyz")
        res.writeHead(started || elector ? 200 : 503).end(started || elector ? "ok" : "starting");
      else res.writeHead(404).end();
    });
    bound.health = await listen(server, flags.healthAddr);
    servers.push(server);
  }

  let stopping = false;
  let exitCode = 0;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  const startReconciling = async () => {
    log.info({ namespaces: flags.namespaces }, "starting controller");
    await reconciler.start();
    started = true;
    log.info("caches synced; reconciling");
  };
  const shutdown = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, "stopping");
    await reconciler.stop().catch((err: unknown) => log.warn({ err: String(err) }, "controller stop failed"));
    await elector?.stop().catch((err: unknown) => log.warn({ err: String(err) }, "lease release failed"));
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    resolveDone();
  };

  if (flags.leaderElect) {
    elector = new LeaderElector({
      kubeConfig,
      namespace: flags.leaderElectionNamespace ?? "",
      name: flags.leaderElectionId,
      identity: `${hostname()}_${process.pid}`,
      leaseDurationSeconds: flags.leaseDurationSeconds,
      // client-go's proportions (15 s lease, 10 s renew deadline, 2 s retry), scaled to the lease.
      renewDeadlineMs: Math.floor((flags.leaseDurationSeconds * 1000 * 2) / 3),
      retryPeriodMs: Math.max(200, Math.floor((flags.leaseDurationSeconds * 1000 * 2) / 15)),
      metrics,
      onStartedLeading: () => {
        log.info({ lease: flags.leaderElectionId }, "became leader");
        startReconciling().catch((err: unknown) => {
          log.error({ err: String(err) }, "controller failed to start");
          exitCode = 1;
          void shutdown("start failure");
        });
      },
      onStoppedLeading: (reason) => {
        // A lost lease means another replica may already be writing: stop at once, like
        // controller-runtime, and let the Deployment restart this one as a candidate.
        if (reason === "lost") {
          log.error("leader lease lost; exiting");
          exitCode = 1;
          void shutdown("lease lost");
        }
      },
      onError: (err) => log.warn({ err: String(err) }, "leader election attempt failed"),
    });
    elector.start();
    log.info({ lease: `${flags.leaderElectionNamespace}/${flags.leaderElectionId}` }, "waiting for leadership");
  } else {
    await startReconciling();
  }
  log.info({ ...bound }, "gitaly-operator running");

  const onSignal = (signal: NodeJS.Signals) => void shutdown(signal);
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  await done;
  return exitCode;
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    // Through a bin symlink argv[1] is the link: compare real paths.
    return realpathSync(script) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  runOperator(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`gitaly-operator: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
