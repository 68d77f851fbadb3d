// Writes with server-side apply: the operator declares the fields it owns under one field
// manager; fields set by other managers survive, and re-applying corrects hand edits of
// ours (drift correction) without a read-modify-write cycle.
import {
  type KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
  type V1OwnerReference,
} from "@kubernetes/client-node";
import { kubeRequest } from "./kube-http.js";

export const DEFAULT_FIELD_MANAGER = "gitaly-operator";

export interface ApplyOptions {
  /** Default "gitaly-operator". */
  fieldManager?: string;
  /** Take over fields owned by other managers instead of failing with 409. Default true. */
  force?: boolean;
  dryRun?: boolean;
}

const objectApis = new WeakMap<KubeConfig, KubernetesObjectApi>();

function objectApi(kubeConfig: KubeConfig): KubernetesObjectApi {
  let api = objectApis.get(kubeConfig);
  if (!api) {
    // One client per KubeConfig: it caches API discovery (kind → resource) per group version.
    api = KubernetesObjectApi.makeApiClient(kubeConfig);
    objectApis.set(kubeConfig, api);
  }
  return api;
}

function describe(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace ? `${obj.metadata.namespace}/` : "";
  return `${obj.kind ?? "?"} ${ns}${obj.metadata?.name ?? "?"}`;
}

/**
 * Server-side applies `obj` (any kind, built-in or custom) and returns the object as
 * stored. `obj` must be the complete desired state of the fields we manage: fields we
 * applied before and leave out now are removed. Never pass resourceVersion or
 * managedFields read back from the server.
 */
export async function applyObject<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  obj: T,
  opts: ApplyOptions = {},
): Promise<T> {
  if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
    throw new Error(`applyObject: apiVersion, kind and metadata.name are required (${describe(obj)})`);
  }
  const path = knownResourcePath(obj);
  if (path) {
    // The kinds the operator writes go through one keep-alive connection pool; client-node's
    // generic API builds a new agent (and TLS session) per call.
    try {
      return await kubeRequest<T>(kubeConfig, path, {
        method: "PATCH",
        contentType: "application/apply-patch+yaml",
        query: {
          fieldManager: opts.fieldManager ?? DEFAULT_FIELD_MANAGER,
          force: opts.force ?? true,
          ...(opts.dryRun ? { dryRun: "All" } : {}),
        },
        body: obj,
      });
    } catch (err) {
      throw wrap(`apply ${describe(obj)}`, err);
    }
  }
  try {
    return await objectApi(kubeConfig).patch(
      obj,
      undefined,
      opts.dryRun ? "All" : undefined,
      opts.fieldManager ?? DEFAULT_FIELD_MANAGER,
      opts.force ?? true,
      PatchStrategy.ServerSideApply,
    );
  } catch (err) {
    throw wrap(`apply ${describe(obj)}`, err);
  }
}

/** group/version → plural of the kinds the operator writes; others are discovered by client-node. */
const KNOWN_PLURALS: Record<string, string> = {
  "v1/Secret": "secrets",
  "v1/ConfigMap": "configmaps",
  "v1/Service": "services",
  "v1/PersistentVolumeClaim": "persistentvolumeclaims",
  "apps/v1/StatefulSet": "statefulsets",
  "apps/v1/Deployment": "deployments",
  "batch/v1/Job": "jobs",
  "policy/v1/PodDisruptionBudget": "poddisruptionbudgets",
  "cert-manager.io/v1/Certificate": "certificates",
};

/** The object's REST path when its kind is one the operator writes and it is namespaced. */
export function knownResourcePath(obj: KubernetesObject): string | undefined {
  const plural = KNOWN_PLURALS[`${obj.apiVersion}/${obj.kind}`];
  const ns = obj.metadata?.namespace;
  const name = obj.metadata?.name;
  if (!plural || !ns || !name || !obj.apiVersion) return undefined;
  const base = obj.apiVersion.includes("/") ? `/apis/${obj.apiVersion}` : `/api/${obj.apiVersion}`;
  return `${base}/namespaces/${encodeURIComponent(ns)}/${plural}/${encodeURIComponent(name)}`;
}

/**
 * Whether `actual` (read back from the API server) already holds everything `desired` says:
 * objects by subset (the server adds defaults and status), arrays element by element with the
 * same length (a removed element is a change), and `data` maps exactly (a removed Secret or
 * ConfigMap key is a change). When in doubt the answer is false, and the caller applies.
 */
export function coversDesired(desired: unknown, actual: unknown, key = ""): boolean {
  if (desired === actual) return true;
  if (Array.isArray(desired)) {
    return (
      Array.isArray(actual) && actual.length === desired.length && desired.every((d, i) => coversDesired(d, actual[i]))
    );
  }
  if (desired !== null && typeof desired === "object") {
    if (actual === null || typeof actual !== "object" || Array.isArray(actual)) return false;
    const a = actual as Record<string, unknown>;
    const d = desired as Record<string, unknown>;
    if (key === "data" && Object.keys(a).length !== Object.keys(d).length) return false;
    return Object.entries(d).every(([k, v]) => v === undefined || coversDesired(v, a[k], k));
  }
  return false;
}

function wrap(what: string, err: unknown): Error {
  const e = err as { code?: unknown; body?: unknown; message?: string };
  const body = typeof e.body === "string" ? safeParse(e.body) : e.body;
  const reason =
    typeof body === "object" && body && "message" in body ? String(body.message) : (e.message ?? String(err));
  const wrapped = new Error(`${what}: ${reason}`, { cause: err });
  if (typeof e.code === "number") Object.assign(wrapped, { statusCode: e.code });
  return wrapped;
}

function safeParse(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/**
 * Returns a copy of `obj` whose metadata.ownerReferences holds `owner` as the controlling
 * owner (controller: true, blockOwnerDeletion: true), replacing any earlier reference to it.
 */
export function setOwnerReference<T extends KubernetesObject>(obj: T, owner: KubernetesObject): T {
  const uid = owner.metadata?.uid;
  if (!owner.apiVersion || !owner.kind || !owner.metadata?.name || !uid) {
    throw new Error(`setOwnerReference: owner ${describe(owner)} needs apiVersion, kind, name and uid`);
  }
  const ownerNs = owner.metadata.namespace;
  if (ownerNs && obj.metadata?.namespace && ownerNs !== obj.metadata.namespace) {
    throw new Error(`setOwnerReference: ${describe(obj)} cannot be owned by ${describe(owner)} in another namespace`);
  }
  const others = (obj.metadata?.ownerReferences ?? []).filter((r) => r.uid !== uid);
  if (others.some((r) => r.controller)) {
    throw new Error(`setOwnerReference: ${describe(obj)} already has another controlling owner`);
  }
  const ref: V1OwnerReference = {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name,
    uid,
    controller: true,
    blockOwnerDeletion: true,
  };
  return { ...obj, metadata: { ...obj.metadata, ownerReferences: [...others, ref] } };
}

/** The controlling owner reference of an object, if any. */
export function controllerOf(obj: KubernetesObject): V1OwnerReference | undefined {
  return obj.metadata?.ownerReferences?.find((r) => r.controller);
}

export interface StatusTarget {
  /** "" for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
  namespace?: string;
  name: string;
}

export interface StatusOptions {
  /** Default "gitaly-operator"; managedFields records it with subresource "status". */
  fieldManager?: string;
  /** Fail with 409 if the object changed since this version (e.g. status computed from a stale spec). */
  resourceVersion?: string;
}

export function resourcePath(t: Omit<StatusTarget, "kind">): string {
  const base = t.group === "" ? `/api/${t.version}` : `/apis/${t.group}/${t.version}`;
  const ns = t.namespace ? `/namespaces/${encodeURIComponent(t.namespace)}` : "";
  return `${base}${ns}/${t.plural}/${encodeURIComponent(t.name)}`;
}

/**
 * Server-side applies `status` through the status subresource. Apply rather than a merge
 * patch: status is declared whole each reconcile, so a field we stop reporting disappears
 * without writing explicit nulls, no read-modify-write is needed, and the spec (owned by
 * users) cannot be touched. Returns the stored object.
 */
export async function updateStatus<T extends KubernetesObject>(
  kubeConfig: KubeConfig,
  target: StatusTarget,
  status: Record<string, unknown>,
  opts: StatusOptions = {},
): Promise<T> {
  const apiVersion = target.group === "" ? target.version : `${target.group}/${target.version}`;
  const metadata: Record<string, string> = { name: target.name };
  if (target.namespace) metadata.namespace = target.namespace;
  if (opts.resourceVersion) metadata.resourceVersion = opts.resourceVersion;
  const path = `${resourcePath(target)}/status`;
  try {
    return await kubeRequest<T>(kubeConfig, path, {
      method: "PATCH",
      contentType: PatchStrategy.ServerSideApply,
      query: { fieldManager: opts.fieldManager ?? DEFAULT_FIELD_MANAGER, force: true },
      body: { apiVersion, kind: target.kind, metadata, status },
    });
  } catch (err) {
    throw wrap(`update status of ${target.kind} ${target.namespace ?? ""}/${target.name}`, err);
  }
}
