// The GitalyCluster reconciler against a real kube-apiserver + etcd: each sample provisions
// every object, conditions progress as the (simulated) workload controllers report ready,
// drift is corrected, scaling and certificate renewal behave, and the rendered configs pass
// the real programs' `configuration validate`.

import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type {
  CoreV1Event,
  KubeConfig,
  V1ConfigMap,
  V1Deployment,
  V1Job,
  V1Secret,
  V1Service,
  V1StatefulSet,
} from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { GitalyCluster } from "../../../src/controller/api/resource.js";
import { GitalyClusterReconciler } from "../../../src/controller/reconcile/gitaly-cluster.js";
import { kubeRequest } from "../../../src/controller/reconcile/kube-http.js";
import type { CertManagerCertificate } from "../../../src/controller/resources/certificate.js";
import { createLogger } from "../../../src/shared/logging.js";
import { waitFor } from "../../../src/shared/net.js";
import { createCertificateAuthority, issueCertificate, readCertificate } from "../../../src/shared/tls/certificates.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import {
  applyCluster,
  createNamespace,
  getCluster,
  getObject,
  installGitalyClusterCrd,
  markJobSucceeded,
  markWorkloadReady,
  runWithStdin,
  sampleManifest,
  waitForObject,
} from "../../harness/operator.js";

const ns = "gitaly";
const core = (kind: string, name?: string) => `/api/v1/namespaces/${ns}/${kind}${name ? `/${name}` : ""}`;
const apps = (kind: string, name: string) => `/apis/apps/v1/namespaces/${ns}/${kind}/${name}`;
const batch = (name?: string) => `/apis/batch/v1/namespaces/${ns}/jobs${name ? `/${name}` : ""}`;
const decode = (s: V1Secret | undefined, key: string) =>
  s?.data?.[key] === undefined ? undefined : Buffer.from(s.data[key], "base64").toString();

function condition(c: GitalyCluster | undefined, type: string) {
  return c?.status?.conditions?.find((x) => x.type === type);
}

/**
 * The config as a pod would see it: every absolute path it names is re-rooted under `root` and
 * created there the way the pod's volumes provide it: Secret files (token, certificates) with
 * the content of the Secret and mode 0440 (a Secret volume under fsGroup), directories for the
 * rest. `configuration validate` checks that they exist and make sense.
 */
function mountedAt(root: string, toml: string, files: Record<string, string>): string {
  return toml.replace(/^(\w+) = "(\/[^"]*)"$/gm, (line, key: string, path: string) => {
    if (key === "rpc") return line;
    const target = join(root, path);
    const leaf = path.split("/").pop() ?? "";
    const content = files[leaf];
    if (content !== undefined) {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, content, { mode: 0o440 });
      chmodSync(target, 0o440);
    } else {
      mkdirSync(target, { recursive: true });
    }
    return `${key} = "${target}"`;
  });
}

async function issueTestCa(): Promise<string> {
  return (await createCertificateAuthority("database CA")).certificate;
}

describe("GitalyCluster reconciler on a real kube-apiserver", () => {
  const root = mkdtempSync(join(tmpdir(), "operator-mounts-"));
  let env: Envtest;
  let kc: KubeConfig;
  let reconciler: GitalyClusterReconciler;
  // The reconciler's clock: tests move it forward to reach a certificate's renew window.
  let clockOffsetMs = 0;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    kc = env.kubeConfig;
    await installGitalyClusterCrd(kc);
    await createNamespace(kc, ns);
    // The external-db sample's Secrets, as a database administrator would create them.
    for (const [name, data] of [
      ["praefect-db", { password: "db-password-from-dba" }],
      ["praefect-db-ca", { "ca.crt": "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n" }],
      // The tls-disabled sample's tokens, managed by the user.
      ["gitlab-praefect-token", { token: "client-token-from-the-gitlab-admin-0123456789" }],
      ["gitlab-gitaly-token", { "gitaly-token": "internal-token-from-the-gitlab-admin-987654" }],
    ] as const) {
      await kubeRequest(kc, core("secrets"), {
        method: "POST",
        body: { apiVersion: "v1", kind: "Secret", metadata: { name }, stringData: data },
      });
    }
    reconciler = new GitalyClusterReconciler({
      kubeConfig: kc,
      namespaces: [ns],
      defaultImage: "gitaly-operator:test",
      clusterDomain: "cluster.local",
      logger: createLogger({ component: "gitaly-operator-test", level: "error" }),
      registry: new Registry(),
      now: () => new Date(Date.now() + clockOffsetMs),
      resyncPeriodMs: 0,
      missingInputRetryMs: 1000,
      concurrency: 4,
    });
    await reconciler.start();
  }, 120_000);

  afterAll(async () => {
    await reconciler?.stop();
    await env?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  async function provision(sample: string): Promise<{ name: string; cluster: GitalyCluster }> {
    const m = sampleManifest(sample);
    await applyCluster(kc, ns, m.metadata.name, m.spec);
    const name = m.metadata.name;
    await waitForObject<V1StatefulSet>(kc, apps("statefulsets", `${name}-gitaly`));
    const cluster = await waitFor("status after the first reconcile", async () => {
      const c = await getCluster(kc, ns, name);
      return c.status?.phase ? c : undefined;
    });
    return { name, cluster };
  }

  async function jobOf(name: string): Promise<V1Job> {
    return waitFor(`migration Job of ${name}`, async () => {
      const list = await kubeRequest<{ items: V1Job[] }>(kc, batch(), {
        query: { labelSelector: `app.kubernetes.io/instance=${name},app.kubernetes.io/component=migration` },
      });
      return list.items[0];
    });
  }

  describe.each(["minimal", "external-db", "tls-disabled"])("sample %s", (sample) => {
    let name: string;

    it("creates every object with the expected shape and reports what it waits for", async () => {
      ({ name } = await provision(sample));
      const m = sampleManifest(sample);
      const spec = m.spec as { gitaly: { replicas: number }; database: { managed?: object }; tls?: { mode?: string } };
      const tls = (spec.tls?.mode ?? "SelfSigned") !== "Disabled";

      const sts = await waitForObject<V1StatefulSet>(kc, apps("statefulsets", `${name}-gitaly`));
      expect(sts.spec?.replicas).toBe(spec.gitaly.replicas);
      expect(sts.spec?.serviceName).toBe(`${name}-gitaly`);
      expect(sts.spec?.volumeClaimTemplates?.[0]?.metadata?.name).toBe("repo-data");
      expect(sts.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "GitalyCluster", name, controller: true });
      expect(sts.metadata?.managedFields?.some((f) => f.manager === "gitaly-operator")).toBe(true);

      const headless = await waitForObject<V1Service>(kc, core("services", `${name}-gitaly`));
      expect(headless.spec?.clusterIP).toBe("None");
      await waitForObject<V1Service>(kc, core("services", `${name}-praefect`));
      await waitForObject<V1ConfigMap>(kc, core("configmaps", `${name}-gitaly-config`));
      await waitForObject<V1ConfigMap>(kc, core("configmaps", `${name}-praefect-config`));
      await waitForObject(kc, `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/${name}-gitaly`);
      await waitForObject(kc, `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets/${name}-praefect`);
      const client = await waitForObject<V1Secret>(kc, core("secrets", `${name}-gitaly-client`));
      expect(decode(client, "address")).toBe(
        tls ? `tls://${name}-praefect.${ns}.svc:3305` : `tcp://${name}-praefect.${ns}.svc:2305`,
      );
      expect(decode(client, "token")?.length).toBeGreaterThanOrEqual(40);
      const tokenSecret = sample === "tls-disabled" ? "gitlab-praefect-token" : `${name}-praefect-token`;
      expect(decode(client, "token")).toBe(
        decode(await getObject<V1Secret>(kc, core("secrets", tokenSecret)), "token"),
      );
      if (tls) {
        const serving = await waitForObject<V1Secret>(kc, core("secrets", `${name}-tls`));
        expect(decode(client, "ca.crt")).toBe(decode(serving, "ca.crt"));
      } else {
        expect(decode(client, "ca.crt")).toBeUndefined();
        expect(await getObject(kc, core("secrets", `${name}-tls`))).toBeUndefined();
      }
      if (spec.database.managed) {
        await waitForObject<V1StatefulSet>(kc, apps("statefulsets", `${name}-postgres`));
        expect(
          decode(await getObject<V1Secret>(kc, core("secrets", `${name}-postgres`)), "password")?.length,
        ).toBeGreaterThan(20);
      } else {
        expect(await getObject(kc, apps("statefulsets", `${name}-postgres`))).toBeUndefined();
      }
      // Praefect waits for its schema.
      const job = await jobOf(name);
      expect(job.spec?.template.spec?.initContainers?.[0]?.args).toEqual([
        "praefect",
        "-config",
        "/etc/praefect/config/config.toml",
        "sql-ping",
      ]);
      expect(await getObject(kc, apps("deployments", `${name}-praefect`))).toBeUndefined();
      const cluster = await getCluster(kc, ns, name);
      expect(cluster.status?.phase).toBe("Provisioning");
      expect(cluster.status?.observedGeneration).toBe(cluster.metadata.generation);
      expect(condition(cluster, "Ready")).toMatchObject({ status: "False" });
      expect(condition(cluster, "MigrationsApplied")).toMatchObject({ status: "False", reason: "Migrating" });
      expect(condition(cluster, "TLSReady")).toMatchObject({ status: "True", reason: tls ? "Issued" : "Disabled" });
    });

    it("renders configs that the real gitaly and praefect accept, with the pod's mounts in place", async () => {
      const tlsSecret = await getObject<V1Secret>(kc, core("secrets", `${name}-tls`));
      const ca = decode(tlsSecret, "ca.crt") ?? (await issueTestCa());
      const files = {
        token: "a-token-as-mounted-from-its-secret",
        "tls.crt": decode(tlsSecret, "tls.crt") ?? "",
        "tls.key": decode(tlsSecret, "tls.key") ?? "",
        "ca.crt": ca,
      };
      const podRoot = mkdtempSync(join(root, `${name}-`));
      const gitalyConfig = await waitForObject<V1ConfigMap>(kc, core("configmaps", `${name}-gitaly-config`));
      const entries = Object.entries(gitalyConfig.data ?? {});
      expect(entries.length).toBeGreaterThan(0);
      for (const [key, text] of entries) {
        const r = await runWithStdin(
          "dist/gitaly/main.js",
          ["configuration", "validate"],
          mountedAt(podRoot, text, files),
        );
        expect(r.code, `${key}: ${r.out}${r.err}`).toBe(0);
      }
      const praefectConfig = await waitForObject<V1ConfigMap>(kc, core("configmaps", `${name}-praefect-config`));
      const text = mountedAt(podRoot, praefectConfig.data?.["config.toml"] ?? "", files);
      const r = await runWithStdin("dist/praefect/main.js", ["configuration", "validate"], text);
      expect(r.code, r.out + r.err).toBe(0);
    });

    it("progresses to Ready as the database, the migrations and the workloads come up", async () => {
      const m = sampleManifest(sample);
      if ((m.spec.database as { managed?: object }).managed) {
        await markWorkloadReady(kc, apps("statefulsets", `${name}-postgres`));
      }
      const job = await jobOf(name);
      await markJobSucceeded(kc, batch(job.metadata?.name));
      const deployment = await waitForObject<V1Deployment>(kc, apps("deployments", `${name}-praefect`));
      expect(
        deployment.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === "PGPASSWORD")?.valueFrom
          ?.secretKeyRef,
      ).toBeDefined();
      let cluster = await waitFor("MigrationsApplied", async () => {
        const c = await getCluster(kc, ns, name);
        return condition(c, "MigrationsApplied")?.status === "True" ? c : undefined;
      });
      expect(cluster.status?.phase).toBe("Provisioning");
      await markWorkloadReady(kc, apps("statefulsets", `${name}-gitaly`));
      await markWorkloadReady(kc, apps("deployments", `${name}-praefect`));
      cluster = await waitFor("Ready", async () => {
        const c = await getCluster(kc, ns, name);
        return c.status?.phase === "Ready" ? c : undefined;
      });
      for (const type of ["Ready", "DatabaseReady", "MigrationsApplied", "TLSReady"]) {
        expect(condition(cluster, type), type).toMatchObject({
          status: "True",
          observedGeneration: cluster.metadata.generation,
        });
      }
      expect(condition(cluster, "Progressing")?.status).toBe("False");
      expect(condition(cluster, "Degraded")?.status).toBe("False");
      const events = await kubeRequest<{ items: CoreV1Event[] }>(kc, core("events"), {
        query: { fieldSelector: `involvedObject.name=${name}` },
      });
      const reasons = events.items.map((e) => e.reason);
      expect(reasons).toEqual(expect.arrayContaining(["Created", "Migrated", "Ready"]));
    });
  });

  it("follows the spec: observedGeneration moves and a changed field reaches the objects", async () => {
    const m = sampleManifest("tls-disabled");
    const before = await getCluster(kc, ns, m.metadata.name);
    const spec = structuredClone(m.spec) as { praefect: { replicas: number } };
    spec.praefect.replicas = 3;
    await applyCluster(kc, ns, m.metadata.name, spec);
    await waitForObject<V1Deployment>(
      kc,
      apps("deployments", `${m.metadata.name}-praefect`),
      (d) => d.spec?.replicas === 3,
    );
    const after = await waitFor("observedGeneration", async () => {
      const c = await getCluster(kc, ns, m.metadata.name);
      return (c.metadata.generation ?? 0) > (before.metadata.generation ?? 0) &&
        c.status?.observedGeneration === c.metadata.generation
        ? c
        : undefined;
    });
    // The new replica is not ready yet: the cluster is updating, not provisioning.
    expect(after.status?.phase).toBe("Updating");
  });

  it("re-creates a deleted object, corrects a hand edit and keeps another manager's field", async () => {
    const name = "minimal";
    const cmPath = core("configmaps", `${name}-praefect-config`);
    const original = await waitForObject<V1ConfigMap>(kc, cmPath);
    await kubeRequest(kc, cmPath, { method: "DELETE" });
    const recreated = await waitForObject<V1ConfigMap>(kc, cmPath, (c) => c.metadata?.uid !== original.metadata?.uid);
    expect(recreated.data).toEqual(original.data);

    // A hand edit of a field we manage is reverted...
    await kubeRequest(kc, apps("statefulsets", `${name}-gitaly`), {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: { spec: { template: { spec: { terminationGracePeriodSeconds: 1 } } } },
    });
    // ...while a label set by another manager (server-side apply, its own field manager) stays.
    await kubeRequest(kc, apps("statefulsets", `${name}-gitaly`), {
      method: "PATCH",
      contentType: "application/apply-patch+yaml",
      query: { fieldManager: "team-tools" },
      body: {
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: `${name}-gitaly`, namespace: ns, labels: { "team.example.com/owner": "git" } },
      },
    });
    const corrected = await waitForObject<V1StatefulSet>(
      kc,
      apps("statefulsets", `${name}-gitaly`),
      (s) => s.spec?.template.spec?.terminationGracePeriodSeconds === 30,
    );
    expect(corrected.metadata?.labels?.["team.example.com/owner"]).toBe("git");
  });

  it("scales Gitaly 3 → 5 (StatefulSet, Praefect nodes, certificate SANs) and refuses 5 → 3", async () => {
    const name = "minimal";
    const m = sampleManifest(name);
    const spec = structuredClone(m.spec) as { gitaly: { replicas: number } };
    spec.gitaly.replicas = 5;
    await applyCluster(kc, ns, name, spec);
    await waitForObject<V1StatefulSet>(kc, apps("statefulsets", `${name}-gitaly`), (s) => s.spec?.replicas === 5);
    const praefect = await waitForObject<V1ConfigMap>(kc, core("configmaps", `${name}-praefect-config`), (c) =>
      (c.data?.["config.toml"] ?? "").includes(`${name}-gitaly-4`),
    );
    expect(praefect.data?.["config.toml"]).toContain(`tls://${name}-gitaly-3.${name}-gitaly.${ns}.svc:8076`);
    const tls = await waitForObject<V1Secret>(kc, core("secrets", `${name}-tls`), (s) =>
      readCertificate(decode(s, "tls.crt") ?? "").dnsNames.includes(`${name}-gitaly-4.${name}-gitaly.${ns}.svc`),
    );
    expect(readCertificate(decode(tls, "tls.crt") ?? "").dnsNames).toContain(
      `${name}-gitaly-4.${name}-gitaly.${ns}.svc.cluster.local`,
    );

    spec.gitaly.replicas = 3;
    await applyCluster(kc, ns, name, spec);
    const refused = await waitFor("ScaleDownRefused", async () => {
      const c = await getCluster(kc, ns, name);
      return condition(c, "Degraded")?.reason === "ScaleDownRefused" &&
        c.status?.observedGeneration === c.metadata.generation
        ? c
        : undefined;
    });
    expect(condition(refused, "Degraded")?.message).toMatch(
      /spec.gitaly.replicas is 3 but 5 Gitaly nodes hold repositories/,
    );
    expect(refused.status?.phase).toBe("Degraded");
    const sts = await getObject<V1StatefulSet>(kc, apps("statefulsets", `${name}-gitaly`));
    expect(sts?.spec?.replicas).toBe(5);
    // Back to 5: the refusal clears.
    spec.gitaly.replicas = 5;
    await applyCluster(kc, ns, name, spec);
    await waitFor("refusal cleared", async () => {
      const c = await getCluster(kc, ns, name);
      return (
        condition(c, "Degraded")?.reason !== "ScaleDownRefused" &&
        c.status?.observedGeneration === c.metadata.generation
      );
    });
  });

  it("re-issues a certificate inside its renew window and keeps the CA", async () => {
    const name = "minimal";
    const before = await waitForObject<V1Secret>(kc, core("secrets", `${name}-tls`));
    const ca = await waitForObject<V1Secret>(kc, core("secrets", `${name}-ca`));
    const cert = readCertificate(decode(before, "tls.crt") ?? "");
    // spec.tls.renewBefore is 168h: step the operator's clock to one minute inside the window.
    clockOffsetMs = cert.notAfter.getTime() - 168 * 3600_000 + 60_000 - Date.now();
    reconciler.controller.enqueue(`${ns}/${name}`);
    const after = await waitForObject<V1Secret>(
      kc,
      core("secrets", `${name}-tls`),
      (s) => decode(s, "tls.crt") !== decode(before, "tls.crt"),
    );
    const renewed = readCertificate(decode(after, "tls.crt") ?? "");
    expect(renewed.notAfter.getTime()).toBeGreaterThan(cert.notAfter.getTime());
    expect(renewed.serialNumber).not.toBe(cert.serialNumber);
    const caAfter = await getObject<V1Secret>(kc, core("secrets", `${name}-ca`));
    expect(decode(caAfter, "tls.crt")).toBe(decode(ca, "tls.crt"));
    expect(decode(after, "ca.crt")).toBe(decode(ca, "tls.crt"));
    const client = await getObject<V1Secret>(kc, core("secrets", `${name}-gitaly-client`));
    expect(decode(client, "ca.crt")).toBe(decode(ca, "tls.crt"));
    clockOffsetMs = 0;
  });

  it("waits with a clear condition while a referenced Secret is missing", async () => {
    await applyCluster(kc, ns, "byo-token", {
      gitaly: { replicas: 1, storage: { size: "1Gi" } },
      database: { managed: { storage: { size: "1Gi" } } },
      tls: { mode: "Disabled" },
      auth: { praefectTokenSecretRef: { name: "missing-praefect-token" } },
    });
    const waiting = await waitFor("SecretNotFound", async () => {
      const c = await getCluster(kc, ns, "byo-token");
      return condition(c, "Ready")?.reason === "SecretNotFound" ? c : undefined;
    });
    expect(condition(waiting, "Ready")?.message).toContain(
      `spec.auth.praefectTokenSecretRef: Secret ${ns}/missing-praefect-token not found`,
    );
    await kubeRequest(kc, core("secrets"), {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "missing-praefect-token" },
        stringData: { token: "token-from-gitlab-admin" },
      },
    });
    const client = await waitForObject<V1Secret>(kc, core("secrets", "byo-token-gitaly-client"), undefined, 60_000);
    expect(decode(client, "token")).toBe("token-from-gitlab-admin");
    // The pods mount the operator's copy, so a later change of the user's Secret can be rotated in.
    const copy = await getObject<V1Secret>(kc, core("secrets", "byo-token-praefect-token"));
    expect(decode(copy, "token")).toBe("token-from-gitlab-admin");
  });

  it("CertManager mode: says when cert-manager is missing, then uses the Certificate's Secret", async () => {
    const name = "certs";
    await applyCluster(kc, ns, name, {
      gitaly: { replicas: 2, storage: { size: "1Gi" } },
      database: { managed: { storage: { size: "1Gi" } } },
      tls: { mode: "CertManager", issuerRef: { name: "internal-ca", kind: "ClusterIssuer" } },
    });
    const missing = await waitFor("CertManagerNotInstalled", async () => {
      const c = await getCluster(kc, ns, name);
      return condition(c, "TLSReady")?.reason === "CertManagerNotInstalled" ? c : undefined;
    });
    expect(condition(missing, "TLSReady")?.message).toMatch(/install cert-manager/);

    // A stand-in for cert-manager's CRD: the operator only needs the API to exist.
    await kubeRequest(kc, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
      method: "POST",
      body: {
        apiVersion: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        metadata: { name: "certificates.cert-manager.io" },
        spec: {
          group: "cert-manager.io",
          names: { kind: "Certificate", plural: "certificates", singular: "certificate", listKind: "CertificateList" },
          scope: "Namespaced",
          versions: [
            {
              name: "v1",
              served: true,
              storage: true,
              subresources: { status: {} },
              schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
            },
          ],
        },
      },
    });
    const certPath = `/apis/cert-manager.io/v1/namespaces/${ns}/certificates/${name}-tls`;
    type Certificate = CertManagerCertificate;
    const certificate = await waitForObject<Certificate>(kc, certPath, undefined, 60_000);
    expect(certificate.spec.issuerRef).toEqual({
      name: "internal-ca",
      kind: "ClusterIssuer",
      group: "cert-manager.io",
    });
    expect(certificate.spec.secretName).toBe(`${name}-tls`);
    expect(certificate.spec.dnsNames).toContain(`${name}-gitaly-1.${name}-gitaly.${ns}.svc`);
    expect(certificate.spec.dnsNames).toContain(`${name}-praefect.${ns}.svc`);
    expect(certificate.spec.ipAddresses).toContain("127.0.0.1");
    await waitFor("CertificateNotReady", async () => {
      const c = await getCluster(kc, ns, name);
      return condition(c, "TLSReady")?.reason === "CertificateNotReady";
    });

    // What cert-manager would do: write the Secret, then mark the Certificate Ready.
    const ca = await createCertificateAuthority("cert-manager test CA");
    const leaf = await issueCertificate(ca, { commonName: `${name}-gitaly`, hosts: certificate.spec.dnsNames });
    await kubeRequest(kc, core("secrets"), {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        type: "kubernetes.io/tls",
        metadata: { name: `${name}-tls` },
        stringData: { "tls.crt": leaf.certificate, "tls.key": leaf.privateKey, "ca.crt": ca.certificate },
      },
    });
    await kubeRequest(kc, `${certPath}/status`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: { status: { conditions: [{ type: "Ready", status: "True", reason: "Ready", message: "issued" }] } },
    });
    const ready = await waitFor(
      "TLSReady",
      async () => {
        const c = await getCluster(kc, ns, name);
        return condition(c, "TLSReady")?.status === "True" ? c : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(condition(ready, "TLSReady")?.reason).toBe("CertificateReady");
    const client = await waitForObject<V1Secret>(
      kc,
      core("secrets", `${name}-gitaly-client`),
      (s) => decode(s, "ca.crt") !== undefined,
    );
    expect(decode(client, "ca.crt")).toBe(ca.certificate);
  });
});
