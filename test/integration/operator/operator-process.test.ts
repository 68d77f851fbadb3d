// The gitaly-operator program (dist/controller/main.js) as a Deployment runs it: real child
// processes against a real kube-apiserver, observed only from outside (exit codes, HTTP
// probes, /metrics, the Lease and the objects they write). One replica without leader
// election scoped to one namespace; then two replicas sharing a Lease, where only the
// leader writes and the standby takes over once the leader is killed.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import type { KubeConfig, V1ConfigMap, V1Lease, V1StatefulSet } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it, onTestFailed } from "vitest";
import { kubeRequest } from "../../../src/controller/reconcile/kube-http.js";
import { freePort, waitFor } from "../../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../../src/shared/process.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import { repoRoot } from "../../harness/gitaly.js";
import {
  applyCluster,
  createNamespace,
  getCluster,
  getObject,
  installGitalyClusterCrd,
  runWithStdin,
  sampleManifest,
  waitForObject,
} from "../../harness/operator.js";

const MAIN = "dist/controller/main.js";
const LEASE = "gitaly-operator";
// main.ts keeps client-go's renew deadline (10 s), which must be shorter than the lease.
const LEASE_SECONDS = 11;

interface OperatorProcess {
  readonly name: string;
  readonly process: ManagedProcess;
  /** The Lease holder identity main.ts uses: `<hostname>_<pid>`. */
  readonly identity: string;
  readonly metricsUrl: string;
  readonly healthUrl: string;
  log(): string;
}

/** One sample of a Prometheus text exposition: `name{k="v",...} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ""] = l[2] ?? "";
    samples.push({ name: m[1] ?? "", labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of the samples of `name` whose labels include `labels`; undefined if there is none. */
function metricSum(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return hits.length === 0 ? undefined : hits.reduce((sum, s) => sum + s.value, 0);
}

async function scrape(op: OperatorProcess): Promise<Sample[]> {
  const res = await fetch(`${op.metricsUrl}/metrics`);
  if (!res.ok) throw new Error(`${op.name}: GET /metrics: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

async function probe(op: OperatorProcess, path: "/healthz" | "/readyz"): Promise<number> {
  return (await fetch(`${op.healthUrl}${path}`)).status;
}

const reconciles = async (op: OperatorProcess) =>
  metricSum(await scrape(op), "controller_runtime_reconcile_total", { controller: "gitalycluster" }) ?? 0;
const leaderStatus = async (op: OperatorProcess) =>
  metricSum(await scrape(op), "leader_election_master_status", { name: LEASE });

describe("the gitaly-operator program", () => {
  const logDir = mkdtempSync(join(tmpdir(), "operator-process-"));
  const started: OperatorProcess[] = [];
  let env: Envtest;
  let kc: KubeConfig;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    kc = env.kubeConfig;
    await installGitalyClusterCrd(kc);
    for (const ns of ["watched", "unwatched", "election"]) await createNamespace(kc, ns);
  }, 120_000);

  afterAll(async () => {
    await Promise.all(started.map((op) => op.process.stop("SIGKILL")));
    await env?.stop();
    rmSync(logDir, { recursive: true, force: true });
  });

  /** Starts the program on free loopback ports; resolves once /healthz answers. */
  async function startOperator(name: string, args: string[]): Promise<OperatorProcess> {
    const metricsPort = await freePort();
    const healthPort = await freePort();
    const logFile = join(logDir, `${name}.log`);
    const proc = startProcess(
      process.execPath,
      [
        join(repoRoot, MAIN),
        "--kubeconfig",
        env.kubeconfigPath,
        "--metrics-bind-address",
        `127.0.0.1:${metricsPort}`,
        "--health-probe-bind-address",
        `127.0.0.1:${healthPort}`,
        ...args,
      ],
      // Nothing from our environment (KUBECONFIG, WATCH_NAMESPACES, POD_NAMESPACE...) leaks in.
      { logFile, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
    );
    const op: OperatorProcess = {
      name,
      process: proc,
      identity: `${hostname()}_${proc.pid}`,
      metricsUrl: `http://127.0.0.1:${metricsPort}`,
      healthUrl: `http://127.0.0.1:${healthPort}`,
      log: () => {
        try {
          return readFileSync(logFile, "utf8");
        } catch {
          return "";
        }
      },
    };
    started.push(op);
    onTestFailed(() => {
      console.error(`--- ${name} (pid ${proc.pid}) log ---\n${op.log().slice(-6000)}`);
    });
    await waitFor(`${name} /healthz`, async () => {
      if (proc.child.exitCode !== null) throw new Error(`${name} exited with ${proc.child.exitCode}`);
      return (await probe(op, "/healthz")) === 200;
    });
    return op;
  }

  it("--help prints the usage and exits 0", async () => {
    const r = await runWithStdin(MAIN, ["--help"], "");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^usage: gitaly-operator/);
    expect(r.out).toContain("--leader-election-namespace");
  });

  it("a bad flag exits 2 with a message naming it", async () => {
    const unknown = await runWithStdin(MAIN, ["--no-such-flag"], "");
    expect(unknown.code, unknown.err).toBe(2);
    expect(unknown.err).toContain("--no-such-flag");
    const badValue = await runWithStdin(MAIN, ["--lease-duration", "soon"], "");
    expect(badValue.code, badValue.err).toBe(2);
    expect(badValue.err).toContain("--lease-duration");
    // Leader election (the default) outside a pod needs to be told where its Lease lives.
    const noLeaseNamespace = await runWithStdin(MAIN, ["--kubeconfig", "/nonexistent"], "");
    expect(noLeaseNamespace.code, noLeaseNamespace.err).toBe(2);
    expect(noLeaseNamespace.err).toContain("--leader-election-namespace");
  });

  it("without leader election: reconciles its namespace only, answers probes and metrics, stops on SIGTERM", async () => {
    const spec = sampleManifest("minimal").spec;
    // Both exist before the operator starts: were both watched, both would be in its first list.
    await applyCluster(kc, "unwatched", "ignored", spec);
    await applyCluster(kc, "watched", "alpha", spec);
    const op = await startOperator("single", ["--no-leader-elect", "--namespaces", "watched"]);

    await waitForObject<V1StatefulSet>(kc, "/apis/apps/v1/namespaces/watched/statefulsets/alpha-gitaly");
    const alpha = await waitFor("alpha's status", async () => {
      const c = await getCluster(kc, "watched", "alpha");
      return c.status?.phase ? c : undefined;
    });
    expect(alpha.status?.observedGeneration).toBe(alpha.metadata.generation);

    // alpha is done; the cluster in the other namespace, there for as long, got nothing.
    expect((await getCluster(kc, "unwatched", "ignored")).status).toBeUndefined();
    expect(await getObject(kc, "/apis/apps/v1/namespaces/unwatched/statefulsets/ignored-gitaly")).toBeUndefined();
    expect(await getObject(kc, "/api/v1/namespaces/unwatched/configmaps/ignored-praefect-config")).toBeUndefined();

    expect(await probe(op, "/healthz")).toBe(200);
    expect(await waitFor("/readyz 200", async () => (await probe(op, "/readyz")) === 200)).toBe(true);
    const samples = await scrape(op);
    expect(metricSum(samples, "controller_runtime_reconcile_total", { controller: "gitalycluster" })).toBeGreaterThan(
      0,
    );
    expect(metricSum(samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(op.log()).not.toMatch(/"level":"(error|fatal)"/);

    op.process.child.kill("SIGTERM");
    expect(await op.process.exited).toBe(0);
  });

  it("with leader election: one leader writes, the standby takes over when it is killed", async () => {
    const ns = "election";
    const args = [
      "--namespaces",
      ns,
      "--leader-election-namespace",
      ns,
      "--leader-election-id",
      LEASE,
      "--lease-duration",
      String(LEASE_SECONDS),
    ];
    const [a, b] = await Promise.all([startOperator("a", args), startOperator("b", args)]);
    if (!a || !b) throw new Error("unreachable");

    const leader = await waitFor("a leader", async () => {
      // The gauge appears when a replica starts campaigning: judge only once both do.
      const [sa, sb] = [await leaderStatus(a), await leaderStatus(b)];
      if (sa === undefined || sb === undefined) return undefined;
      return sa === 1 ? a : sb === 1 ? b : undefined;
    });
    const standby = leader === a ? b : a;
    expect(await leaderStatus(standby)).toBe(0);
    const lease = await kubeRequest<V1Lease>(kc, `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${LEASE}`);
    expect(lease.spec?.holderIdentity).toBe(leader.identity);
    // Both are ready: a rollout must not wait for a standby to win the lease.
    for (const op of [a, b]) expect(await probe(op, "/readyz")).toBe(200);

    await applyCluster(kc, ns, "gamma", sampleManifest("minimal").spec);
    const configMap = await waitForObject<V1ConfigMap>(kc, `/api/v1/namespaces/${ns}/configmaps/gamma-praefect-config`);
    await waitFor("gamma's status", async () => (await getCluster(kc, ns, "gamma")).status?.phase);
    expect(await reconciles(leader)).toBeGreaterThan(0);
    expect(await reconciles(standby)).toBe(0);
    expect(await leaderStatus(standby)).toBe(0);

    const killedAt = performance.now();
    leader.process.child.kill("SIGKILL");
    await leader.process.exited;
    await waitFor("the standby to lead", async () => (await leaderStatus(standby)) === 1, {
      timeoutMs: 30_000 + LEASE_SECONDS * 1000,
      intervalMs: 100,
    });
    console.info(
      `leader hand-over after SIGKILL: ${((performance.now() - killedAt) / 1000).toFixed(1)} s (lease ${LEASE_SECONDS} s)`,
    );
    const taken = await kubeRequest<V1Lease>(kc, `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${LEASE}`);
    expect(taken.spec?.holderIdentity).toBe(standby.identity);
    expect(taken.spec?.leaseTransitions).toBe(1);

    // The new leader writes: a deleted owned object comes back.
    await waitFor("the new leader's first reconciles", async () => (await reconciles(standby)) > 0);
    await kubeRequest(kc, `/api/v1/namespaces/${ns}/configmaps/gamma-praefect-config`, { method: "DELETE" });
    const recreated = await waitForObject<V1ConfigMap>(
      kc,
      `/api/v1/namespaces/${ns}/configmaps/gamma-praefect-config`,
      (c) => c.metadata?.uid !== configMap.metadata?.uid,
    );
    expect(recreated.data).toEqual(configMap.data);
    expect(standby.process.child.exitCode).toBeNull();
  }, 120_000);
});
