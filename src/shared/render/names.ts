// The names and numbers the operator, the local runner and the rendered configs must agree on
// (ARCHITECTURE.md, "Contracts between the parts"). Kept here so a certificate's SANs, a Service
// port and a Praefect node address cannot drift apart.

export const GITALY_PORTS = { grpc: 8075, tls: 8076, metrics: 9236 } as const;
export const PRAEFECT_PORTS = { grpc: 2305, tls: 3305, metrics: 9652 } as const;

export const GITALY_CONFIG_PATH = "/etc/gitaly/config.toml";
export const PRAEFECT_CONFIG_PATH = "/etc/praefect/config.toml";
/** Where the PVC `repo-data` is mounted in a Gitaly pod. */
export const GITALY_STORAGE_PATH = "/var/lib/gitaly/storage";

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkLabel(what: string, value: string): void {
  if (!DNS_LABEL.test(value) || value.length > 63) {
    throw new Error(`${what} ${JSON.stringify(value)} is not a DNS label (lower case, digits, '-', at most 63)`);
  }
}

function checkIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0) throw new Error(`Gitaly node index ${index} is not a whole number >= 0`);
}

/** Storage name of Gitaly node `index`: the StatefulSet pod name `<cluster>-gitaly-<index>`. */
export function storageName(cluster: string, index: number): string {
  checkIndex(index);
  const name = `${cluster}-gitaly-${index}`;
  checkLabel("Gitaly pod name", name);
  return name;
}

export interface GitalyNodeDnsParams {
  cluster: string;
  index: number;
  namespace: string;
  /** The Gitaly StatefulSet's headless Service (its serviceName). */
  headlessService: string;
  /** Appended when given ("cluster.local"); without it the name relies on the pod's DNS search path. */
  clusterDomain?: string;
}

/** Per-pod DNS name `<cluster>-gitaly-<i>.<svc>.<ns>.svc`; certificate SANs must use the same name. */
export function gitalyPodDnsName(p: GitalyNodeDnsParams): string {
  checkLabel("headless Service", p.headlessService);
  checkLabel("namespace", p.namespace);
  const base = `${storageName(p.cluster, p.index)}.${p.headlessService}.${p.namespace}.svc`;
  return p.clusterDomain === undefined || p.clusterDomain === "" ? base : `${base}.${p.clusterDomain}`;
}

export interface GitalyNodeAddressParams extends GitalyNodeDnsParams {
  /** tls://…:8076 instead of tcp://…:8075. */
  tls: boolean;
  /** Defaults to the contract port for the scheme. */
  port?: number;
}

/** The address Praefect dials for Gitaly node `index`: `tcp://<pod>.<svc>.<ns>.svc:8075` or `tls://…:8076`. */
export function gitalyNodeAddress(p: GitalyNodeAddressParams): string {
  const port = p.port ?? (p.tls ? GITALY_PORTS.tls : GITALY_PORTS.grpc);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`Gitaly port ${port} is out of range`);
  return `${p.tls ? "tls" : "tcp"}://${gitalyPodDnsName(p)}:${port}`;
}
