import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { FakeClock } from "./clock.js";
import { ControllerMetrics } from "./metrics.js";
import { WorkQueue } from "./workqueue.js";

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const settle = () => new Promise<void>((r) => setImmediate(r));

describe("WorkQueue", () => {
  it("never processes a key concurrently and coalesces re-adds into one more run", async () => {
    const gates: ReturnType<typeof deferred>[] = [];
    const runs: string[] = [];
    let active = 0;
    let maxActive = 0;
    const q = new WorkQueue<string>({
      name: "t",
      concurrency: 4,
      process: async (key) => {
        active++;
        maxActive = Math.max(maxActive, active);
        runs.push(key);
        const g = deferred();
        gates.push(g);
        await g.promise;
        active--;
        return undefined;
      },
    });
    q.add("a");
    await settle();
    expect(runs).toEqual(["a"]);
    q.add("a");
    q.add("a");
    q.add("a");
    await settle();
    expect(runs).toEqual(["a"]); // still the first run
    gates[0]?.resolve();
    await settle();
    expect(runs).toEqual(["a", "a"]);
    gates[1]?.resolve();
    await q.whenDrained();
    expect(runs).toEqual(["a", "a"]);
    expect(maxActive).toBe(1);
  });

  it("bounds concurrency across keys", async () => {
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const started: string[] = [];
    const q = new WorkQueue<string>({
      name: "t",
      concurrency: 2,
      process: async (key) => {
        started.push(key);
        const g = deferred();
        gates.set(key, g);
        await g.promise;
        return undefined;
      },
    });
    for (const k of ["a", "b", "c"]) q.add(k);
    await settle();
    expect(started).toEqual(["a", "b"]);
    expect(q.len()).toBe(1);
    gates.get("b")?.resolve();
    await settle();
    expect(started).toEqual(["a", "b", "c"]);
    gates.get("a")?.resolve();
    gates.get("c")?.resolve();
    await q.whenDrained();
  });

  it("retries failures with per-key exponential backoff and forgets on success", async () => {
    const clock = new FakeClock();
    let failuresLeft = 3;
    const attempts: number[] = [];
    const errors: number[] = [];
    const q = new WorkQueue<string>({
      name: "t",
      clock,
      process: () => {
        attempts.push(clock.now());
        if (failuresLeft-- > 0) throw new Error("boom");
        return undefined;
      },
      onError: (_k, _e, retryIn) => errors.push(retryIn),
    });
    q.add("k");
    await settle();
    expect(errors).toEqual([5]);
    expect(q.numRequeues("k")).toBe(1);
    expect(clock.pending()).toEqual([5]);
    clock.advance(5);
    await settle();
    expect(clock.pending()).toEqual([10]);
    clock.advance(10);
    await settle();
    expect(clock.pending()).toEqual([20]);
    clock.advance(20);
    await settle();
    expect(errors).toEqual([5, 10, 20]);
    expect(attempts).toEqual([0, 5, 15, 35]);
    expect(q.numRequeues("k")).toBe(0);
    expect(q.isIdle()).toBe(true);
  });

  it("caps the backoff (controller-runtime defaults: 5 ms doubling to 1000 s)", () => {
    const q = new WorkQueue<string>({ name: "t", clock: new FakeClock(), process: () => undefined });
    const delays = Array.from({ length: 30 }, () => q.addRateLimited("k"));
    expect(delays.slice(0, 4)).toEqual([5, 10, 20, 40]);
    expect(Math.max(...delays)).toBe(1_000_000);
    expect(delays.at(-1)).toBe(1_000_000);
    q.forget("k");
    expect(q.addRateLimited("k")).toBe(5);
  });

  it("keeps the earliest of several delayed adds and honours requeueAfterMs", async () => {
    const clock = new FakeClock();
    const runs: number[] = [];
    const q = new WorkQueue<string>({
      name: "t",
      clock,
      process: () => {
        runs.push(clock.now());
        return runs.length === 1 ? { requeueAfterMs: 1000 } : undefined;
      },
    });
    q.addAfter("k", 50);
    q.addAfter("k", 500);
    expect(clock.pending()).toEqual([50]);
    clock.advance(50);
    await settle();
    expect(clock.pending()).toEqual([1000]);
    clock.advance(1000);
    await settle();
    expect(runs).toEqual([50, 1050]);
  });

  it("re-adds every known key on each resync period", async () => {
    const clock = new FakeClock();
    const runs: string[] = [];
    const q = new WorkQueue<string>({
      name: "t",
      clock,
      resyncPeriodMs: 60_000,
      knownKeys: () => ["x", "y"],
      process: (k) => {
        runs.push(k);
        return undefined;
      },
    });
    await settle();
    expect(runs).toEqual([]);
    clock.advance(60_000);
    await q.whenDrained();
    expect(runs.sort()).toEqual(["x", "y"]);
    clock.advance(60_000);
    await q.whenDrained();
    expect(runs).toHaveLength(4);
    await q.shutdown();
    expect(clock.pending()).toEqual([]);
  });

  it("shutdown waits for in-flight work, drops queued keys and ignores new adds", async () => {
    const gate = deferred();
    const done: string[] = [];
    const q = new WorkQueue<string>({
      name: "t",
      process: async (k) => {
        await gate.promise;
        done.push(k);
        return undefined;
      },
    });
    q.add("a");
    q.add("b");
    await settle();
    let finished = false;
    const stopping = q.shutdown().then(() => {
      finished = true;
    });
    await settle();
    expect(finished).toBe(false);
    q.add("c");
    gate.resolve();
    await stopping;
    expect(done).toEqual(["a"]);
    expect(q.isIdle()).toBe(true);
  });

  it("exports the workqueue metrics under client-go names", async () => {
    const registry = new Registry();
    const metrics = ControllerMetrics.forRegistry(registry);
    const clock = new FakeClock();
    let fail = true;
    const q = new WorkQueue<string>({
      name: "mq",
      metrics,
      clock,
      process: () => {
        if (fail) {
          fail = false;
          throw new Error("once");
        }
        return undefined;
      },
    });
    q.add("a");
    await settle();
    clock.advance(5);
    await q.whenDrained();
    const text = await registry.metrics();
    expect(text).toContain('workqueue_adds_total{name="mq"} 2');
    expect(text).toContain('workqueue_retries_total{name="mq"} 1');
    expect(text).toContain('workqueue_depth{name="mq"} 0');
    expect(text).toContain('workqueue_work_duration_seconds_count{name="mq"} 2');
    expect(text).toContain('workqueue_queue_duration_seconds_count{name="mq"} 2');
    expect(ControllerMetrics.forRegistry(registry)).toBe(metrics);
  });
});
