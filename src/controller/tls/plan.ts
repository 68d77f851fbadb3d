// Decides, from what a Secret holds and the clock, whether the operator's CA and the serving
// certificate can stay or must be issued again. Pure and synchronous: the reconciler calls it on
// every pass, and the tests move `now` instead of waiting.
import { BACKDATE_MS } from "../../shared/tls/certificates.js";
import {
  type CertificateInspection,
  hostDifference,
  InvalidCertificateError,
  inspectCertificate,
  parsePrivateKey,
} from "./inspect.js";

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

/** Lifetime of a CA the operator creates: ten years, so it rarely has to be replaced. */
export const CA_VALIDITY_MS = 3650 * DAY_MS;
/** A CA is replaced when it has less than this left. */
export const CA_RENEW_BEFORE_MS = 30 * DAY_MS;

/** What a Secret yields: either field may be absent or empty when the Secret is new or damaged. */
export interface PemInput {
  certificate?: string | undefined;
  privateKey?: string | undefined;
}

export type CertificateIssueReason =
  | "missing"
  | "unparseable"
  | "ca-changed"
  | "key-mismatch"
  | "hosts-changed"
  | "duration-changed"
  | "not-yet-valid"
  | "expiring";

export type CaIssueReason =
  | "missing"
  | "unparseable"
  | "not-a-ca"
  | "unsupported-key"
  | "key-mismatch"
  | "not-yet-valid"
  | "expiring";

export interface KeepPlan {
  action: "keep";
  notAfter: Date;
  /** notAfter − renewBefore: requeue the reconcile for this instant. */
  renewAt: Date;
  serialNumber: string;
}

export interface IssuePlan<Reason extends string> {
  action: "issue";
  reason: Reason;
  /** For an Event or a log line: what was found, in words. */
  detail: string;
}

export type CertificatePlan = KeepPlan | IssuePlan<CertificateIssueReason>;
export type CaPlan = KeepPlan | IssuePlan<CaIssueReason>;

export interface PlanCertificateInput {
  /** tls.crt and tls.key of the serving Secret, if it exists. */
  current?: PemInput | undefined;
  /** The CA that must have signed the certificate (already planned and kept or issued). */
  ca: { certificate: string };
  /** Wanted subjectAltNames (servingCertificateHosts). */
  hosts: readonly string[];
  now: Date;
  /** spec.tls.duration. */
  durationMs: number;
  /** spec.tls.renewBefore; must be shorter than durationMs. */
  renewBeforeMs: number;
}

export interface PlanCaInput {
  /** ca.crt and ca.key of the CA Secret, if it exists. */
  current?: PemInput | undefined;
  now: Date;
  /** Replace the CA when less than this is left; CA_RENEW_BEFORE_MS unless given. */
  renewBeforeMs?: number;
}

/** A Go-style duration for messages: "168h", "90m", "45s", "1500ms". */
export function formatDuration(ms: number): string {
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Throws when renewal could never settle (a fresh certificate would already be due). */
export function checkRenewalPolicy(durationMs: number, renewBeforeMs: number): void {
  if (!Number.isFinite(durationMs) || durationMs <= 0) {
    throw new Error(`certificate duration must be positive, got ${durationMs} ms`);
  }
  if (!Number.isFinite(renewBeforeMs) || renewBeforeMs < 0) {
    throw new Error(`certificate renewBefore must be zero or positive, got ${renewBeforeMs} ms`);
  }
  if (renewBeforeMs >= durationMs) {
    throw new Error(
      `certificate renewBefore (${formatDuration(renewBeforeMs)}) must be shorter than its duration (${formatDuration(durationMs)})`,
    );
  }
}

function issue<Reason extends string>(reason: Reason, detail: string): IssuePlan<Reason> {
  return { action: "issue", reason, detail };
}

type Parsed = { cert: CertificateInspection } | { problem: IssuePlan<"missing" | "unparseable"> };

// The checks both plans start with: are there a certificate and a key, and do they parse?
function parsePair(current: PemInput | undefined, certKey: string, keyKey: string): Parsed {
  const certificate = current?.certificate?.trim() ?? "";
  const privateKey = current?.privateKey?.trim() ?? "";
  if (certificate === "" && privateKey === "") return { problem: issue("missing", "no certificate and no key") };
  if (certificate === "") return { problem: issue("missing", `${certKey} is missing or empty`) };
  if (privateKey === "") return { problem: issue("missing", `${keyKey} is missing or empty`) };
  try {
    const cert = inspectCertificate(certificate, certKey);
    parsePrivateKey(privateKey, keyKey);
    return { cert };
  } catch (err) {
    if (err instanceof InvalidCertificateError) return { problem: issue("unparseable", err.message) };
    throw err;
  }
}

function timeProblem(
  cert: CertificateInspection,
  now: Date,
  renewBeforeMs: number,
  what: string,
): IssuePlan<"not-yet-valid" | "expiring"> | KeepPlan {
  if (now < cert.notBefore) {
    return issue("not-yet-valid", `${what} is valid only from ${cert.notBefore.toISOString()} (clock skew?)`);
  }
  const renewAt = new Date(cert.notAfter.getTime() - renewBeforeMs);
  if (now >= cert.notAfter) return issue("expiring", `${what} expired at ${cert.notAfter.toISOString()}`);
  if (now >= renewAt) {
    return issue(
      "expiring",
      `${what} expires at ${cert.notAfter.toISOString()}, within the renewal window of ${formatDuration(renewBeforeMs)} (from ${renewAt.toISOString()})`,
    );
  }
  return { action: "keep", notAfter: cert.notAfter, renewAt, serialNumber: cert.serialNumber };
}

// Issued lifetimes are duration + backdate, give or take the rounding to whole seconds.
const LIFETIME_SLACK_MS = BACKDATE_MS + 60_000;

/**
 * Keep the serving certificate, or issue a new one and why. Checks, in order: present, parseable,
 * signed by `ca`, key matches, SANs equal `hosts` (as a set), not longer-lived than `durationMs`
 * (a shortened spec.tls.duration takes effect at once; a longer one at the next renewal), already
 * valid, and not inside the renewal window (notAfter − renewBeforeMs).
 */
export function planCertificate(input: PlanCertificateInput): CertificatePlan {
  const { ca, hosts, now, durationMs, renewBeforeMs } = input;
  checkRenewalPolicy(durationMs, renewBeforeMs);
  const parsed = parsePair(input.current, "tls.crt", "tls.key");
  if ("problem" in parsed) return parsed.problem;
  const { cert } = parsed;

  if (!cert.issuerMatches(ca)) {
    return issue("ca-changed", `certificate issued by "${cert.issuer}" is not signed by the current CA`);
  }
  if (!cert.matchesPrivateKey(input.current?.privateKey ?? "")) {
    return issue("key-mismatch", "tls.key is not the key of tls.crt");
  }
  const { missing, extra } = hostDifference([...cert.dnsNames, ...cert.ipAddresses], hosts);
  if (missing.length > 0 || extra.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`lacks ${missing.join(", ")}`);
    if (extra.length > 0) parts.push(`no longer wants ${extra.join(", ")}`);
    return issue("hosts-changed", `subjectAltNames changed: ${parts.join("; ")}`);
  }
  const lifetimeMs = cert.notAfter.getTime() - cert.notBefore.getTime();
  if (lifetimeMs > durationMs + LIFETIME_SLACK_MS) {
    return issue(
      "duration-changed",
      `certificate is valid for ${formatDuration(lifetimeMs - BACKDATE_MS)}, longer than the duration ${formatDuration(durationMs)}`,
    );
  }
  return timeProblem(cert, now, renewBeforeMs, "certificate");
}

/**
 * Keep the CA, or create a new one and why. A new CA signs nothing the old one did: every leaf
 * must then be issued again (planCertificate says "ca-changed"), and every client that trusts
 * only the old ca.crt (GitLab, through the client Secret) fails TLS until it reads the new one.
 * That is why a CA lives ten years and is never replaced while it is usable.
 */
export function planCa(input: PlanCaInput): CaPlan {
  const renewBeforeMs = input.renewBeforeMs ?? CA_RENEW_BEFORE_MS;
  const parsed = parsePair(input.current, "ca.crt", "ca.key");
  if ("problem" in parsed) return parsed.problem;
  const { cert } = parsed;
  const privateKeyPem = input.current?.privateKey ?? "";

  if (!cert.isCa) return issue("not-a-ca", `"${cert.subject}" is not a CA certificate (basicConstraints, keyCertSign)`);
  if (!cert.issuerMatches(input.current?.certificate ?? "")) {
    return issue("not-a-ca", `"${cert.subject}" is not self-signed (issuer "${cert.issuer}"), so it cannot be a root`);
  }
  // The issuing code signs with ECDSA P-256 only.
  const key = parsePrivateKey(privateKeyPem, "ca.key");
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve !== "prime256v1") {
    return issue("unsupported-key", `ca.key is ${key.asymmetricKeyType}${curve ? ` ${curve}` : ""}, not ECDSA P-256`);
  }
  if (!cert.matchesPrivateKey(privateKeyPem)) return issue("key-mismatch", "ca.key is not the key of ca.crt");
  return timeProblem(cert, input.now, renewBeforeMs, "CA");
}
