// The Helm chart charts/gitaly-operator, checked with the real helm CLI (built by
// tools/helm/build.sh) and a real kube-apiserver: it lints, every rendered object is
// accepted by the API server's schemas, no RBAC rule holds a wildcard, the chart's CRD is
// the generated one, and the RBAC it grants is enough for the operator to reconcile a
// GitalyCluster (run in-process as the chart's ServiceAccount) and no more.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  type CoreV1Event,
  KubeConfig,
  type KubernetesObject,
  type V1ClusterRole,
  type V1Deployment,
  type V1Job,
  type V1PolicyRule,
  type V1StatefulSet,
} from "@kubernetes/client-node";
import { load, loadAll } from "js-yaml";
import type { DestinationStream } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { CRD_FILE } from "../../../src/controller/api/crd.js";
import { CRD_NAME } from "../../../src/controller/api/resource.js";
import { GitalyClusterReconciler } from "../../../src/controller/reconcile/gitaly-cluster.js";
import { kubeRequest } from "../../../src/controller/reconcile/kube-http.js";
import { LeaderElector } from "../../../src/controller/reconcile/leader.js";
import { objectLabels } from "../../../src/controller/resources/index.js";
import { createLogger } from "../../../src/shared/logging.js";
import { waitFor } from "../../../src/shared/net.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import { repoRoot } from "../../harness/gitaly.js";
import {
  applyCluster,
  createNamespace,
  getCluster,
  getObject,
  markJobSucceeded,
  sampleManifest,
  waitForObject,
} from "../../harness/operator.js";

const run = promisify(execFile);
const chartDir = join(repoRoot, "charts/gitaly-operator");
/** The value sets under charts/gitaly-operator/ci/, helm's convention for CI. */
const valueSets = ["default", "namespaced", "cluster-wide", "servicemonitor"] as const;
type ValueSet = (typeof valueSets)[number];
const valuesFile = (set: ValueSet) => join(chartDir, "ci", `${set}-values.yaml`);

/** The namespaces ci/namespaced-values.yaml watches. */
const watched = ["team-a", "team-b"];

/** HELM_BIN if scripts/test built it already, else build (a cold build takes minutes) or find it cached. */
function helmBinary(): string {
  if (process.env.HELM_BIN) return process.env.HELM_BIN;
  const out = execFileSync("bash", [join(repoRoot, "tools/helm/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.trim().split("\n").pop() ?? "";
}

interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

class Helm {
  private readonly home = mkdtempSync(join(tmpdir(), "helm-home-"));

  constructor(readonly bin: string) {}

  /** Runs helm with its config, cache and data kept in a temp dir, away from any cluster. */
  async run(args: string[]): Promise<HelmResult> {
    const env = {
      PATH: process.env.PATH ?? "",
      HOME: this.home,
      HELM_CACHE_HOME: join(this.home, "cache"),
      HELM_CONFIG_HOME: join(this.home, "config"),
      HELM_DATA_HOME: join(this.home, "data"),
      KUBECONFIG: join(this.home, "no-kubeconfig"),
    };
    try {
      const { stdout, stderr } = await run(this.bin, args, { env, maxBuffer: 16 << 20 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  /** `helm template` of the chart; fails the test with helm's message if rendering fails. */
  async template(release: string, namespace: string, set: ValueSet): Promise<KubeObject[]> {
    const r = await this.run(["template", release, chartDir, "--namespace", namespace, "-f", valuesFile(set)]);
    if (r.code !== 0) throw new Error(`helm template (${set}) failed:\n${r.stderr}`);
    return (loadAll(r.stdout) as (KubeObject | null)[]).filter((o): o is KubeObject => o !== null);
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

interface KubeObject extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  rules?: V1PolicyRule[];
}

const ofKind = <T>(objects: KubeObject[], kind: string) => objects.filter((o) => o.kind === kind) as unknown as T[];

function deploymentOf(objects: KubeObject[]): V1Deployment {
  const all = ofKind<V1Deployment>(objects, "Deployment");
  const [d] = all;
  if (!d || all.length > 1) throw new Error(`expected exactly one Deployment, got ${all.length}`);
  return d;
}

function envOf(d: V1Deployment, name: string): string | undefined {
  return d.spec?.template.spec?.containers[0]?.env?.find((e) => e.name === name)?.value;
}

function argOf(d: V1Deployment, flag: string): string | undefined {
  const prefix = `--${flag}=`;
  return d.spec?.template.spec?.containers[0]?.args?.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

describe("Helm chart gitaly-operator", () => {
  let helm: Helm;

  beforeAll(() => {
    helm = new Helm(helmBinary());
  }, 30 * 60_000);

  afterAll(() => helm?.cleanup());

  it("ships the generated CRD byte for byte", () => {
    const shipped = readFileSync(join(chartDir, "crds", `${CRD_NAME}.yaml`));
    const generated = readFileSync(join(repoRoot, CRD_FILE));
    // toBe on the text shows a diff; equals() also catches what text decoding would hide.
    expect(shipped.toString("utf8"), `copy ${CRD_FILE} to charts/gitaly-operator/crds/`).toBe(
      generated.toString("utf8"),
    );
    expect(shipped.equals(generated)).toBe(true);
  });

  it("documents every value in the README's parameter table", () => {
    const values = load(readFileSync(join(chartDir, "values.yaml"), "utf8")) as Record<string, unknown>;
    // Kubernetes structures (securityContext, resources...) are documented as a whole.
    const whole = new Set(["podSecurityContext", "securityContext", "resources"]);
    const keys = (o: Record<string, unknown>, prefix: string): string[] =>
      Object.entries(o).flatMap(([k, v]) =>
        v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !whole.has(k)
          ? keys(v as Record<string, unknown>, `${prefix}${k}.`)
          : [`${prefix}${k}`],
      );
    const readme = readFileSync(join(chartDir, "README.md"), "utf8");
    const documented = new Set([...readme.matchAll(/^\| `([^`]+)`\s+\|/gm)].map((m) => m[1]));
    const all = keys(values, "");
    expect(all.length).toBeGreaterThan(30);
    expect(all.filter((k) => !documented.has(k))).toEqual([]);
  });

  it.each(valueSets)("passes helm lint --strict with ci/%s-values.yaml", async (set) => {
    const r = await helm.run(["lint", "--strict", chartDir, "--namespace", "gitaly-system", "-f", valuesFile(set)]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
  });

  it.each(valueSets)("renders no RBAC rule with a wildcard (ci/%s-values.yaml)", async (set) => {
    const objects = await helm.template("gitaly-operator", "gitaly-system", set);
    const rules = objects.filter((o) => o.kind === "Role" || o.kind === "ClusterRole").flatMap((o) => o.rules ?? []);
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      for (const field of ["apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"] as const) {
        for (const value of rule[field] ?? []) expect(value, `${field} of ${JSON.stringify(rule)}`).not.toContain("*");
      }
    }
  });

  it("grants cluster-wide by default and per watched namespace with watchNamespaces", async () => {
    const clusterWide = await helm.template("gitaly-operator", "gitaly-system", "default");
    expect(ofKind<V1ClusterRole>(clusterWide, "ClusterRole").map((r) => r.metadata?.name)).toEqual(["gitaly-operator"]);
    expect(ofKind<KubeObject>(clusterWide, "ClusterRoleBinding")).toHaveLength(1);
    // Only the lease is namespaced in this mode, and only in the release namespace.
    expect(ofKind<KubeObject>(clusterWide, "Role").map((r) => `${r.metadata.namespace}/${r.metadata.name}`)).toEqual([
      "gitaly-system/gitaly-operator-leader-election",
    ]);
    expect(envOf(deploymentOf(clusterWide), "WATCH_NAMESPACES")).toBe("");

    const namespaced = await helm.template("gitaly-operator", "gitaly-system", "namespaced");
    expect(ofKind<KubeObject>(namespaced, "ClusterRole")).toEqual([]);
    expect(ofKind<KubeObject>(namespaced, "ClusterRoleBinding")).toEqual([]);
    const where = (kind: string) =>
      ofKind<KubeObject>(namespaced, kind)
        .map((r) => `${r.metadata.namespace}/${r.metadata.name}`)
        .sort();
    const expected = [
      "gitaly-system/gitaly-operator-leader-election",
      "team-a/gitaly-operator",
      "team-b/gitaly-operator",
    ];
    expect(where("Role")).toEqual(expected);
    expect(where("RoleBinding")).toEqual(expected);
    expect(envOf(deploymentOf(namespaced), "WATCH_NAMESPACES")).toBe(watched.join(","));
  });

  it("runs the operator hardened, under leader election, probed on the health port", async () => {
    const objects = await helm.template("gitaly-operator", "gitaly-system", "default");
    const d = deploymentOf(objects);
    const pod = d.spec?.template.spec;
    const c = pod?.containers[0];
    expect(d.spec?.replicas).toBe(2);
    expect(c?.image).toBe("gitaly-operator:0.1.0");
    expect(c?.args?.[0]).toBe("gitaly-operator");
    expect(envOf(d, "LEADER_ELECT")).toBe("true");
    expect(argOf(d, "leader-election-id")).toBe("gitaly-operator");
    expect(c?.env?.find((e) => e.name === "POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    expect(envOf(d, "GITALY_IMAGE")).toBe("gitaly-operator:0.1.0");
    expect(envOf(d, "METRICS_BIND_ADDRESS")).toBe(":8080");
    expect(envOf(d, "HEALTH_PROBE_BIND_ADDRESS")).toBe(":8081");
    expect(c?.livenessProbe?.httpGet).toMatchObject({ path: "/healthz", port: "health" });
    expect(c?.readinessProbe?.httpGet).toMatchObject({ path: "/readyz", port: "health" });
    expect(c?.ports?.find((p) => p.name === "health")?.containerPort).toBe(8081);
    expect(pod?.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c?.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 1000,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(c?.resources?.requests).toBeDefined();
    const svc = objects.find((o) => o.kind === "Service") as { spec?: { ports?: { port: number }[] } } | undefined;
    expect(svc?.spec?.ports?.[0]?.port).toBe(8080);
    expect(objects.some((o) => o.kind === "ServiceMonitor")).toBe(false);
    const monitored = await helm.template("gitaly-operator", "gitaly-system", "servicemonitor");
    expect(monitored.some((o) => o.kind === "ServiceMonitor" && o.apiVersion === "monitoring.coreos.com/v1")).toBe(
      true,
    );
  });

  it.each([
    ["an unknown key", ["--set", "replicas=3"], "additional properties 'replicas' not allowed"],
    ["a namespace that is not a DNS label", ["--set", "watchNamespaces={Team_A}"], "watchNamespaces"],
    ["a lease shorter than the renew deadline", ["--set", "leaderElection.leaseDurationSeconds=10"], "minimum"],
    ["an unknown log level", ["--set", "logLevel=verbose"], "logLevel"],
    [
      "several replicas without leader election",
      ["--set", "leaderElection.enabled=false"],
      "replicaCount > 1 needs leaderElection.enabled",
    ],
  ])("refuses %s", async (_what, args, message) => {
    const r = await helm.run(["template", "gitaly-operator", chartDir, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  describe("on a real kube-apiserver", () => {
    let env: Envtest;
    let admin: KubeConfig;
    const resources = new Map<string, Map<string, { name: string; namespaced: boolean }>>();

    /** The resource (plural) and scope of a kind, from the API server's discovery. */
    async function resourceOf(apiVersion: string, kind: string): Promise<{ name: string; namespaced: boolean }> {
      let byKind = resources.get(apiVersion);
      if (!byKind) {
        const path = apiVersion.includes("/") ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
        const list = await kubeRequest<{ resources: { name: string; kind: string; namespaced: boolean }[] }>(
          admin,
          path,
        );
        byKind = new Map(list.resources.filter((r) => !r.name.includes("/")).map((r) => [r.kind, r]));
        resources.set(apiVersion, byKind);
      }
      const r = byKind.get(kind);
      if (!r) throw new Error(`the API server does not serve ${kind} in ${apiVersion}`);
      return r;
    }

    /** Server-side applies one rendered object as `helm` would, optionally as a dry run. */
    async function apply(kc: KubeConfig, obj: KubeObject, dryRun: boolean): Promise<void> {
      const r = await resourceOf(obj.apiVersion, obj.kind);
      const base = obj.apiVersion.includes("/") ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
      const ns = r.namespaced ? `/namespaces/${obj.metadata.namespace ?? ""}` : "";
      if (r.namespaced && !obj.metadata.namespace) throw new Error(`${obj.kind} ${obj.metadata.name} has no namespace`);
      await kubeRequest(kc, `${base}${ns}/${r.name}/${obj.metadata.name}`, {
        method: "PATCH",
        contentType: "application/apply-patch+yaml",
        // Strict: a misspelt or misplaced field is an error, not silently dropped.
        query: { fieldManager: "helm", force: true, fieldValidation: "Strict", ...(dryRun ? { dryRun: "All" } : {}) },
        body: obj,
      });
    }

    beforeAll(async () => {
      env = await startEnvtest(inject("envtestBinDir"));
      admin = env.kubeConfig;
      await installChartCrdAsHelm(admin);
      await installServiceMonitorStandIn(admin);
      for (const ns of ["gitaly-system", "gitaly-operators", ...watched, "team-c", "elsewhere"]) {
        await createNamespace(admin, ns);
      }
    }, 120_000);

    afterAll(async () => {
      await env?.stop();
    });

    it.each(valueSets)("accepts every object of ci/%s-values.yaml in a server-side dry run", async (set) => {
      const objects = await helm.template("gitaly-operator", "gitaly-system", set);
      expect(objects.length).toBeGreaterThan(0);
      const kinds = new Set<string>();
      for (const obj of objects) {
        try {
          await apply(admin, obj, true);
        } catch (err) {
          throw new Error(`${obj.kind} ${obj.metadata.name}: ${(err as Error).message}`);
        }
        kinds.add(obj.kind);
      }
      expect([...kinds]).toEqual(expect.arrayContaining(["Deployment", "ServiceAccount", "Role", "RoleBinding"]));
      if (set === "servicemonitor") expect(kinds).toContain("ServiceMonitor");
    });

    it("upgrades the CRD the documented way over one Helm installed", async () => {
      const path = `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${CRD_NAME}`;
      const original = chartCrd();
      const changed = structuredClone(original);
      const column = changed.spec.versions[0]?.additionalPrinterColumns?.[0];
      if (!column) throw new Error("the CRD has no printer column to change");
      column.description = "changed by a newer chart";
      const applyCrd = (body: unknown, force: boolean) =>
        kubeRequest(admin, path, {
          method: "PATCH",
          contentType: "application/apply-patch+yaml",
          query: { fieldManager: "kubectl", ...(force ? { force: true } : {}) },
          body,
        });
      // Without --force-conflicts, the fields Helm created belong to the manager "helm".
      await expect(applyCrd(changed, false)).rejects.toThrow(/conflict with "helm"/);
      // `kubectl apply --server-side --force-conflicts -f charts/gitaly-operator/crds/`
      await applyCrd(changed, true);
      const got = await kubeRequest<CrdDocument>(admin, path);
      expect(got.spec.versions[0]?.additionalPrinterColumns?.[0]?.description).toBe("changed by a newer chart");
      await applyCrd(original, true);
    });

    /**
     * Installs the release's objects for real, and returns a KubeConfig that authenticates
     * as its ServiceAccount with a token from the TokenRequest API.
     */
    async function install(release: string, namespace: string, set: ValueSet) {
      const objects = await helm.template(release, namespace, set);
      for (const obj of objects) await apply(admin, obj, false);
      const deployment = deploymentOf(objects);
      const serviceAccount = deployment.spec?.template.spec?.serviceAccountName ?? "";
      const tr = await kubeRequest<{ status: { token: string } }>(
        admin,
        `/api/v1/namespaces/${namespace}/serviceaccounts/${serviceAccount}/token`,
        {
          method: "POST",
          body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
        },
      );
      const kc = new KubeConfig();
      const cluster = admin.getCurrentCluster();
      kc.loadFromOptions({
        clusters: [{ name: "envtest", server: env.server, caData: cluster?.caData }],
        users: [{ name: serviceAccount, token: tr.status.token }],
        contexts: [{ name: "sa", cluster: "envtest", user: serviceAccount }],
        currentContext: "sa",
      });
      const review = await kubeRequest<{ status: { userInfo: { username: string } } }>(
        kc,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        { method: "POST", body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" } },
      );
      // Not the admin: every request below is authorized by the chart's RBAC alone.
      expect(review.status.userInfo.username).toBe(`system:serviceaccount:${namespace}:${serviceAccount}`);
      return { kc, deployment };
    }

    async function can(
      kc: KubeConfig,
      attrs: { verb: string; group: string; resource: string; namespace?: string; subresource?: string; name?: string },
    ): Promise<boolean> {
      const r = await kubeRequest<{ status: { allowed: boolean } }>(
        kc,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
          method: "POST",
          body: {
            apiVersion: "authorization.k8s.io/v1",
            kind: "SelfSubjectAccessReview",
            spec: { resourceAttributes: attrs },
          },
        },
      );
      return r.status.allowed;
    }

    /**
     * Runs the operator as main.ts does (Lease first, then the reconciler), with the flags
     * the chart's Deployment passes, until a GitalyCluster in `namespace` is provisioned.
     */
    async function reconcileAs(kc: KubeConfig, deployment: V1Deployment, releaseNs: string, namespace: string) {
      const problems: string[] = [];
      const sink: DestinationStream = {
        write(line: string) {
          if (/"level":"(warn|error)"/.test(line)) problems.push(line.trim());
        },
      };
      const logger = createLogger({ component: "gitaly-operator-as-sa", level: "warn", destination: sink });
      const watch = envOf(deployment, "WATCH_NAMESPACES") ?? "";
      const reconciler = new GitalyClusterReconciler({
        kubeConfig: kc,
        namespaces: watch === "" ? "all" : watch.split(","),
        defaultImage: envOf(deployment, "GITALY_IMAGE") ?? "",
        clusterDomain: envOf(deployment, "CLUSTER_DOMAIN") ?? "cluster.local",
        logger,
        registry: new Registry(),
        resyncPeriodMs: 0,
        missingInputRetryMs: 1000,
      });
      let leading = false;
      let started: Promise<void> | undefined;
      const elector = new LeaderElector({
        kubeConfig: kc,
        namespace: releaseNs,
        name: argOf(deployment, "leader-election-id") ?? "",
        leaseDurationSeconds: Number(argOf(deployment, "lease-duration")),
        retryPeriodMs: 200,
        onStartedLeading: () => {
          leading = true;
          started = reconciler.start();
        },
        onError: (err) => problems.push(`leader election: ${String(err)}`),
      });
      const explain = (err: unknown) =>
        new Error(`${(err as Error).message}\noperator warnings:\n${problems.join("\n")}`);
      try {
        elector.start();
        await waitFor("leadership", async () => leading).catch((err: unknown) => {
          throw explain(err);
        });

        const sample = sampleManifest("minimal");
        const name = sample.metadata.name;
        // A migration Job left by an earlier schema version: the operator deletes it once the current one
        // succeeded. That exercises the delete verb, and a DELETE with a body (propagationPolicy) on the
        // operator's kept-alive connections.
        const stale = `${name}-migrate-stale`;
        await kubeRequest(admin, `/apis/batch/v1/namespaces/${namespace}/jobs`, {
          method: "POST",
          body: {
            apiVersion: "batch/v1",
            kind: "Job",
            metadata: { name: stale, labels: objectLabels(name, "migration") },
            spec: {
              template: {
                spec: { restartPolicy: "Never", containers: [{ name: "migrate", image: "gitaly-operator:0.0.9" }] },
              },
            },
          },
        });
        await applyCluster(admin, namespace, name, sample.spec);
        const apps = (kind: string, n: string) => `/apis/apps/v1/namespaces/${namespace}/${kind}/${n}`;
        const jobs = `/apis/batch/v1/namespaces/${namespace}/jobs`;
        try {
          await waitForObject<V1StatefulSet>(admin, apps("statefulsets", `${name}-gitaly`));
          const job = await waitFor("the migration Job", async () => {
            const list = await kubeRequest<{ items: V1Job[] }>(admin, jobs, {
              query: { labelSelector: `app.kubernetes.io/instance=${name},app.kubernetes.io/component=migration` },
            });
            return list.items.find((j) => j.metadata?.name !== stale);
          });
          await markJobSucceeded(admin, `${jobs}/${job.metadata?.name}`);
          await waitForObject<V1Deployment>(admin, apps("deployments", `${name}-praefect`));
          await waitFor("the stale migration Job deleted", async () => {
            const j = await getObject<V1Job>(admin, `${jobs}/${stale}`);
            return j === undefined || j.metadata?.deletionTimestamp !== undefined;
          });
          const cluster = await waitFor("status with MigrationsApplied", async () => {
            const c = await getCluster(admin, namespace, name);
            return c.status?.conditions?.some((x) => x.type === "MigrationsApplied" && x.status === "True")
              ? c
              : undefined;
          });
          expect(cluster.status?.observedGeneration).toBe(cluster.metadata.generation);
        } catch (err) {
          throw explain(err);
        }
        const events = await kubeRequest<{ items: CoreV1Event[] }>(admin, `/api/v1/namespaces/${namespace}/events`, {
          query: { fieldSelector: `involvedObject.name=${name}` },
        });
        expect(events.items.map((e) => e.reason)).toEqual(expect.arrayContaining(["Created", "Migrated"]));
        expect(problems.filter((p) => /forbidden|403/i.test(p))).toEqual([]);
      } finally {
        await reconciler.stop();
        await started?.catch(() => {});
        // Releasing the lease exercises get and update on it.
        await elector.stop();
      }
      expect(problems.filter((p) => /forbidden|403/i.test(p))).toEqual([]);
    }

    /** What the code does that the reconcile above may not reach, and what it must not be able to do. */
    function paths(namespace: string, releaseNs: string, lease: string) {
      const allowed = [
        { verb: "patch", group: "", resource: "persistentvolumeclaims", namespace },
        { verb: "delete", group: "batch", resource: "jobs", namespace },
        { verb: "create", group: "cert-manager.io", resource: "certificates", namespace },
        { verb: "patch", group: "cert-manager.io", resource: "certificates", namespace },
        { verb: "patch", group: "", resource: "events", namespace },
        { verb: "get", group: "", resource: "secrets", namespace },
        { verb: "update", group: "gitaly.dev", resource: "gitalyclusters", subresource: "finalizers", namespace },
        { verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: releaseNs },
        { verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: releaseNs, name: lease },
        { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: releaseNs, name: lease },
      ];
      const denied = [
        { verb: "delete", group: "", resource: "secrets", namespace },
        { verb: "update", group: "gitaly.dev", resource: "gitalyclusters", namespace },
        { verb: "delete", group: "gitaly.dev", resource: "gitalyclusters", namespace },
        { verb: "create", group: "", resource: "pods", namespace },
        { verb: "create", group: "rbac.authorization.k8s.io", resource: "roles", namespace },
        { verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: releaseNs, name: "someone-else" },
        { verb: "update", group: "coordination.k8s.io", resource: "leases", namespace, name: lease },
        { verb: "get", group: "", resource: "nodes" },
      ];
      return { allowed, denied };
    }

    it("namespaced mode: the chart's Roles suffice to reconcile a GitalyCluster, and reach no further", async () => {
      const releaseNs = "gitaly-system";
      const { kc, deployment } = await install("gitaly-operator", releaseNs, "namespaced");
      await reconcileAs(kc, deployment, releaseNs, "team-a");

      const lease = argOf(deployment, "leader-election-id") ?? "";
      const { allowed, denied } = paths("team-b", releaseNs, lease);
      for (const a of allowed) expect(await can(kc, a), JSON.stringify(a)).toBe(true);
      for (const a of [
        ...denied,
        // Outside the watched namespaces, and cluster-wide, nothing.
        { verb: "list", group: "", resource: "secrets", namespace: "elsewhere" },
        { verb: "list", group: "gitaly.dev", resource: "gitalyclusters" },
        { verb: "create", group: "apps", resource: "statefulsets", namespace: "elsewhere" },
      ]) {
        expect(await can(kc, a), JSON.stringify(a)).toBe(false);
      }
    }, 180_000);

    it("cluster-wide mode: the chart's ClusterRole suffices in any namespace, and reaches no further", async () => {
      const releaseNs = "gitaly-operators";
      const { kc, deployment } = await install("cw", releaseNs, "cluster-wide");
      expect(argOf(deployment, "leader-election-id")).toBe("gitaly-operator-lock");
      await reconcileAs(kc, deployment, releaseNs, "team-c");

      const lease = argOf(deployment, "leader-election-id") ?? "";
      const { allowed, denied } = paths("elsewhere", releaseNs, lease);
      for (const a of [...allowed, { verb: "list", group: "gitaly.dev", resource: "gitalyclusters" }]) {
        expect(await can(kc, a), JSON.stringify(a)).toBe(true);
      }
      for (const a of denied) expect(await can(kc, a), JSON.stringify(a)).toBe(false);
    }, 180_000);
  });
});

interface CrdDocument {
  metadata: { name: string };
  spec: { versions: { additionalPrinterColumns?: { description?: string }[] }[] };
}

function chartCrd(): CrdDocument {
  return load(readFileSync(join(chartDir, "crds", `${CRD_NAME}.yaml`), "utf8")) as CrdDocument;
}

/** Creates the chart's CRD as `helm install` does: a plain create under the field manager "helm". */
async function installChartCrdAsHelm(kc: KubeConfig): Promise<void> {
  await kubeRequest(kc, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
    method: "POST",
    query: { fieldManager: "helm" },
    body: chartCrd(),
  });
  await waitForEstablished(kc, CRD_NAME);
}

async function waitForEstablished(kc: KubeConfig, name: string): Promise<void> {
  await waitFor(`CRD ${name} Established`, async () => {
    const got = await kubeRequest<{ status?: { conditions?: { type: string; status: string }[] } }>(
      kc,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
    );
    return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
  });
}

/**
 * prometheus-operator's ServiceMonitor CRD is not installed on envtest: this stand-in
 * declares the part of its v1 schema the chart uses, with the same field names and types,
 * so a strict dry run still rejects a misspelt or misplaced field.
 */
async function installServiceMonitorStandIn(kc: KubeConfig): Promise<void> {
  const duration = { type: "string", pattern: "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$" };
  const labels = { type: "object", additionalProperties: { type: "string" } };
  const name = "servicemonitors.monitoring.coreos.com";
  await kubeRequest(kc, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
    method: "POST",
    body: {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name },
      spec: {
        group: "monitoring.coreos.com",
        scope: "Namespaced",
        names: {
          kind: "ServiceMonitor",
          listKind: "ServiceMonitorList",
          plural: "servicemonitors",
          singular: "servicemonitor",
        },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            schema: {
              openAPIV3Schema: {
                type: "object",
                required: ["spec"],
                properties: {
                  apiVersion: { type: "string" },
                  kind: { type: "string" },
                  metadata: { type: "object" },
                  spec: {
                    type: "object",
                    required: ["selector", "endpoints"],
                    properties: {
                      selector: { type: "object", properties: { matchLabels: labels } },
                      namespaceSelector: {
                        type: "object",
                        properties: {
                          any: { type: "boolean" },
                          matchNames: { type: "array", items: { type: "string" } },
                        },
                      },
                      endpoints: {
                        type: "array",
                        items: {
                          type: "object",
                          properties: {
                            port: { type: "string" },
                            path: { type: "string" },
                            scheme: { type: "string", enum: ["http", "https"] },
                            interval: duration,
                            scrapeTimeout: duration,
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        ],
      },
    },
  });
  await waitForEstablished(kc, name);
}
