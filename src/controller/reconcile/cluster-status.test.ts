import { describe, expect, it } from "vitest";
import { type Condition, conditionSchema } from "../api/schema.js";
import {
  type ClusterObservation,
  type ComputedStatus,
  computeStatus,
  type TlsObservation,
  type WorkloadObservation,
} from "./cluster-status.js";
import { type DesiredCondition, mergeConditions } from "./conditions.js";

const JOB = "demo-migrate-0123456789";

function workload(replicas: number, ready = replicas, updated = replicas, upToDate = true): WorkloadObservation {
  return { replicas, readyReplicas: ready, updatedReplicas: updated, upToDate };
}

const tlsReady: TlsObservation = {
  mode: "SelfSigned",
  ready: true,
  reason: "CertificateValid",
  message: "serving certificate valid until 2031-01-01T00:00:00Z",
  notAfter: "2031-01-01T00:00:00Z",
  secretName: "demo-tls",
};

/** A cluster where everything is ready; each test breaks what it is about. */
function observation(overrides: Partial<ClusterObservation> = {}): ClusterObservation {
  return {
    generation: 4,
    paused: false,
    databaseKind: "managed",
    database: workload(1),
    migrations: { state: "succeeded", name: JOB },
    tls: tlsReady,
    gitaly: workload(3),
    praefect: workload(2),
    wasReady: false,
    ...overrides,
  };
}

function condition(status: ComputedStatus, type: DesiredCondition["type"]): DesiredCondition {
  const found = status.conditions.find((c) => c.type === type);
  if (!found) throw new Error(`no ${type} condition in ${JSON.stringify(status.conditions)}`);
  return found;
}

const STANDARD_TYPES = ["Ready", "Progressing", "Degraded", "DatabaseReady", "MigrationsApplied", "TLSReady"];

describe("computeStatus", () => {
  it("paused: phase Paused and only ReconciliationPaused, whatever else is observed", () => {
    const s = computeStatus(
      observation({ paused: true, invalid: { reason: "InvalidSpec", message: "x" }, gitaly: undefined }),
    );
    expect(s.phase).toBe("Paused");
    expect(s.message).toContain("spec.paused");
    expect(s.conditions).toEqual([
      { type: "ReconciliationPaused", status: "True", reason: "Paused", message: "spec.paused is true" },
    ]);
  });

  it("invalid spec: Failed, Degraded True and Ready False with the spec's reason and message", () => {
    const invalid = { reason: "InvalidSpec", message: "spec.gitaly.replicas: must be at least 1" };
    const s = computeStatus(observation({ invalid }));
    expect(s.phase).toBe("Failed");
    expect(s.message).toBe(invalid.message);
    expect(condition(s, "Ready")).toEqual({ type: "Ready", status: "False", ...invalid });
    expect(condition(s, "Degraded")).toEqual({ type: "Degraded", status: "True", ...invalid });
    expect(condition(s, "Progressing")).toMatchObject({ status: "False", reason: "InvalidSpec" });
    expect(condition(s, "Progressing").message).toContain("spec is fixed");
  });

  it("fresh cluster: Provisioning, Ready False naming everything it waits for", () => {
    const s = computeStatus(
      observation({
        database: undefined,
        migrations: { state: "absent" },
        tls: { mode: "SelfSigned", ready: false, reason: "Issuing", message: "issuing the serving certificate" },
        gitaly: undefined,
        praefect: undefined,
      }),
    );
    expect(s.phase).toBe("Provisioning");
    expect(s.conditions.map((c) => c.type)).toEqual(STANDARD_TYPES);
    const ready = condition(s, "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "NotReady" });
    for (const part of [
      "database: PostgreSQL not created yet",
      "migrations: the migration Job is not created yet",
      "TLS: issuing the serving certificate",
      "Gitaly not created yet",
      "Praefect waits for the migrations",
    ]) {
      expect(ready.message).toContain(part);
    }
    expect(s.message).toBe(ready.message);
    expect(condition(s, "Progressing")).toMatchObject({ status: "True", reason: "Reconciling" });
    expect(condition(s, "Degraded")).toMatchObject({ status: "False", reason: "AsExpected" });
    expect(condition(s, "DatabaseReady")).toMatchObject({ status: "False", reason: "ManagedDatabaseStarting" });
    expect(condition(s, "MigrationsApplied")).toMatchObject({ status: "False", reason: "Pending" });
    expect(condition(s, "TLSReady")).toEqual({
      type: "TLSReady",
      status: "False",
      reason: "Issuing",
      message: "issuing the serving certificate",
    });
  });

  it("managed database starting: DatabaseReady False with the ready and updated counts", () => {
    const s = computeStatus(observation({ database: workload(1, 0, 1), migrations: { state: "absent" } }));
    expect(condition(s, "DatabaseReady")).toEqual({
      type: "DatabaseReady",
      status: "False",
      reason: "ManagedDatabaseStarting",
      message: "PostgreSQL 0/1 ready, 1/1 updated",
    });
  });

  it("managed database ready, migration running: Migrating with the Job name and failure count", () => {
    const s = computeStatus(
      observation({
        migrations: { state: "running", name: JOB, failures: 2, message: "connection refused" },
        praefect: undefined,
      }),
    );
    expect(s.phase).toBe("Provisioning");
    expect(condition(s, "DatabaseReady")).toEqual({
      type: "DatabaseReady",
      status: "True",
      reason: "ManagedDatabaseReady",
      message: "the managed PostgreSQL is ready",
    });
    const migrations = condition(s, "MigrationsApplied");
    expect(migrations).toMatchObject({ status: "False", reason: "Migrating" });
    expect(migrations.message).toBe(`Job ${JOB} is running (2 failed attempts: connection refused)`);
    expect(condition(s, "Ready").message).toContain(`migrations: Job ${JOB} is running`);
    expect(condition(s, "Ready").message).toContain("Praefect waits for the migrations");
    expect(condition(s, "Progressing")).toMatchObject({ status: "True", reason: "Reconciling" });
    expect(condition(s, "Degraded").status).toBe("False");
  });

  it("a running migration without failures says only that it runs", () => {
    const s = computeStatus(observation({ migrations: { state: "running", name: JOB, failures: 0 } }));
    expect(condition(s, "MigrationsApplied").message).toBe(`Job ${JOB} is running`);
  });

  it("migration failed: Failed, Degraded MigrationFailed, MigrationsApplied False with Job and message", () => {
    const s = computeStatus(
      observation({
        migrations: { state: "failed", name: JOB, message: "BackoffLimitExceeded: relation already exists" },
        praefect: undefined,
      }),
    );
    expect(s.phase).toBe("Failed");
    const expected = `Job ${JOB} failed: BackoffLimitExceeded: relation already exists`;
    expect(condition(s, "MigrationsApplied")).toEqual({
      type: "MigrationsApplied",
      status: "False",
      reason: "MigrationFailed",
      message: expected,
    });
    expect(condition(s, "Degraded")).toEqual({
      type: "Degraded",
      status: "True",
      reason: "MigrationFailed",
      message: expected,
    });
    expect(s.message).toBe(expected);
    // Retrying would not help: the operator stops progressing until something changes.
    expect(condition(s, "Progressing")).toMatchObject({ status: "False", reason: "Stalled" });
    expect(condition(s, "Ready").status).toBe("False");
  });

  describe("external database", () => {
    const external = (migrations: ClusterObservation["migrations"]) =>
      computeStatus(observation({ databaseKind: "external", database: undefined, migrations }));

    it("DatabaseReady is Unknown until the migration Job has run", () => {
      for (const m of [
        { state: "absent" } as const,
        { state: "running", name: JOB, failures: 1, message: "dial tcp: connection refused" } as const,
      ]) {
        const s = external(m);
        expect(condition(s, "DatabaseReady")).toMatchObject({ status: "Unknown", reason: "Checking" });
        expect(condition(s, "DatabaseReady").message).toContain("sql-ping");
        expect(condition(s, "Ready").status).toBe("False");
      }
    });

    it("DatabaseReady True once the Job's sql-ping reached the database", () => {
      const s = external({ state: "succeeded", name: JOB });
      expect(condition(s, "DatabaseReady")).toMatchObject({ status: "True", reason: "ExternalDatabaseReachable" });
      expect(s.phase).toBe("Ready");
    });

    it("DatabaseReady False with the Job's message when it failed", () => {
      const s = external({ state: "failed", name: JOB, message: "password authentication failed" });
      expect(condition(s, "DatabaseReady")).toEqual({
        type: "DatabaseReady",
        status: "False",
        reason: "MigrationJobFailed",
        message: "sql-ping or sql-migrate failed: password authentication failed",
      });
    });
  });

  it("all ready: phase Ready, Ready True, Progressing False, Degraded False", () => {
    const s = computeStatus(observation());
    expect(s.phase).toBe("Ready");
    expect(s.conditions).toEqual([
      {
        type: "Ready",
        status: "True",
        reason: "ClusterReady",
        message: "every Gitaly node and Praefect router is ready",
      },
      { type: "Progressing", status: "False", reason: "Settled", message: "nothing left to roll out" },
      { type: "Degraded", status: "False", reason: "AsExpected", message: "no problem found" },
      {
        type: "DatabaseReady",
        status: "True",
        reason: "ManagedDatabaseReady",
        message: "the managed PostgreSQL is ready",
      },
      {
        type: "MigrationsApplied",
        status: "True",
        reason: "Migrated",
        message: `Job ${JOB} applied the Praefect schema`,
      },
      { type: "TLSReady", status: "True", reason: "CertificateValid", message: tlsReady.message },
    ]);
    expect(s.message).toBe("every Gitaly node and Praefect router is ready");
  });

  it("TLS disabled and ready counts as ready", () => {
    const s = computeStatus(
      observation({ tls: { mode: "Disabled", ready: true, reason: "Disabled", message: "spec.tls.mode is Disabled" } }),
    );
    expect(s.phase).toBe("Ready");
    expect(condition(s, "TLSReady")).toMatchObject({ status: "True", reason: "Disabled" });
  });

  it("TLS not ready: TLSReady False with its reason, and Ready False naming TLS", () => {
    const tls: TlsObservation = {
      mode: "CertManager",
      ready: false,
      reason: "CertificateNotReady",
      message: "Certificate demo-tls is not Ready yet",
    };
    const s = computeStatus(observation({ tls }));
    expect(condition(s, "TLSReady")).toEqual({
      type: "TLSReady",
      status: "False",
      reason: "CertificateNotReady",
      message: "Certificate demo-tls is not Ready yet",
    });
    expect(condition(s, "Ready")).toMatchObject({
      status: "False",
      reason: "NotReady",
      message: "TLS: Certificate demo-tls is not Ready yet",
    });
    expect(s.phase).toBe("Provisioning");
  });

  it("after being Ready, a lost Gitaly pod is Degraded GitalyNodesUnavailable", () => {
    const s = computeStatus(observation({ wasReady: true, gitaly: workload(3, 2, 3) }));
    expect(s.phase).toBe("Degraded");
    expect(condition(s, "Degraded")).toEqual({
      type: "Degraded",
      status: "True",
      reason: "GitalyNodesUnavailable",
      message: "Gitaly 2/3 ready, 3/3 updated",
    });
    expect(condition(s, "Ready")).toMatchObject({ status: "False", message: "Gitaly 2/3 ready, 3/3 updated" });
    expect(s.message).toBe("Gitaly 2/3 ready, 3/3 updated");
  });

  it("before ever being Ready, Gitaly pods still starting is Provisioning, not Degraded", () => {
    const s = computeStatus(observation({ wasReady: false, gitaly: workload(3, 1, 3) }));
    expect(s.phase).toBe("Provisioning");
    expect(condition(s, "Degraded").status).toBe("False");
  });

  it("after being Ready, a Praefect rollout in progress is Updating", () => {
    const s = computeStatus(observation({ wasReady: true, praefect: workload(2, 2, 1) }));
    expect(s.phase).toBe("Updating");
    expect(condition(s, "Ready")).toMatchObject({
      status: "False",
      message: "Praefect 2/2 ready, 1/2 updated",
    });
    expect(condition(s, "Progressing")).toMatchObject({ status: "True", reason: "Reconciling" });
    expect(condition(s, "Degraded").status).toBe("False");
  });

  // Scaling up adds nodes that never ran: nothing was lost, the cluster is rolling out.
  it("after being Ready, scaling Gitaly up is Updating, not Degraded", () => {
    const s = computeStatus(observation({ wasReady: true, gitaly: workload(5, 3, 3) }));
    expect(condition(s, "Degraded").status).toBe("False");
    expect(s.phase).toBe("Updating");
  });

  it("a workload whose controller has not observed the latest generation is not settled", () => {
    // Counts from the previous generation all look ready: they must not count.
    const s = computeStatus(observation({ wasReady: true, gitaly: workload(3, 3, 3, false) }));
    expect(s.phase).toBe("Updating");
    expect(condition(s, "Ready")).toMatchObject({
      status: "False",
      message: "Gitaly rollout not yet observed by its controller",
    });
    expect(condition(s, "Progressing").status).toBe("True");

    const db = computeStatus(observation({ database: workload(1, 1, 1, false) }));
    expect(condition(db, "DatabaseReady")).toMatchObject({
      status: "False",
      message: "PostgreSQL rollout not yet observed by its controller",
    });
  });

  it("scale-down refused: Degraded ScaleDownRefused naming the field and both counts, phase Degraded", () => {
    const s = computeStatus(observation({ wasReady: true, scaleDownRefused: { requested: 1, deployed: 3 } }));
    expect(s.phase).toBe("Degraded");
    const degraded = condition(s, "Degraded");
    expect(degraded).toMatchObject({ status: "True", reason: "ScaleDownRefused" });
    expect(degraded.message).toContain("spec.gitaly.replicas is 1");
    expect(degraded.message).toContain("3 Gitaly nodes hold repositories");
    expect(degraded.message).toContain("set spec.gitaly.replicas back to 3");
    expect(s.message).toBe(degraded.message);
    // What is deployed still serves.
    expect(condition(s, "Ready").status).toBe("True");
  });

  it("several degradations: the first reason, every message", () => {
    const s = computeStatus(
      observation({
        wasReady: true,
        scaleDownRefused: { requested: 2, deployed: 3 },
        storageResize: { ok: false, message: "resizing Gitaly volumes to 20Gi failed: forbidden" },
      }),
    );
    const degraded = condition(s, "Degraded");
    expect(degraded.reason).toBe("ScaleDownRefused");
    expect(degraded.message).toContain("spec.gitaly.replicas is 2");
    expect(degraded.message).toContain("resizing Gitaly volumes to 20Gi failed: forbidden");
  });

  it("a failed volume expansion is Degraded VolumeExpansionFailed; a successful one is not", () => {
    const failed = computeStatus(observation({ storageResize: { ok: false, message: "resize failed: quota" } }));
    expect(failed.phase).toBe("Degraded");
    expect(condition(failed, "Degraded")).toMatchObject({
      status: "True",
      reason: "VolumeExpansionFailed",
      message: "resize failed: quota",
    });
    const ok = computeStatus(observation({ storageResize: { ok: true, message: "resized" } }));
    expect(ok.phase).toBe("Ready");
    expect(condition(ok, "Degraded").status).toBe("False");
  });

  it("a missing input: its reason becomes the Ready reason and its message comes first", () => {
    const waitingFor = {
      reason: "SecretNotFound",
      message: "Secret demo-db (spec.database.external.passwordSecretRef) not found",
    };
    const s = computeStatus(
      observation({
        waitingFor,
        databaseKind: "external",
        database: undefined,
        migrations: { state: "absent" },
        gitaly: undefined,
        praefect: undefined,
      }),
    );
    const ready = condition(s, "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "SecretNotFound" });
    expect(ready.message.startsWith(waitingFor.message)).toBe(true);
    expect(s.phase).toBe("Provisioning");
    expect(s.message.startsWith(waitingFor.message)).toBe(true);
  });

  it("a missing input alone still blocks Ready", () => {
    const s = computeStatus(observation({ waitingFor: { reason: "SecretNotFound", message: "Secret x not found" } }));
    expect(condition(s, "Ready")).toMatchObject({ status: "False", reason: "SecretNotFound" });
    expect(s.phase).toBe("Provisioning");
  });

  it("Praefect not created: waits for the migrations while they are pending, else not created yet", () => {
    for (const migrations of [
      { state: "absent" } as const,
      { state: "running", name: JOB, failures: 0 } as const,
      { state: "failed", name: JOB, message: "boom" } as const,
    ]) {
      const s = computeStatus(observation({ migrations, praefect: undefined }));
      expect(condition(s, "Ready").message).toContain("Praefect waits for the migrations");
      expect(condition(s, "Ready").message).not.toContain("Praefect not created yet");
    }
    const migrated = computeStatus(observation({ praefect: undefined }));
    expect(condition(migrated, "Ready").message).toBe("Praefect not created yet");
  });

  it("every computed condition is a valid metav1.Condition once merged", () => {
    const scenarios: ClusterObservation[] = [
      observation(),
      observation({ paused: true }),
      observation({ invalid: { reason: "InvalidSpec", message: "bad" } }),
      observation({ migrations: { state: "failed", name: JOB, message: "m" }, wasReady: true }),
      observation({ databaseKind: "external", database: undefined, migrations: { state: "absent" } }),
      observation({ wasReady: true, gitaly: workload(3, 0, 0), scaleDownRefused: { requested: 1, deployed: 3 } }),
    ];
    for (const o of scenarios) {
      for (const c of mergeConditions(undefined, computeStatus(o).conditions, o.generation, new Date())) {
        expect(conditionSchema.safeParse(c).error).toBeUndefined();
      }
    }
  });

  it("the progression a user sees, with transition times moving only on flips", () => {
    const steps: { at: string; o: ClusterObservation; phase: string }[] = [
      {
        at: "2025-03-01T10:00:00.000Z",
        o: observation({
          database: workload(1, 0, 1),
          migrations: { state: "absent" },
          gitaly: workload(3, 0, 3),
          praefect: undefined,
        }),
        phase: "Provisioning",
      },
      {
        at: "2025-03-01T10:01:00.000Z",
        o: observation({ migrations: { state: "running", name: JOB, failures: 0 }, praefect: undefined }),
        phase: "Provisioning",
      },
      { at: "2025-03-01T10:02:00.000Z", o: observation(), phase: "Ready" },
      { at: "2025-03-01T10:03:00.000Z", o: observation({ wasReady: true }), phase: "Ready" },
    ];
    let conditions: Condition[] | undefined;
    const phases: string[] = [];
    for (const step of steps) {
      const s = computeStatus(step.o);
      phases.push(s.phase);
      conditions = mergeConditions(conditions, s.conditions, step.o.generation, new Date(step.at));
    }
    expect(phases).toEqual(steps.map((s) => s.phase));
    const at = (type: string) => conditions?.find((c) => c.type === type)?.lastTransitionTime;
    expect(at("Ready")).toBe("2025-03-01T10:02:00Z");
    expect(at("Progressing")).toBe("2025-03-01T10:02:00Z");
    expect(at("Degraded")).toBe("2025-03-01T10:00:00Z");
    expect(at("DatabaseReady")).toBe("2025-03-01T10:01:00Z");
    expect(at("MigrationsApplied")).toBe("2025-03-01T10:02:00Z");
    expect(at("TLSReady")).toBe("2025-03-01T10:00:00Z");
  });
});
