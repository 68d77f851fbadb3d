// The rotation's state as status.auth and the TokenRotation condition, and where its
// observations come from in a cluster (each pod's metrics port).
import type { KubeConfig, V1Pod } from "@kubernetes/client-node";
import { GITALY_PORTS, PRAEFECT_PORTS } from "../../shared/render/names.js";
import type { GitalyClusterStatus } from "../api/schema.js";
import { LABEL_COMPONENT, LABEL_INSTANCE } from "../resources/input.js";
import type { RotationState } from "../rotation/machine.js";
import type { ScrapeTarget } from "../rotation/scrape.js";
import type { DesiredCondition } from "./conditions.js";
import { kubeRequest } from "./kube-http.js";

type AuthStatus = NonNullable<GitalyClusterStatus["auth"]>;

export function rotationStatus(state: RotationState): AuthStatus {
  return { ...state };
}

export function rotationStateFromStatus(auth: AuthStatus | undefined): RotationState | undefined {
  if (!auth?.phase || auth.generation === undefined) return undefined;
  return { ...auth, phase: auth.phase, generation: auth.generation };
}

export function rotationCondition(r: { state: RotationState; message: string; waiting: boolean }): DesiredCondition {
  if (r.state.phase === "Stable") {
    return {
      type: "TokenRotation",
      status: "False",
      reason: r.state.outcome === "Aborted" ? "Aborted" : "Stable",
      message: r.message,
    };
  }
  return {
    type: "TokenRotation",
    status: "True",
    reason: r.waiting ? `${r.state.phase}Waiting` : r.state.phase,
    message: r.message,
  };
}

/** Gitaly and Praefect pods of a cluster, addressed by pod IP on their metrics ports. */
export async function podScrapeTargets(kc: KubeConfig, namespace: string, cluster: string): Promise<ScrapeTarget[]> {
  const list = await kubeRequest<{ items: V1Pod[] }>(kc, `/api/v1/namespaces/${namespace}/pods`, {
    query: { labelSelector: `${LABEL_INSTANCE}=${cluster},${LABEL_COMPONENT} in (gitaly,praefect)` },
  });
  return list.items
    .filter((p) => !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed")
    .map((p) => {
      const role = p.metadata?.labels?.[LABEL_COMPONENT] === "gitaly" ? ("gitaly" as const) : ("praefect" as const);
      const port = role === "gitaly" ? GITALY_PORTS.metrics : PRAEFECT_PORTS.metrics;
      const ip = p.status?.podIP;
      // A pod without an IP yet is reported unreachable by the scrape, which makes the step wait.
      return {
        name: p.metadata?.name ?? "?",
        role,
        url: ip ? `http://${ip}:${port}/metrics` : "http://pod-without-ip.invalid/metrics",
      };
    });
}
