// The name of every object the operator writes for one GitalyCluster. One place, so a
// Service name, a certificate SAN and a Praefect node address cannot drift apart.
import { storageName } from "../../shared/render/names.js";

export interface ClusterObjectNames {
  gitaly: string;
  /** Headless Service of the Gitaly StatefulSet (per-pod DNS names). */
  gitalyHeadless: string;
  gitalyConfig: string;
  praefect: string;
  praefectConfig: string;
  migrationJobPrefix: string;
  postgres: string;
  /** Operator-generated database password (managed database only). */
  postgresSecret: string;
  /** Operator-generated token clients (GitLab) present to Praefect. */
  praefectToken: string;
  /** Operator-generated token Praefect presents to the Gitaly nodes. */
  gitalyToken: string;
  /** For GitLab: address, token, ca.crt. */
  client: string;
  ca: string;
  tls: string;
  gitalyPdb: string;
  praefectPdb: string;
}

export function clusterObjectNames(cluster: string): ClusterObjectNames {
  return {
    gitaly: `${cluster}-gitaly`,
    gitalyHeadless: `${cluster}-gitaly`,
    gitalyConfig: `${cluster}-gitaly-config`,
    praefect: `${cluster}-praefect`,
    praefectConfig: `${cluster}-praefect-config`,
    migrationJobPrefix: `${cluster}-migrate`,
    postgres: `${cluster}-postgres`,
    postgresSecret: `${cluster}-postgres`,
    praefectToken: `${cluster}-praefect-token`,
    gitalyToken: `${cluster}-gitaly-token`,
    client: `${cluster}-gitaly-client`,
    ca: `${cluster}-ca`,
    tls: `${cluster}-tls`,
    gitalyPdb: `${cluster}-gitaly`,
    praefectPdb: `${cluster}-praefect`,
  };
}

/** Storage names of the first `replicas` Gitaly pods, in pod order. */
export function gitalyStorageNames(cluster: string, replicas: number): string[] {
  return Array.from({ length: replicas }, (_, i) => storageName(cluster, i));
}

/**
 * Longest cluster name whose derived names still fit: `<name>-postgres` as a StatefulSet (its
 * pods' controller-revision-hash label holds the name plus 11 characters, at most 63) and
 * `<name>-migrate-<10 hex>` as a Job (its pods' job-name label, at most 63).
 */
export const MAX_CLUSTER_NAME_LENGTH = 43;
