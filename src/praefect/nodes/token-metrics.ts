// gitaly_praefect_node_token_info{virtual_storage, storage, generation} = 1: which token Praefect
// presents to each node, named by its generation (a hash prefix, never the token), so a rotation
// can be followed until every Praefect shows the new generation. Gitaly's gitaly_auth_token_info
// names the token a node accepts with the same tokenGeneration(), so the two compare directly.
import { Gauge, type Registry } from "prom-client";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";

export const NODE_TOKEN_INFO = "gitaly_praefect_node_token_info";

type Labels = "virtual_storage" | "storage" | "generation";

export interface NodeTokenInfo {
  /** Shows `token` as the node's only generation. */
  set(virtualStorage: string, storage: string, token: string): void;
}

export function nodeTokenInfo(registry: Registry): NodeTokenInfo {
  // Reused when a previous node manager registered it (tests, several managers on one registry).
  const gauge =
    (registry.getSingleMetric(NODE_TOKEN_INFO) as Gauge<Labels> | undefined) ??
    new Gauge<Labels>({
      name: NODE_TOKEN_INFO,
      help: "The generation (sha256 prefix) of the token Praefect presents to each Gitaly node; 1 for the current one.",
      labelNames: ["virtual_storage", "storage", "generation"],
      registers: [registry],
    });
  const shown = new Map<string, string>();
  return {
    set(virtualStorage, storage, token) {
      const key = `${virtualStorage}\u0000${storage}`;
      const generation = tokenGeneration(token);
      const previous = shown.get(key);
      if (previous === generation) return;
      if (previous !== undefined) gauge.remove({ virtual_storage: virtualStorage, storage, generation: previous });
      gauge.set({ virtual_storage: virtualStorage, storage, generation }, 1);
      shown.set(key, generation);
    },
  };
}
