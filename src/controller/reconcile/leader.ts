// Lease-based leader election (coordination.k8s.io/v1), following client-go's rules:
// - a lease is free when it does not exist, has no holder, or its record has not changed
//   for leaseDurationSeconds as measured on OUR clock since we last saw it change (so
//   clock skew between operator replicas does not matter);
// - every write carries the resourceVersion we read: a 409 means another candidate won;
// - the leader renews every retryPeriod and steps down (onStoppedLeading, signal aborted)
//   when no renewal succeeded for renewDeadline, which is shorter than the lease, so it
//   stops before anyone else may take over;
// - a graceful stop releases the lease (empty holder, 1 s duration) so a successor does
//   not wait for expiry.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { KubeConfig } from "@kubernetes/client-node";
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import { httpStatusOf, kubeRequest } from "./kube-http.js";
import type { ControllerMetrics } from "./metrics.js";

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Lease name; also the `name` label of leader_election_master_status. */
  name: string;
  /** Default `<hostname>_<uuid>`. */
  identity?: string;
  leaseDurationSeconds?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Called when this candidate becomes leader; `signal` aborts when leadership ends. */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Called once when leadership ends: lost (renewal failed) or released by stop(). */
  onStoppedLeading?: (reason: "lost" | "released") => void | Promise<void>;
  /** A renewal/acquire attempt failed with an unexpected error (it is retried). */
  onError?: (err: unknown) => void;
  /** After losing the lease, become a candidate again instead of stopping. Default false. */
  rejoinAfterLoss?: boolean;
  metrics?: ControllerMetrics;
  clock?: Clock;
}

interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

/** metav1.MicroTime wants exactly six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

export type LeaderState = "candidate" | "leading" | "stopped";

export class LeaderElector {
  readonly identity: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly clock: Clock;
  private readonly path: string;

  private stateValue: LeaderState = "stopped";
  private timer: TimerHandle | undefined;
  private tick: Promise<void> | undefined;
  private observed: { key: string; at: number } | undefined;
  private lastRenew = 0;
  private abort: AbortController | undefined;
  private stopping = false;
  private observedHolder: string | undefined;

  constructor(private readonly opts: LeaderElectorOptions) {
    this.identity = opts.identity ?? `${hostname()}_${randomUUID()}`;
    this.leaseDurationMs = (opts.leaseDurationSeconds ?? 15) * 1000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (this.renewDeadlineMs >= this.leaseDurationMs) {
      throw new Error("LeaderElector: renewDeadlineMs must be shorter than the lease duration");
    }
    this.clock = opts.clock ?? systemClock;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(opts.namespace)}/leases`;
  }

  get state(): LeaderState {
    return this.stateValue;
  }

  isLeader(): boolean {
    return this.stateValue === "leading";
  }

  /** The holder we last saw on the lease (may be us). */
  get leader(): string | undefined {
    return this.observedHolder;
  }

  /** Becomes a candidate; returns at once (leadership is reported through the callbacks). */
  start(): void {
    if (this.stateValue !== "stopped") return;
    this.stopping = false;
    this.stateValue = "candidate";
    this.setGauge(0);
    this.schedule(0);
  }

  /** Stops campaigning; if leading, releases the lease and calls onStoppedLeading("released"). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    await this.tick;
    const wasLeading = this.stateValue === "leading";
    // A tick cut short by stop() may have just acquired the lease without leading yet.
    if (wasLeading || this.observedHolder === this.identity) {
      try {
        await this.release();
      } catch (err) {
        this.opts.onError?.(err);
      }
    }
    if (wasLeading) await this.endLeadership("released");
    this.stateValue = "stopped";
  }

  private schedule(delayMs: number): void {
    if (this.stopping) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.tick = this.runTick().finally(() => {
        this.tick = undefined;
      });
    }, delayMs);
  }

  private async runTick(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      this.opts.onError?.(err);
    }
    if (this.stopping) return;
    const now = this.clock.now();
    if (this.stateValue === "candidate" && ok) {
      this.stateValue = "leading";
      this.lastRenew = now;
      this.abort = new AbortController();
      this.setGauge(1);
      try {
        await this.opts.onStartedLeading(this.abort.signal);
      } catch (err) {
        this.opts.onError?.(err);
      }
    } else if (this.stateValue === "leading") {
      if (ok) {
        this.lastRenew = now;
      } else if (now - this.lastRenew >= this.renewDeadlineMs) {
        await this.endLeadership("lost");
        if (!this.opts.rejoinAfterLoss) {
          this.stateValue = "stopped";
          return;
        }
        this.stateValue = "candidate";
      }
    }
    this.schedule(this.retryPeriodMs);
  }

  private async endLeadership(reason: "lost" | "released"): Promise<void> {
    if (this.stateValue === "leading") this.stateValue = "candidate";
    this.setGauge(0);
    this.abort?.abort(new Error(`leadership of lease ${this.opts.namespace}/${this.opts.name} ${reason}`));
    this.abort = undefined;
    try {
      await this.opts.onStoppedLeading?.(reason);
    } catch (err) {
      this.opts.onError?.(err);
    }
  }

  private setGauge(v: number): void {
    this.opts.metrics?.leaderStatus.set({ name: this.opts.name }, v);
  }

  private request<T>(method: "GET" | "POST" | "PUT", path: string, body?: unknown): Promise<T> {
    return kubeRequest<T>(this.opts.kubeConfig, path, {
      method,
      body,
      timeoutMs: Math.max(1000, Math.min(this.renewDeadlineMs, 10_000)),
    });
  }

  /** One attempt; true when we hold the lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.clock.now();
    const name = this.opts.name;
    let current: Lease;
    try {
      current = await this.request<Lease>("GET", `${this.path}/${encodeURIComponent(name)}`);
    } catch (err) {
      if (httpStatusOf(err) !== 404) throw err;
      const lease: Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace: this.opts.namespace },
        spec: {
          holderIdentity: this.identity,
          leaseDurationSeconds: this.leaseDurationMs / 1000,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        },
      };
      try {
        await this.request("POST", this.path, lease);
      } catch (e) {
        if (httpStatusOf(e) === 409) return false;
        throw e;
      }
      this.observe(lease.spec ?? {}, now);
      return true;
    }
    const spec = current.spec ?? {};
    this.observe(spec, now);
    const holder = spec.holderIdentity ?? "";
    const duration = (spec.leaseDurationSeconds ?? this.leaseDurationMs / 1000) * 1000;
    const observedAt = this.observed?.at ?? now;
    if (holder !== "" && holder !== this.identity && observedAt + duration > now) return false;
    const mine = holder === this.identity;
    const next: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { ...current.metadata },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseDurationMs / 1000,
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    };
    try {
      await this.request("PUT", `${this.path}/${encodeURIComponent(name)}`, next);
    } catch (e) {
      if (httpStatusOf(e) === 409) return false;
      throw e;
    }
    this.observe(next.spec ?? {}, now);
    return true;
  }

  private observe(spec: LeaseSpec, now: number): void {
    this.observedHolder = spec.holderIdentity ?? undefined;
    const key = JSON.stringify([spec.holderIdentity ?? "", spec.renewTime ?? "", spec.acquireTime ?? ""]);
    if (this.observed?.key !== key) this.observed = { key, at: now };
  }

  private async release(): Promise<void> {
    const path = `${this.path}/${encodeURIComponent(this.opts.name)}`;
    const current = await this.request<Lease>("GET", path);
    if (current.spec?.holderIdentity !== this.identity) return;
    const now = this.clock.now();
    await this.request("PUT", path, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { ...current.metadata },
      spec: {
        ...current.spec,
        holderIdentity: null,
        leaseDurationSeconds: 1,
        acquireTime: microTime(now),
        renewTime: microTime(now),
      },
    });
  }
}
