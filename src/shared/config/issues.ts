// Configuration problems, addressed by the key that holds the bad value. Shared by Gitaly and
// Praefect so both report problems the same way, and so `configuration validate` can print them in
// upstream's JSON shape.

/** One step of a key path: a table key, or an index into an array of tables. */
export type KeySegment = string | number;

export interface ConfigIssue {
  /** Dotted key path, e.g. `storage[1].path`, `gitlab.http-settings.user`; "" for the whole file. */
  key: string;
  /** The same path split the way upstream's validate output does: ["storage", "[1]", "path"]. */
  path: string[];
  message: string;
  /** Position in the TOML text, for syntax errors only. */
  line?: number;
  column?: number;
}

/** Unknown or deprecated keys: reported, never fatal (upstream ignores unknown keys). */
export type ConfigWarning = ConfigIssue;

const BARE_KEY = /^[A-Za-z0-9_-]+$/;

function keyPart(segment: string): string {
  return BARE_KEY.test(segment) ? segment : JSON.stringify(segment);
}

/** `["storage", 1, "path"]` → `storage[1].path`. Keys that TOML would need to quote are quoted. */
export function formatKey(segments: readonly KeySegment[]): string {
  let out = "";
  for (const segment of segments) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? keyPart(segment) : `.${keyPart(segment)}`;
  }
  return out;
}

/** `["storage", 1, "path"]` → `["storage", "[1]", "path"]`, as upstream's cfgerror builds keys. */
export function upstreamPath(segments: readonly KeySegment[]): string[] {
  return segments.map((segment) => (typeof segment === "number" ? `[${segment}]` : segment));
}

export function configIssue(segments: readonly KeySegment[], message: string): ConfigIssue {
  return { key: formatKey(segments), path: upstreamPath(segments), message };
}

/** `storage[0].path: not set`, or just the message for file-level problems. */
export function formatIssue(issue: ConfigIssue): string {
  return issue.key === "" ? issue.message : `${issue.key}: ${issue.message}`;
}

/** Thrown when configuration cannot be used: a syntax error, or values that fail validation. */
export class ConfigError extends Error {
  override name = "ConfigError";
  readonly errors: ConfigIssue[];
  /** The file the configuration came from, when known. */
  readonly source: string | undefined;

  constructor(errors: ConfigIssue[], source?: string) {
    const where = source === undefined ? "" : ` in ${JSON.stringify(source)}`;
    super(`invalid configuration${where}: ${errors.map(formatIssue).join("; ")}`);
    this.errors = errors;
    this.source = source;
  }
}

/**
 * The JSON document upstream's `configuration validate` prints on stdout: two-space indent,
 * `key` omitted when empty, HTML-sensitive characters escaped as Go's encoding/json does, and a
 * trailing newline.
 */
export function validationOutput(issues: readonly ConfigIssue[]): string {
  const errors = issues.map((issue) =>
    issue.path.length > 0 ? { key: issue.path, message: issue.message } : { message: issue.message },
  );
  const json = JSON.stringify({ errors }, null, 2).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return `${json}\n`;
}
