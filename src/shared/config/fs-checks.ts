// Checks of what configuration points at on disk. Kept apart from parsing so parsing stays pure;
// each check returns issues (never throws for a problem it was asked to find). Messages follow
// upstream's cfgerror wording: `doesn't exist: "/path"`, `not a dir: "/path"`.

import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { type ConfigIssue, configIssue, type KeySegment } from "./issues.js";
import type { AuthSection, TlsSection } from "./sections.js";

async function statOrNull(path: string): Promise<Stats | null> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") {
      return null;
    }
    throw error;
  }
}

async function isWritable(path: string): Promise<boolean> {
  try {
    await access(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The path exists and is a directory (and, when asked, writable). */
export async function checkDirectory(
  path: string,
  at: readonly KeySegment[],
  { writable = false }: { writable?: boolean } = {},
): Promise<ConfigIssue | null> {
  const quoted = JSON.stringify(path);
  try {
    const info = await statOrNull(path);
    if (info === null) return configIssue(at, `doesn't exist: ${quoted}`);
    if (!info.isDirectory()) return configIssue(at, `not a dir: ${quoted}`);
    if (writable && !(await isWritable(path))) return configIssue(at, `not writable: ${quoted}`);
    return null;
  } catch (error) {
    return configIssue(at, `cannot stat ${quoted}: ${describeError(error)}`);
  }
}

/** The path exists and is not a directory. */
export async function checkFile(path: string, at: readonly KeySegment[]): Promise<ConfigIssue | null> {
  const quoted = JSON.stringify(path);
  try {
    const info = await statOrNull(path);
    if (info === null) return configIssue(at, `doesn't exist: ${quoted}`);
    if (info.isDirectory()) return configIssue(at, `not a file: ${quoted}`);
    return null;
  } catch (error) {
    return configIssue(at, `cannot stat ${quoted}: ${describeError(error)}`);
  }
}

/**
 * The directory exists (and is a writable directory) or could be created: its nearest existing
 * ancestor is a writable directory. Nothing is created.
 */
export async function checkCreatableDirectory(path: string, at: readonly KeySegment[]): Promise<ConfigIssue | null> {
  const quoted = JSON.stringify(path);
  try {
    const info = await statOrNull(path);
    if (info !== null) {
      if (!info.isDirectory()) return configIssue(at, `not a dir: ${quoted}`);
      if (!(await isWritable(path))) return configIssue(at, `not writable: ${quoted}`);
      return null;
    }
    let ancestor = dirname(path);
    for (;;) {
      const parent = await statOrNull(ancestor);
      if (parent !== null) {
        if (!parent.isDirectory()) {
          return configIssue(at, `cannot be created: ${JSON.stringify(ancestor)} is not a directory`);
        }
        if (!(await isWritable(ancestor))) {
          return configIssue(at, `cannot be created: ${JSON.stringify(ancestor)} is not writable`);
        }
        return null;
      }
      const next = dirname(ancestor);
      if (next === ancestor) return configIssue(at, `cannot be created: no existing parent of ${quoted}`);
      ancestor = next;
    }
  } catch (error) {
    return configIssue(at, `cannot stat ${quoted}: ${describeError(error)}`);
  }
}

/** Reads a secret file the way upstream does: surrounding whitespace (the trailing newline) trimmed. */
export async function readSecretFile(path: string): Promise<string> {
  return (await readFile(path, "utf8")).trim();
}

/**
 * An auth token file: it exists, is readable, and gives nothing to other users and no write to
 * the group. Upstream accepts 0600 and 0400 only; we also accept the group-readable 0440 and
 * 0640, because a Kubernetes Secret volume under a pod's fsGroup is always group-readable
 * (the kubelet ORs 0440 into every file), and a pod must be able to validate its own config.
 */
const TOKEN_FILE_MODES = new Set([0o600, 0o400, 0o640, 0o440]);

export async function checkTokenFile(path: string, at: readonly KeySegment[]): Promise<ConfigIssue[]> {
  const missing = await checkFile(path, at);
  if (missing !== null) return [missing];
  const issues: ConfigIssue[] = [];
  try {
    const perm = (await stat(path)).mode & 0o777;
    if (!TOKEN_FILE_MODES.has(perm)) {
      const octal = perm === 0 ? "0" : `0${perm.toString(8)}`;
      issues.push(
        configIssue(
          at,
          `file permission ${octal} is too permissive, should be 0600 or 0400 (0440 or 0640 under a pod's fsGroup)`,
        ),
      );
    }
    await readFile(path);
  } catch (error) {
    issues.push(configIssue(at, `reading token file: ${describeError(error)}`));
  }
  return issues;
}

/** [auth] on disk: the token file, when one is configured. */
export async function checkAuthSection(
  auth: AuthSection,
  at: readonly KeySegment[] = ["auth"],
): Promise<ConfigIssue[]> {
  if (auth.token_file === "" || auth.token !== "") return [];
  return checkTokenFile(auth.token_file, [...at, "token_file"]);
}

/** The token clients must present: `token`, else the trimmed contents of `token_file`; "" = auth disabled. */
export async function readAuthSectionToken(auth: AuthSection): Promise<string> {
  if (auth.token !== "") return auth.token;
  if (auth.token_file === "") return "";
  try {
    return await readSecretFile(auth.token_file);
  } catch (error) {
    throw new Error(`reading token file ${JSON.stringify(auth.token_file)}: ${describeError(error)}`);
  }
}

const CERTIFICATE_PEM = /-----BEGIN [A-Z0-9 ]*CERTIFICATE-----/;
const PRIVATE_KEY_PEM = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

export interface LoadedKeyPair {
  certificate: X509Certificate;
  privateKey: KeyObject;
  certificatePem: string;
  keyPem: string;
}

/** Thrown by loadTlsKeyPair; `field` names the [tls] key at fault. */
export class KeyPairError extends Error {
  override name = "KeyPairError";
  constructor(
    message: string,
    readonly field: "certificate_path" | "key_path" | "key",
  ) {
    super(message);
  }
}

/**
 * Reads and cross-checks the [tls] certificate and key. Error texts follow Go's tls.X509KeyPair
 * ("loading x509 keypair: tls: private key does not match public key").
 */
export async function loadTlsKeyPair(tls: TlsSection): Promise<LoadedKeyPair> {
  const keyField = tls.key !== "" ? "key" : "key_path";
  const fail = (field: KeyPairError["field"], reason: string) =>
    new KeyPairError(`loading x509 keypair: ${reason}`, field);

  let certificatePem: string;
  try {
    certificatePem = await readFile(tls.certificate_path, "utf8");
  } catch (error) {
    throw fail("certificate_path", describeError(error));
  }
  let keyPem = tls.key;
  if (keyPem === "") {
    try {
      keyPem = await readFile(tls.key_path, "utf8");
    } catch (error) {
      throw fail("key_path", describeError(error));
    }
  }

  if (!CERTIFICATE_PEM.test(certificatePem)) {
    throw fail(
      "certificate_path",
      PRIVATE_KEY_PEM.test(certificatePem)
        ? "tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched"
        : "tls: failed to find any PEM data in certificate input",
    );
  }
  if (!PRIVATE_KEY_PEM.test(keyPem)) {
    throw fail(
      keyField,
      CERTIFICATE_PEM.test(keyPem)
        ? "tls: found a certificate rather than a key in the PEM for the private key"
        : "tls: failed to find any PEM data in key input",
    );
  }

  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
  } catch (error) {
    throw fail("certificate_path", `x509: ${describeError(error)}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(keyPem);
  } catch (error) {
    throw fail(keyField, `tls: failed to parse private key: ${describeError(error)}`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw fail(keyField, "tls: private key does not match public key");
  }
  return { certificate, privateKey, certificatePem, keyPem };
}

/** [tls] on disk: files exist, parse as PEM, and the key belongs to the certificate. */
export async function checkTlsSection(tls: TlsSection, at: readonly KeySegment[] = ["tls"]): Promise<ConfigIssue[]> {
  if (tls.certificate_path === "" && tls.key_path === "" && tls.key === "") return [];
  const issues: ConfigIssue[] = [];
  if (tls.certificate_path !== "") {
    const issue = await checkFile(tls.certificate_path, [...at, "certificate_path"]);
    if (issue !== null) issues.push(issue);
  }
  if (tls.key === "" && tls.key_path !== "") {
    const issue = await checkFile(tls.key_path, [...at, "key_path"]);
    if (issue !== null) issues.push(issue);
  }
  // Like upstream: with files missing, a load attempt would only add noise.
  if (issues.length > 0 || tls.certificate_path === "" || (tls.key === "" && tls.key_path === "")) return issues;
  try {
    await loadTlsKeyPair(tls);
  } catch (error) {
    if (error instanceof KeyPairError) return [configIssue([...at, error.field], error.message)];
    throw error;
  }
  return [];
}
