// What a local cluster consists of, worked out from a resolved GitalyCluster spec without
// touching anything: the processes, their listeners, their files, and their config.toml
// texts, rendered by the same renderer the operator puts in ConfigMaps. Only the places
// differ from a pod: 127.0.0.1 and assigned ports instead of 0.0.0.0 and contract ports,
// paths in the state dir instead of volume mounts.
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { ConcurrencyLimit, ResolvedGitalyClusterSpec } from "../../controller/api/index.js";
import { parseDuration } from "../../controller/api/index.js";
import type { LogLevel } from "../../shared/config/sections.js";
import {
  type ConcurrencyParams,
  type FailoverParams,
  renderGitalyConfig,
  renderPraefectConfig,
  storageName,
} from "../../shared/render/index.js";
import { localTlsEnabled } from "./sample.js";
import type { StateLayout } from "./state.js";
import type { LocalTls } from "./tls.js";

export const LOOPBACK = "127.0.0.1";
/** Praefect's database in the embedded PostgreSQL. */
export const PRAEFECT_DATABASE = "praefect";
export const POSTGRES_USER = "postgres";
/** How long Gitaly and Praefect may drain in-flight calls on stop; a local run should stop promptly. */
export const LOCAL_GRACE_MS = 10_000;

export interface ListenerPorts {
  grpc: number;
  /** Set exactly when the cluster runs TLS. */
  tls?: number;
  metrics: number;
}

export interface ClusterPorts {
  postgres: number;
  gitaly: ListenerPorts[];
  praefect: ListenerPorts[];
}

export interface GitalyNodePlan {
  index: number;
  storage: string;
  dir: string;
  storagePath: string;
  runtimeDir: string;
  configPath: string;
  logFile: string;
  /** tcp://127.0.0.1:port */
  address: string;
  /** tls://127.0.0.1:port */
  tlsAddress?: string;
  metricsUrl: string;
  config: string;
}

export interface PraefectNodePlan {
  index: number;
  name: string;
  dir: string;
  configPath: string;
  logFile: string;
  address: string;
  tlsAddress?: string;
  metricsUrl: string;
  config: string;
}

export interface ClusterPlan {
  name: string;
  virtualStorage: string;
  replicationFactor: number;
  tls: boolean;
  gitaly: GitalyNodePlan[];
  praefect: PraefectNodePlan[];
  /** The address clients are pointed at: the first Praefect, over TLS when the cluster runs TLS. */
  clientAddress: string;
}

export interface PlanInput {
  name: string;
  spec: ResolvedGitalyClusterSpec;
  layout: StateLayout;
  ports: ClusterPorts;
  /** Key pairs and CA; required when the spec asks for TLS. */
  tls?: LocalTls;
  logLevel: LogLevel;
  /** Parent of Gitaly runtime dirs whose path in the state dir would be too long for a socket. */
  shortRuntimeBase: string;
  /**
   * [auth] transitioning of every server (default false): true when the cluster starts in the
   * middle of a token rotation whose phase lets servers accept any token.
   */
  authTransitioning?: boolean;
}

/** The listeners a cluster needs, by name; the port allocator assigns each a port. */
export function listenerNames(spec: ResolvedGitalyClusterSpec): string[] {
  const tls = localTlsEnabled(spec);
  const of = (prefix: string) => [`${prefix}.grpc`, ...(tls ? [`${prefix}.tls`] : []), `${prefix}.metrics`];
  return [
    ...Array.from({ length: spec.gitaly.replicas }, (_, i) => of(`gitaly-${i}`)).flat(),
    ...Array.from({ length: spec.praefect.replicas }, (_, i) => of(`praefect-${i}`)).flat(),
  ];
}

/** Groups assigned ports (by listenerNames() name) into ClusterPorts. */
export function clusterPorts(
  spec: ResolvedGitalyClusterSpec,
  postgres: number,
  assigned: Record<string, number>,
): ClusterPorts {
  const tls = localTlsEnabled(spec);
  const of = (prefix: string): ListenerPorts => {
    const port = (kind: string) => {
      const p = assigned[`${prefix}.${kind}`];
      if (p === undefined) throw new Error(`no port assigned to ${prefix}.${kind}`);
      return p;
    };
    return { grpc: port("grpc"), ...(tls ? { tls: port("tls") } : {}), metrics: port("metrics") };
  };
  return {
    postgres,
    gitaly: Array.from({ length: spec.gitaly.replicas }, (_, i) => of(`gitaly-${i}`)),
    praefect: Array.from({ length: spec.praefect.replicas }, (_, i) => of(`praefect-${i}`)),
  };
}

/** Gitaly's [[concurrency]] from the spec's limits (maxPerRepo is Gitaly's per-repository max_concurrency). */
export function concurrencyParams(limits: readonly ConcurrencyLimit[] | undefined): ConcurrencyParams[] {
  return (limits ?? []).map((l) => ({
    rpc: l.rpc,
    maxConcurrency: l.maxPerRepo,
    ...(l.maxQueueSize !== undefined ? { maxQueueSize: l.maxQueueSize } : {}),
    ...(l.maxQueueWait !== undefined ? { maxQueueWaitMs: parseDuration(l.maxQueueWait) } : {}),
  }));
}

export function failoverParams(failover: ResolvedGitalyClusterSpec["praefect"]["failover"]): FailoverParams {
  return {
    enabled: failover.enabled,
    ...(failover.errorThresholdWindow !== undefined
      ? { errorThresholdWindowMs: parseDuration(failover.errorThresholdWindow) }
      : {}),
    ...(failover.writeErrorThresholdCount !== undefined
      ? { writeErrorThresholdCount: failover.writeErrorThresholdCount }
      : {}),
    ...(failover.readErrorThresholdCount !== undefined
      ? { readErrorThresholdCount: failover.readErrorThresholdCount }
      : {}),
  };
}

// Gitaly listens on <runtime_dir>/gitaly-<pid>/sock.d/intern; a unix socket path has at most 107 bytes.
const SOCKET_SUFFIX_BYTES = "/gitaly-4194304/sock.d/intern".length;
const MAX_SOCKET_PATH_BYTES = 107;

/**
 * Gitaly's runtime dir: in the state dir when the internal socket path fits, else a short
 * directory under `shortBase` named after the state dir (runtime files need not survive).
 */
export function gitalyRuntimeDir(layout: StateLayout, storage: string, index: number, shortBase: string): string {
  const preferred = join(layout.gitalyDir, storage, "run");
  if (Buffer.byteLength(preferred) + SOCKET_SUFFIX_BYTES <= MAX_SOCKET_PATH_BYTES) return preferred;
  const id = createHash("sha256").update(layout.root).digest("hex").slice(0, 10);
  return join(shortBase, `gitaly-cluster-${id}`, String(index));
}

const hostPort = (port: number) => `${LOOPBACK}:${port}`;

export function planCluster(input: PlanInput): ClusterPlan {
  const { spec, layout, ports, name } = input;
  const tls = localTlsEnabled(spec);
  if (tls && input.tls === undefined) throw new Error("the spec asks for TLS but no certificates were given");
  if (ports.gitaly.length !== spec.gitaly.replicas || ports.praefect.length !== spec.praefect.replicas) {
    throw new Error("ports do not match the number of Gitaly nodes and Praefects");
  }
  const logging = { format: "json" as const, level: input.logLevel };
  const transitioning = input.authTransitioning ?? false;
  const concurrency = concurrencyParams(spec.gitaly.concurrency);

  const gitaly = ports.gitaly.map((p, index): GitalyNodePlan => {
    const storage = storageName(name, index);
    const dir = join(layout.gitalyDir, storage);
    const storagePath = join(dir, "repositories");
    const runtimeDir = gitalyRuntimeDir(layout, storage, index, input.shortRuntimeBase);
    const tlsPort = tls ? p.tls : undefined;
    const config = renderGitalyConfig({
      listenAddr: hostPort(p.grpc),
      ...(tlsPort !== undefined && input.tls ? { tls: { listenAddr: hostPort(tlsPort), ...input.tls.gitaly } } : {}),
      prometheusListenAddr: hostPort(p.metrics),
      runtimeDir,
      gracefulRestartTimeoutMs: LOCAL_GRACE_MS,
      auth: { tokenFile: layout.gitalyTokenFile, transitioning },
      storage: { name: storage, path: storagePath },
      logging,
      ...(concurrency.length > 0 ? { concurrency } : {}),
    });
    return {
      index,
      storage,
      dir,
      storagePath,
      runtimeDir,
      configPath: join(dir, "config.toml"),
      logFile: join(layout.logsDir, `${storage}.log`),
      address: `tcp://${hostPort(p.grpc)}`,
      ...(tlsPort !== undefined ? { tlsAddress: `tls://${hostPort(tlsPort)}` } : {}),
      metricsUrl: `http://${hostPort(p.metrics)}/metrics`,
      config,
    };
  });

  const virtualStorage = spec.virtualStorage.name;
  const nodes = gitaly.map((g) => ({
    storage: g.storage,
    address: g.tlsAddress ?? g.address,
    tokenFile: layout.gitalyTokenFile,
  }));
  const praefect = ports.praefect.map((p, index): PraefectNodePlan => {
    const nodeName = `praefect-${index}`;
    const dir = join(layout.praefectDir, nodeName);
    const tlsPort = tls ? p.tls : undefined;
    const config = renderPraefectConfig({
      listenAddr: hostPort(p.grpc),
      ...(tlsPort !== undefined && input.tls
        ? { tls: { listenAddr: hostPort(tlsPort), ...input.tls.praefect, minVersion: "TLS 1.2" } }
        : {}),
      prometheusListenAddr: hostPort(p.metrics),
      gracefulStopTimeoutMs: LOCAL_GRACE_MS,
      auth: { tokenFile: layout.praefectTokenFile, transitioning },
      logging,
      virtualStorages: [{ name: virtualStorage, defaultReplicationFactor: spec.praefect.replicationFactor, nodes }],
      // The password is not in the file: the runner passes it as PGPASSWORD, as a pod gets it from a Secret.
      database: {
        host: LOOPBACK,
        port: ports.postgres,
        user: POSTGRES_USER,
        dbname: PRAEFECT_DATABASE,
        sslmode: "disable",
      },
      failover: failoverParams(spec.praefect.failover),
      yamux: { maximumStreamWindowSizeBytes: spec.praefect.yamux.maximumStreamWindowSizeBytes },
    });
    return {
      index,
      name: nodeName,
      dir,
      configPath: join(dir, "config.toml"),
      logFile: join(layout.logsDir, `${nodeName}.log`),
      address: `tcp://${hostPort(p.grpc)}`,
      ...(tlsPort !== undefined ? { tlsAddress: `tls://${hostPort(tlsPort)}` } : {}),
      metricsUrl: `http://${hostPort(p.metrics)}/metrics`,
      config,
    };
  });

  const first = praefect[0];
  if (!first) throw new Error("a cluster needs at least one Praefect");
  return {
    name,
    virtualStorage,
    replicationFactor: spec.praefect.replicationFactor,
    tls,
    gitaly,
    praefect,
    clientAddress: first.tlsAddress ?? first.address,
  };
}
