// The migration Job: `praefect sql-ping` (init container, waits for the database to answer),
// then `praefect sql-migrate`. Its name carries a hash of what can change the schema (the
// image) and where it is applied (the database), because a Job's pod template is immutable:
// a new image gets a new Job, and Praefect rolls only once that Job has succeeded.
import type { V1Job } from "@kubernetes/client-node";
import { praefectRenderParams, sha256 } from "./configs.js";
import { type BuildInput, imageOf, selectorLabels } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";
import { PRAEFECT_POD_CONFIG_PATH } from "./paths.js";
import { containerSecurityContext, podSecurityContext } from "./pods.js";
import { praefectRuntime } from "./praefect.js";

/** Retries with the Job controller's backoff (10 s doubling to 6 min): enough for a database that starts slowly. */
export const MIGRATION_BACKOFF_LIMIT = 12;

export function migrationJobName(input: BuildInput): string {
  const hash = sha256(JSON.stringify({ image: imageOf(input), database: praefectRenderParams(input).database }));
  return `${clusterObjectNames(input.cluster.name).migrationJobPrefix}-${hash.slice(0, 10)}`;
}

export function migrationJob(input: BuildInput): V1Job {
  const runtime = praefectRuntime(input, { tokens: false });
  const labels = selectorLabels(input.cluster.name, "migration");
  const container = (name: string, command: string) => ({
    name,
    image: imageOf(input),
    imagePullPolicy: input.spec.imagePullPolicy,
    args: ["praefect", "-config", PRAEFECT_POD_CONFIG_PATH, command],
    env: runtime.env,
    volumeMounts: runtime.mounts,
    securityContext: containerSecurityContext(),
  });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: ownedMeta(input, migrationJobName(input), "migration"),
    spec: {
      backoffLimit: MIGRATION_BACKOFF_LIMIT,
      template: {
        metadata: { labels: { ...labels } },
        spec: {
          restartPolicy: "OnFailure",
          securityContext: podSecurityContext(),
          enableServiceLinks: false,
          initContainers: [container("sql-ping", "sql-ping")],
          containers: [container("sql-migrate", "sql-migrate")],
          volumes: runtime.volumes,
        },
      },
    },
  };
}
