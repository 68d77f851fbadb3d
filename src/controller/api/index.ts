// The GitalyCluster API: schema, types, defaults and the generated CRD.

export { CRD_FILE, gitalyClusterCrd, gitalyClusterOpenApiSchema, printerColumns, renderCrdYaml } from "./crd.js";
export type { CelReason, CelRule, CrdMeta } from "./crd-meta.js";
export { type OpenApiSchema, toOpenApiSchema } from "./openapi.js";
export * from "./resource.js";
export * from "./schema.js";
export { parseDuration, parseQuantity } from "./units.js";
