import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  type IssuedCertificate,
  issueCertificate,
} from "./certificates.js";
import { ReloadableKeyPair, readServingKeyPair } from "./serving-key-pair.js";

/** Serial numbers compared as integers: peers print them in upper case, we issue lower case. */
const serialOf = (hex: string) => BigInt(`0x${hex}`);

describe("serving key pair", () => {
  const dir = mkdtempSync(join(tmpdir(), "serving-key-pair-"));
  const files = { certificatePath: join(dir, "tls.crt"), keyPath: join(dir, "tls.key") };
  let ca: CertificateAuthority;
  let a: IssuedCertificate;
  let b: IssuedCertificate;
  let other: IssuedCertificate;
  const install = (cert: string, key: string) => {
    writeFileSync(files.certificatePath, cert);
    writeFileSync(files.keyPath, key);
  };

  beforeAll(async () => {
    ca = await createCertificateAuthority("serving-key-pair-ca");
    const leaf = (commonName: string) => issueCertificate(ca, { commonName, hosts: ["127.0.0.1"] });
    [a, b, other] = await Promise.all([leaf("a"), leaf("b"), leaf("other")]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a matching pair and says which certificate it is", async () => {
    install(a.certificate, a.privateKey);
    const pair = await readServingKeyPair(files);
    expect(pair.certificate.serialNumber).toBe(a.serialNumber);
    expect(pair.certificate.notAfter).toEqual(a.notAfter);
  });

  it("refuses a key that is not the certificate's, naming the files and not the key", async () => {
    install(a.certificate, other.privateKey);
    const err = await readServingKeyPair(files).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toBe(`TLS key ${files.keyPath} does not belong to the certificate ${files.certificatePath}`);
  });

  it("refuses a cut-short key or certificate, naming the file at fault", async () => {
    const keyBody = other.privateKey.split("\n")[1] ?? "";
    install(a.certificate, other.privateKey.slice(0, 60));
    const keyErr = await readServingKeyPair(files).catch((e: unknown) => e as Error);
    expect((keyErr as Error).message).toBe(`TLS key ${files.keyPath}: not a PEM private key`);
    expect((keyErr as Error).message).not.toContain(keyBody.slice(0, 20));

    install(a.certificate.slice(0, 200), a.privateKey);
    const certErr = await readServingKeyPair(files).catch((e: unknown) => e as Error);
    expect((certErr as Error).message).toMatch(new RegExp(`^TLS certificate ${files.certificatePath}: `));
  });

  describe("swapped into a live TLS server", () => {
    let server: Server;
    let port = 0;
    let pair: ReloadableKeyPair;
    const open: TLSSocket[] = [];

    const handshake = async (): Promise<TLSSocket> => {
      const socket = connect({ host: "127.0.0.1", port, ca: ca.certificate });
      open.push(socket);
      await once(socket, "secureConnect");
      return socket;
    };
    const echo = async (socket: TLSSocket, text: string): Promise<string> => {
      socket.write(text);
      const [data] = await once(socket, "data");
      return String(data);
    };

    beforeAll(async () => {
      install(a.certificate, a.privateKey);
      pair = await ReloadableKeyPair.load(files, { minVersion: "TLSv1.3" });
      server = createServer(pair.secureContextOptions, (s) => s.pipe(s));
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      port = (server.address() as { port: number }).port;
    });
    afterAll(() => {
      for (const s of open) s.destroy();
      server?.close();
    });

    it("serves the new pair to new handshakes while live connections keep theirs", async () => {
      const before = await handshake();
      expect(serialOf(before.getPeerCertificate().serialNumber)).toBe(serialOf(a.serialNumber));

      expect(await pair.reload(server)).toEqual({ swapped: false, current: pair.certificate });

      install(b.certificate, b.privateKey);
      const result = await pair.reload(server);
      expect(result.swapped).toBe(true);
      if (result.swapped) {
        expect(result.previous.serialNumber).toBe(a.serialNumber);
        expect(result.current.serialNumber).toBe(b.serialNumber);
      }
      const after = await handshake();
      expect(serialOf(after.getPeerCertificate().serialNumber)).toBe(serialOf(b.serialNumber));
      // The settings the server was created with survive the swap.
      expect(after.getProtocol()).toBe("TLSv1.3");

      expect(await echo(before, "still there")).toBe("still there");
      expect(serialOf(before.getPeerCertificate().serialNumber)).toBe(serialOf(a.serialNumber));
    });

    it("keeps the previous pair when the new one is half written", async () => {
      install(b.certificate, b.privateKey);
      await pair.reload(server);
      install(a.certificate, other.privateKey);
      await expect(pair.reload(server)).rejects.toThrow(`TLS key ${files.keyPath} does not belong`);
      expect(pair.certificate.serialNumber).toBe(b.serialNumber);
      const socket = await handshake();
      expect(serialOf(socket.getPeerCertificate().serialNumber)).toBe(serialOf(b.serialNumber));

      // The other half arrives: the pair is taken.
      install(a.certificate, a.privateKey);
      expect((await pair.reload(server)).swapped).toBe(true);
      const next = await handshake();
      expect(serialOf(next.getPeerCertificate().serialNumber)).toBe(serialOf(a.serialNumber));
    });
  });
});
