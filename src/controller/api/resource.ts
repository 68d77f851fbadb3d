// Names of the GitalyCluster resource and functions over whole specs: parsing with
// defaults, the computed defaults a CRD cannot express, and the update (transition)
// rules the API server enforces, for callers that validate before writing.
import type { z } from "zod";
import { type CelRule, crdRegistry } from "./crd-meta.js";
import {
  type GitalyClusterSpec,
  type GitalyClusterSpecInput,
  type GitalyClusterStatus,
  gitalyClusterSpecSchema,
} from "./schema.js";

export const GROUP = "gitaly.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "GitalyCluster";
export const LIST_KIND = "GitalyClusterList";
export const PLURAL = "gitalyclusters";
export const SINGULAR = "gitalycluster";
export const SHORT_NAMES = ["gtc"] as const;
export const CRD_NAME = `${PLURAL}.${GROUP}`;

export interface GitalyClusterMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  // client-node's KubernetesObject types these as Date; from our informers they are RFC 3339
  // strings. Only their presence is used.
  creationTimestamp?: Date;
  deletionTimestamp?: Date;
}

/** A GitalyCluster as read from the API server (defaults applied by the server). */
export interface GitalyCluster {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: GitalyClusterMetadata;
  spec: GitalyClusterSpec;
  status?: GitalyClusterStatus;
}

/** A spec with the defaults that depend on other fields resolved too. */
export type ResolvedGitalyClusterSpec = GitalyClusterSpec & {
  praefect: GitalyClusterSpec["praefect"] & { replicationFactor: number };
};

export class SpecError extends Error {
  constructor(readonly issues: readonly { path: string; message: string }[]) {
    super(issues.map((i) => `${i.path}: ${i.message}`).join("; "));
    this.name = "SpecError";
  }
}

function pathOf(segments: readonly PropertyKey[]): string {
  return ["spec", ...segments.map(String)].join(".");
}

/** Validates a user-written spec and applies every static default; throws SpecError naming the fields. */
export function parseSpec(input: unknown): GitalyClusterSpec {
  const result = gitalyClusterSpecSchema.safeParse(input);
  if (!result.success) {
    throw new SpecError(result.error.issues.map((i) => ({ path: pathOf(i.path), message: i.message })));
  }
  return result.data;
}

/** Replication factor when the user gave none: three copies, or one per node on smaller clusters. */
export function defaultReplicationFactor(gitalyReplicas: number): number {
  return Math.min(3, gitalyReplicas);
}

/** parseSpec, then the computed defaults (replicationFactor). What the builders should consume. */
export function resolveSpec(input: GitalyClusterSpecInput | GitalyClusterSpec | unknown): ResolvedGitalyClusterSpec {
  const spec = parseSpec(input);
  return {
    ...spec,
    praefect: {
      ...spec.praefect,
      replicationFactor: spec.praefect.replicationFactor ?? defaultReplicationFactor(spec.gitaly.replicas),
    },
  };
}

export interface SpecViolation {
  path: string;
  message: string;
}

/**
 * The transition rules (storage never shrinks, immutable names, rotation generation never
 * decreases) applied to two parsed specs, as the API server applies them on update.
 */
export function validateSpecUpdate(oldSpec: GitalyClusterSpec, newSpec: GitalyClusterSpec): SpecViolation[] {
  const out: SpecViolation[] = [];
  walkTransitions(gitalyClusterSpecSchema, oldSpec, newSpec, [], out);
  return out;
}

function walkTransitions(
  schema: z.ZodType,
  oldValue: unknown,
  newValue: unknown,
  path: string[],
  out: SpecViolation[],
): void {
  if (oldValue === undefined || newValue === undefined) return;
  for (const r of (crdRegistry.get(schema)?.validations ?? []) as readonly CelRule<unknown>[]) {
    if (r.transition && !r.holds(newValue, oldValue)) {
      out.push({ path: pathOf([...path, ...(r.fieldPath ?? "").split(".").filter(Boolean)]), message: r.message });
    }
  }
  const def = schema._zod.def as unknown as { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType> };
  if (def.innerType) walkTransitions(def.innerType, oldValue, newValue, path, out);
  if (def.type === "object" && def.shape && typeof oldValue === "object" && typeof newValue === "object") {
    for (const [key, child] of Object.entries(def.shape)) {
      walkTransitions(
        child,
        (oldValue as Record<string, unknown>)[key],
        (newValue as Record<string, unknown>)[key],
        [...path, key],
        out,
      );
    }
  }
}
