// The Gitaly and Praefect configuration of a cluster, rendered by the same module the local
// runner uses (src/shared/render), with secrets referenced by their mounted file paths.
import { createHash } from "node:crypto";
import {
  GITALY_PORTS,
  GITALY_STORAGE_PATH,
  type GitalyRenderParams,
  gitalyNodeAddress,
  PRAEFECT_PORTS,
  type PraefectRenderParams,
  renderGitalyConfig,
  renderPraefectConfig,
  storageName,
} from "../../shared/render/index.js";
import type { DatabaseParams } from "../../shared/render/praefect-config.js";
import { parseDuration } from "../api/units.js";
import { type BuildInput, tlsEnabled } from "./input.js";
import { clusterObjectNames } from "./names.js";
import { CA_CERT_KEY, GITALY_MOUNTS, PRAEFECT_MOUNTS, TLS_CERT_KEY, TLS_KEY_KEY, TOKEN_FILE_NAME } from "./paths.js";

export const POSTGRES_PORT = 5432;
/** Role and database of the managed PostgreSQL. */
export const MANAGED_DATABASE = { user: "praefect", dbname: "praefect" } as const;

/** Gitaly's graceful restart window; the pod's termination grace period is a little longer. */
export const GITALY_GRACEFUL_STOP_MS = 25_000;
export const PRAEFECT_GRACEFUL_STOP_MS = 25_000;

export function gitalyRenderParams(input: BuildInput, index: number): GitalyRenderParams {
  const tls = tlsEnabled(input);
  return {
    listenAddr: `0.0.0.0:${GITALY_PORTS.grpc}`,
    ...(tls
      ? {
          tls: {
            listenAddr: `0.0.0.0:${GITALY_PORTS.tls}`,
            certificatePath: `${GITALY_MOUNTS.tlsDir}/${TLS_CERT_KEY}`,
            keyPath: `${GITALY_MOUNTS.tlsDir}/${TLS_KEY_KEY}`,
            minVersion: "TLS 1.2",
          },
        }
      : {}),
    prometheusListenAddr: `0.0.0.0:${GITALY_PORTS.metrics}`,
    runtimeDir: GITALY_MOUNTS.runtimeDir,
    gracefulRestartTimeoutMs: GITALY_GRACEFUL_STOP_MS,
    auth: { tokenFile: `${GITALY_MOUNTS.authDir}/${TOKEN_FILE_NAME}`, transitioning: input.transitioning ?? false },
    storage: { name: storageName(input.cluster.name, index), path: GITALY_STORAGE_PATH },
    logging: { format: "json", level: "info" },
    ...(input.spec.gitaly.concurrency && input.spec.gitaly.concurrency.length > 0
      ? {
          concurrency: input.spec.gitaly.concurrency.map((c) => ({
            rpc: c.rpc,
            maxConcurrency: c.maxPerRepo,
            ...(c.maxQueueSize !== undefined ? { maxQueueSize: c.maxQueueSize } : {}),
            ...(c.maxQueueWait !== undefined ? { maxQueueWaitMs: parseDuration(c.maxQueueWait) } : {}),
          })),
        }
      : {}),
  };
}

/** ConfigMap key of Gitaly node `index`'s config: the pod name, so the pod can pick it by $(POD_NAME). */
export function gitalyConfigKey(cluster: string, index: number): string {
  return `${storageName(cluster, index)}.toml`;
}

/** One config per Gitaly node: they differ only in the storage name (= pod name). */
export function renderGitalyConfigs(input: BuildInput): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < input.gitalyReplicas; i++) {
    out[gitalyConfigKey(input.cluster.name, i)] = renderGitalyConfig(gitalyRenderParams(input, i));
  }
  return out;
}

/**
 * Checksum of what every Gitaly pod's config has in common (node 0's config stands for all of
 * them: the others differ only in their storage name). Adding nodes must not roll the
 * existing pods, so the node count is not part of it.
 */
export function gitalyConfigChecksum(input: BuildInput): string {
  // [auth] transitioning reaches running pods through the mounted ConfigMap and a live reload;
  // it must not roll them.
  return sha256(renderGitalyConfig(gitalyRenderParams({ ...input, transitioning: false }, 0)));
}

/** Checksum of Praefect's config, without [auth] transitioning (reloaded live). */
export function praefectConfigChecksum(input: BuildInput): string {
  return sha256(renderPraefectConfig(praefectRenderParams({ ...input, transitioning: false })));
}

function databaseParams(input: BuildInput): DatabaseParams {
  const db = input.spec.database;
  const names = clusterObjectNames(input.cluster.name);
  if (db.external) {
    return {
      host: db.external.host,
      port: db.external.port,
      user: db.external.user,
      dbname: db.external.dbname,
      sslmode: db.external.sslMode,
      ...(db.external.caSecretRef ? { sslrootcert: `${PRAEFECT_MOUNTS.databaseCaDir}/${CA_CERT_KEY}` } : {}),
    };
  }
  return {
    host: `${names.postgres}.${input.cluster.namespace}.svc`,
    port: POSTGRES_PORT,
    user: MANAGED_DATABASE.user,
    dbname: MANAGED_DATABASE.dbname,
    // Traffic to the managed server stays inside the namespace's pod network.
    sslmode: "disable",
  };
}

export function praefectRenderParams(input: BuildInput): PraefectRenderParams {
  const tls = tlsEnabled(input);
  const names = clusterObjectNames(input.cluster.name);
  const failover = input.spec.praefect.failover;
  const thresholds =
    failover.errorThresholdWindow !== undefined &&
    failover.readErrorThresholdCount !== undefined &&
    failover.writeErrorThresholdCount !== undefined
      ? {
          errorThresholdWindowMs: parseDuration(failover.errorThresholdWindow),
          readErrorThresholdCount: failover.readErrorThresholdCount,
          writeErrorThresholdCount: failover.writeErrorThresholdCount,
        }
      : {};
  return {
    listenAddr: `0.0.0.0:${PRAEFECT_PORTS.grpc}`,
    ...(tls
      ? {
          tls: {
            listenAddr: `0.0.0.0:${PRAEFECT_PORTS.tls}`,
            certificatePath: `${PRAEFECT_MOUNTS.tlsDir}/${TLS_CERT_KEY}`,
            keyPath: `${PRAEFECT_MOUNTS.tlsDir}/${TLS_KEY_KEY}`,
            minVersion: "TLS 1.2",
          },
        }
      : {}),
    prometheusListenAddr: `0.0.0.0:${PRAEFECT_PORTS.metrics}`,
    gracefulStopTimeoutMs: PRAEFECT_GRACEFUL_STOP_MS,
    auth: { tokenFile: `${PRAEFECT_MOUNTS.authDir}/${TOKEN_FILE_NAME}`, transitioning: input.transitioning ?? false },
    logging: { format: "json", level: "info" },
    virtualStorages: [
      {
        name: input.spec.virtualStorage.name,
        defaultReplicationFactor: Math.min(input.spec.praefect.replicationFactor, input.gitalyReplicas),
        nodes: Array.from({ length: input.gitalyReplicas }, (_, i) => ({
          storage: storageName(input.cluster.name, i),
          address: gitalyNodeAddress({
            cluster: input.cluster.name,
            index: i,
            namespace: input.cluster.namespace,
            headlessService: names.gitalyHeadless,
            tls,
          }),
          tokenFile: `${PRAEFECT_MOUNTS.gitalyAuthDir}/${TOKEN_FILE_NAME}`,
        })),
      },
    ],
    database: databaseParams(input),
    failover: { enabled: failover.enabled, ...(failover.enabled ? thresholds : {}) },
    yamux: { maximumStreamWindowSizeBytes: input.spec.praefect.yamux.maximumStreamWindowSizeBytes },
  };
}

export const PRAEFECT_CONFIG_KEY = "config.toml";

export function renderClusterPraefectConfig(input: BuildInput): string {
  return renderPraefectConfig(praefectRenderParams(input));
}

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}
