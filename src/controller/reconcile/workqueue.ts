// A work queue with client-go semantics, driven by a processing function:
// - a key is never processed by two workers at once; adds while it is processing are
//   coalesced into one more run after the current one finishes;
// - at most `concurrency` different keys are processed at the same time;
// - failures are retried with a per-key exponential backoff (5 ms doubling up to 1000 s,
//   controller-runtime's default), reset by `forget(key)` (done on success);
// - an optional resync re-adds every known key periodically, because client-node
//   informers never resync on their own.
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import type { ControllerMetrics } from "./metrics.js";

/** What a processing run asks for; `undefined` means done. */
export interface ProcessResult {
  /** Run this key again after this many milliseconds (success: the backoff is reset). */
  requeueAfterMs?: number;
  /** Run this key again after the rate-limited backoff, as for an error, without logging one. */
  requeue?: boolean;
}

export interface WorkQueueOptions<K> {
  /** The `name` label of the workqueue_* metrics. */
  name: string;
  /** Handles one key; a throw is retried with backoff. */
  process: (key: K) => Promise<ProcessResult | undefined> | ProcessResult | undefined;
  /** Different keys processed in parallel. Default 1. */
  concurrency?: number;
  /** First retry delay; doubles per consecutive failure. Default 5 ms. */
  baseDelayMs?: number;
  /** Cap of the retry delay. Default 1000 s. */
  maxDelayMs?: number;
  /** Re-add every key from `knownKeys` this often. Off when unset or 0. */
  resyncPeriodMs?: number;
  knownKeys?: () => Iterable<K>;
  /** Called when `process` throws, after the retry is scheduled. */
  onError?: (key: K, err: unknown, retryInMs: number) => void;
  metrics?: ControllerMetrics;
  clock?: Clock;
}

export class WorkQueue<K> {
  private readonly queue: K[] = [];
  /** Keys waiting to be processed (in `queue`, or to be re-queued once their run finishes). */
  private readonly dirty = new Set<K>();
  private readonly processing = new Set<K>();
  private readonly addedAt = new Map<K, number>();
  private readonly waiting = new Map<K, { at: number; timer: TimerHandle }>();
  private readonly failures = new Map<K, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private resyncTimer: TimerHandle | undefined;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  private readonly concurrency: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly clock: Clock;

  constructor(private readonly opts: WorkQueueOptions<K>) {
    this.concurrency = Math.max(1, opts.concurrency ?? 1);
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 1_000_000;
    this.clock = opts.clock ?? systemClock;
    this.scheduleResync();
  }

  /** Queues a key now. No-op if it is already queued or the queue is shutting down. */
  add(key: K): void {
    if (this.shuttingDown) return;
    this.opts.metrics?.workqueueAdds.inc({ name: this.opts.name });
    if (this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, this.clock.now());
    if (this.processing.has(key)) return;
    this.queue.push(key);
    this.updateDepth();
    this.pump();
  }

  /** Queues a key after a delay; an earlier pending delay for the same key wins. */
  addAfter(key: K, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + delayMs;
    const existing = this.waiting.get(key);
    if (existing && existing.at <= at) return;
    if (existing) this.clock.clearTimeout(existing.timer);
    const timer = this.clock.setTimeout(() => {
      this.waiting.delete(key);
      this.add(key);
    }, delayMs);
    this.waiting.set(key, { at, timer });
  }

  /** Queues a key after its backoff and counts a failure; returns the delay used. */
  addRateLimited(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = Math.min(this.baseDelayMs * 2 ** n, this.maxDelayMs);
    this.opts.metrics?.workqueueRetries.inc({ name: this.opts.name });
    this.addAfter(key, delay);
    return delay;
  }

  /** Resets the key's backoff. */
  forget(key: K): void {
    this.failures.delete(key);
  }

  /** Consecutive failures recorded for a key. */
  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }

  /** Keys ready to be processed (excludes running and delayed keys). */
  len(): number {
    return this.queue.length;
  }

  /** True when nothing is queued, running or waiting on a delay. */
  isIdle(): boolean {
    return this.queue.length === 0 && this.processing.size === 0 && this.waiting.size === 0;
  }

  /** Resolves once nothing is queued or running (delayed keys are not waited for). */
  whenDrained(): Promise<void> {
    if (this.queue.length === 0 && this.processing.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops accepting keys, drops queued and delayed ones, and resolves once the runs
   * already in progress have finished.
   */
  async shutdown(): Promise<void> {
    this.shuttingDown = true;
    if (this.resyncTimer) this.clock.clearTimeout(this.resyncTimer);
    for (const w of this.waiting.values()) this.clock.clearTimeout(w.timer);
    this.waiting.clear();
    for (const k of this.queue) this.dirty.delete(k);
    this.queue.length = 0;
    this.updateDepth();
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.dirty.clear();
    this.notifyIdle();
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  private scheduleResync(): void {
    const period = this.opts.resyncPeriodMs ?? 0;
    const known = this.opts.knownKeys;
    if (period <= 0 || !known || this.shuttingDown) return;
    this.resyncTimer = this.clock.setTimeout(() => {
      for (const k of known()) this.add(k);
      this.scheduleResync();
    }, period);
  }

  private pump(): void {
    while (!this.shuttingDown && this.processing.size < this.concurrency && this.queue.length > 0) {
      const key = this.queue.shift() as K;
      this.dirty.delete(key);
      this.processing.add(key);
      this.updateDepth();
      const added = this.addedAt.get(key);
      this.addedAt.delete(key);
      if (added !== undefined) {
        this.opts.metrics?.workqueueQueueDuration.observe({ name: this.opts.name }, (this.clock.now() - added) / 1000);
      }
      const run = this.run(key);
      this.inFlight.add(run);
      void run.finally(() => this.inFlight.delete(run));
    }
  }

  private async run(key: K): Promise<void> {
    const started = this.clock.now();
    try {
      const result = await this.opts.process(key);
      if (result?.requeue) {
        this.addRateLimited(key);
      } else {
        this.forget(key);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      }
    } catch (err) {
      const delay = this.shuttingDown ? 0 : this.addRateLimited(key);
      this.opts.onError?.(key, err, delay);
    } finally {
      this.opts.metrics?.workqueueWorkDuration.observe({ name: this.opts.name }, (this.clock.now() - started) / 1000);
      this.processing.delete(key);
      if (this.dirty.has(key) && !this.shuttingDown) this.queue.push(key);
      this.updateDepth();
      this.pump();
      if (this.queue.length === 0 && this.processing.size === 0) this.notifyIdle();
    }
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private updateDepth(): void {
    this.opts.metrics?.workqueueDepth.set({ name: this.opts.name }, this.queue.length);
  }
}
