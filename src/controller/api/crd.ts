// The CustomResourceDefinition of GitalyCluster, generated from the zod schemas.
// crds/gitalyclusters.gitaly.dev.yaml is this output; `node scripts/gen-crd.mjs` writes
// it and `--check` fails when the committed file is stale.

import { dump } from "js-yaml";
import { MAX_CLUSTER_NAME_LENGTH } from "../resources/names.js";
import { type OpenApiSchema, toOpenApiSchema } from "./openapi.js";
import { CRD_NAME, GROUP, KIND, LIST_KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION } from "./resource.js";
import { gitalyClusterSpecSchema, gitalyClusterStatusSchema } from "./schema.js";

export const CRD_FILE = `crds/${CRD_NAME}.yaml`;

export const printerColumns = [
  {
    name: "Ready",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: "Status of the Ready condition.",
  },
  { name: "Gitaly", type: "integer", jsonPath: ".status.gitaly.readyReplicas", description: "Ready Gitaly nodes." },
  {
    name: "Praefect",
    type: "integer",
    jsonPath: ".status.praefect.readyReplicas",
    description: "Ready Praefect pods.",
  },
  { name: "Phase", type: "string", jsonPath: ".status.phase", description: "Short summary of the cluster's state." },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
  {
    name: "Desired-Gitaly",
    type: "integer",
    jsonPath: ".spec.gitaly.replicas",
    description: "Desired Gitaly nodes.",
    priority: 1,
  },
  {
    name: "Desired-Praefect",
    type: "integer",
    jsonPath: ".spec.praefect.replicas",
    description: "Desired Praefect pods.",
    priority: 1,
  },
  { name: "Message", type: "string", jsonPath: ".status.message", priority: 1 },
] as const;

/** The root schema: spec and status from zod, apiVersion/kind/metadata as every CRD has them. */
export function gitalyClusterOpenApiSchema(): OpenApiSchema {
  return {
    description: "A Gitaly Cluster: Gitaly nodes behind Praefect routers, with their database, TLS and tokens.",
    type: "object",
    required: ["spec"],
    "x-kubernetes-validations": [
      {
        rule: `self.metadata.name.size() <= ${MAX_CLUSTER_NAME_LENGTH}`,
        message: `metadata.name must be at most ${MAX_CLUSTER_NAME_LENGTH} characters: the names of the StatefulSets and Jobs derived from it must fit Kubernetes' 63-character limit`,
      },
    ],
    properties: {
      apiVersion: { type: "string" },
      kind: { type: "string" },
      metadata: { type: "object" },
      spec: toOpenApiSchema(gitalyClusterSpecSchema, "spec"),
      status: toOpenApiSchema(gitalyClusterStatusSchema, "status"),
    },
  };
}

export function gitalyClusterCrd() {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: CRD_NAME, labels: { "app.kubernetes.io/part-of": "gitaly-operator" } },
    spec: {
      group: GROUP,
      scope: "Namespaced",
      names: { kind: KIND, listKind: LIST_KIND, plural: PLURAL, singular: SINGULAR, shortNames: [...SHORT_NAMES] },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: printerColumns.map((c) => ({ ...c })),
          schema: { openAPIV3Schema: gitalyClusterOpenApiSchema() },
        },
      ],
    },
  };
}

/** The committed YAML, byte for byte. */
export function renderCrdYaml(): string {
  const header = "# Generated from src/controller/api by `node scripts/gen-crd.mjs`. Do not edit.\n";
  // Double quotes and no line folding: the style Biome formats YAML to, so `biome ci` agrees.
  return `${header}${dump(gitalyClusterCrd(), { noRefs: true, lineWidth: -1, quoteStyle: "double" })}`;
}
