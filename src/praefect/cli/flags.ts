// Command-line flags the way upstream's CLI (urfave/cli) takes them: `-name value`, `-name=value`,
// `--name value`; boolean flags need no value (`-apply`, `-f`) but accept `-apply=false`.
// Everything else is a positional argument.
import { DurationError, parseDuration } from "../../shared/config/duration.js";

export type FlagKind = "string" | "bool" | "int" | "uint" | "duration";

export interface FlagSpec {
  kind: FlagKind;
  required?: boolean;
  /** Default value; strings default to "", booleans to false, numbers to 0. */
  default?: string | boolean | number;
}

export type FlagValues = Record<string, string | boolean | number>;

export interface ParsedFlags {
  values: FlagValues;
  /** Flags given on the command line (for "required" checks and for mutually exclusive flags). */
  given: Set<string>;
  positionals: string[];
}

/** A usage error: upstream prints it (and the command's help) and exits 1. */
export class UsageError extends Error {
  override name = "UsageError";
}

function defaultOf(spec: FlagSpec): string | boolean | number {
  if (spec.default !== undefined) return spec.default;
  return spec.kind === "string" ? "" : spec.kind === "bool" ? false : 0;
}

function convert(name: string, spec: FlagSpec, raw: string): string | boolean | number {
  const invalid = (why: string) => new UsageError(`invalid value ${JSON.stringify(raw)} for flag -${name}: ${why}`);
  switch (spec.kind) {
    case "string":
      return raw;
    case "bool":
      if (/^(1|t|T|TRUE|true|True)$/.test(raw)) return true;
      if (/^(0|f|F|FALSE|false|False)$/.test(raw)) return false;
      throw invalid("parse error");
    case "int":
    case "uint": {
      if (!/^[-+]?\d+$/.test(raw)) throw invalid("parse error");
      const n = Number(raw);
      if (spec.kind === "uint" && n < 0) throw invalid("parse error");
      return n;
    }
    case "duration":
      try {
        return parseDuration(raw);
      } catch (err) {
        if (err instanceof DurationError) throw invalid(err.message);
        throw err;
      }
  }
}

export function parseFlags(args: readonly string[], specs: Readonly<Record<string, FlagSpec>>): ParsedFlags {
  const values: FlagValues = {};
  for (const [name, spec] of Object.entries(specs)) values[name] = defaultOf(spec);
  const given = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const spec = specs[name];
    if (!spec) throw new UsageError(`flag provided but not defined: -${name}`);
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (spec.kind === "bool") raw = "true";
    else {
      const next = args[i + 1];
      if (next === undefined) throw new UsageError(`flag needs an argument: -${name}`);
      raw = next;
      i++;
    }
    values[name] = convert(name, spec, raw);
    given.add(name);
  }
  const missing = Object.entries(specs)
    .filter(([name, spec]) => spec.required && !given.has(name))
    .map(([name]) => name);
  if (missing.length === 1) throw new UsageError(`Required flag "${missing[0]}" not set`);
  if (missing.length > 1) throw new UsageError(`Required flags "${missing.join(", ")}" not set`);
  return { values, given, positionals };
}

export function stringFlag(values: FlagValues, name: string): string {
  return String(values[name] ?? "");
}

export function boolFlag(values: FlagValues, name: string): boolean {
  return values[name] === true;
}

export function numberFlag(values: FlagValues, name: string): number {
  return Number(values[name] ?? 0);
}
