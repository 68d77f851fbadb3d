// Pod-level pieces every workload shares: security contexts, placement merged with the
// operator's spreading rules, and volume helpers.
import type {
  V1Affinity,
  V1Container,
  V1ContainerPort,
  V1PodSecurityContext,
  V1PodSpec,
  V1Probe,
  V1ResourceRequirements,
  V1SecurityContext,
  V1Volume,
  V1WeightedPodAffinityTerm,
} from "@kubernetes/client-node";
import type { ResourceRequirements } from "../api/schema.js";

/** The image's user (1000, see the Dockerfile). */
export const APP_UID = 1000;

export function podSecurityContext(uid: number = APP_UID): V1PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    fsGroup: uid,
    fsGroupChangePolicy: "OnRootMismatch",
    seccompProfile: { type: "RuntimeDefault" },
  };
}

export function containerSecurityContext(readOnlyRootFilesystem = true): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem,
    capabilities: { drop: ["ALL"] },
  };
}

export interface Placement {
  resources?: ResourceRequirements;
  affinity?: V1Affinity;
  tolerations?: V1PodSpec["tolerations"];
  topologySpreadConstraints?: V1PodSpec["topologySpreadConstraints"];
  nodeSelector?: Record<string, string>;
}

export function resourcesOf(r: ResourceRequirements | undefined): V1ResourceRequirements | undefined {
  if (!r) return undefined;
  const out: V1ResourceRequirements = {};
  // The API server stores int-or-string quantities as given; strings keep them stable across round trips.
  if (r.limits) out.limits = Object.fromEntries(Object.entries(r.limits).map(([k, v]) => [k, String(v)]));
  if (r.requests) out.requests = Object.fromEntries(Object.entries(r.requests).map(([k, v]) => [k, String(v)]));
  return out;
}

/**
 * The user's affinity, with a preferred anti-affinity that spreads the component's pods over
 * nodes added to it. Preferred, not required: a small cluster must still schedule every pod.
 */
export function mergedAffinity(user: V1Affinity | undefined, selector: Record<string, string>): V1Affinity {
  const spread: V1WeightedPodAffinityTerm = {
    weight: 100,
    podAffinityTerm: { topologyKey: "kubernetes.io/hostname", labelSelector: { matchLabels: selector } },
  };
  const anti = user?.podAntiAffinity;
  return {
    ...user,
    podAntiAffinity: {
      ...anti,
      preferredDuringSchedulingIgnoredDuringExecution: [
        ...(anti?.preferredDuringSchedulingIgnoredDuringExecution ?? []),
        spread,
      ],
    },
  };
}

/** Placement fields of a pod spec, leaving out what the user did not set. */
export function placementFields(p: Placement, selector: Record<string, string>): Partial<V1PodSpec> {
  return {
    affinity: mergedAffinity(p.affinity, selector),
    ...(p.tolerations ? { tolerations: p.tolerations } : {}),
    ...(p.topologySpreadConstraints ? { topologySpreadConstraints: p.topologySpreadConstraints } : {}),
    ...(p.nodeSelector ? { nodeSelector: p.nodeSelector } : {}),
  };
}

/** A Secret volume exposing one key as `path`, readable by the pod's group only. */
export function secretKeyVolume(name: string, secretName: string, key: string, path: string): V1Volume {
  return { name, secret: { secretName, items: [{ key, path }], defaultMode: 0o440 } };
}

export function secretVolume(name: string, secretName: string): V1Volume {
  return { name, secret: { secretName, defaultMode: 0o440 } };
}

export function withResources(c: V1Container, r: ResourceRequirements | undefined): V1Container {
  const resources = resourcesOf(r);
  return resources ? { ...c, resources } : c;
}

/** Ports of a gRPC server container: plaintext, TLS when enabled, metrics (the contract's numbers). */
export function grpcServerPorts(
  ports: { grpc: number; tls: number; metrics: number },
  tls: boolean,
): V1ContainerPort[] {
  return [
    { name: "grpc", containerPort: ports.grpc, protocol: "TCP" },
    ...(tls ? [{ name: "grpc-tls", containerPort: ports.tls, protocol: "TCP" }] : []),
    { name: "metrics", containerPort: ports.metrics, protocol: "TCP" },
  ];
}

/**
 * Startup, readiness and liveness probes on the plaintext gRPC port. The gRPC health service is
 * exempt from token authentication (as upstream), so the kubelet's native probe works with auth
 * enforced.
 */
export function grpcHealthProbes(port: number): {
  startupProbe: V1Probe;
  readinessProbe: V1Probe;
  livenessProbe: V1Probe;
} {
  const grpc = { grpc: { port } };
  return {
    startupProbe: { ...grpc, periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...grpc, periodSeconds: 5, failureThreshold: 3 },
    livenessProbe: { ...grpc, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 6 },
  };
}
