// Issues X.509 certificates: a private CA and leaf certificates signed by it. Used by
// the operator (cluster TLS), the local cluster, and tests that need real TLS peers.
// Keys are ECDSA P-256: small, fast to generate, accepted by Go (Gitaly, Kubernetes)
// and Node alike.
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs the
// Reflect metadata polyfill loaded first.
import "reflect-metadata";
import { createPrivateKey, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const crypto = webcrypto;
// @peculiar/x509 types its provider with the DOM's Crypto; Node's webcrypto is the same API.
x509.cryptoProvider.set(crypto as unknown as ReturnType<typeof x509.cryptoProvider.get>);

const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DAY_MS = 24 * 60 * 60 * 1000;
/** Certificates start this long before they are issued so a peer whose clock lags still accepts them. */
export const BACKDATE_MS = 5 * 60 * 1000;

export interface PemPair {
  certificate: string;
  privateKey: string;
}

export interface CertificateAuthority extends PemPair {
  readonly cert: x509.X509Certificate;
  readonly key: CryptoKey;
}

export interface IssuedCertificate extends PemPair {
  notBefore: Date;
  notAfter: Date;
  serialNumber: string;
}

export interface LeafOptions {
  commonName: string;
  /** DNS names and IP addresses; each goes into subjectAltName with its proper type. */
  hosts?: string[];
  validityDays?: number;
  /** Validity in milliseconds; takes precedence over validityDays (the operator's durations are Go durations). */
  validityMs?: number;
  usage?: "server" | "client" | "both";
  now?: Date;
}

export interface CaOptions {
  validityDays?: number;
  /** Takes precedence over validityDays. */
  validityMs?: number;
  now?: Date;
}

/** What a certificate says about itself, read without verifying anything. */
export interface CertificateInfo {
  subject: string;
  issuer: string;
  /** Lower-case hex, as issued. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /** subjectAltName DNS entries, in certificate order. */
  dnsNames: string[];
  /** subjectAltName IP entries, in certificate order. */
  ipAddresses: string[];
  /** basicConstraints CA, and keyCertSign when the certificate restricts its key usage. */
  isCa: boolean;
}

// X.509 stores times with whole seconds; rounding here keeps the Dates we return equal to
// what a reader of the certificate sees, so renewal arithmetic agrees on both sides.
function wholeSeconds(ms: number): Date {
  return new Date(Math.floor(ms / 1000) * 1000);
}

function validityPeriod(now: Date, validityMs: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(validityMs) || validityMs <= 0) {
    throw new Error(`certificate validity must be a positive duration, got ${validityMs} ms`);
  }
  return {
    notBefore: wholeSeconds(now.getTime() - BACKDATE_MS),
    notAfter: wholeSeconds(now.getTime() + validityMs),
  };
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  // A positive integer: clear the top bit.
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString("hex");
}

export async function createCertificateAuthority(
  commonName: string,
  { validityDays = 3650, validityMs, now = new Date() }: CaOptions = {},
): Promise<CertificateAuthority> {
  const { notBefore, notAfter } = validityPeriod(now, validityMs ?? validityDays * DAY_MS);
  const keys = (await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore,
    notAfter,
    keys,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    cert,
    key: keys.privateKey,
    certificate: cert.toString("pem"),
    privateKey: await exportKey(keys.privateKey),
  };
}

/** Re-creates a CA from its PEM files, e.g. read back from a Kubernetes Secret. */
export async function loadCertificateAuthority(pem: PemPair): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(pem.certificate);
  // Through a KeyObject so SEC1 ("EC PRIVATE KEY", what openssl writes) loads as well as PKCS#8.
  const der = createPrivateKey(pem.privateKey).export({ type: "pkcs8", format: "der" });
  const key = await crypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, true, ["sign"]);
  return { cert, key, certificate: pem.certificate, privateKey: pem.privateKey };
}

export async function issueCertificate(ca: CertificateAuthority, options: LeafOptions): Promise<IssuedCertificate> {
  const { commonName, hosts = [], validityDays = 90, validityMs, usage = "server", now = new Date() } = options;
  const { notBefore, notAfter } = validityPeriod(now, validityMs ?? validityDays * DAY_MS);
  const keys = (await crypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
  const ekus: string[] = [];
  if (usage !== "client") ekus.push(x509.ExtendedKeyUsage.serverAuth);
  if (usage !== "server") ekus.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension(ekus),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
  ];
  if (hosts.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: isIP(h) ? "ip" : "dns", value: h }))),
    );
  }
  const serialNumber = serial();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber,
    subject: `CN=${commonName}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return {
    certificate: cert.toString("pem"),
    privateKey: await exportKey(keys.privateKey),
    notBefore,
    notAfter,
    serialNumber,
  };
}

/**
 * Parses a PEM certificate (the first one of a bundle) without verifying it. Throws an Error
 * that says what was wrong, so a caller can report a damaged Secret instead of a DER offset.
 */
export function readCertificate(pem: string): CertificateInfo {
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) {
    throw new Error("not a PEM certificate: no -----BEGIN CERTIFICATE----- block");
  }
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(pem);
  } catch (err) {
    throw new Error(`not a valid X.509 certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
  const names = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  const usages = cert.getExtension(x509.KeyUsagesExtension);
  const canSign = usages === null || (usages.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
    ipAddresses: names.filter((n) => n.type === "ip").map((n) => n.value),
    isCa: basic?.ca === true && canSign,
  };
}
