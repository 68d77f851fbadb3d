// Helpers for operator suites on envtest: install the committed CRD, apply GitalyClusters,
// and play the part of the controllers envtest does not run (StatefulSet, Deployment and
// Job controllers) by writing the status they would write.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { load } from "js-yaml";
import { CRD_FILE } from "../../src/controller/api/crd.js";
import {
  API_VERSION,
  CRD_NAME,
  type GitalyCluster,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
} from "../../src/controller/api/resource.js";
import { httpStatusOf, kubeRequest } from "../../src/controller/reconcile/kube-http.js";
import { waitFor } from "../../src/shared/net.js";
import { repoRoot } from "./gitaly.js";

export async function installGitalyClusterCrd(kc: KubeConfig): Promise<void> {
  // Untyped: client-node's typed API drops `default` and `x-kubernetes-*` keys.
  const crd = load(readFileSync(join(repoRoot, CRD_FILE), "utf8"));
  await kubeRequest(kc, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", { method: "POST", body: crd });
  await waitFor("CRD Established", async () => {
    const got = await kubeRequest<{ status?: { conditions?: { type: string; status: string }[] } }>(
      kc,
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${CRD_NAME}`,
    );
    return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
  });
}

export async function createNamespace(kc: KubeConfig, name: string): Promise<void> {
  await kubeRequest(kc, "/api/v1/namespaces", {
    method: "POST",
    body: { apiVersion: "v1", kind: "Namespace", metadata: { name } },
  });
}

export function clusterPath(namespace: string, name?: string): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}${name ? `/${name}` : ""}`;
}

/** Server-side applies a GitalyCluster as a user would (`kubectl apply --server-side`). */
export async function applyCluster(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: unknown,
): Promise<GitalyCluster> {
  return kubeRequest<GitalyCluster>(kc, clusterPath(namespace, name), {
    method: "PATCH",
    contentType: "application/apply-patch+yaml",
    query: { fieldManager: "kubectl", force: true },
    body: { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, spec },
  });
}

export async function getCluster(kc: KubeConfig, namespace: string, name: string): Promise<GitalyCluster> {
  return kubeRequest<GitalyCluster>(kc, clusterPath(namespace, name));
}

export function sampleManifest(name: string): { metadata: { name: string }; spec: Record<string, unknown> } {
  return load(readFileSync(join(repoRoot, "config/samples", `${name}.yaml`), "utf8")) as {
    metadata: { name: string };
    spec: Record<string, unknown>;
  };
}

export async function getObject<T extends KubernetesObject>(kc: KubeConfig, path: string): Promise<T | undefined> {
  try {
    return await kubeRequest<T>(kc, path);
  } catch (err) {
    if (httpStatusOf(err) === 404) return undefined;
    throw err;
  }
}

export function waitForObject<T extends KubernetesObject>(
  kc: KubeConfig,
  path: string,
  check: (o: T) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<T> {
  return waitFor(
    `object ${path}`,
    async () => {
      const o = await getObject<T>(kc, path);
      return o && check(o) ? o : undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
}

/** Writes the status a StatefulSet or Deployment controller would once every pod is ready. */
export async function markWorkloadReady(kc: KubeConfig, path: string): Promise<void> {
  const obj = await kubeRequest<{ metadata: { generation?: number }; spec: { replicas?: number } }>(kc, path);
  const n = obj.spec.replicas ?? 1;
  const status: Record<string, unknown> = {
    observedGeneration: obj.metadata.generation ?? 1,
    replicas: n,
    readyReplicas: n,
    updatedReplicas: n,
    availableReplicas: n,
  };
  if (path.includes("/statefulsets/")) Object.assign(status, { currentReplicas: n });
  await kubeRequest(kc, `${path}/status`, {
    method: "PATCH",
    contentType: "application/merge-patch+json",
    body: { status },
  });
}

/** Writes the status the Job controller writes when a Job's pod succeeded. */
export async function markJobSucceeded(kc: KubeConfig, path: string): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  const cond = (type: string) => ({
    type,
    status: "True",
    lastProbeTime: now,
    lastTransitionTime: now,
    reason: "Test",
    message: "",
  });
  await kubeRequest(kc, `${path}/status`, {
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

export interface CliResult {
  code: number | null;
  out: string;
  err: string;
}

/** Runs a built program (dist/...) with `input` on stdin. */
export function runWithStdin(script: string, args: string[], input: string): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, script), ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, out, err }));
    child.stdin.end(input);
  });
}
