// Go-style durations ("1m", "1h30m", "500ms", "0"), as Gitaly and Praefect configuration files
// write them. Parsing follows Go's time.ParseDuration rule for rule, including its error texts,
// so `configuration validate` reports the same messages upstream does.
import { z } from "zod";

const NANOS_PER_MS = 1_000_000;
// Go stores durations as int64 nanoseconds; anything beyond is an overflow there too.
const MAX_NANOS = 2n ** 63n - 1n;

const UNIT_NANOS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  "\u00b5s": 1_000n, // MICRO SIGN
  "\u03bcs": 1_000n, // GREEK SMALL LETTER MU
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

export class DurationError extends Error {
  override name = "DurationError";
}

function quote(text: string): string {
  return JSON.stringify(text);
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

/**
 * Parses a Go duration into nanoseconds (exact, as a bigint). Throws DurationError with Go's
 * message, e.g. `time: invalid duration "bad"`.
 */
export function parseDurationNanos(text: string): bigint {
  const invalid = () => new DurationError(`time: invalid duration ${quote(text)}`);
  let s = text;
  let negative = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    negative = s.startsWith("-");
    s = s.slice(1);
  }
  if (s === "0") return 0n;
  if (s === "") throw invalid();

  let total = 0n;
  while (s !== "") {
    if (!(s[0] === "." || isDigit(s[0]))) throw invalid();
    let i = 0;
    while (isDigit(s[i])) i++;
    const whole = s.slice(0, i);
    s = s.slice(i);
    let fraction = "";
    if (s.startsWith(".")) {
      s = s.slice(1);
      let j = 0;
      while (isDigit(s[j])) j++;
      fraction = s.slice(0, j);
      s = s.slice(j);
    }
    if (whole === "" && fraction === "") throw invalid();

    let u = 0;
    while (u < s.length && !(s[u] === "." || isDigit(s[u]))) u++;
    if (u === 0) throw new DurationError(`time: missing unit in duration ${quote(text)}`);
    const unitName = s.slice(0, u);
    s = s.slice(u);
    const unit = UNIT_NANOS[unitName];
    if (unit === undefined) {
      throw new DurationError(`time: unknown unit ${quote(unitName)} in duration ${quote(text)}`);
    }

    let value = BigInt(whole === "" ? "0" : whole) * unit;
    if (fraction !== "") {
      // Like Go, fractional digits beyond nanosecond precision are truncated.
      value += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
    }
    total += value;
    if (total > MAX_NANOS + (negative ? 1n : 0n)) throw invalid();
  }
  return negative ? -total : total;
}

/** Parses a Go duration into milliseconds (fractional below 1ms). Throws DurationError. */
export function parseDuration(text: string): number {
  return Number(parseDurationNanos(text)) / NANOS_PER_MS;
}

/** Formats milliseconds the way Go's time.Duration.String does: "1h30m0s", "500ms", "0s". */
export function formatDuration(ms: number): string {
  let nanos = BigInt(Math.round(ms * NANOS_PER_MS));
  if (nanos === 0n) return "0s";
  const sign = nanos < 0n ? "-" : "";
  if (nanos < 0n) nanos = -nanos;

  const withFraction = (value: bigint, unit: bigint): string => {
    const whole = value / unit;
    const rest = value % unit;
    if (rest === 0n) return whole.toString();
    const digits = unit.toString().length - 1;
    return `${whole}.${rest.toString().padStart(digits, "0").replace(/0+$/, "")}`;
  };

  if (nanos < 1_000n) return `${sign}${nanos}ns`;
  if (nanos < 1_000_000n) return `${sign}${withFraction(nanos, 1_000n)}\u00b5s`;
  if (nanos < 1_000_000_000n) return `${sign}${withFraction(nanos, 1_000_000n)}ms`;

  const hours = nanos / 3_600_000_000_000n;
  const minutes = (nanos / 60_000_000_000n) % 60n;
  const seconds = withFraction(nanos % 60_000_000_000n, 1_000_000_000n);
  if (hours > 0n) return `${sign}${hours}h${minutes}m${seconds}s`;
  if (minutes > 0n) return `${sign}${minutes}m${seconds}s`;
  return `${sign}${seconds}s`;
}

export interface DurationFieldOptions {
  /** Reject negative values, with upstream's cfgerror wording. Default true. */
  nonNegative?: boolean;
}

/**
 * A zod field that accepts a Go duration string and outputs milliseconds. Chain `.default(ms)`
 * for a default (zod 4 defaults are output values). TOML integers are rejected rather than read
 * as nanoseconds, which is what Go would silently do with them.
 */
export function durationField(options: DurationFieldOptions = {}) {
  const nonNegative = options.nonNegative ?? true;
  return z.string({ error: 'expected a duration string such as "30s", "1m" or "1h30m"' }).transform((text, ctx) => {
    let ms: number;
    try {
      ms = parseDuration(text);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return z.NEVER;
    }
    if (nonNegative && ms < 0) {
      ctx.addIssue({
        code: "custom",
        message: `not in range: ${formatDuration(ms)} is not greater than or equal to 0s`,
      });
      return z.NEVER;
    }
    return ms;
  });
}
