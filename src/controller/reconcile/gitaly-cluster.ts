// The GitalyCluster reconciler: read the cluster and what it owns from the informer caches,
// gather the inputs only the API server has (secret values, certificates), build the desired
// objects with the pure builders, server-side apply them in dependency order, and publish a
// status computed from what was observed. Every step is idempotent; a reconcile that finds
// nothing to change makes no write besides the (no-op) applies.
import { randomBytes } from "node:crypto";
import type {
  KubeConfig,
  KubernetesObject,
  V1Deployment,
  V1Job,
  V1Secret,
  V1StatefulSet,
} from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import { readCertificate } from "../../shared/tls/certificates.js";
import {
  API_VERSION,
  type GitalyCluster,
  GROUP,
  KIND,
  PLURAL,
  type ResolvedGitalyClusterSpec,
  resolveSpec,
  SpecError,
  VERSION,
} from "../api/resource.js";
import type { GitalyClusterStatus } from "../api/schema.js";
import { parseDuration, parseQuantity } from "../api/units.js";
import {
  applyOrder,
  type BuildInput,
  buildClusterObjects,
  CA_CERT_KEY,
  CERT_MANAGER_API_VERSION,
  type CertManagerCertificate,
  type ClusterObjectNames,
  certManagerCertificate,
  clusterObjectNames,
  LABEL_COMPONENT,
  LABEL_INSTANCE,
  LABEL_MANAGED_BY,
  MANAGED_BY,
  MAX_CLUSTER_NAME_LENGTH,
  NEW_TOKEN_KEY,
  OLD_TOKEN_KEY,
  objectLabels,
  secretValue,
  TLS_CERT_KEY,
  TLS_KEY_KEY,
  TOKEN_FILE_NAME,
} from "../resources/index.js";
import {
  initialRotationState,
  type ProcessSample,
  type RotationState,
  rotationWanted,
  type StepInput,
  stepRotation,
  type TokenKind,
} from "../rotation/machine.js";
import { type ScrapeTarget, scrapeTargets } from "../rotation/scrape.js";
import { prepareTokens, type StoredToken, type StoredTokens, tokensAfterStep } from "../rotation/tokens.js";
import { ensureClusterCertificates, servingCertificateHosts } from "../tls/index.js";
import { applyObject, coversDesired, setOwnerReference, updateStatus } from "./apply.js";
import {
  type ClusterObservation,
  computeStatus,
  type JobObservation,
  type WorkloadObservation,
} from "./cluster-status.js";
import { type DesiredCondition, isTrue, mergeConditions } from "./conditions.js";
import { Controller, type ReconcileRequest, type ReconcileResult } from "./controller.js";
import { EventRecorder } from "./events.js";
import { httpStatusOf, kubeRequest } from "./kube-http.js";
import { podScrapeTargets, rotationCondition, rotationStateFromStatus, rotationStatus } from "./rotation-status.js";

export const CONTROLLER_NAME = "gitalycluster";
const MANAGED_SELECTOR = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;

/** The kinds a GitalyCluster owns, watched so a change or deletion triggers a reconcile. */
export const OWNED_PATHS = {
  secrets: "/api/v1/secrets",
  configMaps: "/api/v1/configmaps",
  services: "/api/v1/services",
  statefulSets: "/apis/apps/v1/statefulsets",
  deployments: "/apis/apps/v1/deployments",
  jobs: "/apis/batch/v1/jobs",
  pdbs: "/apis/policy/v1/poddisruptionbudgets",
} as const;

export interface GitalyClusterControllerOptions {
  kubeConfig: KubeConfig;
  /** Watched namespaces, or "all". */
  namespaces: readonly string[] | "all";
  /** Image with gitaly and praefect when spec.image is unset. */
  defaultImage: string;
  defaultPostgresImage?: string;
  /** For certificate SANs ("cluster.local"); unset leaves the FQDN forms out. */
  clusterDomain?: string;
  logger: Logger;
  registry?: Registry;
  concurrency?: number;
  resyncPeriodMs?: number;
  now?: () => Date;
  events?: EventRecorder;
  /** How often to look again for inputs that cannot be watched (user Secrets, cert-manager). Default 15 s. */
  missingInputRetryMs?: number;
  /** Where the rotation reads each server's metrics; default: the pods' IPs. */
  scrapeTargets?: (cluster: GitalyCluster) => Promise<ScrapeTarget[]>;
  /** Failures must stay at zero this long before enforcement returns. Default 60 s. */
  rotationQuietPeriodMs?: number;
  /** Observation interval while a rotation is in progress. Default 5 s. */
  rotationIntervalMs?: number;
}

/** Annotation that aborts the rotation to the generation it names. */
export const ABORT_ROTATION_ANNOTATION = "gitaly.dev/abort-rotation";
const DEFAULT_QUIET_PERIOD_MS = 60_000;
const DEFAULT_ROTATION_INTERVAL_MS = 5_000;

export const DEFAULT_POSTGRES_IMAGE = "docker.io/library/postgres:17.6";
/** Re-check inputs the operator cannot watch (user Secrets) this often while they are missing. */
const MISSING_INPUT_RETRY_MS = 15_000;
/** Never sleep longer than this on a certificate renewal date (clock jumps, long validity). */
const MAX_REQUEUE_MS = 12 * 3600_000;

interface TlsInputs {
  observation: ClusterObservation["tls"];
  issued?: BuildInput["tls"];
  clientCa?: string;
  requeueAfterMs?: number;
}

class WaitingError extends Error {
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

function randomToken(): string {
  // 32 random bytes, URL-safe: fits a TOML string, an HTTP header and a file without quoting.
  return randomBytes(32).toString("base64url");
}

export class GitalyClusterReconciler {
  readonly controller: Controller<GitalyCluster>;
  private readonly events: EventRecorder;
  private readonly now: () => Date;
  private readonly retryMs: number;
  private readonly rotationMemory = new Map<string, RotationState>();

  constructor(private readonly opts: GitalyClusterControllerOptions) {
    this.events = opts.events ?? new EventRecorder(opts.kubeConfig);
    this.now = opts.now ?? (() => new Date());
    this.retryMs = opts.missingInputRetryMs ?? MISSING_INPUT_RETRY_MS;
    this.controller = new Controller<GitalyCluster>({
      name: CONTROLLER_NAME,
      kubeConfig: opts.kubeConfig,
      primary: { path: `/apis/${GROUP}/${VERSION}/${PLURAL}`, apiVersion: API_VERSION, kind: KIND },
      owned: Object.values(OWNED_PATHS).map((path) => ({ path, labelSelector: MANAGED_SELECTOR })),
      namespaces: opts.namespaces,
      reconcile: (req) => this.reconcile(req),
      ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
      ...(opts.resyncPeriodMs !== undefined ? { resyncPeriodMs: opts.resyncPeriodMs } : {}),
      ...(opts.registry ? { registry: opts.registry } : {}),
      onError: (key, err) => opts.logger.warn({ cluster: key, err: String(err) }, "reconcile failed; retrying"),
      onWatchError: (path, err) => opts.logger.warn({ path, err: String(err) }, "watch failed; restarting"),
    });
  }

  start(): Promise<void> {
    return this.controller.start();
  }

  stop(): Promise<void> {
    return this.controller.stop();
  }

  private cached<T extends KubernetesObject>(path: string, namespace: string, name: string): T | undefined {
    return this.controller.ownedCache<T>(path).get(name, namespace);
  }

  async reconcile(req: ReconcileRequest<GitalyCluster>): Promise<ReconcileResult | undefined> {
    const cluster = req.object;
    // Deleted: the garbage collector removes what we own (PVCs are retained on purpose).
    if (!cluster || cluster.metadata.deletionTimestamp) {
      this.rotationMemory.delete(req.key);
      return undefined;
    }
    const log = this.opts.logger.child({ cluster: req.key, generation: cluster.metadata.generation });
    const generation = cluster.metadata.generation ?? 0;
    const names = clusterObjectNames(req.name);
    const base = {
      generation,
      paused: cluster.spec.paused === true,
      databaseKind: cluster.spec.database?.external ? ("external" as const) : ("managed" as const),
      migrations: { state: "absent" } as JobObservation,
      tls: {
        mode: cluster.spec.tls?.mode ?? "SelfSigned",
        ready: false,
        reason: "Pending",
        message: "not checked yet",
      },
      // Degraded and Updating are only reached from Ready; Failed can be reached from both.
      wasReady:
        isTrue(cluster.status?.conditions, "Ready") ||
        cluster.status?.phase === "Updating" ||
        cluster.status?.phase === "Degraded",
    } satisfies Partial<ClusterObservation>;

    if (base.paused) {
      await this.publish(cluster, { ...base }, {});
      return undefined;
    }
    let spec: ResolvedGitalyClusterSpec;
    try {
      if (req.name.length > MAX_CLUSTER_NAME_LENGTH) {
        throw new SpecError([
          {
            path: "metadata.name",
            message: `is ${req.name.length} characters; at most ${MAX_CLUSTER_NAME_LENGTH} fit the derived object names`,
          },
        ]);
      }
      spec = resolveSpec(cluster.spec);
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      await this.publish(cluster, { ...base, invalid: { reason: "InvalidSpec", message: err.message } }, {});
      await this.emit(cluster, "Warning", "InvalidSpec", err.message);
      return undefined;
    }

    // Scaling down would orphan the repositories on the removed nodes: keep what is deployed.
    const deployedGitaly = this.cached<V1StatefulSet>(OWNED_PATHS.statefulSets, req.namespace, names.gitaly);
    const deployedReplicas = deployedGitaly?.spec?.replicas ?? 0;
    const gitalyReplicas = Math.max(spec.gitaly.replicas, deployedReplicas);
    const scaleDownRefused =
      spec.gitaly.replicas < deployedReplicas
        ? { requested: spec.gitaly.replicas, deployed: deployedReplicas }
        : undefined;
    if (
      scaleDownRefused &&
      cluster.status?.conditions?.find((c) => c.type === "Degraded")?.reason !== "ScaleDownRefused"
    ) {
      await this.emit(
        cluster,
        "Warning",
        "ScaleDownRefused",
        `spec.gitaly.replicas ${scaleDownRefused.requested} < ${scaleDownRefused.deployed} deployed Gitaly nodes: refused until repositories can be drained safely`,
      );
    }

    let input: BuildInput;
    let rotation: Awaited<ReturnType<GitalyClusterReconciler["rotate"]>>;
    let tls: ClusterObservation["tls"];
    let requeueAfterMs: number | undefined;
    try {
      const known = this.rotationStateOf(req.key, cluster);
      const rotating =
        (known?.phase ?? "Stable") !== "Stable" ||
        spec.auth.rotation.generation > (known?.generation ?? spec.auth.rotation.generation);
      const secrets = await this.secretInputs(
        cluster,
        spec,
        names,
        rotating || spec.auth.gitalyTokenSecretRef !== undefined || spec.auth.praefectTokenSecretRef !== undefined,
      );
      rotation = await this.rotate(cluster, known, spec, secrets.stored, secrets.user);
      this.rotationMemory.set(req.key, rotation.state);
      const tlsInputs = await this.tlsInputs(cluster, spec, names, gitalyReplicas);
      tls = tlsInputs.observation;
      requeueAfterMs = tlsInputs.requeueAfterMs;
      input = {
        cluster: { name: req.name, namespace: req.namespace, uid: cluster.metadata.uid ?? "" },
        spec,
        defaultImage: this.opts.defaultImage,
        defaultPostgresImage: this.opts.defaultPostgresImage ?? DEFAULT_POSTGRES_IMAGE,
        ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
        gitalyReplicas,
        deployedClaimSizes: {
          ...claimSize(deployedGitaly, "gitaly"),
          ...claimSize(this.cached<V1StatefulSet>(OWNED_PATHS.statefulSets, req.namespace, names.postgres), "postgres"),
        },
        ...(secrets.databasePassword !== undefined ? { databasePassword: secrets.databasePassword } : {}),
        tokens: rotation.tokens,
        transitioning: rotation.transitioning,
        ...(tlsInputs.issued ? { tls: tlsInputs.issued } : {}),
        ...(tlsInputs.clientCa ? { clientCa: tlsInputs.clientCa } : {}),
      };
    } catch (err) {
      if (!(err instanceof WaitingError)) throw err;
      log.info({ reason: err.reason }, err.message);
      await this.publish(
        cluster,
        { ...base, scaleDownRefused, waitingFor: { reason: err.reason, message: err.message } },
        {},
      );
      return { requeueAfterMs: this.retryMs };
    }

    const objects = buildClusterObjects(input);
    const job = this.cached<V1Job>(OWNED_PATHS.jobs, req.namespace, objects.migrationJob.metadata?.name ?? "");
    const migrated = jobObservation(job).state === "succeeded";
    const stored = new Map<string, KubernetesObject>();
    const created: string[] = [];
    for (const obj of applyOrder(objects)) {
      if (objects.generatedSecrets.includes(obj as V1Secret)) continue; // created in secretInputs
      if (obj === objects.praefect && !migrated) continue; // Praefect waits for its schema
      const path = collectionPathOf(obj);
      const cached = path ? this.cached(path, req.namespace, obj.metadata?.name ?? "") : undefined;
      // Nothing to change: skip the request. A hand edit of one of our fields makes the cached
      // object differ, so drift is still corrected (by the watch event it causes).
      if (cached && coversDesired(obj, cached)) {
        stored.set(`${obj.kind}/${obj.metadata?.name}`, cached);
        continue;
      }
      const result = await applyObject(this.opts.kubeConfig, obj);
      stored.set(`${obj.kind}/${obj.metadata?.name}`, result);
      if (path && !cached) {
        log.info({ kind: obj.kind, name: obj.metadata?.name }, "created");
        created.push(`${obj.kind} ${obj.metadata?.name}`);
      }
    }
    if (created.length > 0) await this.emit(cluster, "Normal", "Created", `created ${created.join(", ")}`);
    if (migrated) await this.deleteOldMigrationJobs(req.namespace, req.name, objects.migrationJob.metadata?.name ?? "");
    const storageResize = await this.growVolumes(req.namespace, names, spec, deployedGitaly, gitalyReplicas);

    const get = <T>(kind: string, name: string) => stored.get(`${kind}/${name}`) as T | undefined;
    const migrationJob = get<V1Job>("Job", objects.migrationJob.metadata?.name ?? "") ?? job;
    const praefect =
      get<V1Deployment>("Deployment", names.praefect) ??
      this.cached<V1Deployment>(OWNED_PATHS.deployments, req.namespace, names.praefect);
    const observation: ClusterObservation = {
      ...base,
      ...(scaleDownRefused ? { scaleDownRefused } : {}),
      ...(storageResize ? { storageResize } : {}),
      migrations: jobObservation(migrationJob),
      tls,
      gitaly: workload(get<V1StatefulSet>("StatefulSet", names.gitaly)),
      praefect: workload(praefect),
      ...(spec.database.managed ? { database: workload(get<V1StatefulSet>("StatefulSet", names.postgres)) } : {}),
    };
    const certificates = tls.ready && tls.notAfter ? { secretName: tls.secretName, notAfter: tls.notAfter } : undefined;
    const computed = await this.publish(
      cluster,
      observation,
      { ...(certificates ? { certificates } : {}), auth: rotationStatus(rotation.state) },
      rotationCondition(rotation),
    );
    if (computed.phase === "Ready" && cluster.status?.phase !== "Ready") {
      await this.emit(cluster, "Normal", "Ready", "every Gitaly node and Praefect router is ready");
    }
    if (
      observation.migrations.state === "succeeded" &&
      cluster.status?.conditions?.find((c) => c.type === "MigrationsApplied")?.status !== "True"
    ) {
      await this.emit(cluster, "Normal", "Migrated", `Job ${observation.migrations.name} applied the Praefect schema`);
    }
    if (rotation.state.phase !== "Stable") {
      // The rotation advances on observations of the servers, which the API server does not announce.
      requeueAfterMs = Math.min(
        requeueAfterMs ?? Number.POSITIVE_INFINITY,
        this.opts.rotationIntervalMs ?? DEFAULT_ROTATION_INTERVAL_MS,
      );
    }
    return requeueAfterMs === undefined ? undefined : { requeueAfterMs: Math.min(requeueAfterMs, MAX_REQUEUE_MS) };
  }

  // ---------------------------------------------------------------------------------
  // Inputs

  /**
   * The database password (generated once) and the token Secrets' contents. A token the user
   * brings is read from their Secret and copied into ours by the rotation.
   */
  private async secretInputs(
    cluster: GitalyCluster,
    spec: ResolvedGitalyClusterSpec,
    names: ClusterObjectNames,
    fresh: boolean,
  ): Promise<{ databasePassword?: string; stored: StoredTokens; user: Partial<Record<TokenKind, string>> }> {
    const ns = cluster.metadata.namespace ?? "";
    for (const [field, ref] of [
      ["spec.database.external.passwordSecretRef", spec.database.external?.passwordSecretRef],
      ["spec.database.external.caSecretRef", spec.database.external?.caSecretRef],
    ] as const) {
      if (ref) await this.userSecretValue(ns, ref, field);
    }
    const user: Partial<Record<TokenKind, string>> = {};
    if (spec.auth.gitalyTokenSecretRef)
      user.internal = await this.userSecretValue(ns, spec.auth.gitalyTokenSecretRef, "spec.auth.gitalyTokenSecretRef");
    if (spec.auth.praefectTokenSecretRef)
      user.client = await this.userSecretValue(
        ns,
        spec.auth.praefectTokenSecretRef,
        "spec.auth.praefectTokenSecretRef",
      );
    const databasePassword = spec.database.managed
      ? await this.ensureGeneratedSecret(cluster, ns, names.postgresSecret, "password", "postgres", randomToken())
      : undefined;
    const read = async (name: string, initial: string): Promise<StoredToken> => {
      // During a rotation the Secret is the memory of old and new tokens: read it fresh.
      const secret = fresh ? await this.getSecret(ns, name) : this.cached<V1Secret>(OWNED_PATHS.secrets, ns, name);
      const token = secretValue(secret, TOKEN_FILE_NAME);
      if (!secret || !token) {
        return { token: await this.ensureGeneratedSecret(cluster, ns, name, TOKEN_FILE_NAME, "auth", initial) };
      }
      const old = secretValue(secret, OLD_TOKEN_KEY);
      const next = secretValue(secret, NEW_TOKEN_KEY);
      return { token, ...(old !== undefined ? { old } : {}), ...(next !== undefined ? { new: next } : {}) };
    };
    const stored: StoredTokens = {
      internal: await read(names.gitalyToken, user.internal ?? randomToken()),
      client: await read(names.praefectToken, user.client ?? randomToken()),
    };
    return { ...(databasePassword !== undefined ? { databasePassword } : {}), stored, user };
  }

  /**
   * One step of the token rotation (src/controller/rotation): observes every server when a
   * rotation is wanted or in progress, and decides the token values and the transitioning
   * flag to deliver through the Secrets and ConfigMaps.
   */
  /**
   * The rotation state this process last computed for the cluster, else the one in its status.
   * status.auth is the rotation's memory, but the informer cache can lag our own status write
   * by a reconcile or two, and stepping from a stale state would walk phases again. Only the
   * leader writes status.auth, so what it computed last is the newest; a new leader starts
   * from the status.
   */
  private rotationStateOf(key: string, cluster: GitalyCluster): RotationState | undefined {
    return this.rotationMemory.get(key) ?? rotationStateFromStatus(cluster.status?.auth);
  }

  private async rotate(
    cluster: GitalyCluster,
    known: RotationState | undefined,
    spec: ResolvedGitalyClusterSpec,
    stored: StoredTokens,
    user: Partial<Record<TokenKind, string>>,
  ): Promise<{
    tokens: StoredTokens;
    transitioning: boolean;
    state: RotationState;
    message: string;
    waiting: boolean;
  }> {
    const previous = known ?? initialRotationState(spec.auth.rotation.generation);
    let desired = spec.auth.rotation.generation;
    // Pointing a token reference at another Secret (or changing its value) rotates too.
    const userChanged = (["internal", "client"] as const).some(
      (k) => user[k] !== undefined && user[k] !== stored[k].token,
    );
    if (previous.phase === "Stable" && userChanged) desired = Math.max(desired, previous.generation + 1);
    let before = stored;
    let prepared: StepInput["prepared"];
    if (rotationWanted(previous, desired)) {
      const fresh = spec.auth.rotation.generation > previous.generation;
      const next = {
        internal: user.internal ?? (fresh ? randomToken() : stored.internal.token),
        client: user.client ?? (fresh ? randomToken() : stored.client.token),
      };
      before = prepareTokens(stored, next);
      prepared = {
        from: { internal: tokenGeneration(stored.internal.token), client: tokenGeneration(stored.client.token) },
        to: { internal: tokenGeneration(next.internal), client: tokenGeneration(next.client) },
      };
    }
    const samples = prepared || previous.phase !== "Stable" ? await this.observe(cluster) : [];
    const abort = cluster.metadata.annotations?.[ABORT_ROTATION_ANNOTATION];
    const result = stepRotation(previous, {
      now: this.now(),
      desiredGeneration: desired,
      abortRequested: abort !== undefined && abort === String(previous.targetGeneration),
      ...(prepared ? { prepared } : {}),
      samples,
      quietPeriodMs: this.opts.rotationQuietPeriodMs ?? DEFAULT_QUIET_PERIOD_MS,
    });
    for (const e of result.events) await this.emit(cluster, e.type, e.reason, e.message);
    if (result.waiting && result.message !== previous.lastObservation) {
      await this.emit(cluster, "Normal", "TokenRotationWaiting", result.message);
    }
    return {
      tokens: tokensAfterStep(before, previous, result),
      transitioning: result.delivery.transitioning,
      state: result.state,
      message: result.message,
      waiting: result.waiting,
    };
  }

  /** Every Gitaly and Praefect pod's auth state, from its metrics endpoint. */
  private async observe(cluster: GitalyCluster): Promise<ProcessSample[]> {
    const targets = this.opts.scrapeTargets
      ? await this.opts.scrapeTargets(cluster)
      : await podScrapeTargets(this.opts.kubeConfig, cluster.metadata.namespace ?? "", cluster.metadata.name);
    return scrapeTargets(targets);
  }

  private async userSecretValue(ns: string, ref: { name: string; key: string }, field: string): Promise<string> {
    const secret = await this.getSecret(ns, ref.name);
    if (!secret) throw new WaitingError("SecretNotFound", `${field}: Secret ${ns}/${ref.name} not found`);
    const value = secretValue(secret, ref.key);
    if (value === undefined || value.trim() === "") {
      throw new WaitingError(
        "SecretKeyMissing",
        `${field}: Secret ${ns}/${ref.name} has no key ${JSON.stringify(ref.key)} (or it is empty)`,
      );
    }
    return value;
  }

  private async getSecret(ns: string, name: string): Promise<V1Secret | undefined> {
    try {
      return await kubeRequest<V1Secret>(this.opts.kubeConfig, `/api/v1/namespaces/${ns}/secrets/${name}`);
    } catch (err) {
      if (httpStatusOf(err) === 404) return undefined;
      throw err;
    }
  }

  /**
   * The value of a generated secret: from the cache, else created, else (lost a race with
   * a stale cache) read back. Never overwritten: a token in use must not change under it.
   */
  private async ensureGeneratedSecret(
    cluster: GitalyCluster,
    ns: string,
    name: string,
    key: string,
    component: "auth" | "postgres",
    value: string,
  ): Promise<string> {
    const cached = secretValue(this.cached<V1Secret>(OWNED_PATHS.secrets, ns, name), key);
    if (cached) return cached;
    const secret: V1Secret = setOwnerReference(
      {
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name,
          namespace: ns,
          labels: objectLabels(cluster.metadata.name, component),
        },
        type: "Opaque",
        data: { [key]: Buffer.from(value).toString("base64") },
      },
      cluster,
    );
    try {
      await kubeRequest(this.opts.kubeConfig, `/api/v1/namespaces/${ns}/secrets`, {
        method: "POST",
        body: secret,
        query: { fieldManager: "gitaly-operator" },
      });
      await this.emit(cluster, "Normal", "Created", `created Secret ${name}`);
      return value;
    } catch (err) {
      if (httpStatusOf(err) !== 409) throw err;
      const existing = secretValue(await this.getSecret(ns, name), key);
      if (!existing)
        throw new Error(`Secret ${ns}/${name} exists without key ${key}; delete it to have it generated again`);
      return existing;
    }
  }

  private async tlsInputs(
    cluster: GitalyCluster,
    spec: ResolvedGitalyClusterSpec,
    names: ClusterObjectNames,
    gitalyReplicas: number,
  ): Promise<TlsInputs> {
    const ns = cluster.metadata.namespace ?? "";
    const mode = spec.tls.mode;
    if (mode === "Disabled") {
      return {
        observation: { mode, ready: true, reason: "Disabled", message: "spec.tls.mode is Disabled: plaintext gRPC" },
      };
    }
    if (mode === "Secret") {
      const name = spec.tls.secretName ?? "";
      const cert = await this.userSecretValue(ns, { name, key: TLS_CERT_KEY }, "spec.tls.secretName");
      await this.userSecretValue(ns, { name, key: TLS_KEY_KEY }, "spec.tls.secretName");
      const ca = secretValue(await this.getSecret(ns, name), CA_CERT_KEY);
      return {
        observation: {
          mode,
          ready: true,
          reason: "SecretProvided",
          message: `serving certificate from Secret ${name}${ca ? "" : " (no ca.crt: clients must trust it by other means)"}`,
          secretName: name,
          ...notAfterOf(cert),
        },
        ...(ca ? { clientCa: ca } : {}),
      };
    }
    if (mode === "CertManager") return this.certManagerInputs(cluster, spec, names, gitalyReplicas);
    // SelfSigned: the operator CA. Read both Secrets fresh: a stale cache would re-issue.
    const caSecret = await this.getSecret(ns, names.ca);
    const servingSecret = await this.getSecret(ns, names.tls);
    const pem = (s: V1Secret | undefined) =>
      s
        ? { certificate: secretValue(s, TLS_CERT_KEY) ?? "", privateKey: secretValue(s, TLS_KEY_KEY) ?? "" }
        : undefined;
    const now = this.now();
    const result = await ensureClusterCertificates({
      caPem: pem(caSecret),
      servingPem: pem(servingSecret),
      hosts: servingCertificateHosts({
        cluster: cluster.metadata.name,
        namespace: ns,
        gitalyReplicas,
        ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
      }),
      now,
      durationMs: parseDuration(spec.tls.duration),
      renewBeforeMs: parseDuration(spec.tls.renewBefore),
      commonName: names.gitaly,
      caCommonName: `${cluster.metadata.name}.${ns} gitaly-operator CA`,
    });
    if (result.caAction.action === "issue") {
      await this.emit(
        cluster,
        caSecret ? "Warning" : "Normal",
        "CAIssued",
        `operator CA issued (${result.caAction.reason}: ${result.caAction.detail})`,
      );
    }
    if (result.servingAction.action === "issue") {
      await this.emit(
        cluster,
        "Normal",
        "CertificateIssued",
        `serving certificate issued (${result.servingAction.reason}: ${result.servingAction.detail}); valid until ${result.notAfter.toISOString()}`,
      );
    }
    return {
      observation: {
        mode,
        ready: true,
        reason: "Issued",
        message: `serving certificate valid until ${result.notAfter.toISOString()}, renewed from ${result.renewAt.toISOString()}`,
        secretName: names.tls,
        notAfter: result.notAfter.toISOString().replace(/\.\d{3}Z$/, "Z"),
      },
      issued: {
        caCertificate: result.ca.certificate,
        caPrivateKey: result.ca.privateKey,
        certificate: result.serving.certificate,
        privateKey: result.serving.privateKey,
      },
      clientCa: result.ca.certificate,
      requeueAfterMs: Math.max(1000, result.renewAt.getTime() - now.getTime()),
    };
  }

  /** Applies the cert-manager Certificate and reports whether its Secret is ready to mount. */
  private async certManagerInputs(
    cluster: GitalyCluster,
    spec: ResolvedGitalyClusterSpec,
    names: ClusterObjectNames,
    gitalyReplicas: number,
  ): Promise<TlsInputs> {
    const ns = cluster.metadata.namespace ?? "";
    const certificate = certManagerCertificate({
      cluster: { name: cluster.metadata.name, namespace: ns, uid: cluster.metadata.uid ?? "" },
      spec,
      gitalyReplicas,
      ...(this.opts.clusterDomain ? { clusterDomain: this.opts.clusterDomain } : {}),
      defaultImage: this.opts.defaultImage,
      defaultPostgresImage: "",
      tokens: { internal: { token: "" }, client: { token: "" } },
    });
    if (!certificate) throw new Error("spec.tls.issuerRef is required with mode CertManager");
    let stored: CertManagerCertificate;
    try {
      stored = await applyObject(this.opts.kubeConfig, certificate);
    } catch (err) {
      if (httpStatusOf(err) === 404 || /resource mapping not found|could not find|not found/i.test(String(err))) {
        return {
          observation: {
            mode: "CertManager",
            ready: false,
            reason: "CertManagerNotInstalled",
            message: `spec.tls.mode is CertManager but the API server does not serve ${CERT_MANAGER_API_VERSION} Certificate: install cert-manager, or choose SelfSigned or Secret`,
          },
          requeueAfterMs: this.retryMs,
        };
      }
      throw err;
    }
    const ready = stored.status?.conditions?.find((c) => c.type === "Ready");
    const secret = await this.getSecret(ns, names.tls);
    const cert = secretValue(secret, TLS_CERT_KEY);
    const ca = secretValue(secret, CA_CERT_KEY);
    if (ready?.status !== "True" || !cert) {
      return {
        observation: {
          mode: "CertManager",
          ready: false,
          reason: "CertificateNotReady",
          message: `cert-manager Certificate ${names.tls} (issuer ${spec.tls.issuerRef?.kind}/${spec.tls.issuerRef?.name}) is not ready${ready?.message ? `: ${ready.message}` : ""}`,
        },
        requeueAfterMs: this.retryMs,
      };
    }
    return {
      observation: {
        mode: "CertManager",
        ready: true,
        reason: "CertificateReady",
        message: `cert-manager Certificate ${names.tls} is ready`,
        secretName: names.tls,
        ...notAfterOf(cert),
      },
      ...(ca ? { clientCa: ca } : {}),
    };
  }

  // ---------------------------------------------------------------------------------
  // Housekeeping

  private async deleteOldMigrationJobs(ns: string, cluster: string, current: string): Promise<void> {
    const jobs = this.controller.ownedCache<V1Job>(OWNED_PATHS.jobs).list(ns);
    for (const j of jobs) {
      const labels = j.metadata?.labels ?? {};
      if (labels[LABEL_INSTANCE] !== cluster || labels[LABEL_COMPONENT] !== "migration") continue;
      if (j.metadata?.name === current) continue;
      try {
        await kubeRequest(this.opts.kubeConfig, `/apis/batch/v1/namespaces/${ns}/jobs/${j.metadata?.name}`, {
          method: "DELETE",
          body: { propagationPolicy: "Background" },
        });
      } catch (err) {
        if (httpStatusOf(err) !== 404) throw err;
      }
    }
  }

  /** Grows the Gitaly PVCs when spec.gitaly.storage.size grew (claim templates cannot change). */
  private async growVolumes(
    ns: string,
    names: ClusterObjectNames,
    spec: ResolvedGitalyClusterSpec,
    deployed: V1StatefulSet | undefined,
    replicas: number,
  ): Promise<ClusterObservation["storageResize"]> {
    const deployedSize = deployed?.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage;
    if (!deployedSize || parseQuantity(spec.gitaly.storage.size) <= parseQuantity(String(deployedSize)))
      return undefined;
    const failures: string[] = [];
    for (let i = 0; i < replicas; i++) {
      const pvc = `repo-data-${names.gitaly}-${i}`;
      try {
        await kubeRequest(this.opts.kubeConfig, `/api/v1/namespaces/${ns}/persistentvolumeclaims/${pvc}`, {
          method: "PATCH",
          contentType: "application/merge-patch+json",
          body: { spec: { resources: { requests: { storage: spec.gitaly.storage.size } } } },
        });
      } catch (err) {
        if (httpStatusOf(err) === 404) continue; // not created yet: the template size applies... (see below)
        failures.push(`${pvc}: ${(err as Error).message}`);
      }
    }
    return failures.length === 0
      ? { ok: true, message: `Gitaly volumes resized to ${spec.gitaly.storage.size}` }
      : { ok: false, message: `resizing Gitaly volumes to ${spec.gitaly.storage.size} failed: ${failures.join("; ")}` };
  }

  // ---------------------------------------------------------------------------------
  // Status and events

  private async publish(
    cluster: GitalyCluster,
    observation: ClusterObservation,
    extra: Partial<GitalyClusterStatus>,
    extraCondition?: DesiredCondition,
  ): Promise<ReturnType<typeof computeStatus>> {
    const computed = computeStatus(observation);
    const desiredConditions =
      extraCondition && !observation.paused ? [...computed.conditions, extraCondition] : computed.conditions;
    const previous = cluster.status;
    // While paused, the other conditions keep their last value: alerts and `kubectl wait` must
    // not see a Ready cluster flip because nobody is looking.
    const keep = observation.paused ? (previous?.conditions ?? []).map((c) => c.type) : ["TokenRotation"];
    const conditions = mergeConditions(
      previous?.conditions,
      desiredConditions,
      observation.generation,
      this.now(),
      keep,
    );
    const status: GitalyClusterStatus = {
      observedGeneration: observation.generation,
      phase: computed.phase,
      message: computed.message,
      conditions,
      ...(observation.gitaly ? { gitaly: replicaStatus(observation.gitaly) } : {}),
      ...(observation.praefect ? { praefect: replicaStatus(observation.praefect) } : {}),
      // Status is applied whole: carry the rotation's memory over when this pass did not step it.
      ...(previous?.auth ? { auth: previous.auth } : {}),
      ...extra,
    };
    // No write when nothing changed: a status write is a watch event, and would reconcile again.
    if (previous && sameStatus(previous, status)) return computed;
    await updateStatus(
      this.opts.kubeConfig,
      {
        group: GROUP,
        version: VERSION,
        plural: PLURAL,
        kind: KIND,
        namespace: cluster.metadata.namespace ?? "",
        name: cluster.metadata.name,
      },
      status as Record<string, unknown>,
    );
    return computed;
  }

  private async emit(
    cluster: GitalyCluster,
    type: "Normal" | "Warning",
    reason: string,
    message: string,
  ): Promise<void> {
    try {
      await this.events.emit(cluster, { type, reason, message });
    } catch (err) {
      // An Event is a courtesy: failing to record one must not fail the reconcile.
      this.opts.logger.warn({ reason, err: String(err) }, "could not record event");
    }
  }
}

function claimSize(
  sts: V1StatefulSet | undefined,
  key: "gitaly" | "postgres",
): { gitaly?: string } | { postgres?: string } {
  const size = sts?.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage;
  return size === undefined ? {} : { [key]: String(size) };
}

function notAfterOf(pem: string): { notAfter?: string } {
  try {
    return {
      notAfter: readCertificate(pem)
        .notAfter.toISOString()
        .replace(/\.\d{3}Z$/, "Z"),
    };
  } catch {
    return {};
  }
}

function workload(obj: V1StatefulSet | V1Deployment | undefined): WorkloadObservation | undefined {
  if (!obj) return undefined;
  const replicas = obj.spec?.replicas ?? 1;
  return {
    replicas,
    readyReplicas: obj.status?.readyReplicas ?? 0,
    updatedReplicas: obj.status?.updatedReplicas ?? 0,
    upToDate: (obj.status?.observedGeneration ?? 0) >= (obj.metadata?.generation ?? 0),
  };
}

function replicaStatus(w: WorkloadObservation): { replicas: number; readyReplicas: number } {
  return { replicas: w.replicas, readyReplicas: w.readyReplicas };
}

export function jobObservation(job: V1Job | undefined): JobObservation {
  if (!job) return { state: "absent" };
  const name = job.metadata?.name ?? "";
  const conds = job.status?.conditions ?? [];
  if (conds.some((c) => c.type === "Complete" && c.status === "True") || (job.status?.succeeded ?? 0) > 0) {
    return { state: "succeeded", name };
  }
  const failed = conds.find((c) => c.type === "Failed" && c.status === "True");
  if (failed) return { state: "failed", name, message: failed.message ?? failed.reason ?? "the Job failed" };
  return { state: "running", name, failures: job.status?.failed ?? 0 };
}

/** Status equality ignoring what the API server adds; lastTransitionTime is already carried over. */
function sameStatus(a: GitalyClusterStatus, b: GitalyClusterStatus): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([x], [y]) => x.localeCompare(y))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}

/** The collection path an object of this kind is watched under (to tell created from updated). */
function collectionPathOf(obj: KubernetesObject): string | undefined {
  switch (obj.kind) {
    case "Secret":
      return OWNED_PATHS.secrets;
    case "ConfigMap":
      return OWNED_PATHS.configMaps;
    case "Service":
      return OWNED_PATHS.services;
    case "StatefulSet":
      return OWNED_PATHS.statefulSets;
    case "Deployment":
      return OWNED_PATHS.deployments;
    case "Job":
      return OWNED_PATHS.jobs;
    case "PodDisruptionBudget":
      return OWNED_PATHS.pdbs;
    default:
      return undefined;
  }
}
