import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import {
  initialRotationState,
  ROTATION_PHASES,
  type RotationState,
  stepRotation,
} from "../../controller/rotation/machine.js";
import { clusterPorts, listenerNames, planCluster } from "./plan.js";
import {
  type ConfigText,
  clusterServers,
  deliveryForPhase,
  liveRunnerPid,
  localRotationFiles,
  parseRotateArgs,
  planRotation,
  RotateUsageError,
  rotationInProgress,
  rotationRecordFile,
  runRotate,
  stepLine,
} from "./rotate.js";
import { loadSample } from "./sample.js";
import { type StateLayout, stateLayout } from "./state.js";

const samples = resolve(import.meta.dirname, "../../../config/samples");
const minimal = loadSample(`${samples}/minimal.yaml`);
const TLS = {
  caFile: "/x/ca.crt",
  trustBundleFile: "/x/trust-bundle.pem",
  gitaly: { certificatePath: "/x/gitaly.crt", keyPath: "/x/gitaly.key" },
  praefect: { certificatePath: "/x/praefect.crt", keyPath: "/x/praefect.key" },
};

/** Ports base, base+1, … in listenerNames() order, plus PostgreSQL's, as ports.json holds them. */
function portsFrom(base: number): Record<string, number> {
  return { postgres: base - 1, ...Object.fromEntries(listenerNames(minimal.spec).map((n, i) => [n, base + i])) };
}

function planFor(layout: StateLayout, ports: Record<string, number>, name = minimal.name) {
  return planCluster({
    name,
    spec: minimal.spec,
    layout,
    ports: clusterPorts(minimal.spec, ports.postgres ?? 5432, ports),
    tls: TLS,
    logLevel: "info",
    shortRuntimeBase: "/tmp",
  });
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "rotate-unit-"));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

describe("parseRotateArgs", () => {
  test("defaults: the sample's state dir, a 60 s quiet period, a 10 min timeout, no abort", () => {
    expect(parseRotateArgs([])).toEqual({
      help: false,
      options: { target: { sample: undefined }, abort: false, quietPeriodMs: 60_000, timeoutMs: 600_000 },
    });
  });

  test("every flag", () => {
    const parsed = parseRotateArgs(["--state-dir", "rel/dir", "--abort", "--quiet-period", "3s", "--timeout", "1m30s"]);
    expect(parsed).toEqual({
      help: false,
      options: { target: { stateDir: resolve("rel/dir") }, abort: true, quietPeriodMs: 3_000, timeoutMs: 90_000 },
    });
    expect(parseRotateArgs(["--sample", "x.yaml"])).toMatchObject({
      options: { target: { sample: resolve("x.yaml") } },
    });
    expect(parseRotateArgs(["-h"])).toEqual({ help: true });
  });

  test.each([
    [["--quiet-period", "60"], '--quiet-period "60": want a duration like 90s or 5m'],
    [["--timeout=-1m"], '--timeout "-1m": want a duration like 90s or 5m'],
    [["--quiet-period", "0s"], "--quiet-period must be longer than 0"],
    [["--state-dir", "a", "--sample", "b"], "give --state-dir or --sample, not both"],
    [["--state-dir", ""], "--state-dir needs a directory"],
    [["--force"], "Unknown option '--force'"],
    [["extra"], "extra"],
  ])("refuses %j", (argv, message) => {
    expect(() => parseRotateArgs(argv)).toThrow(RotateUsageError);
    expect(() => parseRotateArgs(argv)).toThrow(message);
  });
});

describe("deliveryForPhase restates the machine's delivery rule", () => {
  const from = { internal: "aaaa", client: "bbbb" };
  const to = { internal: "cccc", client: "dddd" };
  const cases = ROTATION_PHASES.flatMap((phase) => [false, true].map((aborting) => ({ phase, aborting })));

  test.each(cases)("$phase, aborting $aborting", ({ phase, aborting }) => {
    const state: RotationState =
      phase === "Stable"
        ? initialRotationState(1)
        : { phase, generation: 1, targetGeneration: 2, from, to, ...(aborting ? { aborting } : {}) };
    // No sample: every phase waits where it is, and the machine says what it delivers there.
    const result = stepRotation(state, {
      now: new Date(0),
      desiredGeneration: phase === "Stable" ? 1 : 2,
      abortRequested: false,
      samples: [],
      quietPeriodMs: 1_000,
    });
    expect(result.state.phase).toBe(phase);
    expect(deliveryForPhase(state)).toEqual(result.delivery);
  });
});

describe("planRotation", () => {
  test("a Stable record starts a rotation to the next generation, past an aborted one", () => {
    expect(planRotation(initialRotationState(1), false)).toEqual({ kind: "start", desiredGeneration: 2 });
    expect(planRotation({ phase: "Stable", generation: 2, abortedGeneration: 3 }, false)).toEqual({
      kind: "start",
      desiredGeneration: 4,
    });
  });

  test("a rotation under way is resumed, or aborted with --abort", () => {
    const state: RotationState = { phase: "Verifying", generation: 2, targetGeneration: 3 };
    expect(planRotation(state, false)).toEqual({ kind: "resume", desiredGeneration: 3 });
    expect(planRotation(state, true)).toEqual({ kind: "abort", desiredGeneration: 3 });
    // An abort under way is finished, whichever way rotate is called.
    expect(planRotation({ ...state, aborting: true }, true)).toEqual({ kind: "resume", desiredGeneration: 3 });
  });

  test("--abort with nothing under way", () => {
    expect(planRotation(initialRotationState(4), true)).toEqual({ kind: "nothing-to-abort" });
  });
});

describe("stepLine", () => {
  test("leads with the phase the cluster is in, without repeating it", () => {
    expect(stepLine({ state: { phase: "RollingOut", generation: 1 }, message: "RollingOut: waiting: x" })).toBe(
      "RollingOut     waiting: x",
    );
    expect(
      stepLine({ state: { phase: "RollingOut", generation: 1 }, message: "Verifying: back to RollingOut: y" }),
    ).toBe("RollingOut     Verifying: back to RollingOut: y");
    expect(stepLine({ state: { phase: "Transitioning", generation: 1 }, message: "started" })).toBe(
      "Transitioning  started",
    );
  });
});

describe("clusterServers: the running cluster's servers from ports.json and the configs", () => {
  const layout = stateLayout("/state/minimal");
  const ports = portsFrom(20_001);
  const plan = planFor(layout, ports);
  const gitalyConfigs: ConfigText[] = plan.gitaly.map((g) => ({ path: g.configPath, text: g.config }));
  const praefectConfigs: ConfigText[] = plan.praefect.map((p) => ({ path: p.configPath, text: p.config }));

  test("every Gitaly node by storage name and every Praefect, with the metrics URL the plan gave it", () => {
    expect(clusterServers({ ports, gitalyConfigs, praefectConfigs })).toEqual([
      ...plan.gitaly.map((g) => ({
        name: g.storage,
        role: "gitaly",
        configPath: g.configPath,
        metricsUrl: g.metricsUrl,
      })),
      ...plan.praefect.map((p) => ({
        name: p.name,
        role: "praefect",
        configPath: p.configPath,
        metricsUrl: p.metricsUrl,
      })),
    ]);
  });

  test("configs of an earlier, bigger run are ignored, even on a port this run reuses", () => {
    const bigger = loadSample(`${samples}/minimal.yaml`);
    bigger.spec.gitaly.replicas = 4;
    bigger.spec.praefect.replicas = 3;
    const earlier = planCluster({
      name: "old",
      spec: bigger.spec,
      layout,
      ports: clusterPorts(bigger.spec, 5432, {
        ...Object.fromEntries(listenerNames(bigger.spec).map((n, i) => [n, 30_000 + i])),
        // The nodes this run no longer has listened where this run's first ones listen now.
        "gitaly-3.metrics": ports["gitaly-0.metrics"] as number,
        "praefect-2.metrics": ports["praefect-0.metrics"] as number,
      }),
      tls: TLS,
      logLevel: "info",
      shortRuntimeBase: "/tmp",
    });
    const stale = (nodes: { configPath: string; config: string }[]) =>
      nodes.map((n) => ({ path: n.configPath.replace("/state/minimal/", "/state/minimal/stale-"), text: n.config }));
    const servers = clusterServers({
      ports,
      gitalyConfigs: [...stale(earlier.gitaly), ...gitalyConfigs],
      praefectConfigs: [...praefectConfigs, ...stale(earlier.praefect).slice(2)],
    });
    expect(servers.map((s) => s.configPath)).toEqual([...gitalyConfigs, ...praefectConfigs].map((c) => c.path));
  });

  test("a listener without its config, or with two, is an error naming it", () => {
    expect(() => clusterServers({ ports, gitalyConfigs: gitalyConfigs.slice(1), praefectConfigs })).toThrow(
      `no gitaly config serves metrics on port ${ports["gitaly-0.metrics"]}, which ports.json gives gitaly-0.metrics`,
    );
    // ports.json from another run than the configs.
    expect(() => clusterServers({ ports: portsFrom(40_000), gitalyConfigs, praefectConfigs })).toThrow(
      "was the cluster started from this state directory?",
    );
    const twin = { path: "/state/minimal/gitaly/copy/config.toml", text: gitalyConfigs[0]?.text ?? "" };
    expect(() => clusterServers({ ports, gitalyConfigs: [...gitalyConfigs, twin], praefectConfigs })).toThrow(
      "both claim gitaly-0.metrics",
    );
    expect(() => clusterServers({ ports: { postgres: 1 }, gitalyConfigs, praefectConfigs })).toThrow(
      "ports.json lists no Gitaly or no Praefect metrics listener",
    );
  });
});

/** A state dir as `up` leaves it: marker, ports.json, configs, token files. */
function writeStateDir(): { layout: StateLayout; plan: ReturnType<typeof planFor> } {
  const layout = stateLayout(tempDir());
  const ports = portsFrom(21_001);
  const plan = planFor(layout, ports);
  writeFileSync(layout.marker, "");
  writeFileSync(layout.portsFile, JSON.stringify(ports));
  for (const n of [...plan.gitaly, ...plan.praefect]) {
    mkdirSync(join(n.configPath, ".."), { recursive: true });
    writeFileSync(n.configPath, n.config);
  }
  mkdirSync(layout.secretsDir, { recursive: true, mode: 0o700 });
  writeFileSync(layout.gitalyTokenFile, "internal-token-old\n", { mode: 0o600 });
  writeFileSync(layout.praefectTokenFile, "client-token-old\n", { mode: 0o600 });
  return { layout, plan };
}

describe("localRotationFiles over a state dir on disk", () => {
  test("the servers, and one internal and one client token file (the gateway reads Praefect's)", async () => {
    const { layout, plan } = writeStateDir();
    const files = await localRotationFiles(layout);
    expect(files.servers.map((s) => s.name)).toEqual([
      ...plan.gitaly.map((g) => g.storage),
      ...plan.praefect.map((p) => p.name),
    ]);
    expect(files.internalTokenFiles).toEqual([layout.gitalyTokenFile]);
    expect(files.clientTokenFiles).toEqual([layout.praefectTokenFile]);
  });
});

describe("rotationInProgress: what a starting cluster must render", () => {
  const tokens = {
    current: { internal: "internal-token-old", client: "client-token-old" },
    old: { internal: "internal-token-old", client: "client-token-old" },
    new: { internal: "internal-token-new", client: "client-token-new" },
  };
  const write = (layout: StateLayout, state: RotationState) =>
    writeFileSync(rotationRecordFile(layout), JSON.stringify({ state, tokens }), { mode: 0o600 });

  test("none without a record, or with a Stable one", async () => {
    const { layout } = writeStateDir();
    expect(await rotationInProgress(layout)).toBeUndefined();
    write(layout, { phase: "Stable", generation: 2, outcome: "Completed" });
    expect(await rotationInProgress(layout)).toBeUndefined();
  });

  test.each([
    ["Transitioning", false, true, "old"],
    ["RollingOut", false, true, "new"],
    ["Verifying", false, true, "new"],
    ["Verifying", true, true, "old"],
    ["Enforcing", false, false, "new"],
    ["Enforcing", true, false, "old"],
  ] as const)(
    "%s (aborting %s): transitioning %s with the %s tokens",
    async (phase, aborting, transitioning, which) => {
      const { layout } = writeStateDir();
      const state: RotationState = { phase, generation: 1, targetGeneration: 2, ...(aborting ? { aborting } : {}) };
      write(layout, state);
      expect(await rotationInProgress(layout)).toEqual({ state, transitioning, tokens: tokens[which] });
    },
  );
});

describe("liveRunnerPid", () => {
  test("a live pid counts, a dead or missing one does not", () => {
    const layout = stateLayout(tempDir());
    expect(liveRunnerPid(layout)).toBeUndefined();
    writeFileSync(layout.lockFile, `${process.pid}\n`);
    expect(liveRunnerPid(layout)).toBe(process.pid);
    const exited = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"]);
    writeFileSync(layout.lockFile, `${exited.stdout.toString()}\n`);
    expect(liveRunnerPid(layout)).toBeUndefined();
  });
});

describe("runRotate against a live runner whose servers cannot be read", () => {
  const capture = () => {
    const lines: string[] = [];
    return { lines, io: { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) } };
  };
  /** A state dir whose runner is this process; nothing serves the metrics ports it names (or not as metrics). */
  const runningStateDir = () => {
    const { layout } = writeStateDir();
    writeFileSync(layout.lockFile, `${process.pid}\n`);
    return layout;
  };

  test("a new rotation is not started on a cluster that does not serve yet", async () => {
    const layout = runningStateDir();
    const { lines, io } = capture();
    expect(await runRotate(["--state-dir", layout.root], io)).toBe(1);
    expect(lines.join("\n")).toContain("does not serve yet (cannot read the metrics of minimal-gitaly-0,");
    expect(readFileSync(layout.gitalyTokenFile, "utf8")).toBe("internal-token-old\n");
  });

  test("a rotation that cannot proceed times out, is kept, and says how to resume", async () => {
    const layout = runningStateDir();
    const state = { phase: "Verifying", generation: 1, targetGeneration: 2 };
    const pair = (v: string) => ({ internal: `internal-token-${v}`, client: `client-token-${v}` });
    writeFileSync(
      rotationRecordFile(layout),
      JSON.stringify({ state, tokens: { current: pair("old"), old: pair("old"), new: pair("new") } }),
    );
    const { lines, io } = capture();
    expect(await runRotate(["--state-dir", layout.root, "--timeout", "500ms"], io)).toBe(1);
    const said = lines.join("\n");
    expect(said).toContain("resuming the rotation to generation 2");
    expect(said).toContain("Verifying      waiting: cannot read the metrics of minimal-gitaly-0");
    expect(said).toContain("timed out after 0.5s in phase Verifying");
    expect(said).toContain(`run "gitaly-cluster rotate --state-dir ${layout.root}" to resume it`);
    expect(said).not.toContain("token-new");
    const record = JSON.parse(readFileSync(rotationRecordFile(layout), "utf8"));
    expect(record.state).toMatchObject(state);
    // Verifying delivers the new tokens while every server accepts any token.
    expect(readFileSync(layout.praefectTokenFile, "utf8")).toBe("client-token-new\n");
  });

  test("one rotate at a time", async () => {
    const layout = runningStateDir();
    writeFileSync(join(layout.root, "rotate.pid"), `${process.ppid}\n`);
    const { lines, io } = capture();
    expect(await runRotate(["--state-dir", layout.root], io)).toBe(1);
    expect(lines.join("\n")).toContain(
      `another "gitaly-cluster rotate" (pid ${process.ppid}) is working on ${layout.root}`,
    );
  });
});

describe("runRotate refuses without a running cluster", () => {
  const capture = () => {
    const lines: string[] = [];
    return { lines, io: { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) } };
  };

  test("a directory that holds no cluster", async () => {
    const dir = tempDir();
    const { lines, io } = capture();
    expect(await runRotate(["--state-dir", dir], io)).toBe(1);
    expect(lines.join("\n")).toContain(`${dir} holds no local cluster`);
  });

  test("a cluster that is not running, with the rotation that would resume", async () => {
    const { layout } = writeStateDir();
    const { lines, io } = capture();
    expect(await runRotate(["--state-dir", layout.root], io)).toBe(1);
    expect(lines.join("\n")).toContain(`the local cluster in ${layout.root} is not running`);
    writeFileSync(
      rotationRecordFile(layout),
      JSON.stringify({
        state: { phase: "Verifying", generation: 1, targetGeneration: 2 },
        tokens: {
          current: { internal: "internal-token-old", client: "client-token-old" },
          old: { internal: "internal-token-old", client: "client-token-old" },
          new: { internal: "internal-token-new", client: "client-token-new" },
        },
      }),
    );
    lines.length = 0;
    expect(await runRotate(["--state-dir", layout.root, "--abort"], io)).toBe(1);
    const said = lines.join("\n");
    expect(said).toContain("the rotation to generation 2 in phase Verifying resumes");
    for (const token of ["internal-token-old", "client-token-old", "internal-token-new", "client-token-new"]) {
      expect(said).not.toContain(token);
    }
    expect(readFileSync(layout.gitalyTokenFile, "utf8")).toBe("internal-token-old\n");
  });
});
