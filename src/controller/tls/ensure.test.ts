import { createPrivateKey, X509Certificate } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect, createServer } from "node:tls";
import { describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../../shared/tls/certificates.js";
import { type EnsureClusterCertificatesInput, ensureClusterCertificates } from "./ensure.js";
import { servingCertificateHosts } from "./hosts.js";
import { inspectCertificate } from "./inspect.js";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const NOW = new Date("2030-01-01T00:00:00Z");
const DURATION = 2160 * HOUR;
const RENEW_BEFORE = 168 * HOUR;

function hosts(gitalyReplicas: number): string[] {
  return servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas, clusterDomain: "cluster.local" });
}

function input(overrides: Partial<EnsureClusterCertificatesInput> = {}): EnsureClusterCertificatesInput {
  return {
    hosts: hosts(3),
    now: NOW,
    durationMs: DURATION,
    renewBeforeMs: RENEW_BEFORE,
    commonName: "demo-gitaly",
    ...overrides,
  };
}

function expectChainsToCa(leafPem: string, caPem: string): void {
  const leaf = new X509Certificate(leafPem);
  const ca = new X509Certificate(caPem);
  expect(leaf.checkIssued(ca)).toBe(true);
  expect(leaf.verify(ca.publicKey)).toBe(true);
}

describe("ensureClusterCertificates", () => {
  it("creates a CA and a serving certificate for every pod, then keeps both", async () => {
    const first = await ensureClusterCertificates(input());
    expect(first.caAction).toMatchObject({ action: "issue", reason: "missing" });
    expect(first.servingAction).toMatchObject({ action: "issue", reason: "missing" });
    expect(first.changed).toBe(true);
    expect(first.notAfter).toEqual(new Date(NOW.getTime() + DURATION));
    expect(first.renewAt).toEqual(new Date(NOW.getTime() + DURATION - RENEW_BEFORE));
    expect(first.caNotAfter).toEqual(new Date(NOW.getTime() + 3650 * DAY));
    expect(inspectCertificate(first.ca.certificate).subject).toBe("CN=demo-gitaly-ca");

    expectChainsToCa(first.serving.certificate, first.ca.certificate);
    const leaf = new X509Certificate(first.serving.certificate);
    expect(leaf.checkPrivateKey(createPrivateKey(first.serving.privateKey))).toBe(true);
    for (let i = 0; i < 3; i++) {
      expect(leaf.checkHost(`demo-gitaly-${i}.demo-gitaly.git.svc`)).toBe(`demo-gitaly-${i}.demo-gitaly.git.svc`);
      const fqdn = `demo-gitaly-${i}.demo-gitaly.git.svc.cluster.local`;
      expect(leaf.checkHost(fqdn)).toBe(fqdn);
    }
    expect(leaf.checkHost("demo-praefect.git.svc")).toBe("demo-praefect.git.svc");
    expect(leaf.checkHost("demo-gitaly-3.demo-gitaly.git.svc")).toBeUndefined();
    expect(leaf.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(leaf.keyUsage).toContain("1.3.6.1.5.5.7.3.1");

    const again = await ensureClusterCertificates(
      input({ caPem: first.ca, servingPem: first.serving, now: new Date(NOW.getTime() + 30 * DAY) }),
    );
    expect(again.caAction.action).toBe("keep");
    expect(again.servingAction.action).toBe("keep");
    expect(again.changed).toBe(false);
    expect(again.ca).toEqual(first.ca);
    expect(again.serving).toEqual(first.serving);
    expect(again.notAfter).toEqual(first.notAfter);
    expect(again.renewAt).toEqual(first.renewAt);
  });

  it("renews the serving certificate inside its window and keeps the CA", async () => {
    const first = await ensureClusterCertificates(input());
    const later = new Date(first.renewAt.getTime() + HOUR);
    const renewed = await ensureClusterCertificates(input({ caPem: first.ca, servingPem: first.serving, now: later }));
    expect(renewed.caAction.action).toBe("keep");
    expect(renewed.servingAction).toMatchObject({ action: "issue", reason: "expiring" });
    expect(renewed.ca).toEqual(first.ca);
    expect(renewed.serving.certificate).not.toBe(first.serving.certificate);
    expect(renewed.serving.privateKey).not.toBe(first.serving.privateKey);
    expect(renewed.notAfter).toEqual(new Date(later.getTime() + DURATION));
    expectChainsToCa(renewed.serving.certificate, first.ca.certificate);
  });

  it("re-issues for new pods when Gitaly scales from 3 to 5, keeping the CA", async () => {
    const first = await ensureClusterCertificates(input());
    const scaled = await ensureClusterCertificates(
      input({ caPem: first.ca, servingPem: first.serving, hosts: hosts(5), now: new Date(NOW.getTime() + HOUR) }),
    );
    expect(scaled.caAction.action).toBe("keep");
    expect(scaled.servingAction).toMatchObject({ action: "issue", reason: "hosts-changed" });
    expect(scaled.ca).toEqual(first.ca);
    const leaf = new X509Certificate(scaled.serving.certificate);
    expect(leaf.checkHost("demo-gitaly-4.demo-gitaly.git.svc")).toBe("demo-gitaly-4.demo-gitaly.git.svc");
    expect(inspectCertificate(scaled.serving.certificate).dnsNames).toEqual(hosts(5).filter((h) => /[a-z]/.test(h)));
    expectChainsToCa(scaled.serving.certificate, first.ca.certificate);
  });

  it("re-issues a serving certificate signed by another CA with the kept CA", async () => {
    const ca = await createCertificateAuthority("kept", { now: NOW });
    const other = await createCertificateAuthority("other", { now: NOW });
    const foreign = await issueCertificate(other, { commonName: "x", hosts: hosts(3), validityMs: DURATION, now: NOW });
    const result = await ensureClusterCertificates(input({ caPem: ca, servingPem: foreign }));
    expect(result.caAction.action).toBe("keep");
    expect(result.servingAction).toMatchObject({ action: "issue", reason: "ca-changed" });
    expect(result.ca.certificate).toBe(ca.certificate);
    expectChainsToCa(result.serving.certificate, ca.certificate);
  });

  it("replaces garbage in either Secret", async () => {
    const result = await ensureClusterCertificates(
      input({
        caPem: { certificate: "junk", privateKey: "junk" },
        servingPem: { certificate: "junk", privateKey: "x" },
      }),
    );
    expect(result.caAction).toMatchObject({ action: "issue", reason: "unparseable" });
    expect(result.servingAction).toMatchObject({ action: "issue", reason: "unparseable" });
    expectChainsToCa(result.serving.certificate, result.ca.certificate);
  });

  it("replaces an expiring CA, which forces a new serving certificate", async () => {
    const ca = await createCertificateAuthority("old", { now: NOW, validityMs: 40 * DAY });
    const leaf = await issueCertificate(ca, { commonName: "x", hosts: hosts(3), validityMs: 30 * DAY, now: NOW });
    const now = new Date(NOW.getTime() + 15 * DAY);
    const result = await ensureClusterCertificates(input({ caPem: ca, servingPem: leaf, now }));
    expect(result.caAction).toMatchObject({ action: "issue", reason: "expiring" });
    expect(result.servingAction).toMatchObject({ action: "issue", reason: "ca-changed" });
    expect(result.ca.certificate).not.toBe(ca.certificate);
    expectChainsToCa(result.serving.certificate, result.ca.certificate);
    expect(result.caNotAfter).toEqual(new Date(now.getTime() + 3650 * DAY));
  });

  it("never lets the serving certificate outlive its CA, and requeues for whichever renews first", async () => {
    // 40 days left: outside the CA's 30-day window, shorter than the 90-day duration.
    const ca = await createCertificateAuthority("short", { now: NOW, validityMs: 40 * DAY });
    const result = await ensureClusterCertificates(input({ caPem: ca }));
    expect(result.caAction.action).toBe("keep");
    expect(result.notAfter).toEqual(result.caNotAfter);
    expect(result.renewAt).toEqual(new Date(result.caNotAfter.getTime() - 30 * DAY));
    const next = await ensureClusterCertificates(input({ caPem: result.ca, servingPem: result.serving }));
    expect(next.changed).toBe(false);
  });

  it("replaces the CA early enough that a long renewBefore still fits a fresh certificate", async () => {
    // renewBefore 60 days > the CA's default 30-day window: the CA window grows to 61 days.
    const ca = await createCertificateAuthority("short", { now: NOW, validityMs: 50 * DAY });
    const result = await ensureClusterCertificates(input({ caPem: ca, renewBeforeMs: 60 * DAY }));
    expect(result.caAction).toMatchObject({ action: "issue", reason: "expiring" });
    const next = await ensureClusterCertificates(
      input({ caPem: result.ca, servingPem: result.serving, renewBeforeMs: 60 * DAY }),
    );
    expect(next.changed).toBe(false);
  });

  it("refuses an empty host list and an impossible renewal policy", async () => {
    await expect(ensureClusterCertificates(input({ hosts: [] }))).rejects.toThrow(/no hosts/);
    await expect(ensureClusterCertificates(input({ renewBeforeMs: DURATION }))).rejects.toThrow(/shorter/);
  });

  it("serves TLS that a client trusting only the CA accepts for a pod's DNS name", async () => {
    const result = await ensureClusterCertificates(input({ hosts: hosts(5), now: new Date() }));
    const server = createServer({ cert: result.serving.certificate, key: result.serving.privateKey }, (socket) =>
      socket.end("ok"),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    try {
      for (const servername of ["demo-gitaly-4.demo-gitaly.git.svc", "demo-praefect.git.svc.cluster.local"]) {
        const socket = connect({ host: "127.0.0.1", port, ca: result.ca.certificate, servername });
        const [data] = await once(socket, "data");
        expect(String(data)).toBe("ok");
        expect(socket.authorized).toBe(true);
        socket.destroy();
      }

      const wrongName = connect({ host: "127.0.0.1", port, ca: result.ca.certificate, servername: "demo-gitaly-5.x" });
      const [nameError] = await once(wrongName, "error");
      expect((nameError as NodeJS.ErrnoException).code).toBe("ERR_TLS_CERT_ALTNAME_INVALID");

      const stranger = await createCertificateAuthority("stranger");
      const wrongCa = connect({
        host: "127.0.0.1",
        port,
        ca: stranger.certificate,
        servername: "demo-gitaly-4.demo-gitaly.git.svc",
      });
      const [caError] = await once(wrongCa, "error");
      expect((caError as NodeJS.ErrnoException).code).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    } finally {
      server.close();
    }
  });
});
