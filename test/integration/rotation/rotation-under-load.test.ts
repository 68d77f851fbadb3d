// Token rotation under load, end to end: PostgreSQL, three Gitaly nodes and two Praefects run
// from rendered config files, clients read and push through both Praefects continuously, and the
// shared state machine (driven by runRotation over the file environment) rotates the internal
// token and then the client token. Not one client request may fail, and the servers' own auth
// counters must show GitLab's documented sequence: ok → would be ok → ok, enforced again.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runRotation, type TokenChoice } from "../../../src/controller/rotation/driver.js";
import {
  fileRotationEnvironment,
  fileRotationStore,
  tokenFilesOfConfigs,
} from "../../../src/controller/rotation/files.js";
import type { RotationPhase, StepResult, TokenKind } from "../../../src/controller/rotation/machine.js";
import { tokenGeneration } from "../../../src/gitaly/auth/authenticator.js";
import { waitFor } from "../../../src/shared/net.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { gitClient } from "../gateway-helpers.js";
import { type Proc, type RotationCluster, startRotationCluster, stopAll, VIRTUAL_STORAGE } from "./cluster.js";
import {
  enforcedFailures,
  grew,
  type Recorder,
  type Snapshot,
  snapshotAfter,
  snapshotBefore,
  startRecorder,
} from "./counters.js";
import { pushUrl, type RunningLoad, startLoad, workingCopy } from "./load.js";

const RELATIVE_PATH = "rotation/under-load.git";
const QUIET_PERIOD_MS = 3_000;

interface RotationRun {
  kind: TokenKind;
  startedAt: number;
  endedAt: number;
  outcome: string;
  phases: RotationPhase[];
  steps: StepResult[];
  readsDuring: number;
}

describe("token rotation under load, driven by the rotation state machine", () => {
  const dir = mkdtempSync(join(tmpdir(), "rot-"));
  const started: Proc[] = [];
  let db: TestDatabase;
  let cluster: RotationCluster;
  let recorder: Recorder | undefined;
  let load: RunningLoad | undefined;

  beforeAll(async () => {
    db = await freshDatabase("rotation");
    const pg = inject("postgres");
    cluster = await startRotationCluster(
      {
        dir,
        db: { host: pg.host, port: pg.port, user: pg.user, password: pg.password, name: db.name, pool: db.pool },
        gitalyCount: 3,
        praefectCount: 2,
      },
      started,
    );
  });

  afterAll(async () => {
    await load?.stop().catch(() => {});
    await recorder?.stop().catch(() => {});
    await stopAll(started);
    await db?.drop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  it("rotates the internal token, then the client token, with zero failed client requests", async () => {
    const servers = [...cluster.gitalys, ...cluster.praefects];
    const files = {
      servers: servers.map((s) => s.files),
      internalTokenFiles: [cluster.internalTokenFile],
      clientTokenFiles: [cluster.praefectTokenFile, cluster.clientTokenFile],
    };
    // The configs name exactly the token files handed to the environment (the clients' is extra).
    expect(await tokenFilesOfConfigs(files.servers)).toEqual({
      internal: [cluster.internalTokenFile],
      client: [cluster.praefectTokenFile],
    });
    const env = fileRotationEnvironment(files);
    const recordFile = join(dir, "secrets", "rotation.json");
    const store = fileRotationStore(recordFile, files);

    // The repository the load works on, created by a first push through a gateway.
    const copy = workingCopy(dir, "client.git");
    copy.nextCommit();
    await gitClient(["push", "--quiet", pushUrl(cluster.gateways[0]?.url ?? "", RELATIVE_PATH), "main:main"], {
      cwd: copy.dir,
    });

    recorder = startRecorder(
      servers.map((s) => ({ name: s.name, role: s.files.role, url: s.files.metricsUrl })),
      150,
    );
    const rec = recorder;
    load = startLoad(
      {
        praefects: cluster.praefects.map((p) => ({ name: p.name, address: p.address })),
        gateways: cluster.gateways.map((g) => ({ name: g.name, url: g.url })),
        clientTokenFile: cluster.clientTokenFile,
        virtualStorage: VIRTUAL_STORAGE,
        relativePath: RELATIVE_PATH,
        blobOid: copy.blobOid,
      },
      copy,
      { readers: 3, pauseMs: 15 },
    );
    const stats = load.stats;

    /** Waits until every server has authenticated enforced calls (true/ok) since `since`. */
    const enforcedTrafficSince = async (since: number) => {
      const base = await rec.after(since);
      await waitFor(
        "enforced traffic on every server",
        async () => {
          const latest = rec.snapshots.at(-1) as Snapshot;
          return servers.every((s) => grew(base, latest, s.name).includes("true/ok"));
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    };
    const runStart = Date.now();
    await enforcedTrafficSince(runStart);

    const rotate = async (kind: TokenKind, desiredGeneration: number): Promise<RotationRun> => {
      const steps: StepResult[] = [];
      const readsBefore = stats.reads;
      const choice: Record<TokenKind, TokenChoice> = { internal: "keep", client: "keep" };
      choice[kind] = "generate";
      const startedAt = Date.now();
      const result = await runRotation({
        env,
        store,
        desiredGeneration,
        rotate: choice,
        quietPeriodMs: QUIET_PERIOD_MS,
        intervalMs: 250,
        timeoutMs: 60_000,
        onStep: (r) => steps.push(r),
      });
      const endedAt = Date.now();
      const readsDuring = stats.reads - readsBefore;
      await enforcedTrafficSince(endedAt);
      return {
        kind,
        startedAt,
        endedAt,
        outcome: result.outcome,
        phases: steps.map((s) => s.state.phase).filter((p, i, all) => all[i - 1] !== p),
        steps,
        readsDuring,
      };
    };

    const internal = await rotate("internal", 2);
    const afterInternal = readFileSync(cluster.internalTokenFile, "utf8").trim();
    const client = await rotate("client", 3);
    const afterClient = readFileSync(cluster.clientTokenFile, "utf8").trim();

    const final = await load.stop();
    await recorder.stop();
    /** Successful pushes that were under way at some point of the rotation. */
    const pushesDuring = (r: RotationRun) =>
      final.pushSpans.filter((p) => p.start < r.endedAt && p.end > r.startedAt).length;
    const snapshots = recorder.snapshots;
    const summary = {
      reads: final.reads,
      pushes: final.pushes,
      byKind: final.byKind,
      failures: final.failures.length,
      rotations: [internal, client].map((r) => ({
        kind: r.kind,
        outcome: r.outcome,
        ms: r.endedAt - r.startedAt,
        steps: r.steps.length,
        readsDuring: r.readsDuring,
        pushesDuring: pushesDuring(r),
      })),
      snapshots: snapshots.length,
    };
    console.info(`rotation under load: ${JSON.stringify(summary)}`);

    // Not one client request failed, and the load ran through both rotations.
    expect(final.failures).toEqual([]);
    for (const r of [internal, client]) {
      expect(r.readsDuring, `${r.kind} rotation: reads during it`).toBeGreaterThan(0);
      expect(pushesDuring(r), `${r.kind} rotation: pushes under way during it`).toBeGreaterThan(0);
    }

    // Both rotations walked every phase and completed, with the steps' messages as evidence.
    for (const r of [internal, client]) {
      expect(r.outcome, r.steps.map((s) => s.message).join("\n")).toBe("Completed");
      expect(r.phases, r.steps.map((s) => s.message).join("\n")).toEqual([
        "Transitioning",
        "RollingOut",
        "Verifying",
        "Enforcing",
        "Stable",
      ]);
    }
    const initial = cluster.initialTokens;
    const gen = {
      internalBefore: tokenGeneration(initial.internal),
      internalAfter: tokenGeneration(afterInternal),
      clientBefore: tokenGeneration(initial.client),
      clientAfter: tokenGeneration(afterClient),
    };
    expect(gen.internalAfter).not.toBe(gen.internalBefore);
    expect(gen.clientAfter).not.toBe(gen.clientBefore);
    expect(internal.steps.at(-1)?.state).toMatchObject({ phase: "Stable", generation: 2, outcome: "Completed" });
    expect(internal.steps[0]?.state.from).toEqual({ internal: gen.internalBefore, client: gen.clientBefore });
    expect(internal.steps[0]?.state.to).toEqual({ internal: gen.internalAfter, client: gen.clientBefore });
    expect(client.steps.at(-1)?.state).toMatchObject({ phase: "Stable", generation: 3, outcome: "Completed" });
    expect(client.steps[0]?.state.to).toEqual({ internal: gen.internalAfter, client: gen.clientAfter });
    expect(readFileSync(cluster.internalTokenFile, "utf8").trim()).toBe(afterInternal);
    expect(readFileSync(cluster.praefectTokenFile, "utf8").trim()).toBe(afterClient);

    // Every server ends on the new generations, enforcing; Praefect presents the new internal token.
    const last = snapshots.at(-1) as Snapshot;
    for (const s of last.samples) {
      expect(s, s.name).toMatchObject({
        transitioning: false,
        servedGeneration: s.role === "gitaly" ? gen.internalAfter : gen.clientAfter,
      });
      if (s.role === "praefect") expect(new Set(s.presentedGenerations)).toEqual(new Set([gen.internalAfter]));
    }

    // The counters, per server and rotation: enforced ok before, would be ok during, enforced ok
    // after, and nothing else outside the rotations; never an enforced failure.
    expect(enforcedFailures(snapshots)).toEqual([]);
    const first = snapshots[0] as Snapshot;
    const windows = [
      {
        name: "before the internal rotation",
        during: false,
        from: first,
        to: snapshotBefore(snapshots, internal.startedAt),
      },
      {
        name: "internal rotation",
        during: true,
        from: snapshotBefore(snapshots, internal.startedAt),
        to: snapshotAfter(snapshots, internal.endedAt),
      },
      {
        name: "between the rotations",
        during: false,
        from: snapshotAfter(snapshots, internal.endedAt),
        to: snapshotBefore(snapshots, client.startedAt),
      },
      {
        name: "client rotation",
        during: true,
        from: snapshotBefore(snapshots, client.startedAt),
        to: snapshotAfter(snapshots, client.endedAt),
      },
      { name: "after the client rotation", during: false, from: snapshotAfter(snapshots, client.endedAt), to: last },
    ];
    const observed: Record<string, Record<string, string[]>> = {};
    for (const s of servers) {
      observed[s.name] = Object.fromEntries(windows.map((w) => [w.name, grew(w.from, w.to, s.name)]));
    }
    console.info(`auth counters that grew, per server and window: ${JSON.stringify(observed)}`);
    for (const s of servers) {
      const seen = observed[s.name] as Record<string, string[]>;
      for (const w of windows) {
        const series = seen[w.name] as string[];
        if (w.during) {
          expect(series, `${s.name}, ${w.name}`).toContain("false/would be ok");
          expect(series.filter((k) => k.startsWith("true/") && k !== "true/ok")).toEqual([]);
        } else {
          expect(series, `${s.name}, ${w.name}`).toEqual(["true/ok"]);
        }
      }
    }

    // Tokens appear in no log, and the record holds none once the rotations are over.
    for (const file of cluster.logFiles) {
      const text = readFileSync(file, "utf8");
      for (const [what, token] of Object.entries({ ...initial, afterInternal, afterClient })) {
        expect(text.includes(token), `${what} token in ${file}`).toBe(false);
      }
    }
    const record = readFileSync(recordFile, "utf8");
    for (const token of [initial.internal, initial.client, afterInternal, afterClient]) {
      expect(record.includes(token)).toBe(false);
    }
  }, 150_000);
});
