// updateTokens against a real Gitaly: the channel built at start signs its next calls with the
// swapped token, the health loop follows, and gitaly_praefect_node_token_info names the token's
// generation (never the token).
import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type GitalyProcess, startGitaly } from "../../../test/harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import { createClient } from "../../shared/grpc/service.js";
import { createRegistry } from "../../shared/metrics.js";
import { loadPraefectConfig } from "../config/load.js";
import { nodeTokensOf } from "../config/reload.js";
import { migrate } from "../datastore/migrate.js";
import { createNodeManager, type PraefectNodeManager } from "./manager.js";
import { NODE_TOKEN_INFO } from "./token-metrics.js";

const logger = pino({ level: "silent" });

describe("live node token swap", () => {
  let db: TestDatabase;
  let gitaly: GitalyProcess;
  let nodes: PraefectNodeManager;
  const registry = createRegistry({ defaultMetrics: false });

  const configWith = (token: string, address = `tcp://${gitaly.address}`) =>
    loadPraefectConfig(
      `listen_addr = "127.0.0.1:2305"\n[[virtual_storage]]\nname = "default"\n[[virtual_storage.node]]\nstorage = "gitaly-1"\naddress = "${address}"\ntoken = "${token}"\n`,
    ).config;

  const exists = () => {
    const node = nodes.node("default", "gitaly-1");
    if (!node) throw new Error("no node default/gitaly-1");
    return createClient(RepositoryService, node.channel).repositoryExists({
      repository: { storageName: "gitaly-1", relativePath: "nope.git" },
    });
  };

  const tokenInfo = async () => {
    const metric = registry.getSingleMetric(NODE_TOKEN_INFO);
    return metric ? (await metric.get()).values.map((v) => ({ labels: v.labels, value: v.value })) : [];
  };

  beforeAll(async () => {
    db = await freshDatabase("praefect_node_token_swap");
    await migrate(db.pool);
    gitaly = await startGitaly({ storages: ["gitaly-1"], token: "token-b" });
    nodes = createNodeManager({
      config: configWith("token-a"),
      db: db.pool,
      praefectName: "praefect-swap",
      logger,
      registry,
    });
  });

  afterAll(async () => {
    await nodes?.stop();
    await gitaly?.stop();
    await db?.drop();
  });

  test("the token of the start is the one shown and presented (and refused by this node)", async () => {
    expect(await tokenInfo()).toEqual([
      { labels: { virtual_storage: "default", storage: "gitaly-1", generation: tokenGeneration("token-a") }, value: 1 },
    ]);
    await expect(exists()).rejects.toMatchObject({ code: 7 });
    await nodes.checkNow();
    // Health checks are not authenticated: the node is healthy whatever the token.
    expect([...nodes.locallyHealthy("default")]).toEqual(["gitaly-1"]);
  });

  test("a node whose address changed keeps its token", () => {
    const moved = nodeTokensOf(configWith("token-b", "tcp://127.0.0.1:1"));
    expect(nodes.updateTokens(moved)).toEqual([]);
    expect(nodes.node("default", "gitaly-1")?.token).toBe("token-a");
  });

  test("after updateTokens the same channel's next calls carry the new token", async () => {
    const channelBefore = nodes.node("default", "gitaly-1")?.channel;
    const changes = nodes.updateTokens(nodeTokensOf(configWith("token-b")));
    expect(changes).toEqual([
      {
        virtualStorage: "default",
        storage: "gitaly-1",
        previousGeneration: tokenGeneration("token-a"),
        generation: tokenGeneration("token-b"),
      },
    ]);
    const node = nodes.node("default", "gitaly-1");
    expect(node?.channel).toBe(channelBefore);
    expect(node?.token).toBe("token-b");
    expect((await exists()).exists).toBe(false);
    // The old generation's series is gone: one series per node, the current generation.
    expect(await tokenInfo()).toEqual([
      { labels: { virtual_storage: "default", storage: "gitaly-1", generation: tokenGeneration("token-b") }, value: 1 },
    ]);
    const exposed = await registry.metrics();
    expect(exposed).not.toContain("token-b");
    // Applying the same tokens again changes nothing.
    expect(nodes.updateTokens(nodeTokensOf(configWith("token-b")))).toEqual([]);
  });
});
