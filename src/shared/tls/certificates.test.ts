import { createPrivateKey, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { connect, createServer } from "node:tls";
import { describe, expect, it } from "vitest";
import {
  BACKDATE_MS,
  createCertificateAuthority,
  issueCertificate,
  loadCertificateAuthority,
  readCertificate,
} from "./certificates.js";

describe("certificates", () => {
  it("issues a server certificate that a TLS client verifies against the CA", async () => {
    const ca = await createCertificateAuthority("test-ca");
    const leaf = await issueCertificate(ca, { commonName: "gitaly-0", hosts: ["gitaly-0.gitaly", "127.0.0.1"] });

    const parsed = new X509Certificate(leaf.certificate);
    expect(parsed.checkIssued(new X509Certificate(ca.certificate))).toBe(true);
    expect(parsed.subjectAltName).toContain("DNS:gitaly-0.gitaly");
    expect(parsed.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(parsed.ca).toBe(false);
    expect(new X509Certificate(ca.certificate).ca).toBe(true);

    const server = createServer({ cert: leaf.certificate, key: leaf.privateKey }, (s) => s.end("hello"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    try {
      const socket = connect({ host: "127.0.0.1", port, ca: ca.certificate, servername: "gitaly-0.gitaly" });
      const [data] = await once(socket, "data");
      expect(String(data)).toBe("hello");
      socket.destroy();

      // A name outside the SANs must be refused.
      const wrong = connect({ host: "127.0.0.1", port, ca: ca.certificate, servername: "other.example" });
      const [err] = await once(wrong, "error");
      expect((err as NodeJS.ErrnoException).code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
    } finally {
      server.close();
    }
  });

  it("round-trips a CA through PEM and keeps signing with it", async () => {
    const ca = await createCertificateAuthority("round-trip");
    const loaded = await loadCertificateAuthority({ certificate: ca.certificate, privateKey: ca.privateKey });
    const leaf = await issueCertificate(loaded, { commonName: "client", usage: "client", validityDays: 1 });
    const parsed = new X509Certificate(leaf.certificate);
    expect(parsed.checkIssued(new X509Certificate(ca.certificate))).toBe(true);
    expect(parsed.keyUsage).toContain("1.3.6.1.5.5.7.3.2");
    expect(parsed.keyUsage).not.toContain("1.3.6.1.5.5.7.3.1");
    expect(leaf.notAfter.getTime() - leaf.notBefore.getTime()).toBeGreaterThan(24 * 3600 * 1000);
  });

  it("takes validity in milliseconds and reports times as the certificate stores them", async () => {
    const now = new Date("2030-06-01T12:00:00.750Z");
    const ca = await createCertificateAuthority("ms-ca", { validityMs: 90 * 60 * 1000, now });
    const leaf = await issueCertificate(ca, {
      commonName: "leaf",
      hosts: ["a.example", "10.0.0.1"],
      validityMs: 60_000,
      now,
    });
    const info = readCertificate(leaf.certificate);
    expect(info.notAfter).toEqual(new Date("2030-06-01T12:01:00Z"));
    expect(leaf.notAfter).toEqual(info.notAfter);
    expect(leaf.notBefore).toEqual(info.notBefore);
    expect(info.notBefore).toEqual(new Date(new Date("2030-06-01T12:00:00Z").getTime() - BACKDATE_MS));
    expect(info.serialNumber).toBe(leaf.serialNumber);
    expect(info.dnsNames).toEqual(["a.example"]);
    expect(info.ipAddresses).toEqual(["10.0.0.1"]);
    expect(info.isCa).toBe(false);
    expect(readCertificate(ca.certificate)).toMatchObject({ isCa: true, subject: "CN=ms-ca", issuer: "CN=ms-ca" });
    expect(readCertificate(ca.certificate).notAfter).toEqual(new Date("2030-06-01T13:30:00Z"));
    await expect(issueCertificate(ca, { commonName: "x", validityMs: 0 })).rejects.toThrow(/positive/);
  });

  it("explains what is wrong with text that is not a certificate", () => {
    expect(() => readCertificate("")).toThrow(/not a PEM certificate/);
    expect(() => readCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")).toThrow(
      /not a valid X\.509 certificate/,
    );
  });

  it("loads a CA whose key is SEC1-encoded, as openssl writes it", async () => {
    const ca = await createCertificateAuthority("sec1");
    const sec1 = createPrivateKey(ca.privateKey).export({ type: "sec1", format: "pem" }).toString();
    expect(sec1).toContain("BEGIN EC PRIVATE KEY");
    const loaded = await loadCertificateAuthority({ certificate: ca.certificate, privateKey: sec1 });
    const leaf = await issueCertificate(loaded, { commonName: "x" });
    expect(new X509Certificate(leaf.certificate).verify(new X509Certificate(ca.certificate).publicKey)).toBe(true);
  });
});
