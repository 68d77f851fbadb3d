// Reading certificates and keys back from a Secret. Everything here is synchronous (node:crypto
// verifies signatures without WebCrypto's promises), so planning stays a pure function.
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { type CertificateInfo, readCertificate } from "../../shared/tls/certificates.js";

/** A Secret held something that is not a usable certificate or key; the message says what. */
export class InvalidCertificateError extends Error {
  override name = "InvalidCertificateError";
}

export interface CertificateInspection extends CertificateInfo {
  /** True when `ca` issued this certificate: issuer name equals the CA's subject and the CA's key verifies the signature. */
  issuerMatches(ca: string | { certificate: string }): boolean;
  /** True when `privateKeyPem` is this certificate's key. Throws InvalidCertificateError for a damaged key. */
  matchesPrivateKey(privateKeyPem: string): boolean;
}

function parseX509(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new InvalidCertificateError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Parses a PEM private key; throws InvalidCertificateError naming `what` when it is not one. */
export function parsePrivateKey(pem: string, what = "private key"): KeyObject {
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new InvalidCertificateError(`${what}: not a PEM private key (no -----BEGIN … PRIVATE KEY----- block)`);
  }
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new InvalidCertificateError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Parses a PEM certificate (the first of a bundle). Throws InvalidCertificateError for anything
 * else (empty text, a key, truncated base64), prefixed with `what` so the error names the Secret key.
 */
export function inspectCertificate(pem: string, what = "certificate"): CertificateInspection {
  let info: CertificateInfo;
  try {
    info = readCertificate(pem);
  } catch (err) {
    throw new InvalidCertificateError(`${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const cert = parseX509(pem, what);
  return {
    ...info,
    issuerMatches(ca) {
      const caCert = parseX509(typeof ca === "string" ? ca : ca.certificate, "CA certificate");
      return cert.checkIssued(caCert) && cert.verify(caCert.publicKey);
    },
    matchesPrivateKey(privateKeyPem) {
      return cert.checkPrivateKey(parsePrivateKey(privateKeyPem));
    },
  };
}

/** The form two SAN entries are compared in: DNS names case-insensitive without a root dot, IPv6 compressed. */
export function normalizeHost(host: string): string {
  if (isIP(host) === 6) return new URL(`http://[${host}]/`).hostname.slice(1, -1);
  return host.toLowerCase().replace(/\.$/, "");
}

/** What `want` lacks in `have` and the reverse, after normalizing; both empty means the same SAN set. */
export function hostDifference(
  have: readonly string[],
  want: readonly string[],
): { missing: string[]; extra: string[] } {
  const haveSet = new Set(have.map(normalizeHost));
  const wantSet = new Set(want.map(normalizeHost));
  return {
    missing: [...wantSet].filter((h) => !haveSet.has(h)),
    extra: [...haveSet].filter((h) => !wantSet.has(h)),
  };
}
