// Per-RPC concurrency limiting ([[concurrency]]), keyed per repository like upstream's
// limithandler: each (RPC, key) pair gets its own slots and its own queue.
//
// Semantics (upstream internal/limiter/concurrency_limiter.go):
// - up to max_concurrency calls per key run at once;
// - with max_queue_size > 0, at most max_concurrency + max_queue_size calls per key may be
//   admitted (running or waiting); one more is rejected at once ("max_size");
// - with max_queue_wait > 0, a caller waiting longer is rejected ("max_time"); so is one
//   whose own deadline runs out while queued;
// - a caller that goes away leaves the queue ("other");
// - max_concurrency <= 0 disables the limit; an empty key is never limited.
// Waiters are served first come, first served.
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { type DropReason, dequeuedError, maxQueueSizeError, maxQueueTimeError } from "./errors.js";

export interface ConcurrencyLimit {
  /** Full method name: "/gitaly.RepositoryService/ReplicateRepository". */
  rpc: string;
  /** Calls per key running at once; <= 0 means unlimited. */
  maxConcurrency: number;
  /** Callers per key allowed to wait; <= 0 means no bound. */
  maxQueueSize: number;
  /** Milliseconds a caller may wait for a slot; <= 0 means no bound. */
  maxQueueWaitMs: number;
}

export const REPLICATE_REPOSITORY_RPC = "/gitaly.RepositoryService/ReplicateRepository";

/** Upstream always limits ReplicateRepository to one call per repository unless configured. */
export const DEFAULT_REPLICATE_REPOSITORY_LIMIT: ConcurrencyLimit = {
  rpc: REPLICATE_REPOSITORY_RPC,
  maxConcurrency: 1,
  maxQueueSize: 0,
  maxQueueWaitMs: 0,
};

/** Ends one call's hold on its slot. Calling it more than once is harmless. */
export type Release = () => void;

export interface ConcurrencyLimiterOptions {
  limits: readonly ConcurrencyLimit[];
  registry: Registry;
  /** Buckets of gitaly_concurrency_limiting_acquiring_seconds ([prometheus] grpc_latency_buckets). */
  latencyBuckets?: readonly number[];
  /** The `authenticated` label of gitaly_requests_dropped_total. */
  authenticated?: boolean;
}

type MethodLabel = "system" | "grpc_service" | "grpc_method";

interface Metrics {
  inProgress: Gauge<MethodLabel>;
  queued: Gauge<MethodLabel>;
  acquiringSeconds: Histogram<MethodLabel>;
  dropped: Counter<MethodLabel | "reason" | "authenticated">;
}

/** Reuses a metric already registered under `name` (e.g. by a limiter built before a reload). */
function registered<M>(registry: Registry, name: string, make: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? make();
}

function createMetrics(registry: Registry, buckets: readonly number[] | undefined): Metrics {
  const labelNames = ["system", "grpc_service", "grpc_method"] as const;
  return {
    inProgress: registered(
      registry,
      "gitaly_concurrency_limiting_in_progress",
      () =>
        new Gauge({
          name: "gitaly_concurrency_limiting_in_progress",
          help: "Gauge of number of concurrent in-progress calls",
          labelNames,
          registers: [registry],
        }),
    ),
    queued: registered(
      registry,
      "gitaly_concurrency_limiting_queued",
      () =>
        new Gauge({
          name: "gitaly_concurrency_limiting_queued",
          help: "Gauge of number of queued calls",
          labelNames,
          registers: [registry],
        }),
    ),
    acquiringSeconds: registered(
      registry,
      "gitaly_concurrency_limiting_acquiring_seconds",
      () =>
        new Histogram({
          name: "gitaly_concurrency_limiting_acquiring_seconds",
          help: "Histogram of time calls are rate limited (in seconds)",
          labelNames,
          ...(buckets && buckets.length > 0 ? { buckets: [...buckets] } : {}),
          registers: [registry],
        }),
    ),
    dropped: registered(
      registry,
      "gitaly_requests_dropped_total",
      () =>
        new Counter({
          name: "gitaly_requests_dropped_total",
          help: "Number of requests dropped from the queue",
          labelNames: ["system", "grpc_service", "grpc_method", "reason", "authenticated"] as const,
          registers: [registry],
        }),
    ),
  };
}

/** "/gitaly.RepositoryService/ReplicateRepository" → service and method labels, as upstream splits them. */
export function splitMethodName(fullMethod: string): { service: string; method: string } {
  const trimmed = fullMethod.startsWith("/") ? fullMethod.slice(1) : fullMethod;
  const slash = trimmed.indexOf("/");
  if (slash < 0) return { service: "unknown", method: "unknown" };
  return { service: trimmed.slice(0, slash), method: trimmed.slice(slash + 1) };
}

type Waiter = () => void;

/** The slots and queue of one key. Dropped as soon as no caller refers to it. */
interface KeyState {
  refs: number;
  /** Calls holding a slot. */
  running: number;
  /** Calls admitted past the queue-size check (running or waiting). */
  admitted: number;
  /** Insertion-ordered, so iteration is FIFO. */
  waiters: Set<Waiter>;
}

export interface LimiterStats {
  keys: number;
  running: number;
  waiting: number;
}

/** A deadline (AbortSignal.timeout, or a reason named TimeoutError) counts as max_time, like upstream. */
function isDeadline(reason: unknown): boolean {
  return reason instanceof Error && reason.name === "TimeoutError";
}

class MethodLimiter {
  readonly #keys = new Map<string, KeyState>();
  readonly #labels: Record<MethodLabel, string>;
  readonly #dropLabels: Record<MethodLabel | "authenticated", string>;

  constructor(
    readonly limit: ConcurrencyLimit,
    readonly metrics: Metrics,
    authenticated: boolean,
  ) {
    const { service, method } = splitMethodName(limit.rpc);
    this.#labels = { system: "gitaly", grpc_service: service, grpc_method: method };
    this.#dropLabels = { ...this.#labels, authenticated: String(authenticated) };
    // Like upstream, the series exist (at zero) from start-up for every limited RPC.
    metrics.inProgress.set(this.#labels, 0);
    metrics.queued.set(this.#labels, 0);
    metrics.acquiringSeconds.zero(this.#labels);
  }

  stats(): LimiterStats {
    let running = 0;
    let waiting = 0;
    for (const state of this.#keys.values()) {
      running += state.running;
      waiting += state.waiters.size;
    }
    return { keys: this.#keys.size, running, waiting };
  }

  #ref(key: string): KeyState {
    let state = this.#keys.get(key);
    if (!state) {
      state = { refs: 0, running: 0, admitted: 0, waiters: new Set() };
      this.#keys.set(key, state);
    }
    state.refs++;
    return state;
  }

  #unref(key: string, state: KeyState): void {
    state.refs--;
    if (state.refs === 0) this.#keys.delete(key);
  }

  #drop(reason: DropReason): void {
    this.metrics.dropped.inc({ ...this.#dropLabels, reason });
  }

  #wake(state: KeyState): void {
    for (const waiter of state.waiters) {
      if (state.running >= this.limit.maxConcurrency) return;
      state.running++;
      waiter();
    }
  }

  acquire(key: string, signal: AbortSignal | undefined): Promise<Release> {
    const { maxConcurrency, maxQueueSize, maxQueueWaitMs } = this.limit;
    const bounded = maxQueueSize > 0;
    const state = this.#ref(key);
    const start = performance.now();

    if (bounded) {
      if (state.admitted >= maxConcurrency + maxQueueSize) {
        this.#unref(key, state);
        this.#drop("max_size");
        return Promise.reject(maxQueueSizeError());
      }
      state.admitted++;
    }
    this.metrics.queued.inc(this.#labels);

    return new Promise<Release>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;

      const leaveQueue = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        state.waiters.delete(granted);
        this.metrics.queued.dec(this.#labels);
      };

      const fail = (reason: DropReason, error: Error) => {
        leaveQueue();
        if (bounded) state.admitted--;
        this.#unref(key, state);
        this.#drop(reason);
        reject(error);
      };

      // Called once `state.running` already counts this caller.
      const granted: Waiter = () => {
        leaveQueue();
        this.metrics.inProgress.inc(this.#labels);
        this.metrics.acquiringSeconds.observe(this.#labels, (performance.now() - start) / 1000);
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.metrics.inProgress.dec(this.#labels);
          state.running--;
          if (bounded) state.admitted--;
          this.#wake(state);
          this.#unref(key, state);
        });
      };

      const onAbort = () => {
        if (isDeadline(signal?.reason)) fail("max_time", maxQueueTimeError());
        else fail("other", dequeuedError("context canceled"));
      };

      if (signal?.aborted) {
        onAbort();
        return;
      }
      if (state.running < maxConcurrency) {
        state.running++;
        granted();
        return;
      }
      state.waiters.add(granted);
      if (maxQueueWaitMs > 0) timer = setTimeout(() => fail("max_time", maxQueueTimeError()), maxQueueWaitMs);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

const noRelease: Release = () => {};

export class ConcurrencyLimiter {
  readonly #methods = new Map<string, MethodLimiter>();

  /**
   * Builds one limiter per configured RPC (a later entry for the same RPC wins), plus
   * upstream's default for ReplicateRepository when that RPC is not configured.
   */
  constructor({ limits, registry, latencyBuckets, authenticated = true }: ConcurrencyLimiterOptions) {
    const metrics = createMetrics(registry, latencyBuckets);
    const byRpc = new Map<string, ConcurrencyLimit>();
    for (const limit of limits) byRpc.set(limit.rpc, limit);
    if (!byRpc.has(REPLICATE_REPOSITORY_RPC)) byRpc.set(REPLICATE_REPOSITORY_RPC, DEFAULT_REPLICATE_REPOSITORY_LIMIT);
    for (const limit of byRpc.values()) {
      if (limit.maxConcurrency > 0)
        this.#methods.set(limit.rpc, new MethodLimiter({ ...limit }, metrics, authenticated));
    }
  }

  /** Whether calls of this method go through the limiter at all. */
  isLimited(fullMethod: string): boolean {
    return this.#methods.has(fullMethod);
  }

  /** The effective limit of a method, if it is limited. */
  limitOf(fullMethod: string): Readonly<ConcurrencyLimit> | undefined {
    return this.#methods.get(fullMethod)?.limit;
  }

  /**
   * Waits for a slot for `key` (the repository's relative path) and resolves with the
   * function that gives it back, which the caller must call when the RPC ends. Rejects
   * with an RpcError: ResourceExhausted + LimitError when the queue is full or the wait
   * too long, Cancelled when `signal` aborts first. Unlimited methods and the empty key
   * resolve at once.
   */
  acquire(fullMethod: string, key: string, signal?: AbortSignal): Promise<Release> {
    const method = this.#methods.get(fullMethod);
    if (!method || key === "") return Promise.resolve(noRelease);
    return method.acquire(key, signal);
  }

  /** Current occupancy of one method, for tests and debugging. */
  stats(fullMethod: string): LimiterStats {
    return this.#methods.get(fullMethod)?.stats() ?? { keys: 0, running: 0, waiting: 0 };
  }
}
