// What a live reload of Praefect's configuration may change, worked out from the running and the
// freshly loaded configuration (both already parsed, token files already read): the tokens
// Praefect presents to its nodes are applied; the node set and the node addresses are not (the
// connections, the health loop and the database records are built from them at start), so those
// changes are only reported.
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

/**
 * The files whose changes trigger a reload: the config file, [auth] token_file, and every node's
 * token_file (each once, in configuration order).
 */
export function reloadWatchedFiles(
  configPath: string,
  config: Pick<PraefectConfig, "auth" | "virtual_storage">,
): string[] {
  const paths = [
    configPath,
    config.auth.token_file,
    ...config.virtual_storage.flatMap((vs) => vs.node.map((n) => n.token_file)),
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
