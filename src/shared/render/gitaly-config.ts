// Gitaly's config.toml for one node, as the operator puts it in a ConfigMap and the local runner
// writes it to disk: the same text in both places.
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

/** One [[concurrency]] limit (or its `unauthenticated` variant). */
export interface ConcurrencyLimitParams {
  maxConcurrency?: number;
  maxQueueSize?: number;
  maxQueueWaitMs?: number;
  adaptive?: boolean;
  initialLimit?: number;
  minLimit?: number;
  maxLimit?: number;
}

export interface ConcurrencyParams extends ConcurrencyLimitParams {
  /** Full method name: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel". */
  rpc: string;
  unauthenticated?: ConcurrencyLimitParams;
}

export interface GitalyRenderParams {
  /** Plain gRPC listener, host:port ("0.0.0.0:8075"). */
  listenAddr: string;
  tls?: TlsListenerParams;
  /** host:port of the metrics listener ("0.0.0.0:9236"). */
  prometheusListenAddr?: string;
  /** Where Gitaly keeps its per-process sockets and hook scratch space. */
  runtimeDir: string;
  gracefulRestartTimeoutMs?: number;
  auth?: AuthParams;
  /** This node's single storage; in a cluster its name is the pod name (storageName()). */
  storage: { name: string; path: string };
  logging?: LoggingParams;
  concurrency?: ConcurrencyParams[];
  git?: {
    catfileCacheSize?: number;
    /** Extra git config for every git invocation; never put credentials here. */
    config?: { key: string; value: string }[];
  };
  /** GitLab's internal API; the shared secret is read from `secretFile`. */
  gitlab?: { url: string; secretFile?: string };
  hooks?: { customHooksDir: string };
}

function limitEntries(limit: ConcurrencyLimitParams): Record<string, string | number | boolean | undefined> {
  return {
    max_concurrency: limit.maxConcurrency,
    max_queue_size: limit.maxQueueSize,
    max_queue_wait: duration(limit.maxQueueWaitMs),
    adaptive: limit.adaptive,
    initial_limit: limit.initialLimit,
    min_limit: limit.minLimit,
    max_limit: limit.maxLimit,
  };
}

function concurrencyTable(c: ConcurrencyParams): TomlTableOut {
  return table({
    rpc: requireText("concurrency rpc", c.rpc),
    ...limitEntries(c),
    unauthenticated: c.unauthenticated === undefined ? undefined : table(limitEntries(c.unauthenticated)),
  });
}

/** The TOML text of one Gitaly node's config.toml. Throws on a missing name or relative path. */
export function renderGitalyConfig(params: GitalyRenderParams): string {
  const git = params.git;
  const doc = table({
    listen_addr: requireText("listen address", params.listenAddr),
    tls_listen_addr: params.tls?.listenAddr,
    prometheus_listen_addr: params.prometheusListenAddr,
    runtime_dir: requireAbsolutePath("runtime_dir", params.runtimeDir),
    graceful_restart_timeout: duration(params.gracefulRestartTimeoutMs),
    auth: authTable(params.auth),
    tls: tlsTable(params.tls),
    storage: [
      table({
        name: requireText("storage name", params.storage.name),
        path: requireAbsolutePath("storage path", params.storage.path),
      }),
    ],
    logging: loggingTable(params.logging),
    git: optionalTable({
      catfile_cache_size: git?.catfileCacheSize,
      config: git?.config?.map((entry) => table({ key: requireText("git config key", entry.key), value: entry.value })),
    }),
    gitlab:
      params.gitlab === undefined
        ? undefined
        : table({
            url: requireText("GitLab URL", params.gitlab.url),
            secret_file:
              params.gitlab.secretFile === undefined
                ? undefined
                : requireAbsolutePath("GitLab secret file", params.gitlab.secretFile),
          }),
    hooks:
      params.hooks === undefined
        ? undefined
        : table({ custom_hooks_dir: requireAbsolutePath("custom hooks dir", params.hooks.customHooksDir) }),
    concurrency: params.concurrency?.map(concurrencyTable),
  });
  return toToml(
    doc,
    "Gitaly configuration rendered by gitaly-operator (src/shared/render).\nSecrets are referenced by file path only.",
  );
}
