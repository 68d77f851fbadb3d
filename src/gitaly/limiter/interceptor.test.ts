import { create, fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LimitErrorSchema } from "../../gen/errors_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import {
  GetConfigResponseSchema,
  RepositoryExistsRequestSchema,
  RepositoryExistsResponseSchema,
  RepositoryService,
  RepositorySizeResponseSchema,
} from "../../gen/repository_pb.js";
import { RepositorySchema } from "../../gen/shared_pb.js";
import { serverStream, unary } from "../../shared/grpc/handlers.js";
import {
  createClient,
  grpcMethodDefinition,
  grpcServiceDefinition,
  type PromiseClient,
} from "../../shared/grpc/service.js";
import { waitFor } from "../../shared/net.js";
import { ConcurrencyLimiter } from "./concurrency-limiter.js";
import { limiterInterceptor, repositoryKey, targetRepositoryKey } from "./interceptor.js";

const EXISTS = "/gitaly.RepositoryService/RepositoryExists";
const SIZE = "/gitaly.RepositoryService/RepositorySize";
const GET_CONFIG = "/gitaly.RepositoryService/GetConfig";

type Labels = Record<string, string>;

async function metricValue(registry: Registry, name: string, labels: Labels): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = metric?.values.find((v) =>
    Object.entries(labels).every(([k, want]) => String((v.labels as Labels)[k]) === want),
  );
  return value?.value ?? 0;
}

/** Gates that hold handlers of a repository until the test opens them. */
class Gates {
  readonly #waiting = new Map<string, () => void>();
  readonly #promises = new Map<string, Promise<void>>();
  readonly entered: string[] = [];

  wait(key: string): Promise<void> {
    this.entered.push(key);
    let promise = this.#promises.get(key);
    if (!promise) {
      promise = new Promise<void>((resolve) => this.#waiting.set(key, resolve));
      this.#promises.set(key, promise);
    }
    return promise;
  }

  open(key: string): void {
    this.#waiting.get(key)?.();
    this.#waiting.delete(key);
    this.#promises.delete(key);
  }

  count(key: string): number {
    return this.entered.filter((k) => k === key).length;
  }
}

function repo(relativePath: string) {
  return create(RepositorySchema, { storageName: "default", relativePath });
}

describe("limiterInterceptor on a real grpc-js server", () => {
  const registry = new Registry();
  const limiter = new ConcurrencyLimiter({
    registry,
    limits: [
      { rpc: EXISTS, maxConcurrency: 1, maxQueueSize: 1, maxQueueWaitMs: 0 },
      { rpc: SIZE, maxConcurrency: 1, maxQueueSize: 0, maxQueueWaitMs: 30 },
      { rpc: GET_CONFIG, maxConcurrency: 1, maxQueueSize: 0, maxQueueWaitMs: 0 },
    ],
  });
  const server = new grpc.Server({ interceptors: [limiterInterceptor(limiter)] });
  const gates = new Gates();
  let channel: grpc.Client;
  let client: PromiseClient<(typeof RepositoryService)["method"]>;

  const dropped = (method: string, reason: string) =>
    metricValue(registry, "gitaly_requests_dropped_total", {
      grpc_service: "gitaly.RepositoryService",
      grpc_method: method,
      reason,
    });
  const gauge = (name: "in_progress" | "queued", method: string) =>
    metricValue(registry, `gitaly_concurrency_limiting_${name}`, {
      system: "gitaly",
      grpc_service: "gitaly.RepositoryService",
      grpc_method: method,
    });

  beforeAll(async () => {
    server.addService(grpcServiceDefinition(RepositoryService), {
      repositoryExists: unary(async (req: { repository?: { relativePath: string } }) => {
        await gates.wait(`exists:${req.repository?.relativePath ?? ""}`);
        return create(RepositoryExistsResponseSchema, { exists: true });
      }),
      repositorySize: unary(async (req: { repository?: { relativePath: string } }) => {
        await gates.wait(`size:${req.repository?.relativePath ?? ""}`);
        return create(RepositorySizeResponseSchema, { size: 1n });
      }),
      getConfig: serverStream(async function* (req: { repository?: { relativePath: string } }) {
        yield create(GetConfigResponseSchema, { data: Buffer.from("[core]\n") });
        await gates.wait(`config:${req.repository?.relativePath ?? ""}`);
        yield create(GetConfigResponseSchema, { data: Buffer.from("\tbare = true\n") });
      }),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    client = createClient(RepositoryService, channel);
  });

  afterAll(() => {
    channel?.close();
    server.forceShutdown();
  });

  it("runs one call per repository, queues one, and rejects the third with a LimitError", async () => {
    const first = client.repositoryExists({ repository: repo("a.git") });
    await waitFor("the first call to run", async () => gates.count("exists:a.git") === 1);
    const second = client.repositoryExists({ repository: repo("a.git") });
    await waitFor("the second call to queue", async () => limiter.stats(EXISTS).waiting === 1);
    expect(await gauge("queued", "RepositoryExists")).toBe(1);
    expect(await gauge("in_progress", "RepositoryExists")).toBe(1);

    const third = await client.repositoryExists({ repository: repo("a.git") }).then(
      () => undefined,
      (err: grpc.ServiceError) => err,
    );
    expect(third?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(third?.details).toBe("maximum queue size reached");
    const bin = third?.metadata.get("grpc-status-details-bin")[0];
    const status = fromBinary(StatusSchema, bin as Buffer);
    const detail = status.details[0] && anyUnpack(status.details[0], LimitErrorSchema);
    expect(detail?.errorMessage).toBe("maximum queue size reached");
    expect(detail?.retryAfter?.seconds).toBe(0n);
    expect(await dropped("RepositoryExists", "max_size")).toBe(1);

    // Another repository has its own budget.
    const other = client.repositoryExists({ repository: repo("b.git") });
    await waitFor("the other repository's call to run", async () => gates.count("exists:b.git") === 1);
    gates.open("exists:b.git");
    expect((await other).exists).toBe(true);

    // Only the running call reached its handler; the queued one follows once it ends.
    expect(gates.count("exists:a.git")).toBe(1);
    gates.open("exists:a.git");
    expect((await first).exists).toBe(true);
    await waitFor("the queued call to run", async () => gates.count("exists:a.git") === 2);
    gates.open("exists:a.git");
    expect((await second).exists).toBe(true);

    await waitFor("the limiter to drain", async () => limiter.stats(EXISTS).keys === 0);
    expect(await gauge("queued", "RepositoryExists")).toBe(0);
    expect(await gauge("in_progress", "RepositoryExists")).toBe(0);
  });

  it("does not limit requests without a repository", async () => {
    const calls = [1, 2, 3].map(() => client.repositoryExists({}));
    await waitFor("all calls to run at once", async () => gates.count("exists:") === 3);
    gates.open("exists:");
    for (const call of calls) expect((await call).exists).toBe(true);
  });

  it("rejects a caller that waits longer than max_queue_wait", async () => {
    const holder = client.repositorySize({ repository: repo("slow.git") });
    await waitFor("the holder to run", async () => gates.count("size:slow.git") === 1);
    await expect(client.repositorySize({ repository: repo("slow.git") })).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
      details: "maximum time in concurrency queue reached",
    });
    expect(await dropped("RepositorySize", "max_time")).toBe(1);
    expect(gates.count("size:slow.git")).toBe(1);
    gates.open("size:slow.git");
    expect((await holder).size).toBe(1n);
  });

  it("holds a streaming call's slot until the stream ends", async () => {
    const firstChunks: string[] = [];
    const first = (async () => {
      for await (const msg of client.getConfig({ repository: repo("s.git") })) {
        firstChunks.push(Buffer.from(msg.data).toString());
      }
    })();
    await waitFor("the stream to be mid-way", async () => gates.count("config:s.git") === 1);
    expect(firstChunks).toEqual(["[core]\n"]);

    const secondChunks: string[] = [];
    const second = (async () => {
      for await (const msg of client.getConfig({ repository: repo("s.git") })) {
        secondChunks.push(Buffer.from(msg.data).toString());
      }
    })();
    await waitFor("the second stream to queue", async () => limiter.stats(GET_CONFIG).waiting === 1);
    expect(secondChunks).toEqual([]);

    gates.open("config:s.git");
    await first;
    await waitFor("the second stream to run", async () => gates.count("config:s.git") === 2);
    gates.open("config:s.git");
    await second;
    expect(secondChunks).toEqual(["[core]\n", "\tbare = true\n"]);
    await waitFor("the limiter to drain", async () => limiter.stats(GET_CONFIG).keys === 0);
  });

  it("drops a queued call the client cancels, and frees its place", async () => {
    const holder = client.repositoryExists({ repository: repo("c.git") });
    await waitFor("the holder to run", async () => gates.count("exists:c.git") === 1);

    const def = grpcMethodDefinition(RepositoryService.method.repositoryExists);
    const cancelled = new Promise<grpc.ServiceError>((resolve) => {
      const call = channel.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        create(RepositoryExistsRequestSchema, { repository: repo("c.git") }),
        new grpc.Metadata(),
        {},
        (err) => resolve(err as grpc.ServiceError),
      );
      waitFor("the call to queue", async () => limiter.stats(EXISTS).waiting === 1).then(() => call.cancel());
    });
    expect((await cancelled).code).toBe(grpc.status.CANCELLED);
    await waitFor("the server to drop it", async () => (await dropped("RepositoryExists", "other")) === 1);
    expect(limiter.stats(EXISTS).waiting).toBe(0);

    // A client deadline running out while queued counts as max_time, as upstream.
    await expect(
      client.repositoryExists({ repository: repo("c.git") }, { deadline: Date.now() + 300 }),
    ).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await waitFor("the server to drop it", async () => (await dropped("RepositoryExists", "max_time")) === 1);

    expect(gates.count("exists:c.git")).toBe(1);
    gates.open("exists:c.git");
    expect((await holder).exists).toBe(true);
    await waitFor("the limiter to drain", async () => limiter.stats(EXISTS).keys === 0);
    expect(await gauge("queued", "RepositoryExists")).toBe(0);
  });
});

describe("limiting keys", () => {
  it("uses the repository's relative path, as upstream does", () => {
    expect(repositoryKey(EXISTS, create(RepositoryExistsRequestSchema, { repository: repo("x/y.git") }))).toBe(
      "x/y.git",
    );
    expect(repositoryKey(EXISTS, create(RepositoryExistsRequestSchema, {}))).toBe("");
    expect(repositoryKey(EXISTS, undefined)).toBe("");
  });

  it("follows the (target_repository) annotation when given the services", () => {
    const keyOf = targetRepositoryKey([RepositoryService]);
    expect(keyOf(EXISTS, create(RepositoryExistsRequestSchema, { repository: repo("t.git") }))).toBe("t.git");
    expect(keyOf(EXISTS, create(RepositoryExistsRequestSchema, {}))).toBe("");
    expect(keyOf("/gitaly.Unknown/Method", { repository: { relativePath: "u.git" } })).toBe("u.git");
  });
});
