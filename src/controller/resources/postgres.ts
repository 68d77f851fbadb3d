// The managed PostgreSQL (spec.database.managed): one server in a StatefulSet with a PVC
// and an operator-generated password. For production-grade HA use an external database.
import type { V1Service, V1StatefulSet } from "@kubernetes/client-node";
import { MANAGED_DATABASE, POSTGRES_PORT } from "./configs.js";
import { type BuildInput, selectorLabels } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";
import { containerSecurityContext, podSecurityContext, resourcesOf } from "./pods.js";
import { DATABASE_PASSWORD_KEY } from "./secrets.js";

/** The uid of the postgres user in the official images. */
const POSTGRES_UID = 999;
const DATA_DIR = "/var/lib/postgresql/data";

export function postgresService(input: BuildInput): V1Service | undefined {
  if (!input.spec.database.managed) return undefined;
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: ownedMeta(input, clusterObjectNames(input.cluster.name).postgres, "postgres"),
    spec: {
      type: "ClusterIP",
      selector: selectorLabels(input.cluster.name, "postgres"),
      ports: [{ name: "postgres", port: POSTGRES_PORT, targetPort: "postgres", protocol: "TCP" }],
    },
  };
}

export function postgresStatefulSet(input: BuildInput): V1StatefulSet | undefined {
  const managed = input.spec.database.managed;
  if (!managed) return undefined;
  const names = clusterObjectNames(input.cluster.name);
  const selector = selectorLabels(input.cluster.name, "postgres");
  const ready = ["pg_isready", "-h", "127.0.0.1", "-U", MANAGED_DATABASE.user, "-d", MANAGED_DATABASE.dbname];
  const resources = resourcesOf(managed.resources);
  return {
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: ownedMeta(input, names.postgres, "postgres"),
    spec: {
      serviceName: names.postgres,
      replicas: 1,
      persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Retain" },
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: { ...selector } },
        spec: {
          securityContext: podSecurityContext(POSTGRES_UID),
          enableServiceLinks: false,
          containers: [
            {
              name: "postgres",
              image: managed.image ?? input.defaultPostgresImage,
              imagePullPolicy: input.spec.imagePullPolicy,
              env: [
                { name: "POSTGRES_USER", value: MANAGED_DATABASE.user },
                { name: "POSTGRES_DB", value: MANAGED_DATABASE.dbname },
                {
                  name: "POSTGRES_PASSWORD",
                  valueFrom: { secretKeyRef: { name: names.postgresSecret, key: DATABASE_PASSWORD_KEY } },
                },
                // A subdirectory: the volume's root may hold lost+found, which initdb refuses.
                { name: "PGDATA", value: `${DATA_DIR}/pgdata` },
              ],
              ports: [{ name: "postgres", containerPort: POSTGRES_PORT, protocol: "TCP" }],
              readinessProbe: { exec: { command: ready }, periodSeconds: 5 },
              livenessProbe: { exec: { command: ready }, periodSeconds: 10, timeoutSeconds: 5, failureThreshold: 6 },
              ...(resources ? { resources } : {}),
              volumeMounts: [
                { name: "data", mountPath: DATA_DIR },
                { name: "run", mountPath: "/var/run/postgresql" },
                { name: "tmp", mountPath: "/tmp" },
              ],
              // The image's entrypoint writes outside the volumes on first start.
              securityContext: containerSecurityContext(false),
            },
          ],
          volumes: [
            { name: "run", emptyDir: {} },
            { name: "tmp", emptyDir: {} },
          ],
        },
      },
      volumeClaimTemplates: [
        {
          apiVersion: "v1",
          kind: "PersistentVolumeClaim",
          metadata: { name: "data", labels: { ...selector } },
          spec: {
            accessModes: ["ReadWriteOnce"],
            resources: { requests: { storage: input.deployedClaimSizes?.postgres ?? managed.storage.size } },
            ...(managed.storage.storageClassName ? { storageClassName: managed.storage.storageClassName } : {}),
          },
        },
      ],
    },
  };
}
