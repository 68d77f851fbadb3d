import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import { afterAll, describe, expect, test } from "vitest";
import { ensureLocalTls, trustBundle, trustEnv } from "./tls.js";

const dir = mkdtempSync(join(tmpdir(), "gitaly-cluster-tls-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("ensureLocalTls", () => {
  test("keeps its CA across runs and issues loopback certificates it signed", async () => {
    const first = await ensureLocalTls(dir, "demo", 90);
    const ca = readFileSync(first.caFile, "utf8");
    expect(statSync(join(dir, "ca.key")).mode & 0o777).toBe(0o600);
    const second = await ensureLocalTls(dir, "demo", 90);
    expect(readFileSync(second.caFile, "utf8")).toBe(ca);
    const caCert = new X509Certificate(ca);
    expect(caCert.subject).toContain("gitaly-cluster demo local CA");
    for (const pair of [second.gitaly, second.praefect]) {
      const leaf = new X509Certificate(readFileSync(pair.certificatePath));
      expect(leaf.verify(caCert.publicKey)).toBe(true);
      expect(leaf.checkIP("127.0.0.1")).toBe("127.0.0.1");
      expect(leaf.checkHost("localhost")).toBe("localhost");
      expect(statSync(pair.keyPath).mode & 0o777).toBe(0o600);
      const days = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000;
      expect(Math.round(days)).toBe(90);
    }
    const bundle = readFileSync(second.trustBundleFile, "utf8");
    expect(bundle).toContain(ca.trim());
    expect(trustEnv(second)).toEqual({
      SSL_CERT_FILE: second.trustBundleFile,
      GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: second.trustBundleFile,
      NODE_EXTRA_CA_CERTS: second.caFile,
    });
  });

  test("the trust bundle keeps the public roots and the ones the environment names", async () => {
    const { caFile } = await ensureLocalTls(dir, "demo", 90);
    const ca = readFileSync(caFile, "utf8");
    const bundle = trustBundle(ca, { SSL_CERT_FILE: caFile, GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: "/nonexistent" });
    expect(bundle).toContain((rootCertificates[0] ?? "").trim());
    expect(bundle.split(ca.trim()).length - 1).toBe(2);
  });
});
