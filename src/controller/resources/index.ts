// Pure builders: a GitalyCluster's resolved spec (plus the facts the reconciler gathered) in,
// the Kubernetes objects that realise it out. No I/O; golden-tested.
import type {
  KubernetesObject,
  V1ConfigMap,
  V1Deployment,
  V1Job,
  V1PodDisruptionBudget,
  V1Secret,
  V1Service,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { gitalyConfigMap, gitalyHeadlessService, gitalyStatefulSet, podDisruptionBudget } from "./gitaly.js";
import type { BuildInput } from "./input.js";
import { migrationJob } from "./migration.js";
import { clusterObjectNames } from "./names.js";
import { postgresService, postgresStatefulSet } from "./postgres.js";
import { praefectConfigMap, praefectDeployment, praefectService } from "./praefect.js";
import { caSecret, clientSecret, generatedSecrets, servingTlsSecret, tokenSecrets } from "./secrets.js";

export interface ClusterObjects {
  /** Created once, never re-applied (the managed database's password). */
  generatedSecrets: V1Secret[];
  /** The internal and client token Secrets the pods mount. */
  tokenSecrets: V1Secret[];
  caSecret?: V1Secret;
  tlsSecret?: V1Secret;
  clientSecret: V1Secret;
  gitalyConfig: V1ConfigMap;
  praefectConfig: V1ConfigMap;
  gitalyService: V1Service;
  praefectService: V1Service;
  postgresService?: V1Service;
  postgres?: V1StatefulSet;
  gitaly: V1StatefulSet;
  gitalyPdb: V1PodDisruptionBudget;
  praefectPdb: V1PodDisruptionBudget;
  migrationJob: V1Job;
  /** Applied only once the migration Job for the current image and database has succeeded. */
  praefect: V1Deployment;
}

export function buildClusterObjects(input: BuildInput): ClusterObjects {
  const names = clusterObjectNames(input.cluster.name);
  const ca = caSecret(input);
  const tls = servingTlsSecret(input);
  const pgService = postgresService(input);
  const pg = postgresStatefulSet(input);
  return {
    generatedSecrets: generatedSecrets(input),
    tokenSecrets: tokenSecrets(input),
    ...(ca ? { caSecret: ca } : {}),
    ...(tls ? { tlsSecret: tls } : {}),
    clientSecret: clientSecret(input),
    gitalyConfig: gitalyConfigMap(input),
    praefectConfig: praefectConfigMap(input),
    gitalyService: gitalyHeadlessService(input),
    praefectService: praefectService(input),
    ...(pgService ? { postgresService: pgService } : {}),
    ...(pg ? { postgres: pg } : {}),
    gitaly: gitalyStatefulSet(input),
    gitalyPdb: podDisruptionBudget(input, names.gitalyPdb, "gitaly"),
    praefectPdb: podDisruptionBudget(input, names.praefectPdb, "praefect"),
    migrationJob: migrationJob(input),
    praefect: praefectDeployment(input),
  };
}

/** Every object in the order the reconciler applies them (dependencies first). */
export function applyOrder(objects: ClusterObjects): KubernetesObject[] {
  return [
    ...objects.generatedSecrets,
    ...objects.tokenSecrets,
    ...(objects.caSecret ? [objects.caSecret] : []),
    ...(objects.tlsSecret ? [objects.tlsSecret] : []),
    objects.clientSecret,
    objects.gitalyConfig,
    objects.praefectConfig,
    objects.gitalyService,
    objects.praefectService,
    ...(objects.postgresService ? [objects.postgresService] : []),
    ...(objects.postgres ? [objects.postgres] : []),
    objects.gitaly,
    objects.gitalyPdb,
    objects.praefectPdb,
    objects.migrationJob,
    objects.praefect,
  ];
}

export * from "./certificate.js";
export * from "./configs.js";
export * from "./input.js";
export * from "./migration.js";
export * from "./names.js";
export * from "./paths.js";
export {
  clientAddress,
  databasePasswordRef,
  encodeData,
  gitalyTokenRef,
  NEW_TOKEN_KEY,
  OLD_TOKEN_KEY,
  praefectTokenRef,
  secretValue,
  tlsSecretName,
} from "./secrets.js";
