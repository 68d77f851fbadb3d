// The Praefect router in front of three real Gitaly processes, with a real PostgreSQL and the
// HTTP gateway: repositories are created through it, pushed to and cloned back with real git
// (the clone's sidechannel relayed by Praefect), reads spread over up-to-date replicas and never
// reach an outdated one, writes bump generations and queue replication, and the locally answered
// RPCs (RepositoryExists, RemoveRepository, ServerInfo, DiskStatistics, PraefectInfoService)
// answer from the database and the nodes. Replication itself is another component's job: where
// a test needs replicas, it replicates the way a replication worker would (ReplicateRepository
// on the target node, then the generation recorded).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommitService } from "../../../src/gen/commit_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/grpc/health/v1/health_pb.js";
import { PraefectInfoService } from "../../../src/gen/praefect_pb.js";
import { RefService } from "../../../src/gen/ref_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { ServerService } from "../../../src/gen/server_pb.js";
import { type Repository, RepositorySchema } from "../../../src/gen/shared_pb.js";
import { SSHService } from "../../../src/gen/ssh_pb.js";
import { delimPkt, encodePktLine, flushPkt } from "../../../src/gitaly/git/pktline.js";
import { migrate } from "../../../src/praefect/datastore/migrate.js";
import { RepositoryStore } from "../../../src/praefect/datastore/repositories.js";
import { reportNodes } from "../../../src/praefect/datastore/testing.js";
import { bearerToken } from "../../../src/shared/auth/v2-token.js";
import { encodeGitalyServers, GITALY_SERVERS_KEY } from "../../../src/shared/gitaly/servers.js";
import { dialBackchannel } from "../../../src/shared/grpc/backchannel-client.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { createStandardRepository, git, type StandardRepository } from "../../harness/git-fixtures.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type GatewayProcess, gitClient, startGatewayProcess } from "../gateway-helpers.js";
import { counterValue, ProcessNodeManager, startTestRouter, type TestRouter } from "./router-helpers.js";

const VS = "default";
const TOKEN = "praefect-router-suite-token";
const STORAGES = ["gitaly-1", "gitaly-2", "gitaly-3"];
/** UUIDv5(1ef1a8c6-cf52-4d0a-92a6-ca643e8bc7c5, "default"), computed independently. */
const DEFAULT_FILESYSTEM_ID = "d9f04423-6b13-5949-9ffa-c06279e0796e";

function refs(repo: string): string {
  return git(repo, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"]);
}

async function rpcError(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("expected the call to fail");
}

describe("Praefect router in front of three Gitaly nodes", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-router-"));
  let gitalys: GitalyProcess[] = [];
  let db: TestDatabase;
  /** The test's own pool, so the router's queries can be counted alone. */
  let testPool: pg.Pool;
  let store: RepositoryStore;
  let nodes: ProcessNodeManager;
  let tr: TestRouter;
  let gateway: GatewayProcess;
  let fixture: StandardRepository;
  let routerQueries = 0;
  let repositories: ReturnType<typeof createClient<(typeof RepositoryService)["method"]>>;
  let refsClient: ReturnType<typeof createClient<(typeof RefService)["method"]>>;
  let info: ReturnType<typeof createClient<(typeof PraefectInfoService)["method"]>>;

  const repo = (relativePath: string, storageName = VS): Repository =>
    create(RepositorySchema, { storageName, relativePath });
  const gitalyOf = (storage: string): GitalyProcess => gitalys[STORAGES.indexOf(storage)] as GitalyProcess;
  const tokenOf = (storage: string) => `node-token-${storage}`;
  const direct = (storage: string) => createClient(RepositoryService, gitalyOf(storage).channel(tokenOf(storage)));
  const reads = (storage: string) =>
    counterValue(tr.registry, "gitaly_praefect_read_distribution", { virtual_storage: VS, storage });

  /** What a replication worker does: ReplicateRepository from the primary, then record the generation. */
  async function replicateEverywhere(relativePath: string): Promise<void> {
    const meta = await store.getRepositoryMetadataByPath(VS, relativePath);
    const primary = meta.primary ?? "";
    for (const replica of meta.replicas) {
      if (replica.storage === primary || replica.generation === meta.generation) continue;
      const md = new grpc.Metadata();
      md.set(
        GITALY_SERVERS_KEY,
        encodeGitalyServers({ [primary]: { address: `tcp://${gitalyOf(primary).address}`, token: tokenOf(primary) } }),
      );
      await direct(replica.storage).replicateRepository(
        {
          repository: { storageName: replica.storage, relativePath: meta.replicaPath },
          source: { storageName: primary, relativePath: meta.replicaPath },
        },
        { metadata: md },
      );
      await store.setGeneration(meta.repositoryId, replica.storage, relativePath, meta.generation);
    }
  }

  async function queuedJobs(relativePath: string): Promise<{ change: string; source: string; target: string }[]> {
    const { rows } = await testPool.query<{ change: string; source: string; target: string }>(
      `SELECT job ->> 'change' AS change, job ->> 'source_node_storage' AS source, job ->> 'target_node_storage' AS target
       FROM replication_queue WHERE job ->> 'relative_path' = $1 AND state = 'ready' ORDER BY target`,
      [relativePath],
    );
    return rows;
  }

  beforeAll(async () => {
    gitalys = await Promise.all(STORAGES.map((s) => startGitaly({ storages: [s], token: tokenOf(s) })));
    db = await freshDatabase("praefect_router");
    await migrate(db.pool);
    testPool = new pg.Pool({ connectionString: db.url, max: 4 });
    store = new RepositoryStore(testPool, { [VS]: STORAGES });
    const query = db.pool.query.bind(db.pool) as (...args: unknown[]) => unknown;
    (db.pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      routerQueries++;
      return query(...args);
    };
    nodes = new ProcessNodeManager(
      VS,
      STORAGES.map((storage) => ({ storage, gitaly: gitalyOf(storage), token: tokenOf(storage) })),
      db.url,
    );
    await nodes.start();
    tr = await startTestRouter({
      nodes,
      pool: db.pool,
      databaseUrl: db.url,
      token: TOKEN,
      virtualStorage: VS,
      storages: STORAGES,
    });
    await tr.router.notificationsConnected;
    const channel = tr.channel();
    repositories = createClient(RepositoryService, channel);
    refsClient = createClient(RefService, channel);
    info = createClient(PraefectInfoService, channel);
    gateway = await startGatewayProcess({
      upstream: `tcp://${tr.address}`,
      token: TOKEN,
      storage: VS,
      createOnPush: true,
    });
    fixture = createStandardRepository(join(work, "fixture.git"));
  });

  afterAll(async () => {
    await gateway?.stop();
    await tr?.stop();
    await nodes?.stop();
    await testPool?.end();
    await db?.drop();
    await Promise.all(gitalys.map((g) => g.stop()));
    rmSync(work, { recursive: true, force: true });
  });

  it("creates a repository on a healthy primary at an @cluster replica path and queues replication", async () => {
    const path = "create/one.git";
    await repositories.createRepository({ repository: repo(path) });
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    expect(meta.replicaPath).toMatch(/^@cluster\/repositories\/[0-9a-f]{2}\/[0-9a-f]{2}\/\d+$/);
    expect(meta.generation).toBe(0);
    const primary = meta.primary ?? "";
    expect(STORAGES).toContain(primary);
    for (const replica of meta.replicas) {
      expect(replica.assigned).toBe(true);
      expect(replica.generation).toBe(replica.storage === primary ? 0 : -1);
      const onDisk = existsSync(join(gitalyOf(replica.storage).storages[0]?.path ?? "", meta.replicaPath, "HEAD"));
      expect(onDisk, replica.storage).toBe(replica.storage === primary);
    }
    expect(await queuedJobs(path)).toEqual(
      STORAGES.filter((s) => s !== primary).map((target) => ({ change: "update", source: primary, target })),
    );
    expect((await repositories.repositoryExists({ repository: repo(path) })).exists).toBe(true);
    expect((await repositories.repositoryExists({ repository: repo("create/none.git") })).exists).toBe(false);

    const again = await rpcError(repositories.createRepository({ repository: repo(path) }));
    expect(again.code).toBe(grpc.status.ALREADY_EXISTS);
    expect(again.details).toBe("route repository creation: reserve repository id: repository already exists");
  });

  it("takes a git push and serves clones through the HTTP gateway, relaying the sidechannel", async () => {
    const url = `${gateway.url}/group/pushed.git`;
    await gitClient(["push", "--quiet", url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"], {
      cwd: fixture.path,
    });
    const meta = await store.getRepositoryMetadataByPath(VS, "group/pushed.git");
    // Created (generation 0) by the gateway, then a generation per receive-pack call (git sends
    // a probe call before a large push, so there may be two).
    expect(meta.generation).toBeGreaterThanOrEqual(1);
    const primary = meta.primary ?? "";
    expect(meta.replicas.find((r) => r.storage === primary)?.generation).toBe(meta.generation);
    for (const r of meta.replicas) if (r.storage !== primary) expect(r.generation, r.storage).toBe(-1);
    expect((await queuedJobs("group/pushed.git")).map((j) => j.target)).toEqual(STORAGES.filter((s) => s !== primary));

    for (const protocol of ["0", "2"] as const) {
      const dest = join(work, `clone-v${protocol}.git`);
      await gitClient(["clone", "--bare", "--quiet", url, dest], { protocol });
      expect(refs(dest)).toBe(refs(fixture.path));
      expect(git(dest, ["fsck", "--no-progress", "--no-dangling"])).toBe("");
    }
    // The upload-pack went over a backchannel to the node, with the sidechannel relayed.
    expect(nodes.backchannelDials).toBeGreaterThan(0);
  });

  it("relays an SSH upload-pack sidechannel between the client's backchannel and the node's", async () => {
    const conn = await dialBackchannel(`tcp://${tr.address}`);
    const uploadPack = (input: Buffer, gitProtocol: string) =>
      conn.withSidechannel(
        async (sc) => {
          await sc.write(input);
          await sc.closeWrite();
          return sc.readAll();
        },
        (metadata) =>
          conn.unary(
            SSHService.method.sSHUploadPackWithSidechannel,
            { repository: repo("group/pushed.git"), gitProtocol },
            { metadata },
          ),
        { authorization: bearerToken(TOKEN) },
      );
    try {
      const fetch = Buffer.concat([
        encodePktLine("command=fetch\n"),
        encodePktLine("agent=git/2.39.5\n"),
        delimPkt,
        encodePktLine(`want ${fixture.branches.main}\n`),
        encodePktLine("ofs-delta\n"),
        encodePktLine("done\n"),
        flushPkt,
      ]);
      const { response, sidechannel } = await uploadPack(fetch, "version=2");
      expect(response.packfileNegotiationStatistics?.wants).toBe(1n);
      const output = sidechannel.toString("latin1");
      expect(output).toContain("packfile\n");
      expect(output).toContain("PACK");

      // upload-pack's own refusal comes back as the node reported it.
      const missing = "1".repeat(40);
      const refused = await rpcError(
        uploadPack(
          Buffer.concat([encodePktLine(`want ${missing} multi_ack\n`), flushPkt, encodePktLine("done\n")]),
          "",
        ),
      );
      expect({ code: refused.code, details: refused.details }).toEqual({
        code: grpc.status.INTERNAL,
        details: `running upload-pack: cmd wait: exit status 128, stderr: "fatal: git upload-pack: not our ref ${missing}\\n"`,
      });
    } finally {
      await conn.close();
    }
  });

  it("spreads reads over the up-to-date replicas, whose checksums agree", async () => {
    const path = "group/pushed.git";
    await replicateEverywhere(path);
    const before = await Promise.all(STORAGES.map(reads));
    await waitFor(
      "reads on at least two storages",
      async () => {
        for (let i = 0; i < 12; i++) await refsClient.findDefaultBranchName({ repository: repo(path) });
        const after = await Promise.all(STORAGES.map(reads));
        return after.filter((v, i) => v > (before[i] as number)).length >= 2;
      },
      { timeoutMs: 15_000, intervalMs: 10 },
    );

    const replicas = await info.repositoryReplicas({ repository: repo(path) });
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    expect(replicas.primary?.repository?.storageName).toBe(meta.primary);
    expect(replicas.primary?.repository?.relativePath).toBe(path);
    expect(replicas.replicas.map((r) => r.repository?.storageName).sort()).toEqual(
      STORAGES.filter((s) => s !== meta.primary),
    );
    const checksums = new Set([replicas.primary?.checksum, ...replicas.replicas.map((r) => r.checksum)]);
    expect(checksums.size).toBe(1);
    expect([...checksums][0]).toMatch(/^[0-9a-f]{40}$/);
  });

  it("never routes a read to an outdated replica", async () => {
    const path = "group/pushed.git";
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    const primary = meta.primary ?? "";
    const stale = STORAGES.find((s) => s !== primary) as string;
    // Earlier changes' notifications must all be in, so the one awaited below is this change's.
    let last = -1;
    let quiet = 0;
    await waitFor(
      "earlier notifications to settle",
      async () => {
        const now = tr.router.cache.stats.invalidations;
        quiet = now === last ? quiet + 1 : 0;
        last = now;
        return quiet >= 5;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    // One replica falls behind, as if it had missed a write.
    const invalidations = tr.router.cache.stats.invalidations;
    await testPool.query(
      "UPDATE storage_repositories SET generation = generation - 1 WHERE repository_id = $1 AND storage = $2",
      [meta.repositoryId, stale],
    );
    await waitFor("the change notification", async () => tr.router.cache.stats.invalidations > invalidations, {
      timeoutMs: 10_000,
      intervalMs: 10,
    });
    const staleBefore = await reads(stale);
    const totalBefore = (await Promise.all(STORAGES.map(reads))).reduce((a, b) => a + b, 0);
    for (let i = 0; i < 30; i++) await refsClient.findDefaultBranchName({ repository: repo(path) });
    expect(await reads(stale)).toBe(staleBefore);
    expect((await Promise.all(STORAGES.map(reads))).reduce((a, b) => a + b, 0)).toBe(totalBefore + 30);

    // A write through the router leaves only the primary up to date; the new ref is always found.
    await repositories.writeRef({
      repository: repo(path),
      ref: Buffer.from("refs/heads/written-through-praefect"),
      revision: Buffer.from(fixture.branches.main),
    });
    const after = await store.getRepositoryMetadataByPath(VS, path);
    expect(after.generation).toBe(meta.generation + 1);
    expect(after.replicas.find((r) => r.storage === primary)?.generation).toBe(after.generation);
    const primaryBefore = await reads(primary);
    for (let i = 0; i < 20; i++) {
      const res = await refsClient.refExists({
        repository: repo(path),
        ref: Buffer.from("refs/heads/written-through-praefect"),
      });
      expect(res.value).toBe(true);
    }
    expect(await reads(primary)).toBe(primaryBefore + 20);
  });

  it("answers routed reads without querying the database in the steady state", async () => {
    const path = "group/pushed.git";
    await refsClient.findDefaultBranchName({ repository: repo(path) });
    const queries = routerQueries;
    const cacheQueries = tr.router.cache.stats.queries;
    const hits = tr.router.cache.stats.hits;
    for (let i = 0; i < 10; i++) {
      await refsClient.findDefaultBranchName({ repository: repo(path) });
      await repositories.repositoryInfo({ repository: repo(path) });
      for await (const _ of refsClient.findAllBranches({ repository: repo(path) })) {
        // drain the stream
      }
    }
    expect(routerQueries).toBe(queries);
    expect(tr.router.cache.stats.queries).toBe(cacheQueries);
    expect(tr.router.cache.stats.hits).toBe(hits + 30);
  });

  it("relays streams, trailers and errors as the node sends them", async () => {
    const path = "group/pushed.git";
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    const primary = meta.primary ?? "";
    const physical = { storageName: primary, relativePath: meta.replicaPath };
    const primaryRefs = createClient(RefService, gitalyOf(primary).channel(tokenOf(primary)));

    // Server streaming, forced to the primary so both sides read the same replica.
    const primaryOnly = new grpc.Metadata();
    primaryOnly.set("gitaly-route-repository-accessor-policy", "primary-only");
    const collect = async (stream: AsyncIterable<{ references: { name: Uint8Array; target: string }[] }>) => {
      const out: string[] = [];
      for await (const msg of stream) for (const r of msg.references) out.push(`${r.target} ${Buffer.from(r.name)}`);
      return out;
    };
    const proxied = await collect(
      refsClient.listRefs({ repository: repo(path), patterns: [Buffer.from("refs/")] }, { metadata: primaryOnly }),
    );
    const directRefs = await collect(primaryRefs.listRefs({ repository: physical, patterns: [Buffer.from("refs/")] }));
    expect(proxied).toEqual(directRefs);
    expect(proxied.length).toBeGreaterThan(3);

    // Client streaming mutator.
    await refsClient.updateReferences([
      {
        repository: repo(path),
        updates: [
          {
            reference: Buffer.from("refs/heads/streamed-update"),
            oldObjectId: Buffer.from("0".repeat(40)),
            newObjectId: Buffer.from(fixture.branches.main),
          },
        ],
      },
    ]);
    expect(
      (await refsClient.refExists({ repository: repo(path), ref: Buffer.from("refs/heads/streamed-update") })).value,
    ).toBe(true);

    // The node's error, code and message unchanged.
    const bad = { ref: Buffer.from("refs/heads/bad"), revision: Buffer.from("does-not-exist") };
    const viaRouter = await rpcError(repositories.writeRef({ repository: repo(path), ...bad }));
    const viaNode = await rpcError(direct(primary).writeRef({ repository: physical, ...bad }));
    expect({ code: viaRouter.code, details: viaRouter.details }).toEqual({
      code: viaNode.code,
      details: viaNode.details,
    });

    // The node's trailers: a repository the database knows but the node does not have.
    const id = await store.reserveRepositoryId(VS, "ghost/repo.git");
    await store.createRepository({
      repositoryId: id,
      virtualStorage: VS,
      relativePath: "ghost/repo.git",
      replicaPath: `@cluster/repositories/ff/ff/${id}`,
      primary: "gitaly-2",
    });
    const ghost = await rpcError(refsClient.findDefaultBranchName({ repository: repo("ghost/repo.git") }));
    expect(ghost.code).toBe(grpc.status.NOT_FOUND);
    expect(ghost.metadata.get("storage_name")).toEqual(["gitaly-2"]);
    expect(ghost.metadata.get("relative_path")).toEqual([`@cluster/repositories/ff/ff/${id}`]);
    expect(nodes.reportedErrors).toEqual([]);
  });

  it("logs each relayed call with its correlation id and the repository it was about", async () => {
    const path = "group/pushed.git";
    const md = new grpc.Metadata();
    md.set("x-gitlab-correlation-id", "router-log-test-ok");
    await refsClient.findDefaultBranchName(
      { repository: { ...repo(path), glProjectPath: "group/pushed", glRepository: "project-7" } },
      { metadata: md },
    );
    const missing = new grpc.Metadata();
    missing.set("x-gitlab-correlation-id", "router-log-test-missing");
    await rpcError(refsClient.findDefaultBranchName({ repository: repo("group/absent.git") }, { metadata: missing }));

    const line = (id: string) => tr.logLines.find((l) => l.correlation_id === id && l.msg === "finished call");
    expect(line("router-log-test-ok")).toMatchObject({
      level: "info",
      "grpc.method": "FindDefaultBranchName",
      "grpc.code": "OK",
      "grpc.request.storage": VS,
      "grpc.request.repoPath": path,
      "grpc.request.glProjectPath": "group/pushed",
      "grpc.request.glRepository": "project-7",
    });
    // Refused before any node was called: the line still says which repository.
    expect(line("router-log-test-missing")).toMatchObject({
      level: "warn",
      "grpc.code": "NotFound",
      "grpc.request.storage": VS,
      "grpc.request.repoPath": "group/absent.git",
    });
  });

  it("sends maintenance to every healthy assigned replica", async () => {
    const count = async () =>
      Promise.all(
        gitalys.map(async (g) =>
          metricValue(await g.metrics(), "grpc_server_handled_total", {
            grpc_method: "OptimizeRepository",
            grpc_code: "OK",
          }),
        ),
      );
    const before = await count();
    await repositories.optimizeRepository({ repository: repo("group/pushed.git") });
    const after = await count();
    expect(after.map((v, i) => v - (before[i] as number))).toEqual([1, 1, 1]);
  });

  it("refuses writes without a healthy up-to-date replica, lists the repository as lost, and fails over", async () => {
    const path = "readonly/repo.git";
    await repositories.createRepository({ repository: repo(path) });
    await replicateEverywhere(path);
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    const survivor = STORAGES.find((s) => s !== meta.primary) as string;
    // Only `survivor` holds the latest generation, and the cluster sees it down.
    await info.setAuthoritativeStorage({ virtualStorage: VS, relativePath: path, authoritativeStorage: survivor });
    await nodes.setDown(survivor, true);
    try {
      await reportNodes(testPool, [
        {
          praefect: nodes.praefectName,
          virtualStorage: VS,
          storage: survivor,
          contactedSecondsAgo: 0,
          seenActiveSecondsAgo: null,
        },
      ]);
      const refused = await rpcError(
        repositories.writeRef({
          repository: repo(path),
          ref: Buffer.from("HEAD"),
          revision: Buffer.from("refs/heads/x"),
        }),
      );
      expect(refused.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(refused.details).toBe("repository is in read-only mode");

      const lost: { relativePath: string; unavailable: boolean }[] = [];
      for await (const res of info.dataloss({ virtualStorage: VS })) lost.push(...res.repositories);
      expect(lost.find((r) => r.relativePath === path)).toMatchObject({ unavailable: true });
    } finally {
      await nodes.setDown(survivor, false);
    }
    // Back up: the survivor becomes primary and takes the write.
    await repositories.writeRef({
      repository: repo(path),
      ref: Buffer.from("HEAD"),
      revision: Buffer.from("refs/heads/x"),
    });
    const after = await info.getRepositoryMetadata({
      query: { case: "path", value: { virtualStorage: VS, relativePath: path } },
    });
    expect(after.primary).toBe(survivor);
    expect(after.generation).toBe(BigInt(meta.generation + 2));
  });

  it("answers RepositoryExists and RemoveRepository from the database, removing replicas from the nodes", async () => {
    const path = "remove/me.git";
    await repositories.createRepository({ repository: repo(path) });
    await replicateEverywhere(path);
    const meta = await store.getRepositoryMetadataByPath(VS, path);
    const onDisk = () =>
      STORAGES.filter((s) => existsSync(join(gitalyOf(s).storages[0]?.path ?? "", meta.replicaPath, "HEAD")));
    expect(onDisk()).toEqual(STORAGES);

    await repositories.removeRepository({ repository: repo(path) });
    expect(await store.repositoryExists(VS, path)).toBe(false);
    expect((await repositories.repositoryExists({ repository: repo(path) })).exists).toBe(false);
    expect(onDisk()).toEqual([]);
    const again = await rpcError(repositories.removeRepository({ repository: repo(path) }));
    expect({ code: again.code, details: again.details }).toEqual({
      code: grpc.status.NOT_FOUND,
      details: "repository does not exist",
    });
  });

  it("reports the virtual storage in ServerInfo and every node's disks in DiskStatistics", async () => {
    const server = createClient(ServerService, tr.channel());
    const res = await server.serverInfo({});
    expect(res.serverVersion).not.toBe("");
    expect(res.storageStatuses).toHaveLength(1);
    expect(res.storageStatuses[0]).toMatchObject({
      storageName: VS,
      readable: true,
      writeable: true,
      replicationFactor: 3,
      filesystemId: DEFAULT_FILESYSTEM_ID,
    });
    const disks = await server.diskStatistics({});
    expect(disks.storageStatuses.map((s) => s.storageName).sort()).toEqual(STORAGES);
    expect(disks.storageStatuses.every((s) => s.available > 0n)).toBe(true);
  });

  it("answers PraefectInfoService from the repository store", async () => {
    const path = "info/repo.git";
    await repositories.createRepository({ repository: repo(path) });
    const byPath = await info.getRepositoryMetadata({
      query: { case: "path", value: { virtualStorage: VS, relativePath: path } },
    });
    expect(byPath).toMatchObject({ virtualStorage: VS, relativePath: path, generation: 0n });
    expect(byPath.replicas.map((r) => r.storage)).toEqual(STORAGES);
    const byId = await info.getRepositoryMetadata({ query: { case: "repositoryId", value: byPath.repositoryId } });
    expect(byId.replicaPath).toBe(byPath.replicaPath);
    const missing = await rpcError(
      info.getRepositoryMetadata({ query: { case: "path", value: { virtualStorage: VS, relativePath: "no.git" } } }),
    );
    expect({ code: missing.code, details: missing.details }).toEqual({
      code: grpc.status.NOT_FOUND,
      details: "repository not found",
    });

    const factor = await info.setReplicationFactor({ virtualStorage: VS, relativePath: path, replicationFactor: 2 });
    expect(factor.storages).toHaveLength(2);
    expect(factor.storages).toContain(byPath.primary);
    const tooLow = await rpcError(
      info.setReplicationFactor({ virtualStorage: VS, relativePath: path, replicationFactor: 0 }),
    );
    expect(tooLow.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(tooLow.details).toBe("set replication factor: attempted to set replication factor 0 but minimum is 1");

    await testPool.query("UPDATE storage_repositories SET verified_at = now() WHERE repository_id = $1", [
      Number(byPath.repositoryId),
    ]);
    const marked = await info.markUnverified({ selector: { case: "repositoryId", value: byPath.repositoryId } });
    expect(marked.replicasMarked).toBe(1n);

    const unknownVs = await rpcError(
      info.setAuthoritativeStorage({ virtualStorage: "nope", relativePath: path, authoritativeStorage: "gitaly-1" }),
    );
    expect({ code: unknownVs.code, details: unknownVs.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'unknown virtual storage: "nope"',
    });
  });

  it("rejects what it cannot route with upstream's errors", async () => {
    const unknownStorage = await rpcError(refsClient.findDefaultBranchName({ repository: repo("a.git", "nope") }));
    expect({ code: unknownStorage.code, details: unknownStorage.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: "storage name not found",
    });
    const missing = await rpcError(refsClient.findDefaultBranchName({ repository: repo("missing/repo.git") }));
    expect({ code: missing.code, details: missing.details }).toEqual({
      code: grpc.status.NOT_FOUND,
      details: "repository not found",
    });
    expect(missing.metadata.get("relative_path")).toEqual(["missing/repo.git"]);
    const missingWrite = await rpcError(
      repositories.writeRef({
        repository: repo("missing/repo.git"),
        ref: Buffer.from("HEAD"),
        revision: Buffer.from("x"),
      }),
    );
    expect(missingWrite.code).toBe(grpc.status.NOT_FOUND);
    const unset = await rpcError(
      createClient(CommitService, tr.channel()).findCommit({ revision: Buffer.from("HEAD") }),
    );
    expect({ code: unset.code, details: unset.details }).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: "repository not set",
    });
  });

  it("authenticates clients with its own token and lets health checks through", async () => {
    const wrong = await rpcError(
      createClient(RepositoryService, tr.channel("not-the-token")).repositoryExists({ repository: repo("a.git") }),
    );
    expect(wrong.code).toBe(grpc.status.PERMISSION_DENIED);
    const none = await rpcError(
      createClient(RepositoryService, tr.channel("")).repositoryExists({ repository: repo("a.git") }),
    );
    expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
    const health = await createClient(Health, tr.channel("")).check({ service: "" });
    expect(health.status).toBe(HealthCheckResponse_ServingStatus.SERVING);

    tr.router.reload({ token: "rotated-token", transitioning: false });
    try {
      const old = await rpcError(repositories.repositoryExists({ repository: repo("a.git") }));
      expect(old.code).toBe(grpc.status.PERMISSION_DENIED);
      const rotated = createClient(RepositoryService, tr.channel("rotated-token"));
      expect((await rotated.repositoryExists({ repository: repo("a.git") })).exists).toBe(false);
    } finally {
      tr.router.reload({ token: TOKEN, transitioning: false });
    }
  });

  it("counts method types and connections", async () => {
    for (const type of ["accessor", "mutator", "maintenance"]) {
      expect(
        await counterValue(tr.registry, "gitaly_praefect_method_types", { method_type: type }),
        type,
      ).toBeGreaterThan(0);
    }
    expect(await counterValue(tr.registry, "gitaly_praefect_connections_total", { type: "tcp" })).toBeGreaterThan(0);
  });
});
