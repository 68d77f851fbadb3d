// Kubernetes Events (core/v1) for reconcile steps, shown by `kubectl describe`.
// Repeats of the same event for the same object bump `count` and `lastTimestamp` on the
// existing Event instead of creating a new one, like client-go's recorder.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { httpStatusOf, kubeRequest } from "./kube-http.js";

export type EventType = "Normal" | "Warning";

export interface EventSpec {
  type: EventType;
  /** UpperCamelCase, machine-readable: "Created", "ScaleDownRefused". */
  reason: string;
  message: string;
  /** What was done, for events.k8s.io readers (e.g. "Apply"). Default: the reason. */
  action?: string;
}

export interface RecordedEvent {
  name: string;
  namespace: string;
  count: number;
}

interface CoreEvent {
  metadata: { name: string; namespace: string };
  count?: number;
}

const maxRemembered = 4096;

export class EventRecorder {
  private readonly seen = new Map<string, RecordedEvent>();
  private readonly component: string;
  private readonly host: string;

  constructor(
    private readonly kubeConfig: KubeConfig,
    opts: { component?: string; host?: string } = {},
  ) {
    this.component = opts.component ?? "gitaly-operator";
    this.host = opts.host ?? hostname();
  }

  /** Records an event on `involved` (which must have been read from the server: it needs uid). */
  async emit(involved: KubernetesObject, spec: EventSpec): Promise<RecordedEvent> {
    const name = involved.metadata?.name;
    if (!name || !involved.kind) throw new Error("emitEvent: the involved object needs kind and metadata.name");
    const namespace = involved.metadata?.namespace || "default";
    const key = [
      involved.metadata?.uid ?? "",
      involved.kind,
      namespace,
      name,
      spec.type,
      spec.reason,
      spec.message,
    ].join("\u0000");
    const now = new Date().toISOString();
    const known = this.seen.get(key);
    if (known) {
      try {
        const count = known.count + 1;
        await kubeRequest(this.kubeConfig, `/api/v1/namespaces/${known.namespace}/events/${known.name}`, {
          method: "PATCH",
          contentType: "application/merge-patch+json",
          body: { count, lastTimestamp: now },
        });
        const updated = { ...known, count };
        this.remember(key, updated);
        return updated;
      } catch (err) {
        // The Event expired (default TTL 1 h) or was deleted: start a new one.
        if (httpStatusOf(err) !== 404)
          throw new Error(`emit event ${spec.reason} on ${involved.kind} ${name}`, { cause: err });
      }
    }
    const eventName = `${name}.${Date.now().toString(16)}${randomBytes(3).toString("hex")}`;
    const body = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: eventName, namespace },
      involvedObject: {
        apiVersion: involved.apiVersion,
        kind: involved.kind,
        name,
        namespace: involved.metadata?.namespace,
        uid: involved.metadata?.uid,
        resourceVersion: involved.metadata?.resourceVersion,
      },
      type: spec.type,
      reason: spec.reason,
      message: spec.message,
      action: spec.action ?? spec.reason,
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
      source: { component: this.component, host: this.host },
      reportingComponent: this.component,
      reportingInstance: this.host,
    };
    try {
      const created = await kubeRequest<CoreEvent>(this.kubeConfig, `/api/v1/namespaces/${namespace}/events`, {
        method: "POST",
        body,
      });
      const rec = { name: created.metadata.name, namespace, count: created.count ?? 1 };
      this.remember(key, rec);
      return rec;
    } catch (err) {
      throw new Error(`emit event ${spec.reason} on ${involved.kind} ${namespace}/${name}`, { cause: err });
    }
  }

  private remember(key: string, rec: RecordedEvent): void {
    this.seen.delete(key);
    this.seen.set(key, rec);
    if (this.seen.size > maxRemembered) {
      const oldest = this.seen.keys().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }
}

const defaultRecorders = new WeakMap<KubeConfig, EventRecorder>();

/** Records an event with a shared per-KubeConfig recorder (component "gitaly-operator"). */
export function emitEvent(kubeConfig: KubeConfig, involved: KubernetesObject, spec: EventSpec): Promise<RecordedEvent> {
  let rec = defaultRecorders.get(kubeConfig);
  if (!rec) {
    rec = new EventRecorder(kubeConfig);
    defaultRecorders.set(kubeConfig, rec);
  }
  return rec.emit(involved, spec);
}
