// The Praefect routers: config, Deployment (stateless: PostgreSQL holds their state) and the
// Service GitLab dials.
import type { V1ConfigMap, V1Deployment, V1EnvVar, V1Service, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import { PRAEFECT_PORTS } from "../../shared/render/names.js";
import {
  PRAEFECT_CONFIG_KEY,
  PRAEFECT_GRACEFUL_STOP_MS,
  praefectConfigChecksum,
  renderClusterPraefectConfig,
} from "./configs.js";
import { type BuildInput, CONFIG_CHECKSUM_ANNOTATION, imageOf, selectorLabels, tlsEnabled } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";
import { CA_CERT_KEY, PRAEFECT_MOUNTS, PRAEFECT_POD_CONFIG_PATH, TOKEN_FILE_NAME } from "./paths.js";
import {
  containerSecurityContext,
  grpcHealthProbes,
  grpcServerPorts,
  placementFields,
  podSecurityContext,
  secretKeyVolume,
  secretVolume,
  withResources,
} from "./pods.js";
import { databasePasswordRef, gitalyTokenRef, praefectTokenRef, tlsSecretName } from "./secrets.js";

export function praefectConfigMap(input: BuildInput): V1ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: ownedMeta(input, clusterObjectNames(input.cluster.name).praefectConfig, "praefect"),
    data: { [PRAEFECT_CONFIG_KEY]: renderClusterPraefectConfig(input) },
  };
}

/** Environment, volumes and mounts every Praefect container needs (the routers and the migration Job). */
export function praefectRuntime(
  input: BuildInput,
  opts: { tokens: boolean },
): {
  env: V1EnvVar[];
  volumes: V1Volume[];
  mounts: V1VolumeMount[];
} {
  const names = clusterObjectNames(input.cluster.name);
  const password = databasePasswordRef(input);
  const tlsSecret = tlsSecretName(input);
  const dbCa = input.spec.database.external?.caSecretRef;
  const env: V1EnvVar[] = [
    // libpq's variable: the password never appears in the config file.
    { name: "PGPASSWORD", valueFrom: { secretKeyRef: { name: password.name, key: password.key } } },
    { name: "HOME", value: PRAEFECT_MOUNTS.tmpDir },
    // Go's and our Praefect's way to trust the cluster CA for tls:// Gitaly nodes.
    ...(tlsSecret ? [{ name: "SSL_CERT_FILE", value: `${PRAEFECT_MOUNTS.tlsDir}/${CA_CERT_KEY}` }] : []),
  ];
  const volumes: V1Volume[] = [
    { name: "config", configMap: { name: names.praefectConfig } },
    { name: "tmp", emptyDir: {} },
    ...(dbCa ? [secretKeyVolume("database-ca", dbCa.name, dbCa.key, CA_CERT_KEY)] : []),
  ];
  const mounts: V1VolumeMount[] = [
    { name: "config", mountPath: PRAEFECT_MOUNTS.configDir, readOnly: true },
    { name: "tmp", mountPath: PRAEFECT_MOUNTS.tmpDir },
    ...(dbCa ? [{ name: "database-ca", mountPath: PRAEFECT_MOUNTS.databaseCaDir, readOnly: true }] : []),
  ];
  if (opts.tokens) {
    const client = praefectTokenRef(input);
    const internal = gitalyTokenRef(input);
    volumes.push(
      secretKeyVolume("auth", client.name, client.key, TOKEN_FILE_NAME),
      secretKeyVolume("gitaly-auth", internal.name, internal.key, TOKEN_FILE_NAME),
    );
    mounts.push(
      { name: "auth", mountPath: PRAEFECT_MOUNTS.authDir, readOnly: true },
      { name: "gitaly-auth", mountPath: PRAEFECT_MOUNTS.gitalyAuthDir, readOnly: true },
    );
    if (tlsSecret) {
      volumes.push(secretVolume("tls", tlsSecret));
      mounts.push({ name: "tls", mountPath: PRAEFECT_MOUNTS.tlsDir, readOnly: true });
    }
  }
  return { env, volumes, mounts };
}

export function praefectDeployment(input: BuildInput): V1Deployment {
  const names = clusterObjectNames(input.cluster.name);
  const selector = selectorLabels(input.cluster.name, "praefect");
  const praefect = input.spec.praefect;
  const runtime = praefectRuntime(input, { tokens: true });
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: ownedMeta(input, names.praefect, "praefect"),
    spec: {
      replicas: praefect.replicas,
      selector: { matchLabels: selector },
      // Never fewer routers than asked for during a rollout.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: { ...selector },
          annotations: { [CONFIG_CHECKSUM_ANNOTATION]: praefectConfigChecksum(input) },
        },
        spec: {
          securityContext: podSecurityContext(),
          terminationGracePeriodSeconds: PRAEFECT_GRACEFUL_STOP_MS / 1000 + 5,
          enableServiceLinks: false,
          ...placementFields(praefect, selector),
          containers: [
            withResources(
              {
                name: "praefect",
                image: imageOf(input),
                imagePullPolicy: input.spec.imagePullPolicy,
                args: ["praefect", "-config", PRAEFECT_POD_CONFIG_PATH, "serve"],
                env: runtime.env,
                ports: grpcServerPorts(PRAEFECT_PORTS, tlsEnabled(input)),
                ...grpcHealthProbes(PRAEFECT_PORTS.grpc),
                volumeMounts: runtime.mounts,
                securityContext: containerSecurityContext(),
              },
              praefect.resources,
            ),
          ],
          volumes: runtime.volumes,
        },
      },
    },
  };
}

export function praefectService(input: BuildInput): V1Service {
  const names = clusterObjectNames(input.cluster.name);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: ownedMeta(input, names.praefect, "praefect"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels(input.cluster.name, "praefect"),
      ports: [
        { name: "grpc", port: PRAEFECT_PORTS.grpc, targetPort: "grpc", protocol: "TCP" },
        ...(tlsEnabled(input)
          ? [{ name: "grpc-tls", port: PRAEFECT_PORTS.tls, targetPort: "grpc-tls", protocol: "TCP" }]
          : []),
        { name: "metrics", port: PRAEFECT_PORTS.metrics, targetPort: "metrics", protocol: "TCP" },
      ],
    },
  };
}
