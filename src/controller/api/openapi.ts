// Turns the zod schemas of ./schema.ts into a *structural* OpenAPI v3 schema, the only
// kind a CRD accepts: every node typed, no $ref, defaults and enums inline, and the
// Kubernetes extensions (CEL rules, list types, int-or-string) from ./crd-meta.ts.
import { z } from "zod";
import { crdRegistry } from "./crd-meta.js";

export type OpenApiSchema = { [key: string]: unknown };

interface CheckDef {
  check: string;
  value?: number;
  inclusive?: boolean;
  minimum?: number;
  maximum?: number;
  format?: string;
  pattern?: RegExp;
}

interface AnyDef {
  type: string;
  checks?: { _zod: { def: CheckDef } }[];
  innerType?: z.ZodType;
  defaultValue?: unknown;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  valueType?: z.ZodType;
  entries?: Record<string, string | number>;
  values?: unknown[];
  options?: z.ZodType[];
  format?: string;
}

function defOf(schema: z.ZodType): AnyDef {
  return schema._zod.def as unknown as AnyDef;
}

/** A slot an object may omit (optional or defaulted). */
function isOmittable(schema: z.ZodType): boolean {
  return schema._zod.optin !== undefined;
}

function applyChecks(out: OpenApiSchema, def: AnyDef): void {
  for (const c of def.checks ?? []) {
    const d = c._zod.def;
    const isArray = def.type === "array";
    switch (d.check) {
      case "min_length":
        out[isArray ? "minItems" : "minLength"] = d.minimum;
        break;
      case "max_length":
        out[isArray ? "maxItems" : "maxLength"] = d.maximum;
        break;
      case "greater_than":
        out.minimum = d.value;
        if (!d.inclusive) out.exclusiveMinimum = true;
        break;
      case "less_than":
        out.maximum = d.value;
        if (!d.inclusive) out.exclusiveMaximum = true;
        break;
      case "string_format":
        if (d.format === "regex" && d.pattern) out.pattern = d.pattern.source;
        break;
      default:
        // Refinements (superRefine) have no OpenAPI form; their CEL twins come from the registry.
        break;
    }
  }
}

function describeInto(out: OpenApiSchema, schema: z.ZodType): void {
  const description = z.globalRegistry.get(schema)?.description;
  // The outermost description wins: it is the most specific (a field, not its type).
  if (description !== undefined) out.description = description;
}

/** Converts one zod schema; `where` names the node in errors about unsupported constructs. */
export function toOpenApiSchema(schema: z.ZodType, where = "$"): OpenApiSchema {
  const meta = crdRegistry.get(schema);
  const def = defOf(schema);
  let out: OpenApiSchema;

  if (meta?.openAPI) {
    out = structuredClone(meta.openAPI);
  } else if (meta?.intOrString) {
    out = { anyOf: [{ type: "integer" }, { type: "string" }], "x-kubernetes-int-or-string": true };
  } else {
    switch (def.type) {
      case "optional":
      case "nullable":
      case "readonly":
        out = toOpenApiSchema(def.innerType as z.ZodType, where);
        break;
      case "default":
        out = { ...toOpenApiSchema(def.innerType as z.ZodType, where), default: structuredClone(def.defaultValue) };
        break;
      case "prefault":
        // The API server checks a default against the CEL rules without defaulting inside
        // it first, so the default must be the fully defaulted value, not `{}`.
        out = {
          ...toOpenApiSchema(def.innerType as z.ZodType, where),
          default: z.parse(def.innerType as z.ZodType, def.defaultValue),
        };
        break;
      case "string":
        out = { type: "string" };
        if (def.format === "datetime") out.format = "date-time";
        applyChecks(out, def);
        break;
      case "number":
        out = {
          type: def.format === "safeint" || def.format === "int32" || def.format === "int64" ? "integer" : "number",
        };
        if (out.type === "integer" && def.format !== "safeint") out.format = def.format;
        applyChecks(out, def);
        break;
      case "boolean":
        out = { type: "boolean" };
        break;
      case "enum":
        out = { type: "string", enum: Object.values(def.entries ?? {}) };
        break;
      case "literal":
        out = { type: typeof def.values?.[0] === "number" ? "number" : "string", enum: def.values };
        break;
      case "array":
        out = { type: "array", items: toOpenApiSchema(def.element as z.ZodType, `${where}[]`) };
        applyChecks(out, def);
        break;
      case "record":
        out = { type: "object", additionalProperties: toOpenApiSchema(def.valueType as z.ZodType, `${where}.*`) };
        break;
      case "object": {
        const properties: Record<string, OpenApiSchema> = {};
        const required: string[] = [];
        for (const [key, value] of Object.entries(def.shape ?? {})) {
          properties[key] = toOpenApiSchema(value, `${where}.${key}`);
          if (!isOmittable(value)) required.push(key);
        }
        out = { type: "object", properties };
        if (required.length > 0) out.required = required;
        break;
      }
      default:
        throw new Error(
          `${where}: zod type "${def.type}" has no structural OpenAPI form; register an openAPI override`,
        );
    }
  }

  describeInto(out, schema);
  if (meta?.listType) out["x-kubernetes-list-type"] = meta.listType;
  if (meta?.listMapKeys) out["x-kubernetes-list-map-keys"] = [...meta.listMapKeys];
  if (meta?.validations && meta.validations.length > 0) {
    out["x-kubernetes-validations"] = meta.validations.map((r) => {
      const v: OpenApiSchema = { rule: r.rule, message: r.message };
      if (r.fieldPath) v.fieldPath = r.fieldPath;
      if (r.reason) v.reason = r.reason;
      return v;
    });
  }
  return orderKeys(out);
}

const keyOrder = ["description", "type", "format", "enum", "default"];

/** Stable, readable key order: description and type first, nested structure after. */
function orderKeys(schema: OpenApiSchema): OpenApiSchema {
  const keys = Object.keys(schema).sort((a, b) => rank(a) - rank(b));
  return Object.fromEntries(keys.map((k) => [k, schema[k]]));
}

function rank(key: string): number {
  const i = keyOrder.indexOf(key);
  return i === -1 ? keyOrder.length : i;
}
