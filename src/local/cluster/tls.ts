// TLS for a local cluster whose spec asks for it: a CA kept in the state dir (so a client that
// trusts ca.crt keeps trusting it across runs) and serving certificates for loopback, issued
// afresh on every start (they are cheap, and a restart then never runs on an expired one).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
  loadCertificateAuthority,
} from "../../shared/tls/certificates.js";
import { writePrivateFile } from "./state.js";

/** What every local listener is reached as. */
export const LOCAL_TLS_HOSTS = ["127.0.0.1", "localhost"] as const;

export interface KeyPairFiles {
  certificatePath: string;
  keyPath: string;
}

export interface LocalTls {
  /** The CA certificate clients must trust (PEM). */
  caFile: string;
  /** Public roots plus the CA: what the cluster's own processes trust (see trustEnv). */
  trustBundleFile: string;
  gitaly: KeyPairFiles;
  praefect: KeyPairFiles;
}

async function ensureCa(dir: string, clusterName: string): Promise<CertificateAuthority> {
  const certificatePath = join(dir, "ca.crt");
  const keyPath = join(dir, "ca.key");
  if (existsSync(certificatePath) && existsSync(keyPath)) {
    try {
      return await loadCertificateAuthority({
        certificate: readFileSync(certificatePath, "utf8"),
        privateKey: readFileSync(keyPath, "utf8"),
      });
    } catch (err) {
      throw new Error(`loading the local CA from ${dir}: ${(err as Error).message} (--reset starts over)`);
    }
  }
  const ca = await createCertificateAuthority(`gitaly-cluster ${clusterName} local CA`);
  writePrivateFile(keyPath, ca.privateKey);
  writeFileSync(certificatePath, ca.certificate);
  return ca;
}

async function issueTo(
  ca: CertificateAuthority,
  dir: string,
  name: string,
  validityDays: number,
): Promise<KeyPairFiles> {
  const leaf = await issueCertificate(ca, { commonName: name, hosts: [...LOCAL_TLS_HOSTS], validityDays });
  const files = { certificatePath: join(dir, `${name}.crt`), keyPath: join(dir, `${name}.key`) };
  writePrivateFile(files.keyPath, leaf.privateKey);
  // The chain a client needs beyond its trusted root: the leaf alone, the CA is the root.
  writeFileSync(files.certificatePath, leaf.certificate);
  return files;
}

/** Loads (or creates) the CA in `dir` and issues Gitaly's and Praefect's serving certificates. */
export async function ensureLocalTls(dir: string, clusterName: string, validityDays: number): Promise<LocalTls> {
  const ca = await ensureCa(dir, clusterName);
  const days = Math.max(1, Math.floor(validityDays));
  const trustBundleFile = join(dir, "trust-bundle.pem");
  writeFileSync(trustBundleFile, trustBundle(ca.certificate));
  return {
    caFile: join(dir, "ca.crt"),
    trustBundleFile,
    gitaly: await issueTo(ca, dir, "gitaly", days),
    praefect: await issueTo(ca, dir, "praefect", days),
  };
}

/**
 * Node's public roots, the roots the environment already points at, and our CA. A bundle
 * rather than the CA alone: these variables replace a program's roots, and Gitaly's git must
 * still reach https remotes.
 */
export function trustBundle(caPem: string, env: NodeJS.ProcessEnv = process.env): string {
  const extra: string[] = [];
  for (const key of ["SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"]) {
    const file = env[key];
    if (!file) continue;
    try {
      extra.push(readFileSync(file, "utf8"));
    } catch {
      // A variable naming a missing file trusts nothing extra; neither do we.
    }
  }
  return `${[...rootCertificates, ...extra, caPem].map((pem) => pem.trim()).join("\n")}\n`;
}

/**
 * The environment that makes a child trust the local CA when it dials a tls:// address:
 * SSL_CERT_FILE for Praefect (it adds that file to its roots, as Go does for upstream) and git,
 * GRPC_DEFAULT_SSL_ROOTS_FILE_PATH for grpc-js channels without explicit roots (Gitaly's
 * ReplicateRepository and gitaly-ssh dial other nodes that way), NODE_EXTRA_CA_CERTS for the rest.
 */
export function trustEnv(tls: LocalTls): NodeJS.ProcessEnv {
  return {
    SSL_CERT_FILE: tls.trustBundleFile,
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: tls.trustBundleFile,
    NODE_EXTRA_CA_CERTS: tls.caFile,
  };
}
