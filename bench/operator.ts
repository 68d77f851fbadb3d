// Operator throughput: the gitaly-operator program (dist/controller/main.js) as a child process
// against a real kube-apiserver + etcd (envtest), handed N GitalyClusters at once.
//
//   provision  from the first apply until every cluster has status.phase and
//              status.observedGeneration == metadata.generation;
//   ready      playing the workload controllers envtest lacks (StatefulSet, Deployment and
//              Job status), until every cluster's phase is Ready (--no-ready skips it);
//   settle     until the work those changes triggered has drained (queue empty, no reconcile
//              for 3 s);
//   steady     a quiet window afterwards: nothing changes, so reconciles and API requests
//              there are waste (a hot loop shows up here).
//
// Per phase: reconciles (by result), reconcile time quantiles from the operator's
// controller_runtime_reconcile_time_seconds histogram, and the operator's API requests,
// from the API server's own apiserver_request_total. That counter has no client label, so
// the operator's share is the delta over the resources it touches, minus the requests this
// script made (it counts every one) and minus the background the API server makes on its own
// (measured in an idle window before the clusters are applied, scaled to the phase length).
//
// Run (Node strips the types; the operator runs from dist/, so build first):
//   npx tsc -p tsconfig.build.json && node bench/operator.ts [--clusters 100] [--gitaly-replicas 1]
//        [--concurrency 4] [--no-ready] [--steady-seconds 10] [--timeout-seconds 300]
// Writes bench/results/operator.json and prints a summary.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { registerHooks } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import type * as ResourceModule from "../src/controller/api/resource.js";
import type * as KubeHttpModule from "../src/controller/reconcile/kube-http.js";
import type * as ProcessModule from "../src/shared/process.js";
import type * as EnvtestModule from "../test/harness/envtest.js";
import type * as OperatorHarness from "../test/harness/operator.js";
import type * as Support from "./support.js";

type KubeRequest = KubeHttpModule.KubeRequest;
type Envtest = EnvtestModule.Envtest;

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const NAMESPACE = "bench";
/** What a GitalyCluster reconcile reads or writes (apiserver_request_total's `resource`). */
const OPERATOR_RESOURCES = new Set([
  "gitalyclusters",
  "secrets",
  "configmaps",
  "services",
  "statefulsets",
  "deployments",
  "jobs",
  "poddisruptionbudgets",
  "persistentvolumeclaims",
  "events",
]);

/**
 * Lets Node load the test harness under type stripping: its `.js` imports of sources are
 * sent to the build (dist/, where the operator under test runs from too) and its `.js`
 * imports of other harness files to their `.ts`.
 */
function loadHarnessFromSource(): void {
  const src = join(repoRoot, "src/");
  registerHooks({
    resolve(specifier, context, next) {
      if (specifier.startsWith(".") && specifier.endsWith(".js") && context.parentURL?.startsWith("file:")) {
        const target = fileURLToPath(new URL(specifier, context.parentURL));
        if (target.startsWith(src)) {
          return next(pathToFileURL(join(repoRoot, "dist", target.slice(src.length))).href, context);
        }
        const ts = `${target.slice(0, -3)}.ts`;
        if (target.startsWith(repoRoot) && !existsSync(target) && existsSync(ts)) {
          return next(pathToFileURL(ts).href, context);
        }
      }
      return next(specifier, context);
    },
  });
}

// ---------------------------------------------------------------------------------------
// Prometheus text

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ""] = l[2] ?? "";
    samples.push({ name: m[1] ?? "", labels, value: Number(m[3]) });
  }
  return samples;
}

function sum(samples: Sample[], name: string, match: (labels: Record<string, string>) => boolean = () => true) {
  return samples.filter((s) => s.name === name && match(s.labels)).reduce((a, s) => a + s.value, 0);
}

/** Counts of `name` keyed by `key(labels)`. */
function byKey(samples: Sample[], name: string, key: (labels: Record<string, string>) => string | undefined) {
  const out = new Map<string, number>();
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = key(s.labels);
    if (k !== undefined) out.set(k, (out.get(k) ?? 0) + s.value);
  }
  return out;
}

function minus(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const out = new Map(a);
  for (const [k, v] of b) out.set(k, (out.get(k) ?? 0) - v);
  return out;
}

/** histogram_quantile over cumulative bucket counts (le → count), linear within a bucket. */
export function histogramQuantile(q: number, buckets: Map<number, number>): number {
  const sorted = [...buckets].sort(([a], [b]) => a - b);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of sorted) {
    if (count >= rank) {
      if (le === Number.POSITIVE_INFINITY) return prevLe;
      return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1e-9);
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

// ---------------------------------------------------------------------------------------
// The bench's own API client: every request it makes is counted the way the API server
// labels it, so it can be taken out of apiserver_request_total.

function requestKey(path: string, req: KubeRequest): string {
  const parts = path.split("?")[0]?.split("/").filter(Boolean) ?? [];
  let rest = parts[0] === "api" ? parts.slice(2) : parts.slice(3);
  if (rest[0] === "namespaces" && rest.length > 2) rest = rest.slice(2);
  const [resource = "", name, subresource] = rest;
  const method = req.method ?? "GET";
  const verb =
    method === "GET"
      ? name
        ? "GET"
        : "LIST"
      : method === "PATCH" && req.contentType === "application/apply-patch+yaml"
        ? "APPLY"
        : method;
  return `${verb} ${resource}${subresource ? `/${subresource}` : ""}`;
}

// ---------------------------------------------------------------------------------------

export interface OperatorBenchOptions {
  clusters: number;
  gitalyReplicas: number;
  /** The operator's --concurrency. */
  concurrency: number;
  ready: boolean;
  steadySeconds: number;
  timeoutSeconds: number;
  log: (msg: string) => void;
}

interface Snapshot {
  at: number;
  api: Sample[];
  operator: Sample[];
  bench: Map<string, number>;
  cpuSeconds: number;
}

export interface PhaseResult {
  seconds: number;
  reconciles: number;
  reconcilesByResult: Record<string, number>;
  reconcileErrors: number;
  workqueueRetries: number;
  reconcileSeconds: { mean: number; p50: number; p90: number; p99: number };
  apiRequests: {
    /** Delta of apiserver_request_total over the operator's resources. */
    total: number;
    bench: number;
    background: number;
    operator: number;
    /** This script's own requests by "VERB resource[/subresource]". */
    benchByVerb: Record<string, number>;
    operatorPerReconcile: number;
    /** The operator's requests by "VERB resource[/subresource]", largest first. */
    operatorByVerb: Record<string, number>;
    /** Mean time the API server took per request on these resources (watches excluded), everyone's. */
    serverMeanMs: number;
  };
  operatorCpuSeconds: number;
  /** Seconds from the phase's start until each cluster got there (provision and ready only). */
  perCluster?: Support.Distribution;
}

export interface OperatorBenchResult {
  benchmark: "operator";
  description: string;
  date: string;
  machine: Record<string, unknown>;
  params: Omit<OperatorBenchOptions, "log"> & { spec: unknown; operatorArgs: string[] };
  phases: { provision: PhaseResult; ready?: PhaseResult; settle: PhaseResult; steady: PhaseResult };
  background: { seconds: number; requestsPerSecond: number; byVerb: Record<string, number> };
  operator: {
    /** Before any cluster exists, caches synced. */
    rssIdleMiB: number;
    heapIdleMiB: number;
    rssFinalMiB: number;
    heapUsedMiB: number;
    externalMiB: number;
    rssPeakMiB: number;
    rssPeakSampledMiB: number;
    exitCode: number | string;
    shutdownSeconds: number;
    logLines: Record<string, number>;
    /** Distinct warning/error messages, most frequent first. */
    problems: { level: string; msg: string; count: number; example: string }[];
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

function vmHwmBytes(pid: number): number {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return Number(kb ?? Number.NaN) * 1024;
  } catch {
    return Number.NaN;
  }
}

interface Named {
  metadata?: { name?: string; generation?: number; labels?: Record<string, string> };
}
interface Workload extends Named {
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; readyReplicas?: number; updatedReplicas?: number };
}
interface Job extends Named {
  status?: { succeeded?: number };
}
interface Cluster extends Named {
  status?: { phase?: string; observedGeneration?: number };
}

export async function runOperatorBench(opts: OperatorBenchOptions): Promise<OperatorBenchResult> {
  loadHarnessFromSource();
  const support = (await import(pathToFileURL(join(repoRoot, "bench/support.ts")).href)) as typeof Support;
  const { kubeRequest } = await support.dist<typeof KubeHttpModule>("controller/reconcile/kube-http.js");
  const { API_VERSION, GROUP, KIND, PLURAL, VERSION } =
    await support.dist<typeof ResourceModule>("controller/api/resource.js");
  const { startProcess } = await support.dist<typeof ProcessModule>("shared/process.js");
  const { startEnvtest } = await support.source<typeof EnvtestModule>("test/harness/envtest.ts");
  const harness = await support.source<typeof OperatorHarness>("test/harness/operator.ts");
  const { round, distribution } = support;

  const spec = structuredClone(harness.sampleManifest("minimal").spec) as { gitaly: { replicas: number } };
  spec.gitaly.replicas = opts.gitalyReplicas;
  const names = Array.from({ length: opts.clusters }, (_, i) => `bench-${String(i).padStart(3, "0")}`);
  const deadline = () => Date.now() + opts.timeoutSeconds * 1000;

  opts.log("starting kube-apiserver + etcd");
  const env: Envtest = await startEnvtest();
  const dir = mkdtempSync(join(tmpdir(), "operator-bench-"));
  const benchCounts = new Map<string, number>();
  const api = <T>(path: string, req: KubeRequest = {}): Promise<T> => {
    const key = requestKey(path, req);
    benchCounts.set(key, (benchCounts.get(key) ?? 0) + 1);
    return kubeRequest<T>(env.kubeConfig, path, req);
  };
  const collection = (group: string, resource: string) =>
    `${group === "" ? "/api/v1" : `/apis/${group}`}/namespaces/${NAMESPACE}/${resource}`;
  const clustersPath = collection(`${GROUP}/${VERSION}`, PLURAL);
  // The bench polls with LISTs: served from the API server's watch cache (resourceVersion=0),
  // not from etcd, so its own load stays small next to the operator's.
  const fromCache = { resourceVersion: "0" };

  let operator: ProcessModule.ManagedProcess | undefined;
  let rssSampler: NodeJS.Timeout | undefined;
  try {
    await harness.installGitalyClusterCrd(env.kubeConfig);
    await harness.createNamespace(env.kubeConfig, NAMESPACE);

    const metricsPort = await support.freePort();
    const healthPort = await support.freePort();
    const operatorArgs = [
      "--no-leader-elect",
      "--namespaces",
      NAMESPACE,
      "--concurrency",
      String(opts.concurrency),
      "--metrics-bind-address",
      `127.0.0.1:${metricsPort}`,
      "--health-probe-bind-address",
      `127.0.0.1:${healthPort}`,
      "--log-level",
      "info",
    ];
    const logFile = join(dir, "operator.log");
    opts.log(`starting the operator (log: ${logFile})`);
    operator = startProcess(
      process.execPath,
      [join(repoRoot, "dist/controller/main.js"), "--kubeconfig", env.kubeconfigPath, ...operatorArgs],
      { logFile, env: { PATH: process.env.PATH ?? "/usr/bin:/bin" } },
    );
    const op = operator;
    const scrapeOperator = async () =>
      parseMetrics(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    const startBy = deadline();
    for (;;) {
      if (op.child.exitCode !== null) {
        throw new Error(`operator exited with ${op.child.exitCode}: ${readFileSync(logFile, "utf8").slice(-2000)}`);
      }
      const ok = await fetch(`http://127.0.0.1:${healthPort}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      if (Date.now() > startBy) throw new Error("operator not ready in time");
      await sleep(50);
    }

    let rssPeakSampled = 0;
    rssSampler = setInterval(() => {
      scrapeOperator().then(
        (s) => {
          rssPeakSampled = Math.max(rssPeakSampled, sum(s, "process_resident_memory_bytes"));
        },
        () => {},
      );
    }, 1000);

    const snapshot = async (): Promise<Snapshot> => {
      const [apiText, operatorSamples] = await Promise.all([
        kubeRequest<string>(env.kubeConfig, "/metrics"),
        scrapeOperator(),
      ]);
      return {
        at: performance.now(),
        api: parseMetrics(apiText),
        operator: operatorSamples,
        bench: new Map(benchCounts),
        cpuSeconds: support.processCpuSeconds(op.pid),
      };
    };
    const apiByVerb = (s: Snapshot) =>
      byKey(s.api, "apiserver_request_total", (l) =>
        OPERATOR_RESOURCES.has(l.resource ?? "")
          ? `${l.verb} ${l.resource}${l.subresource ? `/${l.subresource}` : ""}`
          : undefined,
      );

    // Background: what reaches these resources while nobody (the operator included) has work.
    const idleFrom = await snapshot();
    await sleep(5_000);
    const idleTo = await snapshot();
    const idleSeconds = (idleTo.at - idleFrom.at) / 1000;
    const idleByVerb = minus(apiByVerb(idleTo), apiByVerb(idleFrom));
    const idleTotal = [...idleByVerb.values()].reduce((a, b) => a + b, 0);

    const isGitalyCluster = (l: Record<string, string>) => l.controller === "gitalycluster";
    const phase = (from: Snapshot, to: Snapshot, perCluster?: number[]): PhaseResult => {
      const seconds = (to.at - from.at) / 1000;
      const d = (name: string, match?: (l: Record<string, string>) => boolean) =>
        sum(to.operator, name, match) - sum(from.operator, name, match);
      const reconciles = d("controller_runtime_reconcile_total", isGitalyCluster);
      const byResult = minus(
        byKey(to.operator, "controller_runtime_reconcile_total", (l) => (isGitalyCluster(l) ? l.result : undefined)),
        byKey(from.operator, "controller_runtime_reconcile_total", (l) => (isGitalyCluster(l) ? l.result : undefined)),
      );
      const bucketKey = (l: Record<string, string>) => (isGitalyCluster(l) ? l.le : undefined);
      const buckets = minus(
        byKey(to.operator, "controller_runtime_reconcile_time_seconds_bucket", bucketKey),
        byKey(from.operator, "controller_runtime_reconcile_time_seconds_bucket", bucketKey),
      );
      const les = new Map([...buckets].map(([le, n]) => [le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le), n]));
      const timeSum = d("controller_runtime_reconcile_time_seconds_sum", isGitalyCluster);
      const apiDelta = minus(apiByVerb(to), apiByVerb(from));
      const benchDelta = minus(to.bench, from.bench);
      const scale = seconds / idleSeconds;
      const operatorByVerb = new Map<string, number>();
      for (const [k, v] of apiDelta) {
        const n = v - (benchDelta.get(k) ?? 0) - (idleByVerb.get(k) ?? 0) * scale;
        if (Math.round(n) !== 0) operatorByVerb.set(k, Math.round(n));
      }
      const total = [...apiDelta.values()].reduce((a, b) => a + b, 0);
      const bench = [...benchDelta.values()].reduce((a, b) => a + b, 0);
      const background = idleTotal * scale;
      const operatorRequests = total - bench - background;
      const q = (x: number) => round(histogramQuantile(x, les), 4);
      const served = (snap: Snapshot, name: string) =>
        sum(snap.api, name, (l) => OPERATOR_RESOURCES.has(l.resource ?? "") && l.verb !== "WATCH");
      const serverSeconds =
        served(to, "apiserver_request_duration_seconds_sum") - served(from, "apiserver_request_duration_seconds_sum");
      const serverCount =
        served(to, "apiserver_request_duration_seconds_count") -
        served(from, "apiserver_request_duration_seconds_count");
      return {
        seconds: round(seconds, 2),
        reconciles,
        reconcilesByResult: Object.fromEntries([...byResult].filter(([, n]) => n !== 0)),
        reconcileErrors: d("controller_runtime_reconcile_errors_total", isGitalyCluster),
        workqueueRetries: d("workqueue_retries_total", (l) => l.name === "gitalycluster"),
        reconcileSeconds: {
          mean: reconciles ? round(timeSum / reconciles, 4) : Number.NaN,
          p50: q(0.5),
          p90: q(0.9),
          p99: q(0.99),
        },
        apiRequests: {
          total,
          bench,
          background: round(background, 1),
          operator: Math.round(operatorRequests),
          benchByVerb: Object.fromEntries([...benchDelta].filter(([, n]) => n !== 0)),
          operatorPerReconcile: reconciles ? round(operatorRequests / reconciles, 2) : Number.NaN,
          operatorByVerb: Object.fromEntries([...operatorByVerb].sort(([, a], [, b]) => b - a)),
          serverMeanMs: serverCount ? round((serverSeconds / serverCount) * 1000, 2) : Number.NaN,
        },
        operatorCpuSeconds: round(to.cpuSeconds - from.cpuSeconds, 2),
        ...(perCluster ? { perCluster: roundDistribution(distribution(perCluster)) } : {}),
      };
    };
    const roundDistribution = (d: Support.Distribution): Support.Distribution =>
      Object.fromEntries(Object.entries(d).map(([k, v]) => [k, k === "n" ? v : round(v, 2)])) as Support.Distribution;

    // Provision: every cluster applied at once, as `kubectl apply -f dir/` would.
    opts.log(`applying ${opts.clusters} GitalyClusters`);
    const provisionFrom = await snapshot();
    const t0 = performance.now();
    await Promise.all(
      names.map((name) =>
        api(`${clustersPath}/${name}`, {
          method: "PATCH",
          contentType: "application/apply-patch+yaml",
          query: { fieldManager: "kubectl", force: true },
          body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace: NAMESPACE }, spec },
        }),
      ),
    );
    const reconciledAt = new Map<string, number>();
    const provisionBy = deadline();
    while (reconciledAt.size < names.length) {
      const list = await api<{ items: Cluster[] }>(clustersPath, { query: fromCache });
      for (const c of list.items) {
        const name = c.metadata?.name ?? "";
        if (!reconciledAt.has(name) && c.status?.phase && c.status.observedGeneration === c.metadata?.generation) {
          reconciledAt.set(name, (performance.now() - t0) / 1000);
        }
      }
      if (reconciledAt.size === names.length) break;
      if (Date.now() > provisionBy) {
        throw new Error(`only ${reconciledAt.size}/${names.length} clusters reconciled in ${opts.timeoutSeconds} s`);
      }
      // Each poll is a LIST of every cluster with its status: keep the bench's own load modest.
      await sleep(500);
    }
    opts.log(`all ${names.length} reconciled after ${round((performance.now() - t0) / 1000, 1)} s`);
    const provisionTo = await snapshot();
    const provision = phase(provisionFrom, provisionTo, [...reconciledAt.values()]);

    // Ready: play the StatefulSet, Deployment and Job controllers until every cluster is Ready.
    // Re-marks whatever the operator re-applies (a new generation) until the end.
    let ready: PhaseResult | undefined;
    if (opts.ready) {
      opts.log("marking workloads ready and migrations succeeded");
      const readyFrom = await snapshot();
      const t1 = performance.now();
      const readyAt = new Map<string, number>();
      const managed = { ...fromCache, labelSelector: "app.kubernetes.io/managed-by=gitaly-operator" };
      const readyBy = deadline();
      for (;;) {
        const [sts, deployments, jobs, clusters] = await Promise.all([
          api<{ items: Workload[] }>(collection("apps/v1", "statefulsets"), { query: managed }),
          api<{ items: Workload[] }>(collection("apps/v1", "deployments"), { query: managed }),
          api<{ items: Job[] }>(collection("batch/v1", "jobs"), { query: managed }),
          api<{ items: Cluster[] }>(clustersPath, { query: fromCache }),
        ]);
        for (const c of clusters.items) {
          const name = c.metadata?.name ?? "";
          if (!readyAt.has(name) && c.status?.phase === "Ready") readyAt.set(name, (performance.now() - t1) / 1000);
        }
        if (readyAt.size === names.length) break;
        if (Date.now() > readyBy) {
          throw new Error(`only ${readyAt.size}/${names.length} clusters Ready in ${opts.timeoutSeconds} s`);
        }
        const notReady = (w: Workload) =>
          (w.status?.observedGeneration ?? 0) < (w.metadata?.generation ?? 0) ||
          (w.status?.readyReplicas ?? 0) !== (w.spec?.replicas ?? 1) ||
          (w.status?.updatedReplicas ?? 0) !== (w.spec?.replicas ?? 1);
        const marks: (() => Promise<unknown>)[] = [];
        for (const w of sts.items.filter(notReady)) marks.push(() => markWorkload(w, "statefulsets"));
        for (const w of deployments.items.filter(notReady)) marks.push(() => markWorkload(w, "deployments"));
        for (const j of jobs.items) {
          if (j.metadata?.labels?.["app.kubernetes.io/component"] === "migration" && !(j.status?.succeeded ?? 0)) {
            marks.push(() => markJob(j));
          }
        }
        await pool(marks, 16, async (mark) => {
          await mark();
        });
        await sleep(marks.length === 0 ? 2000 : 0);
      }
      opts.log(`all ${names.length} Ready after ${round((performance.now() - t1) / 1000, 1)} s`);
      ready = phase(readyFrom, await snapshot(), [...readyAt.values()]);
    }

    // Settle: the work the last changes triggered drains (the operator's own status writes
    // come back as watch events); done once the queue is empty and no reconcile ran for 3 s.
    opts.log("waiting for the operator to settle");
    const settleFrom = await snapshot();
    const settleBy = deadline();
    let last = sum(settleFrom.operator, "controller_runtime_reconcile_total", isGitalyCluster);
    let quietSince = performance.now();
    for (;;) {
      const s = await scrapeOperator();
      const n = sum(s, "controller_runtime_reconcile_total", isGitalyCluster);
      const depth = sum(s, "workqueue_depth", (l) => l.name === "gitalycluster");
      if (n !== last || depth > 0) {
        last = n;
        quietSince = performance.now();
      } else if (performance.now() - quietSince >= 3000) {
        break;
      }
      if (Date.now() > settleBy) {
        opts.log(`the operator did not settle in ${opts.timeoutSeconds} s`);
        break;
      }
      await sleep(250);
    }
    const settle = phase(settleFrom, await snapshot());

    // Steady: nothing changes any more.
    opts.log(`steady window of ${opts.steadySeconds} s`);
    const steadyFrom = await snapshot();
    await sleep(opts.steadySeconds * 1000);
    const steadyTo = await snapshot();
    const steady = phase(steadyFrom, steadyTo);
    clearInterval(rssSampler);

    const rssFinal = sum(steadyTo.operator, "process_resident_memory_bytes");
    const rssPeak = vmHwmBytes(op.pid);
    const stopStarted = performance.now();
    const exitCode = await op.stop("SIGTERM", 20_000);
    const shutdownSeconds = (performance.now() - stopStarted) / 1000;
    const mib = (b: number) => round(b / 2 ** 20, 1);

    return {
      benchmark: "operator",
      description:
        "gitaly-operator (child process, no leader election) on envtest: N GitalyClusters applied at once until reconciled, then until Ready",
      date: new Date().toISOString(),
      machine: support.machine(),
      params: {
        clusters: opts.clusters,
        gitalyReplicas: opts.gitalyReplicas,
        concurrency: opts.concurrency,
        ready: opts.ready,
        steadySeconds: opts.steadySeconds,
        timeoutSeconds: opts.timeoutSeconds,
        spec,
        operatorArgs,
      },
      phases: { provision, ...(ready ? { ready } : {}), settle, steady },
      background: {
        seconds: round(idleSeconds, 2),
        requestsPerSecond: round(idleTotal / idleSeconds, 2),
        byVerb: Object.fromEntries([...idleByVerb].filter(([, n]) => n !== 0)),
      },
      operator: {
        rssIdleMiB: mib(sum(idleTo.operator, "process_resident_memory_bytes")),
        heapIdleMiB: mib(sum(idleTo.operator, "nodejs_heap_size_used_bytes")),
        rssFinalMiB: mib(rssFinal),
        heapUsedMiB: mib(sum(steadyTo.operator, "nodejs_heap_size_used_bytes")),
        externalMiB: mib(sum(steadyTo.operator, "nodejs_external_memory_bytes")),
        rssPeakMiB: mib(rssPeak),
        rssPeakSampledMiB: mib(Math.max(rssPeakSampled, rssFinal)),
        exitCode,
        shutdownSeconds: round(shutdownSeconds, 2),
        ...logSummary(readFileSync(logFile, "utf8")),
      },
    };
  } finally {
    clearInterval(rssSampler);
    await operator?.stop("SIGKILL");
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  /** What the StatefulSet or Deployment controller writes once every pod is ready. */
  async function markWorkload(w: Workload, resource: "statefulsets" | "deployments"): Promise<void> {
    const n = w.spec?.replicas ?? 1;
    const status: Record<string, number> = {
      observedGeneration: w.metadata?.generation ?? 1,
      replicas: n,
      readyReplicas: n,
      updatedReplicas: n,
      availableReplicas: n,
    };
    if (resource === "statefulsets") status.currentReplicas = n;
    await api(`${collection("apps/v1", resource)}/${w.metadata?.name}/status`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: { status },
    });
  }

  /** What the Job controller writes when the Job's pod succeeded. */
  async function markJob(j: Job): Promise<void> {
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    const cond = (type: string) => ({
      type,
      status: "True",
      lastProbeTime: now,
      lastTransitionTime: now,
      reason: "Bench",
      message: "",
    });
    await api(`${collection("batch/v1", "jobs")}/${j.metadata?.name}/status`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: {
        status: {
          startTime: now,
          completionTime: now,
          succeeded: 1,
          active: 0,
          ready: 0,
          terminating: 0,
          uncountedTerminatedPods: {},
          conditions: [cond("SuccessCriteriaMet"), cond("Complete")],
        },
      },
    });
  }
}

function logSummary(text: string): Pick<OperatorBenchResult["operator"], "logLines" | "problems"> {
  const logLines: Record<string, number> = {};
  const problems = new Map<string, { level: string; msg: string; count: number; example: string }>();
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let entry: { level?: string; msg?: string };
    try {
      entry = JSON.parse(line) as { level?: string; msg?: string };
    } catch {
      entry = { level: "unparsed", msg: line.slice(0, 200) };
    }
    const level = entry.level ?? "unknown";
    logLines[level] = (logLines[level] ?? 0) + 1;
    if (level === "info" || level === "debug") continue;
    const key = `${level} ${entry.msg}`;
    const p = problems.get(key) ?? { level, msg: String(entry.msg), count: 0, example: line.slice(0, 600) };
    p.count++;
    problems.set(key, p);
  }
  return { logLines, problems: [...problems.values()].sort((a, b) => b.count - a.count).slice(0, 10) };
}

export function reportOperator(r: OperatorBenchResult): string {
  const p = r.phases.provision;
  const lines = [
    `operator: ${r.params.clusters} clusters (gitaly x${r.params.gitalyReplicas}, --concurrency ${r.params.concurrency})`,
    `  provision: all reconciled in ${p.seconds} s (per cluster p50 ${p.perCluster?.p50} s, max ${p.perCluster?.max} s); ${describePhase(p)}`,
  ];
  const ready = r.phases.ready;
  if (ready) {
    lines.push(
      `  ready:     all Ready in ${ready.seconds} s (per cluster p50 ${ready.perCluster?.p50} s, max ${ready.perCluster?.max} s); ${describePhase(ready)}`,
    );
  }
  lines.push(`  settle:    ${r.phases.settle.seconds} s until quiet; ${describePhase(r.phases.settle)}`);
  lines.push(`  steady:    ${r.phases.steady.seconds} s idle; ${describePhase(r.phases.steady)}`);
  lines.push(
    `  operator:  RSS ${r.operator.rssIdleMiB} MiB idle before, ${r.operator.rssFinalMiB} MiB at the end (heap ${r.operator.heapUsedMiB} MiB), peak ${r.operator.rssPeakMiB} MiB; exit ${r.operator.exitCode} after SIGTERM in ${r.operator.shutdownSeconds} s; log ${JSON.stringify(r.operator.logLines)}`,
  );
  return lines.join("\n");
}

function describePhase(p: PhaseResult): string {
  return (
    `${p.reconciles} reconciles (${p.reconcileErrors} errors), reconcile p50 ${p.reconcileSeconds.p50} s p99 ${p.reconcileSeconds.p99} s, ` +
    `${p.apiRequests.operator} operator API requests (${p.apiRequests.operatorPerReconcile}/reconcile), operator CPU ${p.operatorCpuSeconds} s`
  );
}

function positiveInt(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      clusters: { type: "string", default: "100" },
      "gitaly-replicas": { type: "string", default: "1" },
      concurrency: { type: "string", default: "4" },
      "no-ready": { type: "boolean", default: false },
      "steady-seconds": { type: "string", default: "10" },
      "timeout-seconds": { type: "string", default: "300" },
      quiet: { type: "boolean", default: false },
    },
  });
  const result = await runOperatorBench({
    clusters: positiveInt("clusters", values.clusters),
    gitalyReplicas: positiveInt("gitaly-replicas", values["gitaly-replicas"]),
    concurrency: positiveInt("concurrency", values.concurrency),
    ready: !values["no-ready"],
    steadySeconds: positiveInt("steady-seconds", values["steady-seconds"]),
    timeoutSeconds: positiveInt("timeout-seconds", values["timeout-seconds"]),
    log: (msg) => {
      if (!values.quiet) process.stderr.write(`  ${msg}\n`);
    },
  });
  const support = (await import(pathToFileURL(join(repoRoot, "bench/support.ts")).href)) as typeof Support;
  const file = support.writeResult("operator", result);
  process.stdout.write(`${reportOperator(result)}\n  -> ${file}\n`);
}

if (import.meta.main) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`operator bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
