// Routing decisions against a real PostgreSQL: which nodes reads, writes, creations and
// maintenance go to, given replica generations, assignments and node health. The nodes are
// never called here, so they are plain descriptions.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { RepositoryAlreadyExistsError, RepositoryNotFoundError } from "../datastore/errors.js";
import { migrate } from "../datastore/migrate.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { setHealthy } from "../datastore/testing.js";
import type { GitalyNode, NodeManager } from "../nodes/types.js";
import {
  findCause,
  isRepositoryReadOnlyError,
  NoHealthyNodesError,
  NoSuitableNodeError,
  PrimaryNotHealthyError,
  VirtualStorageNotFoundError,
} from "./errors.js";
import { PerRepositoryRouter, type Random } from "./router.js";

const VS = "vs";
const STORAGES = ["s1", "s2", "s3"];

class StaticNodes implements NodeManager {
  readonly channel = new grpc.Client("127.0.0.1:9", grpc.credentials.createInsecure());
  healthy = new Set(STORAGES);
  readonly errors: string[] = [];
  private readonly members: GitalyNode[] = STORAGES.map((storage) => ({
    virtualStorage: VS,
    storage,
    address: `tcp://${storage}.invalid:8075`,
    token: "",
    channel: this.channel,
    backchannel: () => Promise.reject(new Error("not dialled in this test")),
  }));
  virtualStorages() {
    return [VS];
  }
  nodes(vs: string) {
    return vs === VS ? this.members : [];
  }
  node(vs: string, storage: string) {
    return this.nodes(vs).find((n) => n.storage === storage);
  }
  locallyHealthy() {
    return this.healthy;
  }
  consensusHealthy() {
    return this.healthy;
  }
  reportError(_vs: string, storage: string, kind: "read" | "write") {
    this.errors.push(`${kind}:${storage}`);
  }
  async start() {}
  async stop() {}
}

/** Cycles through every choice, so repeated routing visits every candidate. */
function cyclingRandom(): Random {
  let n = 0;
  return { int: (max) => n++ % max };
}

describe("PerRepositoryRouter", () => {
  let db: TestDatabase;
  let store: RepositoryStore;
  let nodes: StaticNodes;
  let router: PerRepositoryRouter;
  let factor = 0;

  beforeAll(async () => {
    db = await freshDatabase("router");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, { [VS]: STORAGES });
  });
  afterAll(async () => {
    nodes?.channel.close();
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query("TRUNCATE repositories, storage_repositories, repository_assignments, node_status");
    await setHealthy(db.pool, VS, STORAGES);
    nodes?.channel.close();
    nodes = new StaticNodes();
    factor = 0;
    router = new PerRepositoryRouter({
      nodes,
      store,
      upToDate: { get: (vs, path) => store.getConsistentStorages(vs, path) },
      replicationFactors: {
        get [VS]() {
          return factor;
        },
      },
      random: cyclingRandom(),
    });
  });

  async function createRepo(relativePath: string, primary: string, upToDate: string[], assigned = STORAGES) {
    const id = await store.reserveRepositoryId(VS, relativePath);
    await store.createRepository({
      repositoryId: id,
      virtualStorage: VS,
      relativePath,
      replicaPath: `@cluster/repositories/00/00/${id}`,
      primary,
      updatedSecondaries: upToDate.filter((s) => s !== primary),
      outdatedSecondaries: assigned.filter((s) => s !== primary && !upToDate.includes(s)),
    });
    return id;
  }

  async function reads(relativePath: string, count = 9): Promise<Set<string>> {
    const seen = new Set<string>();
    for (let i = 0; i < count; i++)
      seen.add((await router.routeRepositoryAccessor(VS, relativePath, false)).node.storage);
    return seen;
  }

  describe("accessors", () => {
    it("spread over the healthy replicas holding the latest generation, at their replica path", async () => {
      const id = await createRepo("a.git", "s1", ["s1", "s2"]);
      expect(await reads("a.git")).toEqual(new Set(["s1", "s2"]));
      const route = await router.routeRepositoryAccessor(VS, "a.git", false);
      expect(route.replicaPath).toBe(`@cluster/repositories/00/00/${id}`);
      nodes.healthy = new Set(["s2", "s3"]);
      expect(await reads("a.git")).toEqual(new Set(["s2"]));
    });

    it("never go to an outdated replica", async () => {
      const id = await createRepo("b.git", "s1", ["s1", "s2", "s3"]);
      await store.incrementGeneration(id, "s3", []);
      expect(await reads("b.git")).toEqual(new Set(["s3"]));
    });

    it("fail when no healthy replica is up to date", async () => {
      await createRepo("c.git", "s1", ["s1"]);
      nodes.healthy = new Set(["s2", "s3"]);
      await expect(router.routeRepositoryAccessor(VS, "c.git", false)).rejects.toBeInstanceOf(NoSuitableNodeError);
      nodes.healthy = new Set();
      await expect(router.routeRepositoryAccessor(VS, "c.git", false)).rejects.toBeInstanceOf(NoHealthyNodesError);
    });

    it("go to the primary when asked to", async () => {
      await createRepo("d.git", "s2", ["s1", "s2", "s3"]);
      for (let i = 0; i < 4; i++) {
        expect((await router.routeRepositoryAccessor(VS, "d.git", true)).node.storage).toBe("s2");
      }
      nodes.healthy = new Set(["s1", "s3"]);
      await expect(router.routeRepositoryAccessor(VS, "d.git", true)).rejects.toBeInstanceOf(PrimaryNotHealthyError);
    });

    it("report unknown repositories and virtual storages", async () => {
      const err = await router.routeRepositoryAccessor(VS, "missing.git", false).catch((e: unknown) => e);
      expect(findCause(err, RepositoryNotFoundError)).toBeDefined();
      await expect(router.routeRepositoryAccessor("nope", "a.git", false)).rejects.toBeInstanceOf(
        VirtualStorageNotFoundError,
      );
    });
  });

  describe("mutators", () => {
    it("go to the primary; up-to-date healthy replicas are secondaries, the rest replication targets", async () => {
      const id = await createRepo("m.git", "s1", ["s1", "s2"]);
      nodes.healthy = new Set(["s1", "s3"]);
      const route = await router.routeRepositoryMutator(VS, "m.git", "");
      expect(route.repositoryId).toBe(id);
      expect(route.primary.storage).toBe("s1");
      expect(route.secondaries.map((n) => n.storage)).toEqual([]);
      expect(route.replicationTargets.sort()).toEqual(["s2", "s3"]);
      nodes.healthy = new Set(STORAGES);
      const all = await router.routeRepositoryMutator(VS, "m.git", "");
      expect(all.secondaries.map((n) => n.storage)).toEqual(["s2"]);
      expect(all.replicationTargets).toEqual(["s3"]);
    });

    it("refuse to write when the primary is behind and no replica can take over", async () => {
      const id = await createRepo("ro.git", "s1", ["s1", "s2"]);
      await store.incrementGeneration(id, "s2", []);
      // s2 holds the only latest replica, but the cluster sees it down: nobody may take writes.
      await setHealthy(db.pool, VS, ["s1", "s3"], ["s2"]);
      const err = await router.routeRepositoryMutator(VS, "ro.git", "").catch((e: unknown) => e);
      expect(isRepositoryReadOnlyError(err)).toBe(true);
    });

    it("fail over to an up-to-date replica when the primary is down", async () => {
      await createRepo("fo.git", "s1", ["s1", "s2", "s3"]);
      await setHealthy(db.pool, VS, ["s2", "s3"], ["s1"]);
      nodes.healthy = new Set(["s2", "s3"]);
      const route = await router.routeRepositoryMutator(VS, "fo.git", "");
      expect(["s2", "s3"]).toContain(route.primary.storage);
    });
  });

  describe("creations", () => {
    it("assign every node when no replication factor is set", async () => {
      const route = await router.routeRepositoryCreation(VS, "new.git", "");
      expect(route.replicaPath).toMatch(/^@cluster\/repositories\/[0-9a-f]{2}\/[0-9a-f]{2}\/\d+$/);
      expect(route.replicaPath.endsWith(`/${route.repositoryId}`)).toBe(true);
      const storages = [route.primary.storage, ...route.secondaries.map((n) => n.storage)].sort();
      expect(storages).toEqual(STORAGES);
      expect(route.replicationTargets).toEqual([]);
    });

    it("assign the replication factor's number of nodes, unhealthy ones as replication targets", async () => {
      factor = 2;
      nodes.healthy = new Set(["s1"]);
      const route = await router.routeRepositoryCreation(VS, "rf.git", "");
      expect(route.primary.storage).toBe("s1");
      expect(route.secondaries).toEqual([]);
      expect(route.replicationTargets).toHaveLength(1);
      factor = 1;
      const single = await router.routeRepositoryCreation(VS, "rf1.git", "");
      expect(single.secondaries.length + single.replicationTargets.length).toBe(0);
    });

    it("fail for a repository that exists", async () => {
      await createRepo("exists.git", "s1", ["s1"]);
      const err = await router.routeRepositoryCreation(VS, "exists.git", "").catch((e: unknown) => e);
      expect(findCause(err, RepositoryAlreadyExistsError)).toBeDefined();
      expect((err as Error).message).toBe("reserve repository id: repository already exists");
    });
  });

  it("sends maintenance to healthy assigned replicas that exist", async () => {
    await createRepo("gc.git", "s1", ["s1", "s2"]);
    nodes.healthy = new Set(["s2", "s3"]);
    const route = await router.routeRepositoryMaintenance(VS, "gc.git");
    expect(route.nodes.map((n) => n.storage)).toEqual(["s2"]);
    nodes.healthy = new Set(["s3"]);
    await expect(router.routeRepositoryMaintenance(VS, "gc.git")).rejects.toBeInstanceOf(NoHealthyNodesError);
  });

  it("routes storage-scoped accessors to any healthy node", () => {
    nodes.healthy = new Set(["s3"]);
    expect(router.routeStorageAccessor(VS).node.storage).toBe("s3");
    expect(() => router.routeStorageAccessor("nope")).toThrow(VirtualStorageNotFoundError);
  });
});
