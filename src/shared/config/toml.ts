// TOML configuration parsing against a zod schema. The TOML keys are the schema keys, so one walk
// of the schema both validates and finds the keys the schema does not know. Unknown keys only
// warn: upstream's decoder ignores them, and refusing them would break configurations written for
// a newer or older upstream.
import { parse as parseTomlText, TomlDate, TomlError, type TomlTable } from "smol-toml";
import { z } from "zod";
import { ConfigError, type ConfigIssue, type ConfigWarning, configIssue, type KeySegment } from "./issues.js";

export type { TomlTable };

/** Parses TOML text; a syntax error becomes a ConfigError whose issue carries line and column. */
export function parseToml(text: string, source?: string): TomlTable {
  try {
    // "throw" so a crafted `__proto__` key cannot reach object prototypes.
    return parseTomlText(text, { unsafeKeyBehaviour: "throw" });
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    const reason = (error.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
    const issue: ConfigIssue = {
      key: "",
      path: [],
      message: `line ${error.line} column ${error.column}: toml: ${reason}`,
      line: error.line,
      column: error.column,
    };
    throw new ConfigError([issue], source);
  }
}

type AnySchema = z.core.$ZodType;

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof TomlDate);
}

/** Strips wrappers that do not change which keys a value may hold. */
function unwrap(schema: AnySchema): AnySchema {
  let current = schema;
  for (;;) {
    if (
      current instanceof z.ZodOptional ||
      current instanceof z.ZodNullable ||
      current instanceof z.ZodDefault ||
      current instanceof z.ZodPrefault ||
      current instanceof z.ZodNonOptional ||
      current instanceof z.ZodCatch ||
      current instanceof z.ZodReadonly
    ) {
      current = current._zod.def.innerType;
    } else if (current instanceof z.ZodPipe) {
      // The input side describes the raw TOML value.
      current = current._zod.def.in;
    } else if (current instanceof z.ZodLazy) {
      current = current._zod.def.getter();
    } else {
      return current;
    }
  }
}

function walkUnknown(schema: AnySchema, value: unknown, at: KeySegment[], out: KeySegment[][]): void {
  const s = unwrap(schema);
  if (s instanceof z.ZodObject && isTable(value)) {
    const shape = s._zod.def.shape;
    const catchall = s._zod.def.catchall;
    for (const [key, child] of Object.entries(value)) {
      const known = Object.hasOwn(shape, key) ? shape[key] : undefined;
      if (known !== undefined) walkUnknown(known, child, [...at, key], out);
      else if (catchall !== undefined && !(catchall instanceof z.ZodNever))
        walkUnknown(catchall, child, [...at, key], out);
      else out.push([...at, key]);
    }
  } else if (s instanceof z.ZodArray && Array.isArray(value)) {
    value.forEach((element, index) => {
      walkUnknown(s._zod.def.element, element, [...at, index], out);
    });
  } else if (s instanceof z.ZodRecord && isTable(value)) {
    for (const [key, child] of Object.entries(value)) walkUnknown(s._zod.def.valueType, child, [...at, key], out);
  } else if (s instanceof z.ZodUnion) {
    // Judge the value by the alternative it fits best.
    let best: KeySegment[][] | undefined;
    for (const option of s._zod.def.options) {
      const found: KeySegment[][] = [];
      walkUnknown(option, value, at, found);
      if (best === undefined || found.length < best.length) best = found;
    }
    out.push(...(best ?? []));
  }
}

/**
 * Keys present in `value` that `schema` does not declare, as key paths. Tables declared loose
 * (`z.looseObject`, `z.record`) accept anything below them.
 */
export function findUnknownKeys(schema: AnySchema, value: unknown): KeySegment[][] {
  const out: KeySegment[][] = [];
  walkUnknown(schema, value, [], out);
  return out;
}

/** One warning per unknown key; `hints` (dotted key → message) explain well-known retired keys. */
export function unknownKeyWarnings(
  schema: AnySchema,
  value: unknown,
  hints: Readonly<Record<string, string>> = {},
): ConfigWarning[] {
  return findUnknownKeys(schema, value).map((segments) => {
    const issue = configIssue(segments, "unknown key, ignored");
    const hint = hints[issue.key];
    return hint === undefined ? issue : { ...issue, message: `${hint}; ignored` };
  });
}

/** The raw value at a key path, or undefined. */
export function valueAt(root: unknown, segments: readonly KeySegment[]): unknown {
  let current = root;
  for (const segment of segments) {
    if (typeof segment === "number") current = Array.isArray(current) ? current[segment] : undefined;
    else current = isTable(current) ? current[segment] : undefined;
  }
  return current;
}

/** What a TOML value is, in TOML's own vocabulary. */
export function describeTomlValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value instanceof TomlDate) return "a datetime";
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  if (typeof value === "number") return Number.isInteger(value) ? `an integer (${value})` : `a float (${value})`;
  if (typeof value === "bigint") return `an integer (${value})`;
  if (typeof value === "boolean") return `a boolean (${value})`;
  if (typeof value === "string") return "a string";
  return typeof value;
}

const EXPECTED_NAMES: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "a boolean",
  array: "an array",
  object: "a table",
  record: "a table",
};

function quoteValue(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function rangeMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, value: unknown): string {
  const small = issue.code === "too_small";
  const limit = small ? issue.minimum : issue.maximum;
  if (issue.origin === "string") {
    if (small && Number(limit) <= 1) return "not set";
    return `must be ${small ? "at least" : "at most"} ${limit} characters long`;
  }
  if (issue.origin === "array" || issue.origin === "set") {
    if (small && Number(limit) <= 1) return "not set";
    return `must have ${small ? "at least" : "at most"} ${limit} elements`;
  }
  const relation = small
    ? issue.inclusive
      ? "greater than or equal to"
      : "greater than"
    : issue.inclusive
      ? "less than or equal to"
      : "less than";
  return `not in range: ${quoteValue(value)} is not ${relation} ${limit}`;
}

/** Rewrites zod's issues into key-addressed messages in the vocabulary of a TOML file. */
export function zodIssuesToConfigIssues(issues: readonly z.core.$ZodIssue[], raw: unknown): ConfigIssue[] {
  return issues.map((issue) => {
    const segments: KeySegment[] = issue.path.map((p) => (typeof p === "symbol" ? String(p) : p));
    const value = valueAt(raw, segments);
    // zod's built-in messages start with "Invalid"/"Too"; anything else was written by a schema.
    const custom = !/^(Invalid|Too (small|big))/.test(issue.message);
    let message: string;
    switch (issue.code) {
      case "invalid_type":
        if (value === undefined) message = "not set";
        else if (custom) message = issue.message;
        else message = `expected ${EXPECTED_NAMES[issue.expected] ?? issue.expected}, got ${describeTomlValue(value)}`;
        break;
      case "invalid_value":
        message = custom
          ? issue.message
          : `not supported: ${quoteValue(value)}, expected one of ${issue.values.map(quoteValue).join(", ")}`;
        break;
      case "too_small":
      case "too_big":
        message = custom ? issue.message : rangeMessage(issue, value);
        break;
      case "invalid_union":
        message = custom ? issue.message : `unexpected ${describeTomlValue(value)}`;
        break;
      default:
        message = issue.message;
    }
    return configIssue(segments, message);
  });
}

export interface ParsedConfig<T> {
  value: T;
  /** The TOML document as parsed, before defaults; for checks on what was written explicitly. */
  raw: TomlTable;
  warnings: ConfigWarning[];
}

export interface ParseConfigOptions {
  /** File name for error messages. */
  source?: string;
  /** Messages for retired keys, by dotted key (`internal_socket_dir`). */
  unknownKeyHints?: Readonly<Record<string, string>>;
}

/**
 * TOML text → validated value of `schema`. Throws ConfigError listing every problem the schema
 * finds; unknown keys come back as warnings.
 */
export function parseTomlConfig<S extends z.ZodType>(
  schema: S,
  text: string,
  options: ParseConfigOptions = {},
): ParsedConfig<z.output<S>> {
  const raw = parseToml(text, options.source);
  const warnings = unknownKeyWarnings(schema, raw, options.unknownKeyHints);
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(zodIssuesToConfigIssues(result.error.issues, raw), options.source);
  return { value: result.data, raw, warnings };
}
