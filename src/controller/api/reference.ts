// The user-facing configuration reference (docs/api-reference.md), rendered from the
// generated CRD so it can never disagree with what the API server enforces.
// `node scripts/gen-crd.mjs` writes it next to the CRD; `--check` fails when it is stale.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gitalyClusterCrd } from "./crd.js";
import type { OpenApiSchema } from "./openapi.js";
import { DURATION_PATTERN, QUANTITY_PATTERN } from "./units.js";

export const API_REFERENCE_FILE = "docs/api-reference.md";
export const SAMPLES_DIR = "config/samples";

/** An example manifest, named relative to the repository root. */
export interface SampleFile {
  readonly path: string;
  /** The first sentence of the file's leading comment. */
  readonly summary?: string;
}

export interface PrinterColumn {
  readonly name: string;
  readonly type: string;
  readonly jsonPath: string;
  readonly description?: string;
  readonly priority?: number;
}

/** The parts of a CustomResourceDefinition the reference reads. */
export interface CrdDocument {
  readonly spec: {
    readonly group: string;
    readonly scope: string;
    readonly names: {
      readonly kind: string;
      readonly listKind?: string;
      readonly plural: string;
      readonly singular?: string;
      readonly shortNames?: readonly string[];
    };
    readonly versions: readonly {
      readonly name: string;
      readonly subresources?: { readonly status?: object };
      readonly additionalPrinterColumns?: readonly PrinterColumn[];
      readonly schema: { readonly openAPIV3Schema: OpenApiSchema };
    }[];
  };
}

interface CelValidation {
  rule: string;
  message?: string;
  fieldPath?: string;
}

/** One object of the schema that gets its own section and table. */
interface Section {
  path: string;
  node: OpenApiSchema;
  depth: number;
  anchor: string;
  /** Set when the object is the item type of an array or map (path ends in [] or .*). */
  containerPath?: string;
}

/** The reference for GitalyCluster as committed in docs/api-reference.md. */
export function renderGitalyClusterReference(samples: readonly SampleFile[]): string {
  return renderApiReference(gitalyClusterCrd(), samples);
}

/**
 * Markdown reference of a CRD: names and printer columns, examples, then one section per
 * object of the schema (root, spec, spec.gitaly, ..., status) with a table of its fields
 * and its CEL rules in words. Output depends only on the arguments.
 */
export function renderApiReference(crd: CrdDocument, samples: readonly SampleFile[]): string {
  const { group, names, scope } = crd.spec;
  if (crd.spec.versions.length !== 1) {
    throw new Error(
      `${names.kind}: the reference renders exactly one version, the CRD has ${crd.spec.versions.length}`,
    );
  }
  const [version] = crd.spec.versions as [CrdDocument["spec"]["versions"][number]];
  const root = version.schema.openAPIV3Schema;
  const apiVersion = `${group}/${version.name}`;
  const sections = collectSections(root, names.kind);
  const anchors = new Map(sections.map((s) => [s.path, s.anchor]));
  const out: string[] = [];

  out.push(`# ${names.kind} API reference`, "");
  out.push("<!-- Generated from src/controller/api by `node scripts/gen-crd.mjs`. Do not edit. -->", "");
  if (typeof root.description === "string") out.push(text(root.description), "");
  const facts: string[][] = [
    ["API version", code(apiVersion)],
    ["Kind", `${code(names.kind)}${names.listKind ? ` (list: ${code(names.listKind)})` : ""}`],
    ["Scope", scope],
    [
      "Resource",
      [names.plural, names.singular]
        .filter((n): n is string => n !== undefined)
        .map(code)
        .join(", "),
    ],
  ];
  if (names.shortNames && names.shortNames.length > 0) {
    facts.push([
      "Short names",
      `${names.shortNames.map(code).join(", ")} (${code(`kubectl get ${names.shortNames[0]}`)})`,
    ]);
  }
  if (version.subresources?.status) facts.push(["Subresources", "`status` (written by the operator)"]);
  out.push(...table(["Property", "Value"], facts), "");

  const columns = version.additionalPrinterColumns ?? [];
  if (columns.length > 0) {
    out.push("## Printer columns", "");
    out.push(`What \`kubectl get ${names.plural}\` shows; columns marked _wide_ only with \`-o wide\`.`, "");
    const rows = columns.map((c) => [
      code(c.name),
      c.type,
      code(c.jsonPath),
      (c.priority ?? 0) > 0 ? "wide" : "always",
      text(c.description ?? ""),
    ]);
    out.push(...table(["Column", "Type", "JSONPath", "Shown", "Description"], rows), "");
  }

  out.push("## Examples", "");
  if (samples.length === 0) {
    out.push("No example manifests.", "");
  } else {
    out.push("Complete manifests to start from (`kubectl apply -f <file>`):", "");
    for (const s of [...samples].sort((a, b) => compare(a.path, b.path))) {
      const link = `[${code(s.path)}](${relativeToDocs(s.path)})`;
      out.push(s.summary ? `- ${link}: ${text(s.summary)}` : `- ${link}`);
    }
    out.push("");
  }

  out.push("## Contents", "");
  for (const s of sections) {
    out.push(`${"  ".repeat(s.depth)}- [${code(s.path)}](#${s.anchor})`);
  }
  out.push("");

  for (const section of sections) {
    out.push(...renderSection(section, anchors, { apiVersion, kind: names.kind, isRoot: section.depth === 0 }));
  }
  return `${out.join("\n").replace(/\n+$/, "")}\n`;
}

interface SectionContext {
  apiVersion: string;
  kind: string;
  isRoot: boolean;
}

function renderSection(section: Section, anchors: Map<string, string>, ctx: SectionContext): string[] {
  const { node, path } = section;
  const out: string[] = [`## ${code(path)}`, ""];
  if (section.containerPath !== undefined) {
    const what = path.endsWith("[]") ? "Each item of" : "Each value of";
    out.push(`${what} ${code(section.containerPath)}.`, "");
  }
  if (typeof node.description === "string") out.push(text(node.description), "");
  if (path === "status") out.push("Written by the operator; read-only for users.", "");

  const properties = propertiesOf(node) ?? {};
  const required = new Set(stringsOf(node.required));
  const rows: string[][] = [];
  for (const [key, child] of Object.entries(properties)) {
    const childPath = joinPath(path, key, ctx.isRoot);
    const type = ctx.isRoot
      ? (rootFieldType(key) ?? typeText(child, childPath, anchors))
      : typeText(child, childPath, anchors);
    const description = [ctx.isRoot ? rootFieldDescription(key, child, ctx) : descriptionOf(child)];
    // Rules on a field without a section of its own are shown on its row.
    if (!anchors.has(childPath)) {
      const rules = validationsOf(child).map((v) => ruleText(v, childPath, false));
      if (rules.length > 0) description.push(`Rules: ${rules.join("; ")}.`);
    }
    rows.push([
      code(childPath),
      type,
      defaultText(child.default),
      required.has(key) ? "yes" : "no",
      description.filter((d) => d !== "").join(" "),
    ]);
  }
  out.push(...table(["Field", "Type", "Default", "Required", "Description"], rows), "");

  const rules = validationsOf(node);
  if (rules.length > 0) {
    out.push("Rules:", "");
    for (const v of rules) out.push(`- ${ruleText(v, path, ctx.isRoot)}`);
    out.push("");
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Walking the schema

function collectSections(root: OpenApiSchema, rootName: string): Section[] {
  const sections: Section[] = [];
  const slugs = new Map<string, number>();
  const visit = (node: OpenApiSchema, path: string, depth: number, containerPath?: string) => {
    const properties = propertiesOf(node);
    if (properties !== undefined) {
      const section: Section = { path, node, depth, anchor: uniqueSlug(path, slugs) };
      if (containerPath !== undefined) section.containerPath = containerPath;
      sections.push(section);
      for (const [key, child] of Object.entries(properties)) {
        visit(child, joinPath(path, key, depth === 0 && path === rootName), depth + 1);
      }
      return;
    }
    const items = itemsOf(node);
    if (items !== undefined) visit(items, `${path}[]`, depth, path);
    const values = valuesOf(node);
    if (values !== undefined) visit(values, `${path}.*`, depth, path);
  };
  visit(root, rootName, 0);
  return sections;
}

/** Field paths start at the root's fields ("spec.gitaly"), not at the kind. */
function joinPath(parent: string, key: string, parentIsRoot: boolean): string {
  return parentIsRoot ? key : `${parent}.${key}`;
}

function propertiesOf(node: OpenApiSchema): Record<string, OpenApiSchema> | undefined {
  const p = node.properties;
  return isSchema(p) ? (p as Record<string, OpenApiSchema>) : undefined;
}

function itemsOf(node: OpenApiSchema): OpenApiSchema | undefined {
  return isSchema(node.items) ? node.items : undefined;
}

function valuesOf(node: OpenApiSchema): OpenApiSchema | undefined {
  return isSchema(node.additionalProperties) ? node.additionalProperties : undefined;
}

function isSchema(value: unknown): value is OpenApiSchema {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringsOf(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function validationsOf(node: OpenApiSchema): CelValidation[] {
  const list = node["x-kubernetes-validations"];
  return Array.isArray(list) ? list.filter((v): v is CelValidation => isSchema(v) && typeof v.rule === "string") : [];
}

function descriptionOf(node: OpenApiSchema): string {
  return typeof node.description === "string" ? text(node.description) : "";
}

// ---------------------------------------------------------------------------------
// Cells

/** The root's standard fields carry no schema of their own in a CRD. */
function rootFieldType(key: string): string | undefined {
  return key === "metadata" ? "meta/v1 ObjectMeta" : undefined;
}

function rootFieldDescription(key: string, node: OpenApiSchema, ctx: SectionContext): string {
  const own = descriptionOf(node);
  if (own !== "") return own;
  if (key === "apiVersion") return `Always ${code(ctx.apiVersion)}.`;
  if (key === "kind") return `Always ${code(ctx.kind)}.`;
  if (key === "metadata") return "Name, namespace, labels and annotations.";
  return "";
}

function typeText(node: OpenApiSchema, path: string, anchors: Map<string, string>): string {
  if (node["x-kubernetes-int-or-string"] === true) return "int-or-string";
  const anchor = anchors.get(path);
  if (anchor !== undefined) return `[object](#${anchor})`;
  if (node["x-kubernetes-preserve-unknown-fields"] === true) {
    const core = /\bcore\/v1 ([A-Z][A-Za-z]*)/.exec(typeof node.description === "string" ? node.description : "");
    return core ? `core/v1 ${core[1]}` : "object (free-form)";
  }
  const items = itemsOf(node);
  if (node.type === "array" && items !== undefined) {
    const parts = [`array of ${typeText(items, `${path}[]`, anchors)}`];
    const keys = stringsOf(node["x-kubernetes-list-map-keys"]);
    if (node["x-kubernetes-list-type"] === "map" && keys.length > 0)
      parts.push(`keyed by ${keys.map(code).join(", ")}`);
    if (node["x-kubernetes-list-type"] === "set") parts.push("unique items");
    parts.push(...range(node.minItems, node.maxItems, "items"));
    return parts.join(", ");
  }
  const values = valuesOf(node);
  if (node.type === "object" && values !== undefined) {
    return `map of string to ${typeText(values, `${path}.*`, anchors)}`;
  }
  return scalarType(node);
}

function scalarType(node: OpenApiSchema): string {
  const base = typeof node.type === "string" ? node.type : "any";
  const parts = [typeof node.format === "string" ? `${base} (${node.format})` : base];
  if (Array.isArray(node.enum)) {
    parts.push(`one of ${node.enum.map((v) => code(typeof v === "string" ? v : JSON.stringify(v))).join(", ")}`);
  }
  if (base === "string") parts.push(...range(node.minLength, node.maxLength, "characters"));
  if (base === "integer" || base === "number") parts.push(...numberRange(node));
  if (typeof node.pattern === "string") parts.push(patternText(node.pattern));
  return parts.join(", ");
}

function range(min: unknown, max: unknown, unit: string): string[] {
  const lo = typeof min === "number" ? min : undefined;
  const hi = typeof max === "number" ? max : undefined;
  if (lo !== undefined && hi !== undefined) return [`${lo} to ${hi} ${unit}`];
  if (lo !== undefined) return lo > 0 ? [`at least ${lo} ${unit}`] : [];
  if (hi !== undefined) return [`at most ${hi} ${unit}`];
  return [];
}

function numberRange(node: OpenApiSchema): string[] {
  const lo = typeof node.minimum === "number" ? node.minimum : undefined;
  const hi = typeof node.maximum === "number" ? node.maximum : undefined;
  const loText = lo === undefined ? "" : node.exclusiveMinimum === true ? `> ${lo}` : `≥ ${lo}`;
  const hiText = hi === undefined ? "" : node.exclusiveMaximum === true ? `< ${hi}` : `≤ ${hi}`;
  if (lo !== undefined && hi !== undefined && node.exclusiveMinimum !== true && node.exclusiveMaximum !== true) {
    return [`${lo} to ${hi}`];
  }
  return [loText, hiText].filter((t) => t !== "");
}

// Patterns readers recognise better by name than by regular expression. Any other
// pattern is printed as is.
const namedPatterns = new Map<string, string>([
  [QUANTITY_PATTERN, "a Kubernetes quantity such as `10Gi`"],
  [DURATION_PATTERN, "a duration such as `90m` or `1h30m`"],
  ["^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", "a DNS subdomain name"],
  ["^[-._a-zA-Z0-9]+$", "letters, digits, `-`, `_` or `.`"],
]);

function patternText(pattern: string): string {
  return namedPatterns.get(pattern) ?? `pattern ${code(pattern)}`;
}

function defaultText(value: unknown): string {
  if (value === undefined) return "";
  if (typeof value === "string") return code(value === "" ? '""' : value);
  return code(JSON.stringify(value));
}

function ruleText(v: CelValidation, path: string, isRoot: boolean): string {
  const notes: string[] = [];
  // The API server evaluates rules that read oldSelf only on update.
  if (/\boldSelf\b/.test(v.rule)) notes.push("on update");
  if (v.fieldPath) {
    const target = isRoot ? v.fieldPath.replace(/^\./, "") : `${path}${v.fieldPath}`;
    notes.push(`reported on ${code(target)}`);
  }
  const message = text(v.message ?? `must satisfy ${v.rule}`);
  return notes.length === 0 ? message : `${message} (${notes.join("; ")})`;
}

// ---------------------------------------------------------------------------------
// Markdown

/**
 * A table with every column padded to its widest cell: the layout Biome formats Markdown
 * to, so `biome ci` accepts the generated file as is.
 */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = header.map((h, i) => Math.max(3, width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? "") + " ".repeat(w - width(cells[i] ?? ""))).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

function width(s: string): number {
  return [...s].length;
}

/** Prose for a table cell or paragraph: one line, no HTML, no column breaks. */
function text(s: string): string {
  return s
    .replace(/\s*\n\s*/g, " ")
    .replace(/</g, "&lt;")
    .replace(/\|/g, "\\|");
}

/** A code span that survives backticks and table pipes in its content. */
function code(s: string): string {
  const longestRun = Math.max(0, ...(s.match(/`+/g) ?? []).map((r) => r.length));
  const fence = "`".repeat(longestRun + 1);
  const pad = s.startsWith("`") || s.endsWith("`") ? " " : "";
  return `${fence}${pad}${s.replace(/\|/g, "\\|")}${pad}${fence}`;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, -N for repeats. */
function uniqueSlug(heading: string, seen: Map<string, number>): string {
  const base = heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
  const n = seen.get(base) ?? 0;
  seen.set(base, n + 1);
  return n === 0 ? base : `${base}-${n}`;
}

function relativeToDocs(path: string): string {
  const depth = API_REFERENCE_FILE.split("/").length - 1;
  return `${"../".repeat(depth)}${path}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---------------------------------------------------------------------------------
// Examples

/**
 * The first sentence of a manifest's leading comment block (up to the first indented
 * command line), or undefined when the file starts without a comment.
 */
export function sampleSummary(yaml: string): string | undefined {
  const prose: string[] = [];
  for (const line of yaml.split("\n")) {
    const m = /^#( ?)(.*)$/.exec(line);
    // An indented comment line is a command example, not prose.
    if (!m || m[2] === undefined || m[2].trim() === "" || m[2].startsWith("  ")) break;
    prose.push(m[2].trim());
  }
  if (prose.length === 0) return undefined;
  const paragraph = prose.join(" ");
  // A sentence ends at a period before a capital letter ("e.g. behind" goes on).
  const end = /\.(?=\s+[A-Z])/.exec(paragraph);
  const sentence = end ? paragraph.slice(0, end.index + 1) : paragraph;
  return /[.!?]$/.test(sentence) ? sentence : `${sentence.replace(/[:;,]$/, "")}.`;
}

/** The example manifests under config/samples, sorted, with their summaries. Reads the disk. */
export function readSampleFiles(repoRoot: string): SampleFile[] {
  const dir = join(repoRoot, SAMPLES_DIR);
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .sort(compare)
    .map((f) => {
      const path = `${SAMPLES_DIR}/${f}`;
      const summary = sampleSummary(readFileSync(join(dir, f), "utf8"));
      return summary === undefined ? { path } : { path, summary };
    });
}
