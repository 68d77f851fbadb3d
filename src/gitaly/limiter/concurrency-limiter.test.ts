import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { LimitErrorSchema } from "../../gen/errors_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { waitFor } from "../../shared/net.js";
import { type ConcurrencyLimit, ConcurrencyLimiter, type Release, splitMethodName } from "./concurrency-limiter.js";

const RPC = "/gitaly.RepositoryService/RepositoryExists";
const LABELS = { system: "gitaly", grpc_service: "gitaly.RepositoryService", grpc_method: "RepositoryExists" };

type Labels = Record<string, string>;

/** A sample's value; histogram samples are named like "<histogram>_count". */
async function metricValue(registry: Registry, name: string, labels: Labels): Promise<number | undefined> {
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const v of metric.values as { value: number; labels: Labels; metricName?: string }[]) {
      if ((v.metricName ?? metric.name) !== name) continue;
      if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) return v.value;
    }
  }
  return undefined;
}

function limiterWith(limit: Partial<ConcurrencyLimit>): { limiter: ConcurrencyLimiter; registry: Registry } {
  const registry = new Registry();
  const limiter = new ConcurrencyLimiter({
    registry,
    limits: [{ rpc: RPC, maxConcurrency: 1, maxQueueSize: 0, maxQueueWaitMs: 0, ...limit }],
  });
  return { limiter, registry };
}

/** Lets an acquisition settle and reports how it went, without ever waiting on a timer. */
function track(promise: Promise<Release>) {
  const state: { release?: Release; error?: unknown } = {};
  promise.then(
    (release) => {
      state.release = release;
    },
    (error: unknown) => {
      state.error = error;
    },
  );
  return state;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

function expectLimitError(error: unknown, message: string): void {
  expect(error).toBeInstanceOf(RpcError);
  const rpcError = error as RpcError;
  expect(rpcError.code).toBe(Code.RESOURCE_EXHAUSTED);
  expect(rpcError.message).toBe(message);
  // Check the detail as the client will decode it.
  const metadata = rpcError.toServiceError().metadata;
  const bin = metadata.get("grpc-status-details-bin")[0];
  expect(Buffer.isBuffer(bin)).toBe(true);
  const status = fromBinary(StatusSchema, bin as Buffer);
  expect(status.code).toBe(Code.RESOURCE_EXHAUSTED);
  expect(status.details).toHaveLength(1);
  const detail = status.details[0] && anyUnpack(status.details[0], LimitErrorSchema);
  expect(detail?.errorMessage).toBe(message);
  expect(detail?.retryAfter).toMatchObject({ seconds: 0n, nanos: 0 });
}

describe("ConcurrencyLimiter", () => {
  it("admits max_concurrency, queues max_queue_size, rejects the next one at once", async () => {
    const { limiter, registry } = limiterWith({ maxConcurrency: 1, maxQueueSize: 1 });
    const first = track(limiter.acquire(RPC, "repo.git"));
    const second = track(limiter.acquire(RPC, "repo.git"));
    const third = track(limiter.acquire(RPC, "repo.git"));
    await tick();

    expect(first.release).toBeTypeOf("function");
    expect(second.release).toBeUndefined();
    expect(second.error).toBeUndefined();
    expectLimitError(third.error, "maximum queue size reached");
    expect(limiter.stats(RPC)).toEqual({ keys: 1, running: 1, waiting: 1 });
    expect(await metricValue(registry, "gitaly_concurrency_limiting_in_progress", LABELS)).toBe(1);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(1);
    expect(
      await metricValue(registry, "gitaly_requests_dropped_total", {
        ...LABELS,
        reason: "max_size",
        authenticated: "true",
      }),
    ).toBe(1);

    first.release?.();
    await tick();
    expect(second.release).toBeTypeOf("function");
    expect(limiter.stats(RPC)).toEqual({ keys: 1, running: 1, waiting: 0 });
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_in_progress", LABELS)).toBe(1);

    second.release?.();
    second.release?.(); // idempotent: must not free a slot twice
    expect(limiter.stats(RPC)).toEqual({ keys: 0, running: 0, waiting: 0 });
    expect(await metricValue(registry, "gitaly_concurrency_limiting_in_progress", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_acquiring_seconds_count", LABELS)).toBe(2);
  });

  it("keeps a separate budget per key", async () => {
    const { limiter } = limiterWith({ maxConcurrency: 1, maxQueueSize: 1 });
    const a = track(limiter.acquire(RPC, "a.git"));
    const b = track(limiter.acquire(RPC, "b.git"));
    await tick();
    expect(a.release).toBeTypeOf("function");
    expect(b.release).toBeTypeOf("function");
    expect(limiter.stats(RPC)).toEqual({ keys: 2, running: 2, waiting: 0 });
    a.release?.();
    b.release?.();
  });

  it("rejects a waiter after max_queue_wait", async () => {
    const { limiter, registry } = limiterWith({ maxConcurrency: 1, maxQueueSize: 5, maxQueueWaitMs: 20 });
    const holder = await limiter.acquire(RPC, "repo.git");
    const waiting = track(limiter.acquire(RPC, "repo.git"));
    await waitFor("the waiter to time out", async () => waiting.error !== undefined);

    expectLimitError(waiting.error, "maximum time in concurrency queue reached");
    expect(limiter.stats(RPC)).toEqual({ keys: 1, running: 1, waiting: 0 });
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_requests_dropped_total", { ...LABELS, reason: "max_time" })).toBe(1);

    holder();
    expect(limiter.stats(RPC)).toEqual({ keys: 0, running: 0, waiting: 0 });
  });

  it("waits without bound when max_queue_wait and max_queue_size are unset", async () => {
    const { limiter } = limiterWith({ maxConcurrency: 2 });
    const held = [await limiter.acquire(RPC, "r"), await limiter.acquire(RPC, "r")];
    const waiters = Array.from({ length: 10 }, () => track(limiter.acquire(RPC, "r")));
    await tick();
    expect(limiter.stats(RPC)).toEqual({ keys: 1, running: 2, waiting: 10 });
    for (const release of held) release();
    await tick();
    // First come, first served.
    expect(waiters.map((w) => w.release !== undefined)).toEqual([true, true, ...Array(8).fill(false)]);
    for (const w of waiters.slice(0, 2)) w.release?.();
    await tick();
    expect(waiters.map((w) => w.release !== undefined)).toEqual([true, true, true, true, ...Array(6).fill(false)]);
    for (const w of waiters) {
      await waitFor("the next waiter's turn", async () => w.release !== undefined, { intervalMs: 1 });
      w.release?.();
    }
    expect(waiters.every((w) => w.error === undefined)).toBe(true);
    expect(limiter.stats(RPC)).toEqual({ keys: 0, running: 0, waiting: 0 });
  });

  it("takes an aborted caller out of the queue and gives its place to the next", async () => {
    const { limiter, registry } = limiterWith({ maxConcurrency: 1, maxQueueSize: 1 });
    const holder = await limiter.acquire(RPC, "repo.git");
    const controller = new AbortController();
    const aborted = track(limiter.acquire(RPC, "repo.git", controller.signal));
    await tick();
    expect(limiter.stats(RPC)).toEqual({ keys: 1, running: 1, waiting: 1 });

    controller.abort();
    await tick();
    expect(aborted.error).toBeInstanceOf(RpcError);
    expect((aborted.error as RpcError).code).toBe(Code.CANCELLED);
    expect((aborted.error as RpcError).message).toBe("unexpected error when dequeueing request: context canceled");
    expect(await metricValue(registry, "gitaly_requests_dropped_total", { ...LABELS, reason: "other" })).toBe(1);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(0);

    // The queue place is free again.
    const next = track(limiter.acquire(RPC, "repo.git"));
    await tick();
    expect(next.error).toBeUndefined();
    holder();
    await tick();
    expect(next.release).toBeTypeOf("function");
    next.release?.();
    expect(limiter.stats(RPC)).toEqual({ keys: 0, running: 0, waiting: 0 });
  });

  it("counts a caller whose deadline expires while queued as max_time", async () => {
    const { limiter, registry } = limiterWith({ maxConcurrency: 1 });
    const holder = await limiter.acquire(RPC, "repo.git");
    const waiting = track(limiter.acquire(RPC, "repo.git", AbortSignal.timeout(10)));
    await waitFor("the deadline", async () => waiting.error !== undefined);
    expectLimitError(waiting.error, "maximum time in concurrency queue reached");
    expect(await metricValue(registry, "gitaly_requests_dropped_total", { ...LABELS, reason: "max_time" })).toBe(1);
    holder();
  });

  it("does not limit unconfigured methods, zero limits or the empty key", async () => {
    const registry = new Registry();
    const limiter = new ConcurrencyLimiter({
      registry,
      limits: [
        { rpc: RPC, maxConcurrency: 1, maxQueueSize: 1, maxQueueWaitMs: 0 },
        { rpc: "/gitaly.RepositoryService/GetConfig", maxConcurrency: 0, maxQueueSize: 1, maxQueueWaitMs: 0 },
      ],
    });
    expect(limiter.isLimited(RPC)).toBe(true);
    expect(limiter.isLimited("/gitaly.RepositoryService/GetConfig")).toBe(false);
    expect(limiter.isLimited("/gitaly.RefService/FindAllBranches")).toBe(false);
    const releases = await Promise.all(Array.from({ length: 5 }, () => limiter.acquire(RPC, "")));
    for (const r of releases) r();
    expect(limiter.stats(RPC)).toEqual({ keys: 0, running: 0, waiting: 0 });
  });

  it("limits ReplicateRepository to one per repository by default, like upstream", async () => {
    const { limiter, registry } = limiterWith({});
    const rpc = "/gitaly.RepositoryService/ReplicateRepository";
    expect(limiter.limitOf(rpc)).toEqual({ rpc, maxConcurrency: 1, maxQueueSize: 0, maxQueueWaitMs: 0 });
    expect(
      await metricValue(registry, "gitaly_concurrency_limiting_in_progress", {
        ...LABELS,
        grpc_method: "ReplicateRepository",
      }),
    ).toBe(0);
  });

  it("exports zeroed series for every limited RPC from the start", async () => {
    const { registry } = limiterWith({});
    expect(await metricValue(registry, "gitaly_concurrency_limiting_in_progress", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_queued", LABELS)).toBe(0);
    expect(await metricValue(registry, "gitaly_concurrency_limiting_acquiring_seconds_count", LABELS)).toBe(0);
  });

  it("can be rebuilt on the same registry (config reload)", () => {
    const registry = new Registry();
    new ConcurrencyLimiter({ registry, limits: [] });
    expect(() => new ConcurrencyLimiter({ registry, limits: [] })).not.toThrow();
  });
});

describe("splitMethodName", () => {
  it("splits like upstream's protoregistry.SplitMethodName", () => {
    expect(splitMethodName("/gitaly.SmartHTTPService/PostUploadPackWithSidechannel")).toEqual({
      service: "gitaly.SmartHTTPService",
      method: "PostUploadPackWithSidechannel",
    });
    expect(splitMethodName("bogus")).toEqual({ service: "unknown", method: "unknown" });
  });
});
