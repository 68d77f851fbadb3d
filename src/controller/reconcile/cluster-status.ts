// The GitalyCluster status as a pure function of what the reconciler observed. Every
// condition says what it waits on, naming the object or field, so `kubectl describe` is
// enough to know why a cluster is not Ready.
import type { Phase } from "../api/schema.js";
import type { DesiredCondition } from "./conditions.js";

export interface WorkloadObservation {
  /** Desired pods (spec.replicas). */
  replicas: number;
  readyReplicas: number;
  /** Pods already running the current template. */
  updatedReplicas: number;
  /** The controller has seen the latest spec (status.observedGeneration >= metadata.generation). */
  upToDate: boolean;
}

export type JobObservation =
  | { state: "absent" }
  | { state: "running"; name: string; failures: number; message?: string }
  | { state: "succeeded"; name: string }
  | { state: "failed"; name: string; message: string };

export interface TlsObservation {
  mode: "Disabled" | "SelfSigned" | "CertManager" | "Secret";
  ready: boolean;
  reason: string;
  message: string;
  /** Serving certificate expiry (RFC 3339), when known. */
  notAfter?: string;
  secretName?: string;
}

export interface ClusterObservation {
  generation: number;
  paused: boolean;
  /** A spec problem the API server could not catch: the field and why. */
  invalid?: { reason: string; message: string };
  /** Inputs that are missing (e.g. a referenced Secret), as a sentence. */
  waitingFor?: { reason: string; message: string };
  scaleDownRefused?: { requested: number; deployed: number };
  storageResize?: { ok: boolean; message: string };
  databaseKind: "managed" | "external";
  database?: WorkloadObservation;
  migrations: JobObservation;
  tls: TlsObservation;
  gitaly?: WorkloadObservation;
  praefect?: WorkloadObservation;
  /** The cluster has been Ready before (distinguishes Provisioning from Updating). */
  wasReady: boolean;
}

export interface ComputedStatus {
  phase: Phase;
  message: string;
  conditions: DesiredCondition[];
}

function settled(w: WorkloadObservation | undefined): boolean {
  return !!w && w.upToDate && w.readyReplicas >= w.replicas && w.updatedReplicas >= w.replicas;
}

function describeWorkload(what: string, w: WorkloadObservation | undefined): string {
  if (!w) return `${what} not created yet`;
  if (!w.upToDate) return `${what} rollout not yet observed by its controller`;
  return `${what} ${w.readyReplicas}/${w.replicas} ready, ${w.updatedReplicas}/${w.replicas} updated`;
}

export function computeStatus(o: ClusterObservation): ComputedStatus {
  const c = (type: DesiredCondition["type"], ok: boolean | "unknown", reason: string, message: string) =>
    ({ type, status: ok === "unknown" ? "Unknown" : ok ? "True" : "False", reason, message }) as DesiredCondition;

  if (o.paused) {
    return {
      phase: "Paused",
      message: "spec.paused is true: the operator changes nothing until it is false",
      conditions: [c("ReconciliationPaused", true, "Paused", "spec.paused is true")],
    };
  }
  if (o.invalid) {
    return {
      phase: "Failed",
      message: o.invalid.message,
      conditions: [
        c("Ready", false, o.invalid.reason, o.invalid.message),
        c("Degraded", true, o.invalid.reason, o.invalid.message),
        c("Progressing", false, o.invalid.reason, "nothing is applied until the spec is fixed"),
      ],
    };
  }

  const database =
    o.databaseKind === "managed"
      ? settled(o.database)
        ? c("DatabaseReady", true, "ManagedDatabaseReady", "the managed PostgreSQL is ready")
        : c("DatabaseReady", false, "ManagedDatabaseStarting", describeWorkload("PostgreSQL", o.database))
      : o.migrations.state === "succeeded"
        ? c("DatabaseReady", true, "ExternalDatabaseReachable", "sql-ping reached the external database")
        : o.migrations.state === "failed"
          ? c("DatabaseReady", false, "MigrationJobFailed", `sql-ping or sql-migrate failed: ${o.migrations.message}`)
          : c("DatabaseReady", "unknown", "Checking", "waiting for the migration Job's sql-ping");

  const m = o.migrations;
  const migrations =
    m.state === "succeeded"
      ? c("MigrationsApplied", true, "Migrated", `Job ${m.name} applied the Praefect schema`)
      : m.state === "failed"
        ? c("MigrationsApplied", false, "MigrationFailed", `Job ${m.name} failed: ${m.message}`)
        : m.state === "running"
          ? c(
              "MigrationsApplied",
              false,
              "Migrating",
              `Job ${m.name} is running${m.failures > 0 ? ` (${m.failures} failed attempts${m.message ? `: ${m.message}` : ""})` : ""}`,
            )
          : c("MigrationsApplied", false, "Pending", "the migration Job is not created yet");

  const tls = c("TLSReady", o.tls.ready, o.tls.reason, o.tls.message);

  const gitalyOk = settled(o.gitaly);
  const praefectOk = settled(o.praefect);
  const problems: string[] = [];
  if (o.waitingFor) problems.push(o.waitingFor.message);
  if (database.status !== "True") problems.push(`database: ${database.message}`);
  if (migrations.status !== "True") problems.push(`migrations: ${migrations.message}`);
  if (!o.tls.ready) problems.push(`TLS: ${o.tls.message}`);
  if (!gitalyOk) problems.push(describeWorkload("Gitaly", o.gitaly));
  if (!praefectOk)
    problems.push(
      o.praefect || m.state === "succeeded"
        ? describeWorkload("Praefect", o.praefect)
        : "Praefect waits for the migrations",
    );

  const degradedReasons: { reason: string; message: string }[] = [];
  if (o.scaleDownRefused) {
    const { requested, deployed } = o.scaleDownRefused;
    degradedReasons.push({
      reason: "ScaleDownRefused",
      message:
        `spec.gitaly.replicas is ${requested} but ${deployed} Gitaly nodes hold repositories: scaling down is refused ` +
        `until repositories can be drained safely; still running ${deployed} (set spec.gitaly.replicas back to ${deployed})`,
    });
  }
  if (m.state === "failed") degradedReasons.push({ reason: "MigrationFailed", message: migrations.message });
  if (o.storageResize && !o.storageResize.ok)
    degradedReasons.push({ reason: "VolumeExpansionFailed", message: o.storageResize.message });
  // Lost, not merely rolling out or scaling up: every pod runs the current template, yet not all are ready.
  if (
    o.wasReady &&
    o.gitaly &&
    o.gitaly.updatedReplicas >= o.gitaly.replicas &&
    o.gitaly.readyReplicas < o.gitaly.replicas
  )
    degradedReasons.push({ reason: "GitalyNodesUnavailable", message: describeWorkload("Gitaly", o.gitaly) });

  const ready = problems.length === 0;
  const degraded = degradedReasons.length > 0;
  const readyCond = ready
    ? c("Ready", true, "ClusterReady", "every Gitaly node and Praefect router is ready")
    : c("Ready", false, o.waitingFor?.reason ?? "NotReady", problems.join("; "));
  const progressing = ready
    ? c("Progressing", false, "Settled", "nothing left to roll out")
    : c("Progressing", !(m.state === "failed"), m.state === "failed" ? "Stalled" : "Reconciling", problems.join("; "));
  const degradedCond = degraded
    ? c("Degraded", true, degradedReasons[0]?.reason ?? "Degraded", degradedReasons.map((d) => d.message).join("; "))
    : c("Degraded", false, "AsExpected", "no problem found");

  const phase: Phase =
    m.state === "failed"
      ? "Failed"
      : degraded
        ? "Degraded"
        : ready
          ? "Ready"
          : o.wasReady
            ? "Updating"
            : "Provisioning";
  const message = degraded ? degradedCond.message : ready ? readyCond.message : problems.join("; ");
  return { phase, message, conditions: [readyCond, progressing, degradedCond, database, migrations, tls] };
}
