// The Gitaly nodes: a StatefulSet (storage name = pod name, PVC repo-data), its headless
// Service (per-pod DNS names Praefect dials), the per-node config and a PodDisruptionBudget.
import type { V1ConfigMap, V1PodDisruptionBudget, V1Service, V1StatefulSet, V1Volume } from "@kubernetes/client-node";
import { GITALY_PORTS, GITALY_STORAGE_PATH } from "../../shared/render/names.js";
import { GITALY_GRACEFUL_STOP_MS, gitalyConfigChecksum, renderGitalyConfigs } from "./configs.js";
import { type BuildInput, CONFIG_CHECKSUM_ANNOTATION, imageOf, selectorLabels, tlsEnabled } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";
import { CA_CERT_KEY, GITALY_MOUNTS, GITALY_POD_CONFIG_PATH, TOKEN_FILE_NAME } from "./paths.js";
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
import { gitalyTokenRef, tlsSecretName } from "./secrets.js";

export const REPO_DATA_VOLUME = "repo-data";

export function gitalyConfigMap(input: BuildInput): V1ConfigMap {
  const names = clusterObjectNames(input.cluster.name);
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: ownedMeta(input, names.gitalyConfig, "gitaly"),
    data: renderGitalyConfigs(input),
  };
}

export function gitalyHeadlessService(input: BuildInput): V1Service {
  const names = clusterObjectNames(input.cluster.name);
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: ownedMeta(input, names.gitalyHeadless, "gitaly"),
    spec: {
      clusterIP: "None",
      // Praefect must resolve a starting pod's name to run its health checks against it.
      publishNotReadyAddresses: true,
      selector: selectorLabels(input.cluster.name, "gitaly"),
      ports: [
        { name: "grpc", port: GITALY_PORTS.grpc, targetPort: "grpc", protocol: "TCP" },
        ...(tlsEnabled(input)
          ? [{ name: "grpc-tls", port: GITALY_PORTS.tls, targetPort: "grpc-tls", protocol: "TCP" }]
          : []),
        { name: "metrics", port: GITALY_PORTS.metrics, targetPort: "metrics", protocol: "TCP" },
      ],
    },
  };
}

export function gitalyStatefulSet(input: BuildInput): V1StatefulSet {
  const names = clusterObjectNames(input.cluster.name);
  const selector = selectorLabels(input.cluster.name, "gitaly");
  const gitaly = input.spec.gitaly;
  const token = gitalyTokenRef(input);
  const tlsSecret = tlsSecretName(input);
  const volumes: V1Volume[] = [
    { name: "config", configMap: { name: names.gitalyConfig } },
    secretKeyVolume("auth", token.name, token.key, TOKEN_FILE_NAME),
    { name: "runtime", emptyDir: {} },
    { name: "tmp", emptyDir: {} },
    ...(tlsSecret ? [secretVolume("tls", tlsSecret)] : []),
  ];
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: ownedMeta(input, names.gitaly, "gitaly"),
    spec: {
      serviceName: names.gitalyHeadless,
      replicas: input.gitalyReplicas,
      // Nodes are independent storages: starting them one by one only slows recovery.
      podManagementPolicy: "Parallel",
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { partition: 0 } },
      // Repositories outlive the cluster object: deleting it must never delete the data.
      persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Retain" },
      selector: { matchLabels: selector },
      template: {
        metadata: {
          labels: { ...selector },
          annotations: { [CONFIG_CHECKSUM_ANNOTATION]: gitalyConfigChecksum(input) },
        },
        spec: {
          securityContext: podSecurityContext(),
          // Longer than Gitaly's graceful stop so in-flight RPCs can finish.
          terminationGracePeriodSeconds: GITALY_GRACEFUL_STOP_MS / 1000 + 5,
          enableServiceLinks: false,
          ...placementFields(gitaly, selector),
          containers: [
            withResources(
              {
                name: "gitaly",
                image: imageOf(input),
                imagePullPolicy: input.spec.imagePullPolicy,
                args: ["gitaly", "serve", GITALY_POD_CONFIG_PATH],
                env: [
                  { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
                  { name: "HOME", value: GITALY_MOUNTS.tmpDir },
                  { name: "TMPDIR", value: GITALY_MOUNTS.tmpDir },
                  // Replication dials other nodes over tls:// and must trust the cluster CA.
                  ...(tlsSecret ? [{ name: "SSL_CERT_FILE", value: `${GITALY_MOUNTS.tlsDir}/${CA_CERT_KEY}` }] : []),
                ],
                ports: grpcServerPorts(GITALY_PORTS, tlsEnabled(input)),
                ...grpcHealthProbes(GITALY_PORTS.grpc),
                volumeMounts: [
                  // Each pod reads the config rendered for its own storage (named after the pod).
                  { name: "config", mountPath: GITALY_MOUNTS.configDir, readOnly: true },
                  { name: "auth", mountPath: GITALY_MOUNTS.authDir, readOnly: true },
                  { name: REPO_DATA_VOLUME, mountPath: GITALY_STORAGE_PATH },
                  { name: "runtime", mountPath: GITALY_MOUNTS.runtimeDir },
                  { name: "tmp", mountPath: GITALY_MOUNTS.tmpDir },
                  ...(tlsSecret ? [{ name: "tls", mountPath: GITALY_MOUNTS.tlsDir, readOnly: true }] : []),
                ],
                securityContext: containerSecurityContext(),
              },
              gitaly.resources,
            ),
          ],
          volumes,
        },
      },
      volumeClaimTemplates: [
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: { name: REPO_DATA_VOLUME, labels: { ...selector } },
          spec: {
            accessModes: ["ReadWriteOnce"],
            // volumeClaimTemplates are immutable: growth is applied to the PVCs themselves.
            resources: { requests: { storage: input.deployedClaimSizes?.gitaly ?? gitaly.storage.size } },
            ...(gitaly.storage.storageClassName ? { storageClassName: gitaly.storage.storageClassName } : {}),
          },
        },
      ],
    },
  };
}

export function podDisruptionBudget(
  input: BuildInput,
  name: string,
  component: "gitaly" | "praefect",
): V1PodDisruptionBudget {
  return {
    apiVersion: "policy/v1",
    kind: "PodDisruptionBudget",
    metadata: ownedMeta(input, name, component),
    spec: {
      // One node at a time: every repository keeps a majority of its replicas.
      maxUnavailable: 1,
      selector: { matchLabels: selectorLabels(input.cluster.name, component) },
    },
  };
}
