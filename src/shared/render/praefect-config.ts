// Praefect's config.toml, as the operator puts it in a ConfigMap and the local runner writes it
// to disk. No secret appears in it: Praefect's own token and each node's token are files, and the
// database password comes from the PGPASSWORD environment variable (set from a Secret in a pod),
// which node-postgres reads when [database] has no password, as libpq does for upstream.
import {
  type AuthParams,
  authTable,
  duration,
  type LoggingParams,
  loggingTable,
  optionalTable,
  requireAbsolutePath,
  requireText,
  type TlsListenerParams,
  type TomlTableOut,
  table,
  tlsTable,
  toToml,
} from "./common.js";

export interface PraefectNodeParams {
  /** The Gitaly storage name (in a cluster: the pod name). */
  storage: string;
  /** tcp://host:port, tls://host:port, unix:/path (see gitalyNodeAddress()). */
  address: string;
  /** File holding the token Praefect presents to this node (Gitaly's [auth] token). */
  tokenFile?: string;
}

export interface VirtualStorageParams {
  name: string;
  /** 0 or absent: every node holds every repository. */
  defaultReplicationFactor?: number;
  nodes: PraefectNodeParams[];
}

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";

export interface DatabaseConnectionParams {
  host: string;
  port?: number;
  user?: string;
  dbname?: string;
  sslmode?: SslMode;
  /** CA bundle path (verify-ca, verify-full). */
  sslrootcert?: string;
  /** Client certificate and key paths, when the server wants one. */
  sslcert?: string;
  sslkey?: string;
}

export interface DatabaseParams extends DatabaseConnectionParams {
  /**
   * The direct, session-level connection LISTEN/NOTIFY needs, when it differs from the main one
   * (e.g. the main connection goes through a transaction-pooling PgBouncer). Only the keys that
   * differ are written.
   */
  sessionPooled?: Partial<DatabaseConnectionParams>;
}

export interface FailoverParams {
  enabled: boolean;
  /** Error-based failure detection: all three or none. */
  errorThresholdWindowMs?: number;
  writeErrorThresholdCount?: number;
  readErrorThresholdCount?: number;
}

export interface PraefectRenderParams {
  /** Plain gRPC listener, host:port ("0.0.0.0:2305"). */
  listenAddr: string;
  tls?: TlsListenerParams;
  /** host:port of the metrics listener ("0.0.0.0:9652"). */
  prometheusListenAddr?: string;
  gracefulStopTimeoutMs?: number;
  /** The token clients (GitLab) present to Praefect. */
  auth?: AuthParams;
  logging?: LoggingParams;
  virtualStorages: VirtualStorageParams[];
  database: DatabaseParams;
  failover?: FailoverParams;
  replication?: { batchSize?: number; parallelStorageProcessingWorkers?: number };
  reconciliation?: { schedulingIntervalMs?: number; histogramBuckets?: number[] };
  /** Per-stream receive window on the connections to the nodes (upstream's default: 256 KiB). */
  yamux?: { maximumStreamWindowSizeBytes?: number };
}

const CONNECTION_KEYS = ["host", "port", "user", "dbname", "sslmode", "sslrootcert", "sslcert", "sslkey"] as const;

function connectionEntries(c: Partial<DatabaseConnectionParams>): Record<string, string | number | undefined> {
  const path = (what: string, value: string | undefined) =>
    value === undefined ? undefined : requireAbsolutePath(`database ${what}`, value);
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    dbname: c.dbname,
    sslmode: c.sslmode,
    sslrootcert: path("sslrootcert", c.sslrootcert),
    sslcert: path("sslcert", c.sslcert),
    sslkey: path("sslkey", c.sslkey),
  };
}

function databaseTable(db: DatabaseParams): TomlTableOut {
  const direct = db.sessionPooled ?? {};
  const differing: Partial<DatabaseConnectionParams> = {};
  for (const key of CONNECTION_KEYS) {
    const value = direct[key];
    // Each key falls back to [database] when absent, so repeating an equal value says nothing.
    if (value !== undefined && value !== db[key]) Object.assign(differing, { [key]: value });
  }
  return table({
    ...connectionEntries({ ...db, host: requireText("database host", db.host) }),
    session_pooled: optionalTable(connectionEntries(differing)),
  });
}

function virtualStorageTable(vs: VirtualStorageParams): TomlTableOut {
  requireText("virtual storage name", vs.name);
  if (vs.nodes.length === 0) throw new Error(`virtual storage ${JSON.stringify(vs.name)} has no nodes`);
  const factor = vs.defaultReplicationFactor;
  if (factor !== undefined && factor > vs.nodes.length) {
    throw new Error(
      `virtual storage ${JSON.stringify(vs.name)}: replication factor ${factor} is higher than its ${vs.nodes.length} nodes`,
    );
  }
  return table({
    name: vs.name,
    default_replication_factor: factor,
    node: vs.nodes.map((node) =>
      table({
        storage: requireText("node storage", node.storage),
        address: requireText(`address of node ${JSON.stringify(node.storage)}`, node.address),
        token_file:
          node.tokenFile === undefined
            ? undefined
            : requireAbsolutePath(`token file of node ${JSON.stringify(node.storage)}`, node.tokenFile),
      }),
    ),
  });
}

function failoverTable(f: FailoverParams | undefined): TomlTableOut | undefined {
  if (f === undefined) return undefined;
  const thresholds = [f.errorThresholdWindowMs, f.writeErrorThresholdCount, f.readErrorThresholdCount];
  const set = thresholds.filter((v) => v !== undefined && v > 0).length;
  if (f.enabled && set !== 0 && set !== thresholds.length) {
    throw new Error(
      "failover: errorThresholdWindowMs, writeErrorThresholdCount and readErrorThresholdCount go together (all above 0, or none)",
    );
  }
  return table({
    enabled: f.enabled,
    error_threshold_window: duration(f.errorThresholdWindowMs),
    write_error_threshold_count: f.writeErrorThresholdCount,
    read_error_threshold_count: f.readErrorThresholdCount,
  });
}

/** The TOML text of Praefect's config.toml. Throws on an inconsistent topology or a relative path. */
export function renderPraefectConfig(params: PraefectRenderParams): string {
  if (params.virtualStorages.length === 0) throw new Error("no virtual storage to render");
  const doc = table({
    listen_addr: requireText("listen address", params.listenAddr),
    tls_listen_addr: params.tls?.listenAddr,
    prometheus_listen_addr: params.prometheusListenAddr,
    graceful_stop_timeout: duration(params.gracefulStopTimeoutMs),
    auth: authTable(params.auth),
    tls: tlsTable(params.tls),
    logging: loggingTable(params.logging),
    virtual_storage: params.virtualStorages.map(virtualStorageTable),
    database: databaseTable(params.database),
    failover: failoverTable(params.failover),
    replication: optionalTable({
      batch_size: params.replication?.batchSize,
      parallel_storage_processing_workers: params.replication?.parallelStorageProcessingWorkers,
    }),
    reconciliation: optionalTable({
      scheduling_interval: duration(params.reconciliation?.schedulingIntervalMs),
      histogram_buckets: params.reconciliation?.histogramBuckets,
    }),
    yamux: optionalTable({
      maximum_stream_window_size_bytes: params.yamux?.maximumStreamWindowSizeBytes,
    }),
  });
  return toToml(
    doc,
    "Praefect configuration rendered by gitaly-operator (src/shared/render).\nSecrets are referenced by file path only; the database password comes from PGPASSWORD.",
  );
}
