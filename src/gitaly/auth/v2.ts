// Server-side check of a v2 bearer token, as pure functions. The order of the checks and
// every message follow upstream Gitaly (auth/token.go), because clients and operators
// match on them: a header that cannot be parsed at all is Unauthenticated
// "authentication required"; anything parsed but wrong is PermissionDenied
// "permission denied: <reason>".
import { timingSafeEqual } from "node:crypto";
import { v2Signature } from "../../shared/auth/v2-token.js";
import { Code } from "../../shared/grpc/errors.js";

/** How far a token's timestamp may be from the server clock, either way (inclusive). */
export const TOKEN_VALIDITY_MS = 30_000;

export const AUTHENTICATION_REQUIRED = "authentication required";

export type DenialReason =
  | "invalid token version"
  | "wrong hmac signature"
  | "cannot parse timestamp"
  | "token has expired"
  | "token's validity window is in future";

export type AuthCheck =
  | { readonly kind: "ok" }
  | { readonly kind: "unauthenticated"; readonly code: Code; readonly message: string }
  | {
      readonly kind: "denied";
      readonly code: Code;
      readonly message: string;
      readonly reason: DenialReason;
      /** Set when upstream counts the failure in gitaly_authentication_errors_total{version="v2"}. */
      readonly countedAsV2Error: boolean;
    };

/**
 * The `status` label of gitaly_authentications_total. Upstream maps every other status
 * code to "invalid", but its token check only ever yields Unauthenticated or
 * PermissionDenied, so "invalid" is unreachable and kept only for dashboards.
 */
export type AuthStatus =
  | "ok"
  | "would be ok"
  | "unauthenticated"
  | "denied"
  | "invalid"
  | "server disabled authentication";

const OK: AuthCheck = { kind: "ok" };

function unauthenticated(message = AUTHENTICATION_REQUIRED): AuthCheck {
  return { kind: "unauthenticated", code: Code.UNAUTHENTICATED, message };
}

function denied(reason: DenialReason, detail?: string): AuthCheck {
  const text = detail === undefined ? reason : `${reason}: ${detail}`;
  return {
    kind: "denied",
    code: Code.PERMISSION_DENIED,
    message: `permission denied: ${text}`,
    reason,
    // Upstream counts only the failures found after the version check.
    countedAsV2Error: reason !== "invalid token version",
  };
}

/** Go's `hex.DecodeString`: both cases, even length, nothing else. */
function decodeHex(text: string): Buffer | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  return Buffer.from(text, "hex");
}

/** Go's `strconv.Quote`, enough of it for header values (which are printable ASCII). */
function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Go's `strconv.ParseInt(text, 10, 64)`, returning its error text on failure. */
function parseInt64(text: string): bigint | string {
  if (!/^[+-]?[0-9]+$/.test(text)) return `strconv.ParseInt: parsing ${goQuote(text)}: invalid syntax`;
  const value = BigInt(text);
  if (value < INT64_MIN || value > INT64_MAX) return `strconv.ParseInt: parsing ${goQuote(text)}: value out of range`;
  return value;
}

// Go keeps time as int64 seconds since year 1; time.Unix(ts, 0) for an absurd ts wraps
// around, which makes such tokens "expired" rather than "in future". Kept for parity.
const UNIX_TO_INTERNAL_SECONDS = 62_135_596_800n;

function checkWindow(timestamp: bigint, now: Date): AuthCheck {
  const issuedMs = BigInt.asIntN(64, timestamp + UNIX_TO_INTERNAL_SECONDS) * 1000n;
  const nowMs = BigInt(now.getTime()) + UNIX_TO_INTERNAL_SECONDS * 1000n;
  const validity = BigInt(TOKEN_VALIDITY_MS);
  if (issuedMs < nowMs - validity) return denied("token has expired");
  if (issuedMs > nowMs + validity) return denied("token's validity window is in future");
  return OK;
}

/**
 * Checks the first `authorization` header value of a call against `secret` at `now`.
 * The scheme is matched case-insensitively ("bearer", "Bearer", "BEARER"), like
 * go-grpc-middleware's AuthFromMD.
 */
export function checkAuthorization(header: string | undefined, secret: string, now: Date): AuthCheck {
  if (secret === "") return unauthenticated("secret must not be empty");
  if (header === undefined) return unauthenticated();

  const space = header.indexOf(" ");
  if (space < 0) return unauthenticated();
  if (header.slice(0, space).toLowerCase() !== "bearer") return unauthenticated();
  const token = header.slice(space + 1);

  const firstDot = token.indexOf(".");
  const secondDot = firstDot < 0 ? -1 : token.indexOf(".", firstDot + 1);
  if (secondDot < 0) return unauthenticated();
  const version = token.slice(0, firstDot);
  const signature = decodeHex(token.slice(firstDot + 1, secondDot));
  const message = token.slice(secondDot + 1);
  if (signature === undefined) return unauthenticated();

  if (version !== "v2") return denied("invalid token version");

  // The signature is verified before the message is even parsed, so nothing about a
  // forged token's content leaks through the error.
  const expected = v2Signature(secret, message);
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
    return denied("wrong hmac signature");
  }

  const timestamp = parseInt64(message);
  if (typeof timestamp === "string") return denied("cannot parse timestamp", timestamp);

  return checkWindow(timestamp, now);
}

/** The gitaly_authentications_total status label for a check result. */
export function authStatus(check: AuthCheck, transitioning: boolean): AuthStatus {
  switch (check.kind) {
    case "ok":
      // An extra warning sign for administrators that auth is not enforced yet.
      return transitioning ? "would be ok" : "ok";
    case "unauthenticated":
      return "unauthenticated";
    case "denied":
      return "denied";
  }
}
