// The byte-level relay against an in-process node whose handlers the test controls: flow
// control holds in both directions (a client that does not read stops the node's writes, a node
// that does not read stops the client's), everything arrives intact once released, the client's
// cancellation reaches the node, and the node's status, message and trailers come back as sent.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Counter } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import {
  FindAllBranchesResponseSchema,
  type FindDefaultBranchNameRequest,
  type FindDefaultBranchNameResponse,
  RefService,
  type UpdateReferencesRequest,
  UpdateReferencesRequestSchema,
  UpdateReferencesResponseSchema,
} from "../../gen/ref_pb.js";
import { v2AuthInterceptor } from "../../shared/auth/v2-token.js";
import { createClient, grpcMethodDefinition } from "../../shared/grpc/service.js";
import { createLogger } from "../../shared/logging.js";
import { createRegistry } from "../../shared/metrics.js";
import { waitFor } from "../../shared/net.js";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
} from "../../shared/tls/certificates.js";
import { migrate } from "../datastore/migrate.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { setHealthy } from "../datastore/testing.js";
import type { GitalyNode, NodeManager } from "../nodes/types.js";
import { type PraefectRouter, startPraefectRouter } from "./praefect-server.js";

const VS = "vs";
const STORAGE = "node-1";
const TOKEN = "proxy-test-token";
const CHUNK = 64 * 1024;
const TOTAL = 2000;

/** Polls `read` until it stops changing (the flow it counts is blocked), then returns it. */
async function settled(read: () => number): Promise<number> {
  let last = -1;
  let stable = 0;
  await waitFor(
    "the flow to stall",
    async () => {
      const now = read();
      stable = now === last ? stable + 1 : 0;
      last = now;
      return stable >= 5;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  return last;
}

interface NodeControl {
  branchesWritten: number;
  branchesCancelled: boolean;
  /** Set when UpdateReferences should start reading. */
  release?: () => void;
  updatesReceived: string[];
  lastMetadata?: grpc.Metadata;
  reportedErrors: string[];
}

describe("proxying through the router", () => {
  let db: TestDatabase;
  let node: grpc.Server;
  let nodeChannel: grpc.Client;
  let router: PraefectRouter;
  let client: grpc.Client;
  const control: NodeControl = {
    branchesWritten: 0,
    branchesCancelled: false,
    updatesReceived: [],
    reportedErrors: [],
  };
  let store: RepositoryStore;
  const dir = mkdtempSync(join(tmpdir(), "praefect-proxy-"));
  const registry = createRegistry({ defaultMetrics: false });
  let ca: CertificateAuthority;

  beforeAll(async () => {
    db = await freshDatabase("proxy");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, { [VS]: [STORAGE] });
    const id = await store.reserveRepositoryId(VS, "r.git");
    await store.createRepository({
      repositoryId: id,
      virtualStorage: VS,
      relativePath: "r.git",
      replicaPath: "@cluster/r",
      primary: STORAGE,
    });
    await setHealthy(db.pool, VS, [STORAGE]);

    node = new grpc.Server();
    const refService = grpcServiceHandlers(control);
    node.addService(
      Object.fromEntries(
        Object.keys(refService).map((name) => [
          name,
          grpcMethodDefinition(RefService.method[name as keyof typeof RefService.method]),
        ]),
      ),
      refService,
    );
    const port = await new Promise<number>((resolve, reject) =>
      node.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    nodeChannel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const member: GitalyNode = {
      virtualStorage: VS,
      storage: STORAGE,
      address: `tcp://127.0.0.1:${port}`,
      token: "",
      channel: nodeChannel,
      backchannel: () => Promise.reject(new Error("no backchannel in this test")),
    };
    const nodes: NodeManager = {
      virtualStorages: () => [VS],
      nodes: (vs) => (vs === VS ? [member] : []),
      node: (vs, storage) => (vs === VS && storage === STORAGE ? member : undefined),
      locallyHealthy: () => new Set([STORAGE]),
      consensusHealthy: () => new Set([STORAGE]),
      reportError: (_vs, storage, kind) => {
        control.reportedErrors.push(`${kind}:${storage}`);
      },
      start: async () => undefined,
      stop: async () => undefined,
    };
    ca = await createCertificateAuthority("proxy-test-ca");
    const leaf = await issueCertificate(ca, { commonName: "praefect", hosts: ["127.0.0.1", "localhost"] });
    writeFileSync(join(dir, "tls.crt"), leaf.certificate);
    writeFileSync(join(dir, "tls.key"), leaf.privateKey);
    router = await startPraefectRouter({
      config: {
        listen_addr: "127.0.0.1:0",
        tls_listen_addr: "127.0.0.1:0",
        socket_path: join(dir, "praefect.socket"),
        tls: { certificate_path: join(dir, "tls.crt"), key_path: join(dir, "tls.key") },
        auth: { token: TOKEN, transitioning: false },
        virtual_storage: [{ name: VS, node: [{ storage: STORAGE }] }],
        graceful_stop_timeout: 2_000,
      },
      logger: createLogger({ component: "praefect", level: "error" }),
      registry,
      nodes,
      db: db.pool,
      praefectName: "proxy-test",
    });
    client = new grpc.Client(router.addresses.tcp ?? "", grpc.credentials.createInsecure(), {
      interceptors: [v2AuthInterceptor(TOKEN)],
      "grpc.max_receive_message_length": -1,
    });
  });

  afterAll(async () => {
    client?.close();
    await router?.shutdown();
    nodeChannel?.close();
    node?.forceShutdown();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the same routed calls on its TLS listener and unix socket", async () => {
    const callOver = async (target: string, credentials: grpc.ChannelCredentials) => {
      const channel = new grpc.Client(target, credentials, {
        interceptors: [v2AuthInterceptor(TOKEN)],
        "grpc.ssl_target_name_override": "localhost",
        "grpc.default_authority": "localhost",
      });
      try {
        return await createClient(RefService, channel)
          .findDefaultBranchName({ repository: { storageName: VS, relativePath: "r.git" } })
          .then(
            () => undefined,
            (e: unknown) => (e as grpc.ServiceError).details,
          );
      } finally {
        channel.close();
      }
    };
    const tlsCredentials = grpc.credentials.createSsl(Buffer.from(ca.certificate));
    expect(await callOver(router.addresses.tls ?? "", tlsCredentials)).toBe("node says: @cluster/r on node-1");
    expect(await callOver(`unix:${router.addresses.unix}`, grpc.credentials.createInsecure())).toBe(
      "node says: @cluster/r on node-1",
    );
    for (const type of ["tls", "unix"]) {
      const { values } = await (registry.getSingleMetric("gitaly_praefect_connections_total") as Counter).get();
      expect(values.find((v) => v.labels.type === type)?.value, type).toBeGreaterThan(0);
    }
  });

  it("stops the node's writes while the client does not read, and propagates the client's cancellation", async () => {
    const call = createClient(RefService, client).findAllBranches({
      repository: { storageName: VS, relativePath: "r.git" },
    }) as grpc.ClientReadableStream<unknown>;
    call.on("error", () => undefined);
    // A slow reader: it takes one message and then stops reading. (A grpc-js client that never
    // starts reading buffers without limit, so the test must read once.)
    await new Promise<void>((resolve) =>
      call.once("data", () => {
        call.pause();
        resolve();
      }),
    );
    const stalledAt = await settled(() => control.branchesWritten);
    expect(stalledAt).toBeGreaterThan(0);
    expect(stalledAt).toBeLessThan(TOTAL);
    call.cancel();
    await waitFor("the node to see the cancellation", async () => control.branchesCancelled, {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
    expect(control.branchesWritten).toBeLessThan(TOTAL);
  });

  it("stops the client's writes while the node does not read, then delivers every message in order", async () => {
    const def = grpcMethodDefinition(RefService.method.updateReferences);
    let written = 0;
    let finished = false;
    const result = new Promise<void>((resolve, reject) => {
      const call = client.makeClientStreamRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        new grpc.Metadata(),
        {},
        (err) => (err ? reject(err) : resolve()),
      );
      const writeNext = () => {
        while (written < TOTAL) {
          const ok = call.write(
            create(UpdateReferencesRequestSchema, {
              repository: written === 0 ? { storageName: VS, relativePath: "r.git" } : undefined,
              updates: [{ reference: Buffer.from(`refs/heads/b${written}`), oldObjectId: Buffer.alloc(CHUNK) }],
            }),
          );
          written++;
          if (!ok) {
            call.once("drain", writeNext);
            return;
          }
        }
        call.end();
        finished = true;
      };
      writeNext();
    });
    const stalledAt = await settled(() => written);
    expect(finished).toBe(false);
    expect(stalledAt).toBeLessThan(TOTAL);
    expect(control.updatesReceived).toEqual([]);

    control.release?.();
    await result;
    expect(control.updatesReceived).toHaveLength(TOTAL);
    expect(control.updatesReceived.slice(0, 3)).toEqual(["refs/heads/b0", "refs/heads/b1", "refs/heads/b2"]);
    expect(control.updatesReceived.at(-1)).toBe(`refs/heads/b${TOTAL - 1}`);
    // The node saw the physical location, the virtual storage and none of the client's credentials.
    expect(control.lastMetadata?.get("virtual_storage")).toEqual([VS]);
    expect(control.lastMetadata?.get("authorization")).toEqual([]);
  });

  it("reports node failures for error-based failover, and a failed write changes no generation", async () => {
    const repository = { storageName: VS, relativePath: "r.git" };
    const generation = (await store.getRepositoryMetadataByPath(VS, "r.git")).generation;
    control.reportedErrors.length = 0;
    const read = createClient(RefService, client).findBranch({ repository, name: Buffer.from("main") });
    await expect(read).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: "node is unwell" });
    const write = createClient(RefService, client).deleteRefs({ repository, refs: [Buffer.from("refs/heads/x")] });
    await expect(write).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE, details: "node is unwell" });
    expect(control.reportedErrors).toEqual([`read:${STORAGE}`, `write:${STORAGE}`]);
    expect((await store.getRepositoryMetadataByPath(VS, "r.git")).generation).toBe(generation);
  });

  it("returns the node's status, message and trailers unchanged", async () => {
    const err = await createClient(RefService, client)
      .findDefaultBranchName({ repository: { storageName: VS, relativePath: "r.git" } })
      .then(
        () => undefined,
        (e: unknown) => e as grpc.ServiceError,
      );
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err?.details).toBe("node says: @cluster/r on node-1");
    expect(err?.metadata.get("x-node-trailer")).toEqual(["kept"]);
    expect(err?.metadata.get("x-bin-bin")).toEqual([Buffer.from([0, 1, 2, 255])]);
  });
});

/** The in-process node: just the RefService methods the tests drive. */
function grpcServiceHandlers(control: NodeControl): grpc.UntypedServiceImplementation {
  const findAllBranches: grpc.handleServerStreamingCall<unknown, unknown> = (call) => {
    call.on("cancelled", () => {
      control.branchesCancelled = true;
    });
    const message = create(FindAllBranchesResponseSchema, { branches: [{ name: Buffer.alloc(CHUNK, 0x61) }] });
    const writeMore = () => {
      while (control.branchesWritten < TOTAL && !call.cancelled) {
        control.branchesWritten++;
        if (!call.write(message)) {
          call.once("drain", writeMore);
          return;
        }
      }
      if (!call.cancelled) call.end();
    };
    writeMore();
  };
  const updateReferences: grpc.handleClientStreamingCall<UpdateReferencesRequest, unknown> = (call, callback) => {
    control.lastMetadata = call.metadata;
    // Reads nothing until released: grpc-js reads only what the handler consumes.
    control.release = () => {
      call.on("data", (req: UpdateReferencesRequest) => {
        for (const u of req.updates) control.updatesReceived.push(Buffer.from(u.reference).toString());
      });
      call.on("end", () => callback(null, create(UpdateReferencesResponseSchema)));
    };
  };
  const findDefaultBranchName: grpc.handleUnaryCall<FindDefaultBranchNameRequest, FindDefaultBranchNameResponse> = (
    call,
    callback,
  ) => {
    const trailers = new grpc.Metadata();
    trailers.set("x-node-trailer", "kept");
    trailers.set("x-bin-bin", Buffer.from([0, 1, 2, 255]));
    const repo = call.request.repository;
    callback({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: `node says: ${repo?.relativePath} on ${repo?.storageName}`,
      metadata: trailers,
    });
  };
  const unwell = (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
    callback({ code: grpc.status.UNAVAILABLE, details: "node is unwell" });
  return { findAllBranches, updateReferences, findDefaultBranchName, findBranch: unwell, deleteRefs: unwell };
}
