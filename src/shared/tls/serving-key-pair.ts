// The key pair a TLS listener serves, read from its certificate and key files and swapped into the
// listener when they change: the operator renews the certificate (a mounted Secret) before it
// expires, and a listener that kept the pair it started with would serve the old one until it
// lapsed. Only new handshakes get the new pair; live connections keep theirs.
//
// A swap seen half done (the new certificate with the old key, a file cut short) must not take the
// listener down, so every pair is checked before it is used and a bad one leaves the previous pair
// in force. Errors name the files, never their contents.
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { SecureContextOptions, Server as TlsServer } from "node:tls";
import { type CertificateInfo, readCertificate } from "./certificates.js";

export interface KeyPairFiles {
  certificatePath: string;
  keyPath: string;
}

/** The rest of a listener's secure context (minVersion, ciphers, …), without the pair. */
export type ContextSettings = Omit<SecureContextOptions, "cert" | "key" | "pfx" | "passphrase">;

export interface ServingKeyPair {
  cert: Buffer;
  key: Buffer;
  /** What the leaf (the file's first certificate) says about itself. */
  certificate: CertificateInfo;
}

/** What a reload did: nothing (same files), or which certificate replaced which. */
export type KeyPairReload =
  | { swapped: false; current: CertificateInfo }
  | { swapped: true; previous: CertificateInfo; current: CertificateInfo };

function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Reads and checks a key pair: the certificate parses, the key parses, and the key is the
 * certificate's. Throws an Error naming the file at fault otherwise.
 */
export async function readServingKeyPair(files: KeyPairFiles): Promise<ServingKeyPair> {
  const { certificatePath, keyPath } = files;
  const [cert, key] = await Promise.all([readFile(certificatePath), readFile(keyPath)]);
  let certificate: CertificateInfo;
  let x509: X509Certificate;
  try {
    certificate = readCertificate(cert.toString("utf8"));
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`TLS certificate ${certificatePath}: ${reason(err)}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // The parser's message can quote what it choked on; say only where.
    throw new Error(`TLS key ${keyPath}: not a PEM private key`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(`TLS key ${keyPath} does not belong to the certificate ${certificatePath}`);
  }
  return { cert, key, certificate };
}

/**
 * The pair a TLS server was created with, and the means to replace it from the same files.
 * Reloads run one at a time, in call order, so one that read older files cannot finish last.
 */
export class ReloadableKeyPair {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly files: KeyPairFiles,
    private readonly settings: ContextSettings,
    private current: ServingKeyPair,
  ) {}

  /**
   * Reads the first pair; throws as readServingKeyPair does (a listener cannot start without one).
   * `settings` are the ones the server was created with: a swap replaces the whole secure context,
   * and would otherwise drop them.
   */
  static async load(files: KeyPairFiles, settings: ContextSettings = {}): Promise<ReloadableKeyPair> {
    return new ReloadableKeyPair(files, settings, await readServingKeyPair(files));
  }

  /** The certificate new handshakes get. */
  get certificate(): CertificateInfo {
    return this.current.certificate;
  }

  /** The settings with the current cert and key, for `tls.createServer`. */
  get secureContextOptions(): SecureContextOptions {
    return { ...this.settings, cert: this.current.cert, key: this.current.key };
  }

  /**
   * Re-reads the files; a pair that differs from the current one and passes the checks becomes the
   * one `server` hands to new handshakes. Throws, keeping the current pair, when the files cannot
   * be read or do not form a usable pair.
   */
  reload(server: TlsServer): Promise<KeyPairReload> {
    const run = this.queue.then(() => this.reloadNow(server));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(server: TlsServer): Promise<KeyPairReload> {
    const next = await readServingKeyPair(this.files);
    const previous = this.current;
    if (next.cert.equals(previous.cert) && next.key.equals(previous.key)) {
      return { swapped: false, current: previous.certificate };
    }
    try {
      // Throws on what the checks above let through but OpenSSL refuses (say, a broken chain).
      server.setSecureContext({ ...this.settings, cert: next.cert, key: next.key });
    } catch (err) {
      throw new Error(`TLS key pair ${this.files.certificatePath} and ${this.files.keyPath} refused: ${reason(err)}`);
    }
    this.current = next;
    return { swapped: true, previous: previous.certificate, current: next.certificate };
  }
}
