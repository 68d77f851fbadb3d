import { X509Certificate } from "node:crypto";
import { once } from "node:events";
import { connect, createServer } from "node:tls";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate, loadCertificateAuthority } from "./certificates.js";

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
});
