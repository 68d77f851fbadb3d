// What the runner prints once the cluster serves: a short banner for people, and one
// `READY {json}` line for scripts. Neither holds a secret: tokens appear as file paths only.

export interface ReadyNode {
  name: string;
  /** tcp://127.0.0.1:port */
  address: string;
  tlsAddress?: string;
  metricsUrl: string;
  pid: number;
}

export interface ReadyInfo {
  name: string;
  stateDir: string;
  /** The runner's pid: the one to signal to stop the cluster. */
  pid: number;
  startupMs: number;
  gatewayUrl: string;
  demo: { relativePath: string; cloneUrl: string };
  virtualStorage: string;
  replicationFactor: number;
  /** What GitLab's gitaly_address points at: the first Praefect, over TLS when the cluster runs TLS. */
  praefectAddress: string;
  praefect: ReadyNode[];
  gitaly: ReadyNode[];
  tokenFiles: { praefect: string; gitaly: string };
  caFile?: string;
  logDir: string;
  postgres: { address: string; database: string; dataDir: string; pid: number };
}

export const READY_PREFIX = "READY ";

export function readyLine(info: ReadyInfo): string {
  return `${READY_PREFIX}${JSON.stringify(info)}\n`;
}

/** Parses a line written by readyLine(); undefined for any other line. */
export function parseReadyLine(line: string): ReadyInfo | undefined {
  if (!line.startsWith(READY_PREFIX)) return undefined;
  return JSON.parse(line.slice(READY_PREFIX.length)) as ReadyInfo;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

export function banner(info: ReadyInfo): string {
  const label = (text: string) => `  ${text.padEnd(10)}`;
  const indent = " ".repeat(12);
  const tls = info.caFile ? "TLS from a local CA" : "plaintext gRPC";
  const seconds = (info.startupMs / 1000).toFixed(1);
  const first = info.praefect[0];
  const praefectLines = [
    `${label("Praefect")}${info.praefectAddress}   (GitLab's gitaly_address, storage "${info.virtualStorage}")`,
    ...(first && first.address !== info.praefectAddress ? [`${indent}${first.address}   (plaintext)`] : []),
    ...(info.caFile ? [`${indent}CA certificate: ${info.caFile}`] : []),
  ];
  const metrics = [...info.praefect, ...info.gitaly].map(
    (n, i) => `${i === 0 ? label("Metrics") : indent}${n.metricsUrl}   ${n.name}`,
  );
  return [
    "",
    `Local Gitaly Cluster "${info.name}" is ready (${seconds} s): ${plural(info.gitaly.length, "Gitaly node")}, ` +
      `${plural(info.praefect.length, "Praefect router")}, replication factor ${info.replicationFactor}, PostgreSQL, ${tls}.`,
    "",
    `${label("Clone")}git clone ${info.demo.cloneUrl}`,
    `${label("Push")}git push ${info.gatewayUrl}/<group>/<project>.git main   (a new repository is created on first push)`,
    "",
    ...praefectLines,
    `${label("Tokens")}${info.tokenFiles.praefect}   (clients -> Praefect)`,
    `${indent}${info.tokenFiles.gitaly}   (Praefect -> Gitaly)`,
    ...metrics,
    `${label("Database")}postgres://postgres@${info.postgres.address}/${info.postgres.database}   (password in the state dir's secrets/)`,
    `${label("Logs")}${info.logDir}`,
    `${label("State")}${info.stateDir}   (kept across runs; --reset starts from scratch)`,
    `${label("Stop")}Ctrl-C, or kill ${info.pid}`,
    "",
  ].join("\n");
}
