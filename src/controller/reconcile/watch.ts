// Informers on any collection path, built on client-node's ListWatch, with the
// client-node 2.x gotchas handled:
// - on any error other than 410 Gone (list failure, refused connection, 5xx, abort) the
//   ListWatch emits `error` and stops for good: we restart it with exponential backoff,
//   resuming from its last resourceVersion (a stale one yields 410 → full re-list);
// - `stop()` aborts the request, which also surfaces as an `error`: ignored once stopped;
// - exceptions thrown by event callbacks would be swallowed by the watch's line parser:
//   we catch and report them instead;
// - there is no "synced" signal: we mark a namespace synced after its first list has
//   been applied to the cache;
// - there is no resync: the work queue re-adds known keys itself.
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from "@kubernetes/client-node";
import { type Clock, systemClock, type TimerHandle } from "./clock.js";
import { kubeRequest } from "./kube-http.js";

export type ResourceEventType = "add" | "update" | "delete";

export interface ResourceEvent<T extends KubernetesObject> {
  type: ResourceEventType;
  object: T;
}

export interface WatchResourceOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Collection path: `/apis/gitaly.dev/v1alpha1/gitalyclusters`, `/api/v1/configmaps`, or an already namespaced `/api/v1/namespaces/x/configmaps`. */
  path: string;
  /** Namespaces to watch (one informer each), or "all"/unset for the path as given. */
  namespaces?: readonly string[] | "all";
  labelSelector?: string;
  fieldSelector?: string;
  onEvent?: (event: ResourceEvent<T>) => void;
  /** A watch or list failed (it is restarted after `restartInMs`), or a callback threw (`restartInMs` undefined). */
  onError?: (err: unknown, restartInMs: number | undefined) => void;
  minRestartDelayMs?: number;
  maxRestartDelayMs?: number;
  clock?: Clock;
}

export interface ResourceWatch<T extends KubernetesObject> {
  get(name: string, namespace?: string): T | undefined;
  list(namespace?: string): T[];
  hasSynced(): boolean;
  /** Resolves once every namespace has been listed into the cache. */
  waitForSync(): Promise<void>;
  /** How many times an informer was restarted after an error. */
  readonly restarts: number;
  stop(): Promise<void>;
}

/** Inserts `namespaces/<ns>/` before the resource segment of a cluster-wide collection path. */
export function namespacedPath(path: string, namespace: string): string {
  if (/\/namespaces\/[^/]+\/[^/]+$/.test(path)) return path;
  const i = path.lastIndexOf("/");
  return `${path.slice(0, i)}/namespaces/${encodeURIComponent(namespace)}${path.slice(i)}`;
}

function namespaceOfPath(path: string): string | undefined {
  return /\/namespaces\/([^/]+)\/[^/]+$/.exec(path)?.[1];
}

interface Member<T extends KubernetesObject> {
  path: string;
  namespace: string | undefined;
  informer: ListWatch<T>;
  synced: boolean;
  failures: number;
  restartTimer: TimerHandle | undefined;
}

export function watchResource<T extends KubernetesObject>(opts: WatchResourceOptions<T>): ResourceWatch<T> {
  const clock = opts.clock ?? systemClock;
  const minDelay = opts.minRestartDelayMs ?? 1000;
  const maxDelay = opts.maxRestartDelayMs ?? 30_000;
  const paths =
    opts.namespaces === undefined || opts.namespaces === "all"
      ? [opts.path]
      : [...new Set(opts.namespaces)].map((ns) => namespacedPath(opts.path, ns));
  let stopped = false;
  let restarts = 0;
  let syncWaiters: (() => void)[] = [];
  const members: Member<T>[] = [];

  const allSynced = () => members.every((m) => m.synced);
  const notifySynced = () => {
    if (!allSynced()) return;
    const w = syncWaiters;
    syncWaiters = [];
    for (const f of w) f();
  };
  const deliver = (type: ResourceEventType, object: T) => {
    try {
      opts.onEvent?.({ type, object });
    } catch (err) {
      opts.onError?.(err, undefined);
    }
  };

  for (const path of paths) {
    const query = { labelSelector: opts.labelSelector, fieldSelector: opts.fieldSelector };
    let member: Member<T> | undefined;
    const listFn = async (): Promise<KubernetesListObject<T>> => {
      const list = await kubeRequest<KubernetesListObject<T>>(opts.kubeConfig, path, { query });
      // ListWatch applies the list to its cache right after this promise settles;
      // setImmediate runs after that continuation.
      setImmediate(() => {
        if (!member || stopped) return;
        member.failures = 0;
        member.synced = true;
        notifySynced();
      });
      return list;
    };
    const informer = new ListWatch<T>(
      path,
      new Watch(opts.kubeConfig),
      listFn,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    member = { path, namespace: namespaceOfPath(path), informer, synced: false, failures: 0, restartTimer: undefined };
    const m = member;
    informer.on("add", (o) => {
      m.failures = 0;
      deliver("add", o);
    });
    informer.on("update", (o) => {
      m.failures = 0;
      deliver("update", o);
    });
    informer.on("delete", (o) => deliver("delete", o));
    informer.on("error", (err) => {
      if (stopped || m.restartTimer) return;
      const delay = Math.min(minDelay * 2 ** m.failures, maxDelay);
      m.failures++;
      opts.onError?.(err, delay);
      m.restartTimer = clock.setTimeout(() => {
        m.restartTimer = undefined;
        if (stopped) return;
        restarts++;
        void informer.start().catch((e: unknown) => opts.onError?.(e, undefined));
      }, delay);
    });
    members.push(member);
  }
  for (const m of members) void m.informer.start();

  const owner = (namespace: string | undefined) =>
    members.find((m) => m.namespace === undefined || m.namespace === (namespace ?? ""));

  return {
    get(name, namespace) {
      return owner(namespace)?.informer.get(name, namespace);
    },
    list(namespace) {
      if (namespace === undefined) return members.flatMap((m) => [...m.informer.list()]);
      return [...(owner(namespace)?.informer.list(namespace) ?? [])];
    },
    hasSynced: allSynced,
    waitForSync() {
      if (allSynced()) return Promise.resolve();
      return new Promise((resolve) => syncWaiters.push(resolve));
    },
    get restarts() {
      return restarts;
    },
    async stop() {
      stopped = true;
      for (const m of members) {
        if (m.restartTimer) clock.clearTimeout(m.restartTimer);
        await m.informer.stop();
      }
      notifySynced();
      const w = syncWaiters;
      syncWaiters = [];
      for (const f of w) f();
    },
  };
}
