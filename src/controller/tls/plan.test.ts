import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
  type PemPair,
} from "../../shared/tls/certificates.js";
import { servingCertificateHosts } from "./hosts.js";
import { InvalidCertificateError, inspectCertificate } from "./inspect.js";
import { CA_RENEW_BEFORE_MS, type CertificatePlan, planCa, planCertificate } from "./plan.js";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const NOW = new Date("2030-01-01T00:00:00Z");
const DURATION = 2160 * HOUR;
const RENEW_BEFORE = 168 * HOUR;
const HOSTS = servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 3 });

let ca: CertificateAuthority;
let otherCa: CertificateAuthority;
let leaf: PemPair;

async function issue(authority: CertificateAuthority, hosts: readonly string[], now = NOW, validityMs = DURATION) {
  const issued = await issueCertificate(authority, { commonName: "demo-gitaly", hosts: [...hosts], validityMs, now });
  return { certificate: issued.certificate, privateKey: issued.privateKey };
}

function plan(current: Partial<PemPair> | undefined, overrides: { now?: Date; hosts?: readonly string[] } = {}) {
  return planCertificate({
    current,
    ca,
    hosts: overrides.hosts ?? HOSTS,
    now: overrides.now ?? NOW,
    durationMs: DURATION,
    renewBeforeMs: RENEW_BEFORE,
  });
}

function expectIssue(p: CertificatePlan, reason: string, detail: RegExp): void {
  expect(p).toMatchObject({ action: "issue", reason });
  if (p.action === "issue") expect(p.detail).toMatch(detail);
}

beforeAll(async () => {
  ca = await createCertificateAuthority("demo-ca", { now: NOW });
  otherCa = await createCertificateAuthority("demo-ca", { now: NOW });
  leaf = await issue(ca, HOSTS);
});

describe("inspectCertificate", () => {
  it("reads validity, SANs and serial number, and checks issuer and key", () => {
    const info = inspectCertificate(leaf.certificate);
    expect(info.notAfter).toEqual(new Date(NOW.getTime() + DURATION));
    expect(info.notBefore.getTime()).toBeLessThan(NOW.getTime());
    expect(info.dnsNames).toEqual(HOSTS.filter((h) => !/^[0-9.:]+$/.test(h)));
    expect(info.ipAddresses).toEqual(["127.0.0.1", "::1"]);
    expect(info.serialNumber).toMatch(/^[0-9a-f]+$/);
    expect(info.subject).toBe("CN=demo-gitaly");
    expect(info.isCa).toBe(false);
    expect(info.issuerMatches(ca)).toBe(true);
    expect(info.issuerMatches(ca.certificate)).toBe(true);
    // Same subject name, different key: only the signature tells them apart.
    expect(info.issuerMatches(otherCa)).toBe(false);
    expect(info.matchesPrivateKey(leaf.privateKey)).toBe(true);
    expect(info.matchesPrivateKey(ca.privateKey)).toBe(false);
    expect(inspectCertificate(ca.certificate).isCa).toBe(true);
  });

  it("rejects garbage with an error that says what it was", () => {
    expect(() => inspectCertificate("")).toThrow(InvalidCertificateError);
    expect(() => inspectCertificate("hello")).toThrow(/certificate: not a PEM certificate/);
    expect(() => inspectCertificate(leaf.privateKey, "tls.crt")).toThrow(/^tls\.crt: not a PEM certificate/);
    const lines = leaf.certificate.split("\n");
    const truncated = [...lines.slice(0, 3), ...lines.slice(4)].join("\n");
    expect(() => inspectCertificate(truncated, "tls.crt")).toThrow(/^tls\.crt: not a valid X\.509 certificate/);
  });
});

describe("planCertificate", () => {
  it("keeps a fresh certificate and says when to renew it", () => {
    const p = plan(leaf);
    const notAfter = new Date(NOW.getTime() + DURATION);
    expect(p).toEqual({
      action: "keep",
      notAfter,
      renewAt: new Date(notAfter.getTime() - RENEW_BEFORE),
      serialNumber: inspectCertificate(leaf.certificate).serialNumber,
    });
  });

  it("renews exactly from notAfter − renewBefore, and after expiry", () => {
    const renewAt = new Date(NOW.getTime() + DURATION - RENEW_BEFORE);
    expect(plan(leaf, { now: new Date(renewAt.getTime() - 1000) }).action).toBe("keep");
    expectIssue(plan(leaf, { now: renewAt }), "expiring", /within the renewal window of 168h/);
    expectIssue(plan(leaf, { now: new Date(NOW.getTime() + DURATION + DAY) }), "expiring", /expired at/);
  });

  it("re-issues when the wanted SANs change, either way", () => {
    const five = servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 5 });
    expectIssue(plan(leaf, { hosts: five }), "hosts-changed", /lacks demo-gitaly-3\..*demo-gitaly-4\./);
    const two = servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 2 });
    expectIssue(plan(leaf, { hosts: two }), "hosts-changed", /no longer wants demo-gitaly-2\.demo-gitaly\.git\.svc$/);
  });

  it("compares SANs as a set, ignoring order, DNS case and IPv6 spelling", () => {
    const shuffled = [...HOSTS].reverse().map((h) => (h === "::1" ? "0:0:0:0:0:0:0:1" : h.toUpperCase()));
    expect(plan(leaf, { hosts: shuffled }).action).toBe("keep");
  });

  it("re-issues what another CA signed", async () => {
    const foreign = await issue(otherCa, HOSTS);
    expectIssue(plan(foreign), "ca-changed", /not signed by the current CA/);
  });

  it("re-issues when the key is not the certificate's", async () => {
    const second = await issue(ca, HOSTS);
    expectIssue(plan({ certificate: leaf.certificate, privateKey: second.privateKey }), "key-mismatch", /tls\.key/);
    // SEC1 encoding of the right key is the same key.
    const sec1 = createPrivateKey(leaf.privateKey).export({ type: "sec1", format: "pem" }).toString();
    expect(plan({ certificate: leaf.certificate, privateKey: sec1 }).action).toBe("keep");
  });

  it("issues when the Secret is missing or holds garbage", () => {
    expectIssue(plan(undefined), "missing", /no certificate and no key/);
    expectIssue(plan({ certificate: "", privateKey: "" }), "missing", /no certificate and no key/);
    expectIssue(plan({ certificate: leaf.certificate }), "missing", /tls\.key is missing/);
    expectIssue(plan({ privateKey: leaf.privateKey, certificate: " \n" }), "missing", /tls\.crt is missing/);
    expectIssue(plan({ certificate: "garbage", privateKey: leaf.privateKey }), "unparseable", /^tls\.crt: /);
    expectIssue(plan({ certificate: leaf.certificate, privateKey: "garbage" }), "unparseable", /^tls\.key: /);
    const badKey = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    expectIssue(plan({ certificate: leaf.certificate, privateKey: badKey }), "unparseable", /^tls\.key: /);
  });

  it("re-issues a certificate not yet valid", async () => {
    const future = await issue(ca, HOSTS, new Date(NOW.getTime() + DAY));
    expectIssue(plan(future), "not-yet-valid", /valid only from/);
  });

  it("re-issues a certificate that lives longer than a shortened duration, not one that lives shorter", async () => {
    const long = await issue(ca, HOSTS, NOW, 2 * DURATION);
    expectIssue(plan(long), "duration-changed", /valid for 4320h, longer than the duration 2160h/);
    const short = await issue(ca, HOSTS, NOW, DURATION / 2);
    expect(plan(short).action).toBe("keep");
  });

  it("refuses a renewal window as long as the duration", () => {
    expect(() =>
      planCertificate({ current: leaf, ca, hosts: HOSTS, now: NOW, durationMs: HOUR, renewBeforeMs: HOUR }),
    ).toThrow(/renewBefore \(1h\) must be shorter than its duration \(1h\)/);
  });
});

describe("planCa", () => {
  it("keeps a usable CA and renews it 30 days before it expires", () => {
    const p = planCa({ current: ca, now: NOW });
    const notAfter = new Date(NOW.getTime() + 3650 * DAY);
    expect(p).toMatchObject({ action: "keep", notAfter, renewAt: new Date(notAfter.getTime() - CA_RENEW_BEFORE_MS) });
    expect(planCa({ current: ca, now: new Date(notAfter.getTime() - CA_RENEW_BEFORE_MS - 1000) }).action).toBe("keep");
    expect(planCa({ current: ca, now: new Date(notAfter.getTime() - CA_RENEW_BEFORE_MS) })).toMatchObject({
      action: "issue",
      reason: "expiring",
    });
    expect(planCa({ current: ca, now: NOW, renewBeforeMs: 3651 * DAY })).toMatchObject({ reason: "expiring" });
  });

  it("replaces a missing, damaged or mismatched CA", () => {
    expect(planCa({ now: NOW })).toMatchObject({ action: "issue", reason: "missing" });
    expect(planCa({ current: { certificate: ca.certificate }, now: NOW })).toMatchObject({
      reason: "missing",
      detail: "ca.key is missing or empty",
    });
    expect(planCa({ current: { certificate: "x", privateKey: ca.privateKey }, now: NOW })).toMatchObject({
      reason: "unparseable",
    });
    expect(
      planCa({ current: { certificate: ca.certificate, privateKey: otherCa.privateKey }, now: NOW }),
    ).toMatchObject({ reason: "key-mismatch" });
  });

  it("refuses a leaf certificate as CA", () => {
    expect(planCa({ current: leaf, now: NOW })).toMatchObject({ action: "issue", reason: "not-a-ca" });
  });

  it("refuses a CA key the issuer cannot sign with", () => {
    // A real P-384 CA made by openssl: valid, self-signed, but not what issueCertificate signs with.
    const pem = execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes"],
        ...["-keyout", "-", "-subj", "/CN=p384", "-days", "1", "-addext", "basicConstraints=critical,CA:TRUE"],
      ],
      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
    );
    const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(pem)?.[0] ?? "";
    const privateKey = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(pem)?.[0] ?? "";
    expect(planCa({ current: { certificate, privateKey }, now: new Date() })).toMatchObject({
      reason: "unsupported-key",
      detail: "ca.key is ec secp384r1, not ECDSA P-256",
    });
  });
});
