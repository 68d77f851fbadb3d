// Kubernetes-only facts about a zod schema (CEL rules, list semantics, escape hatches)
// live in this registry, next to the schema they describe, so the CRD generator and the
// in-process validation read the same rule objects.
import { z } from "zod";

export type CelReason = "FieldValueInvalid" | "FieldValueForbidden" | "FieldValueRequired" | "FieldValueDuplicate";

/**
 * One `x-kubernetes-validations` entry plus its TypeScript twin. `holds` must accept
 * exactly what `rule` accepts: unit tests run both against the same specs.
 */
export interface CelRule<Self = never> {
  readonly rule: string;
  readonly message: string;
  /** Relative to the node the rule sits on (".praefect.replicationFactor"); the API error is reported there. */
  readonly fieldPath?: string;
  readonly reason?: CelReason;
  /** A transition rule (uses oldSelf): evaluated only on update, when the old value exists. */
  readonly transition?: boolean;
  readonly holds: (self: Self, oldSelf: Self) => boolean;
}

export interface CrdMeta {
  /** Rules for this node. Typed loosely here; `withRules` checks them against the schema's output type. */
  validations?: readonly CelRule<never>[];
  /** Replaces the generated OpenAPI schema for this node (for embedded Kubernetes types). */
  openAPI?: Record<string, unknown>;
  intOrString?: boolean;
  listType?: "atomic" | "set" | "map";
  listMapKeys?: readonly string[];
}

export const crdRegistry = z.registry<CrdMeta>();

/** Attaches CEL rules to a schema: the CRD gets them, and zod enforces the non-transition ones. */
export function withRules<T extends z.ZodType>(schema: T, rules: readonly CelRule<z.output<T>>[]): T {
  const stateless = rules.filter((r) => !r.transition);
  const refined =
    stateless.length === 0
      ? schema
      : (schema.superRefine((value, ctx) => {
          for (const r of stateless) {
            if (r.holds(value as never, undefined as never)) continue;
            ctx.addIssue({ code: "custom", message: r.message, path: fieldPathSegments(r.fieldPath) });
          }
        }) as unknown as T);
  const previous = crdRegistry.get(refined) ?? {};
  crdRegistry.add(refined, { ...previous, validations: rules as readonly CelRule<never>[] });
  return refined;
}

/** Registers list or int-or-string semantics (see CrdMeta) on a schema and returns it. */
export function withCrdMeta<T extends z.ZodType>(schema: T, meta: Omit<CrdMeta, "validations">): T {
  crdRegistry.add(schema, { ...(crdRegistry.get(schema) ?? {}), ...meta });
  return schema;
}

export function fieldPathSegments(fieldPath: string | undefined): string[] {
  return fieldPath ? fieldPath.split(".").filter((s) => s !== "") : [];
}
