// A generic controller: informers on a primary kind and on the kinds it owns feed a
// work queue of primary keys ("namespace/name"); events on an owned object enqueue its
// controlling owner (from ownerReferences). Workers start only after every cache has
// synced, and then every known primary key is reconciled once.
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { Registry } from "prom-client";
import { controllerOf } from "./apply.js";
import { ControllerMetrics, type ReconcileResultLabel } from "./metrics.js";
import { type ResourceEvent, type ResourceWatch, watchResource } from "./watch.js";
import { WorkQueue } from "./workqueue.js";

export interface ObjectKey {
  namespace: string;
  name: string;
}

/** "namespace/name", or "name" for cluster-scoped objects. */
export function keyOf(obj: { metadata?: { namespace?: string; name?: string } }): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name ?? ""}` : (obj.metadata?.name ?? "");
}

export function parseKey(key: string): ObjectKey {
  const i = key.indexOf("/");
  return i < 0 ? { namespace: "", name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export interface ReconcileRequest<T extends KubernetesObject> extends ObjectKey {
  key: string;
  /** The primary object from the informer cache; undefined once it is deleted. */
  object: T | undefined;
}

export interface ReconcileResult {
  /** Reconcile again after this delay (e.g. to renew a certificate), with the backoff reset. */
  requeueAfterMs?: number;
  /** Reconcile again after the rate-limited backoff (waiting for something, not an error). */
  requeue?: boolean;
}

export interface WatchedResource {
  /** Collection path without namespace, e.g. `/apis/apps/v1/statefulsets`. */
  path: string;
  labelSelector?: string;
}

export interface ControllerOptions<T extends KubernetesObject> {
  /** `controller` label of the metrics and `name` of the workqueue metrics. */
  name: string;
  kubeConfig: KubeConfig;
  primary: WatchedResource & { apiVersion: string; kind: string };
  /** Kinds whose objects carry a controlling ownerReference to a primary object. */
  owned?: readonly WatchedResource[];
  namespaces?: readonly string[] | "all";
  reconcile: (req: ReconcileRequest<T>) => Promise<ReconcileResult | undefined> | ReconcileResult | undefined;
  /** Different primary objects reconciled at once. Default 4. */
  concurrency?: number;
  /** Re-reconcile every primary object this often. Default 10 min; 0 disables. */
  resyncPeriodMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  registry?: Registry;
  onError?: (key: string, err: unknown) => void;
  onWatchError?: (path: string, err: unknown) => void;
}

export class Controller<T extends KubernetesObject> {
  private primaryWatch: ResourceWatch<T> | undefined;
  private readonly ownedWatches = new Map<string, ResourceWatch<KubernetesObject>>();
  private queue: WorkQueue<string> | undefined;
  private readonly metrics: ControllerMetrics | undefined;
  private running = false;

  constructor(private readonly opts: ControllerOptions<T>) {
    this.metrics = opts.registry ? ControllerMetrics.forRegistry(opts.registry) : undefined;
    // Like controller-runtime, expose zeros from the start so rate() and alerts work at once.
    const controller = opts.name;
    this.metrics?.reconcileErrors.inc({ controller }, 0);
    for (const result of ["success", "error", "requeue", "requeue_after"] as const) {
      this.metrics?.reconcileTotal.inc({ controller, result }, 0);
    }
  }

  /** The primary objects' cache (after start). */
  get primaryCache(): ResourceWatch<T> {
    if (!this.primaryWatch) throw new Error(`controller ${this.opts.name} is not started`);
    return this.primaryWatch;
  }

  /** The cache of an owned kind, by its path as given in `owned`. */
  ownedCache<O extends KubernetesObject = KubernetesObject>(path: string): ResourceWatch<O> {
    const w = this.ownedWatches.get(path);
    if (!w) throw new Error(`controller ${this.opts.name} does not watch ${path}`);
    return w as ResourceWatch<O>;
  }

  /** Queues a primary key for reconciliation. */
  enqueue(key: string): void {
    this.queue?.add(key);
  }

  /** Resolves once nothing is queued or being reconciled (delayed retries excepted). */
  whenIdle(): Promise<void> {
    return this.queue?.whenDrained() ?? Promise.resolve();
  }

  /** Starts informers, waits for their caches, then starts the workers. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const { kubeConfig, namespaces, primary } = this.opts;
    const primaryGroupVersion = primary.apiVersion;
    const onPrimary = (e: ResourceEvent<T>) => this.enqueue(keyOf(e.object));
    const onOwned = (e: ResourceEvent<KubernetesObject>) => {
      const ref = controllerOf(e.object);
      if (!ref || ref.kind !== primary.kind || group(ref.apiVersion) !== group(primaryGroupVersion)) return;
      const ns = e.object.metadata?.namespace;
      this.enqueue(ns ? `${ns}/${ref.name}` : ref.name);
    };
    this.primaryWatch = watchResource<T>({
      kubeConfig,
      path: primary.path,
      namespaces,
      labelSelector: primary.labelSelector,
      onEvent: onPrimary,
      onError: (err) => this.opts.onWatchError?.(primary.path, err),
    });
    for (const o of this.opts.owned ?? []) {
      this.ownedWatches.set(
        o.path,
        watchResource<KubernetesObject>({
          kubeConfig,
          path: o.path,
          namespaces,
          labelSelector: o.labelSelector,
          onEvent: onOwned,
          onError: (err) => this.opts.onWatchError?.(o.path, err),
        }),
      );
    }
    await Promise.all([
      this.primaryWatch.waitForSync(),
      ...[...this.ownedWatches.values()].map((w) => w.waitForSync()),
    ]);
    if (!this.running) return;
    const primaryWatch = this.primaryWatch;
    this.queue = new WorkQueue<string>({
      name: this.opts.name,
      concurrency: this.opts.concurrency ?? 4,
      baseDelayMs: this.opts.baseDelayMs,
      maxDelayMs: this.opts.maxDelayMs,
      resyncPeriodMs: this.opts.resyncPeriodMs ?? 600_000,
      knownKeys: () => primaryWatch.list().map((o) => keyOf(o)),
      metrics: this.metrics,
      process: (key) => this.reconcileKey(key),
      onError: (key, err) => this.opts.onError?.(key, err),
    });
    for (const o of primaryWatch.list()) this.queue.add(keyOf(o));
  }

  /** Stops the informers and waits for reconciles in progress. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all([this.primaryWatch?.stop(), ...[...this.ownedWatches.values()].map((w) => w.stop())]);
    await this.queue?.shutdown();
  }

  private async reconcileKey(key: string): Promise<ReconcileResult | undefined> {
    const { namespace, name } = parseKey(key);
    const object = this.primaryWatch?.get(name, namespace || undefined);
    const controller = this.opts.name;
    const started = performance.now();
    let label: ReconcileResultLabel = "success";
    try {
      const result = (await this.opts.reconcile({ key, namespace, name, object })) ?? undefined;
      if (result?.requeue) label = "requeue";
      else if (result?.requeueAfterMs !== undefined) label = "requeue_after";
      return result;
    } catch (err) {
      label = "error";
      this.metrics?.reconcileErrors.inc({ controller });
      throw err;
    } finally {
      this.metrics?.reconcileTotal.inc({ controller, result: label });
      this.metrics?.reconcileTime.observe({ controller }, (performance.now() - started) / 1000);
    }
  }
}

function group(apiVersion: string): string {
  const i = apiVersion.indexOf("/");
  return i < 0 ? "" : apiVersion.slice(0, i);
}
