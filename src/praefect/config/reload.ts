// What a live reload of Praefect's configuration may change, worked out from the running and the
// freshly loaded configuration (both already parsed, token files already read): the tokens
// Praefect presents to its nodes are applied; the node set and the node addresses are not (the
// connections, the health loop and the database records are built from them at start), so those
// changes are only reported. The TLS key pair is re-read from the files the listener started with;
// other paths or another listen address are reported too.
import type { PraefectConfig } from "./schema.js";

type NodeTopology = Pick<PraefectConfig, "virtual_storage">;

/** The token Praefect presents to one node: the node is named by all three of its coordinates. */
export interface NodeToken {
  virtualStorage: string;
  storage: string;
  address: string;
  token: string;
}

/** Every configured node with its resolved token (token, or the content of token_file). */
export function nodeTokensOf(config: NodeTopology): NodeToken[] {
  return config.virtual_storage.flatMap((vs) =>
    vs.node.map((n) => ({ virtualStorage: vs.name, storage: n.storage, address: n.address, token: n.token })),
  );
}

const q = JSON.stringify;

/**
 * The differences in virtual storages, node storages and node addresses between the running and
 * a fresh configuration, one sentence each ([] = none): these need a restart to take effect.
 */
export function nodeTopologyChanges(running: NodeTopology, fresh: NodeTopology): string[] {
  const changes: string[] = [];
  const freshByName = new Map(fresh.virtual_storage.map((vs) => [vs.name, vs]));
  const runningNames = new Set(running.virtual_storage.map((vs) => vs.name));
  for (const vs of running.virtual_storage) {
    const next = freshByName.get(vs.name);
    if (!next) {
      changes.push(`virtual storage ${q(vs.name)} removed`);
      continue;
    }
    const nextNodes = new Map(next.node.map((n) => [n.storage, n]));
    const runningStorages = new Set(vs.node.map((n) => n.storage));
    for (const node of vs.node) {
      const other = nextNodes.get(node.storage);
      if (!other) changes.push(`node ${q(`${vs.name}/${node.storage}`)} removed`);
      else if (other.address !== node.address) {
        changes.push(
          `node ${q(`${vs.name}/${node.storage}`)} address changed from ${q(node.address)} to ${q(other.address)}`,
        );
      }
    }
    for (const node of next.node) {
      if (!runningStorages.has(node.storage)) changes.push(`node ${q(`${vs.name}/${node.storage}`)} added`);
    }
  }
  for (const vs of fresh.virtual_storage) {
    if (!runningNames.has(vs.name)) changes.push(`virtual storage ${q(vs.name)} added`);
  }
  return changes;
}

type TlsListener = Pick<PraefectConfig, "tls_listen_addr" | "tls">;

/** The certificate and key files the TLS listener serves ([] without tls_listen_addr). */
export function servingKeyPairFiles(config: TlsListener): string[] {
  if (config.tls_listen_addr === "") return [];
  return [config.tls.certificate_path, config.tls.key_path].filter((p) => p !== "");
}

/**
 * The differences in tls_listen_addr and [tls] file paths between the running and a fresh
 * configuration, one sentence each ([] = none): the listener keeps its address and re-reads the
 * files it started with, so these need a restart.
 */
export function tlsListenerChanges(running: TlsListener, fresh: TlsListener): string[] {
  const fields = [
    ["tls_listen_addr", running.tls_listen_addr, fresh.tls_listen_addr],
    ["tls.certificate_path", running.tls.certificate_path, fresh.tls.certificate_path],
    ["tls.key_path", running.tls.key_path, fresh.tls.key_path],
  ] as const;
  return fields
    .filter(([, before, after]) => before !== after)
    .map(([key, before, after]) => `${key} changed from ${q(before)} to ${q(after)}`);
}

/**
 * The files whose changes trigger a reload: the config file, [auth] token_file, every node's
 * token_file, and `keyPairFiles` (servingKeyPairFiles of the running configuration), each once,
 * in that order.
 */
export function reloadWatchedFiles(
  configPath: string,
  config: Pick<PraefectConfig, "auth" | "virtual_storage">,
  keyPairFiles: readonly string[] = [],
): string[] {
  const paths = [
    configPath,
    config.auth.token_file,
    ...config.virtual_storage.flatMap((vs) => vs.node.map((n) => n.token_file)),
    ...keyPairFiles,
  ];
  return [...new Set(paths.filter((p) => p !== ""))];
}

/**
 * `config` with each node's token replaced by `tokenOf(virtual storage, storage)` when that says
 * something: what the running Praefect presents, for code that dials nodes from a configuration
 * (the readiness checks). The input is not modified.
 */
export function withNodeTokens<C extends NodeTopology>(
  config: C,
  tokenOf: (virtualStorage: string, storage: string) => string | undefined,
): C {
  return {
    ...config,
    virtual_storage: config.virtual_storage.map((vs) => ({
      ...vs,
      node: vs.node.map((n) => ({ ...n, token: tokenOf(vs.name, n.storage) ?? n.token })),
    })),
  };
}
