// Validation of client-supplied revisions and reference names before they reach git's
// command line or the cat-file batch protocol. Messages match upstream's
// git.ValidateRevision and git.ValidateReference word for word; services usually prefix
// them (e.g. "invalid revision: revision can't start with '-'"), which `context` does.
import { invalidArgument } from "../../shared/grpc/errors.js";

export interface RevisionOptions {
  /** Accept "" (default: "empty revision"). */
  allowEmpty?: boolean;
  /** Accept `<rev>:<path>`; the path part may hold any byte but NUL (newlines too). */
  allowPathScopedRevisions?: boolean;
  /** Accept git-rev-list pseudo revisions: --all, --not, --branches[=], --tags[=], --glob=, --alternate-refs. */
  allowPseudoRevisions?: boolean;
  /** Prefix for the error message, e.g. "invalid revision" → "invalid revision: <reason>". */
  context?: string;
}

const PSEUDO_EXACT = new Set(["--all", "--not", "--branches", "--tags", "--alternate-refs"]);
const PSEUDO_PREFIXES = ["--branches=", "--tags=", "--glob="];

function toBytes(value: string | Uint8Array): Buffer {
  return typeof value === "string"
    ? Buffer.from(value, "utf8")
    : Buffer.from(value.buffer, value.byteOffset, value.length);
}

function isPseudoRevision(rev: Buffer): boolean {
  const text = rev.toString("latin1");
  return PSEUDO_EXACT.has(text) || PSEUDO_PREFIXES.some((p) => text.startsWith(p));
}

/** Why `revision` is unacceptable (upstream's message), or null if it is fine. */
export function revisionError(revision: string | Uint8Array, opts: RevisionOptions = {}): string | null {
  let rev = toBytes(revision);
  if (opts.allowPseudoRevisions && isPseudoRevision(rev)) return null;
  if (rev[0] === 0x2d /* - */) return "revision can't start with '-'";
  if (rev.includes(0)) return "revision can't contain NUL";
  if (opts.allowPathScopedRevisions) {
    const colon = rev.indexOf(0x3a);
    if (colon >= 0) rev = rev.subarray(0, colon);
  }
  if (!opts.allowEmpty && rev.length === 0) return "empty revision";
  for (const b of rev) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) return "revision can't contain whitespace";
  }
  if (rev.includes(0x3a)) return "revision can't contain ':'";
  if (rev.includes(0x5c)) return "revision can't contain '\\'";
  return null;
}

/** Throws InvalidArgument with upstream's message if `revision` is unacceptable. */
export function validateRevision(revision: string | Uint8Array, opts: RevisionOptions = {}): void {
  const reason = revisionError(revision, opts);
  if (reason !== null) throw invalidArgument(opts.context ? `${opts.context}: ${reason}` : reason);
}

export interface ReferenceNameOptions {
  /** Accept the literal "HEAD" (WriteRef does; upstream's ValidateReference does not). */
  allowHead?: boolean;
  context?: string;
}

/**
 * Why `name` is not a valid fully qualified reference, or null. Pure code following
 * git-check-ref-format(1) as upstream's ValidateReference does (no git process per call).
 */
export function referenceNameError(name: string | Uint8Array, opts: ReferenceNameOptions = {}): string | null {
  const bytes = toBytes(name);
  const text = bytes.toString("latin1");
  if (text === "HEAD") return opts.allowHead ? null : "HEAD reference not allowed";
  if (!text.startsWith("refs/")) return "reference is not fully qualified";
  const rest = text.slice("refs/".length);
  if (rest.length === 0) return "refs/ is not a valid reference";
  if (rest.endsWith("/")) return "reference must not end with slash";
  if (rest.endsWith(".")) return "reference must not end with dot";
  if (rest.includes("@{")) return "reference must not contain @{";
  if (rest.includes("..")) return "reference must not contain double dots";
  for (let i = 0; i < rest.length; i++) {
    const c = rest.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a) return "reference must not contain space characters";
    if (":?[\\^~*\x7f".includes(rest[i] as string)) return "reference must not contain special characters";
    if (c < 32) return "reference must not contain control characters";
  }
  const components = rest.split("/");
  for (const component of components) {
    if (component === "") return "empty component is not allowed";
    if (component.startsWith(".")) return "component must not start with dot";
    if (component.endsWith(".lock")) return "component must not end with .lock";
  }
  return null;
}

/** Throws InvalidArgument if `name` is not a valid reference name (see referenceNameError). */
export function validateReferenceName(name: string | Uint8Array, opts: ReferenceNameOptions = {}): void {
  const reason = referenceNameError(name, opts);
  if (reason !== null) throw invalidArgument(opts.context ? `${opts.context}: ${reason}` : reason);
}
