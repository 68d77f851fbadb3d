// The names a GitalyCluster's serving certificate must answer to. One certificate covers the
// whole cluster (one Secret mounted by Gitaly and Praefect pods), so its SANs are the union of
// every name a client may dial: Praefect dials each Gitaly pod by its per-pod DNS name, GitLab
// dials the Praefect Service, and probes dial the pod itself over loopback.
import { gitalyPodDnsName } from "../../shared/render/names.js";

export interface ServingHostsParams {
  cluster: string;
  namespace: string;
  /** Gitaly StatefulSet replicas: pods `<cluster>-gitaly-0 … <cluster>-gitaly-<n-1>`. */
  gitalyReplicas: number;
  /** "cluster.local": adds the fully qualified form of every Service and pod name. */
  clusterDomain?: string;
  /** The Gitaly headless Service; `<cluster>-gitaly` unless given. */
  gitalyService?: string;
  /** The Praefect Service; `<cluster>-praefect` unless given. */
  praefectService?: string;
}

export function gitalyHeadlessServiceName(cluster: string): string {
  return `${cluster}-gitaly`;
}

export function praefectServiceName(cluster: string): string {
  return `${cluster}-praefect`;
}

/** Probes run inside the pod and dial loopback, by name or by address. */
const LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"] as const;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function serviceNames(service: string, namespace: string, clusterDomain: string | undefined): string[] {
  const names = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`];
  if (clusterDomain) names.push(`${service}.${namespace}.svc.${clusterDomain}`);
  return names;
}

function checkClusterDomain(domain: string): void {
  const labels = domain.split(".");
  if (domain.length > 253 || !labels.every((l) => DNS_LABEL.test(l) && l.length <= 63)) {
    throw new Error(`cluster domain ${JSON.stringify(domain)} is not a DNS name`);
  }
}

/**
 * The serving certificate's subjectAltNames, in a fixed order: the Gitaly headless Service and
 * the Praefect Service (short, namespaced, `.svc` and, with a cluster domain, FQDN forms), then
 * each Gitaly pod (`.svc` and FQDN), then loopback. Equal inputs give equal lists, so comparing
 * a certificate's SANs with this list tells whether the certificate must be re-issued.
 */
export function servingCertificateHosts(p: ServingHostsParams): string[] {
  if (!Number.isInteger(p.gitalyReplicas) || p.gitalyReplicas < 0) {
    throw new Error(`Gitaly replicas ${p.gitalyReplicas} is not a whole number >= 0`);
  }
  const clusterDomain = p.clusterDomain === "" ? undefined : p.clusterDomain;
  if (clusterDomain !== undefined) checkClusterDomain(clusterDomain);
  const gitalyService = p.gitalyService ?? gitalyHeadlessServiceName(p.cluster);
  const praefectService = p.praefectService ?? praefectServiceName(p.cluster);
  for (const [what, name] of [
    ["cluster name", p.cluster],
    ["Gitaly Service", gitalyService],
    ["Praefect Service", praefectService],
    ["namespace", p.namespace],
  ] as const) {
    if (!DNS_LABEL.test(name) || name.length > 63) {
      throw new Error(`${what} ${JSON.stringify(name)} is not a DNS label (lower case, digits, '-', at most 63)`);
    }
  }

  const hosts = [
    ...serviceNames(gitalyService, p.namespace, clusterDomain),
    ...serviceNames(praefectService, p.namespace, clusterDomain),
  ];
  for (let index = 0; index < p.gitalyReplicas; index++) {
    const pod = { cluster: p.cluster, index, namespace: p.namespace, headlessService: gitalyService };
    hosts.push(gitalyPodDnsName(pod));
    if (clusterDomain) hosts.push(gitalyPodDnsName({ ...pod, clusterDomain }));
  }
  hosts.push(...LOOPBACK_HOSTS);
  // Services and pods cannot collide given the naming scheme, but a custom service name could.
  return [...new Set(hosts)];
}
