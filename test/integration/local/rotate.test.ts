// `gitaly-cluster rotate` against the local cluster `./scripts/up` runs: both tokens rotate
// through the shared state machine while git clients clone and list refs through the gateway
// without one failure; a Ctrl-C leaves the rotation recorded, a restart of the cluster starts it
// in the recorded phase, and the next `rotate` resumes it; `--abort` goes back to the old tokens.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROTATION_PHASES } from "../../../src/controller/rotation/machine.js";
import { parseReadyLine, type ReadyInfo } from "../../../src/local/cluster/banner.js";
import { waitFor } from "../../../src/shared/net.js";
import { repoRoot } from "../../harness/gitaly.js";
import { clusterMain, gitClient } from "../gateway-helpers.js";

interface Runner {
  proc: ChildProcess;
  ready: ReadyInfo;
  output(): string;
  interrupt(): Promise<number | null>;
}

interface Command {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** Processes (other than ours) whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(text)) found.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** The phases the command printed (each step line starts with one), consecutive repeats dropped. */
function phasesOf(stdout: string): string[] {
  const phases = stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((w) => (ROTATION_PHASES as readonly string[]).includes(w));
  return phases.filter((p, i) => phases[i - 1] !== p);
}

/** git ls-remote and clones through the gateway, back to back, until stopped. */
function startGitLoad(url: string, work: string) {
  const stats = { ops: 0, failures: [] as string[] };
  let stopped = false;
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const clone = join(work, `load-${i}.git`);
      const args = i % 2 === 0 ? ["ls-remote", url] : ["clone", "--quiet", "--bare", url, clone];
      try {
        const { stdout } = await gitClient(args);
        if (i % 2 === 0 && !/\trefs\/heads\/main\n/.test(stdout))
          throw new Error(`ls-remote listed no main:\n${stdout}`);
        stats.ops++;
      } catch (err) {
        stats.failures.push(`git ${args[0]}: ${(err as Error).message}`);
      } finally {
        rmSync(clone, { recursive: true, force: true });
      }
    }
  })();
  return {
    stats,
    async stop() {
      stopped = true;
      await loop;
      return stats;
    },
  };
}

function readToken(file: string): string {
  return readFileSync(file, "utf8").trim();
}

function authTransitioning(configPath: string): unknown {
  return (parse(readFileSync(configPath, "utf8")) as { auth?: { transitioning?: unknown } }).auth?.transitioning;
}

describe("gitaly-cluster rotate on the local cluster", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "gitaly-rotate-state-"));
  const work = mkdtempSync(join(tmpdir(), "gitaly-rotate-work-"));
  const spawned: ChildProcess[] = [];
  const secrets = {
    internal: join(stateDir, "secrets/gitaly-token"),
    client: join(stateDir, "secrets/praefect-token"),
  };
  const configs = () => [
    ...readdirSync(join(stateDir, "gitaly")).map((d) => join(stateDir, "gitaly", d, "config.toml")),
    ...readdirSync(join(stateDir, "praefect")).map((d) => join(stateDir, "praefect", d, "config.toml")),
  ];
  /** Every token value the state dir held at some point; none may be printed. */
  const seenTokens = new Set<string>();
  const noteTokens = () => {
    seenTokens.add(readToken(secrets.internal));
    seenTokens.add(readToken(secrets.client));
  };
  let live: Runner | undefined;

  function startUp(): Promise<Runner> {
    const proc = spawn(
      join(repoRoot, "scripts/up"),
      ["--state-dir", stateDir, "--http-port", "0", "--praefect-port", "0", "--praefect-tls-port", "0"],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
    );
    spawned.push(proc);
    let output = "";
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    return new Promise<Runner>((resolve, reject) => {
      proc.stderr?.on("data", (d: Buffer) => {
        output += d.toString();
      });
      proc.stdout?.on("data", (d: Buffer) => {
        output += d.toString();
        const line = output.split("\n").find((l) => l.startsWith("READY "));
        const ready = line ? parseReadyLine(line) : undefined;
        if (ready) {
          resolve({
            proc,
            ready,
            output: () => output,
            interrupt: () => {
              proc.kill("SIGINT");
              return exited;
            },
          });
        }
      });
      void exited.then((code) => reject(new Error(`./scripts/up exited (${code}) before READY:\n${output}`)));
    });
  }

  /** `gitaly-cluster rotate --state-dir <state> ...args` from the build ./scripts/up made. */
  function rotate(args: string[]): Command {
    const proc = spawn(process.execPath, [clusterMain, "rotate", "--state-dir", stateDir, ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    spawned.push(proc);
    let stdout = "";
    let stderr = "";
    proc.stdout?.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    proc.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    return { proc, stdout: () => stdout, stderr: () => stderr, exited };
  }

  /** Starts a rotation that waits in Verifying (a long quiet period), then Ctrl-C's it. */
  async function interruptInVerifying(): Promise<Command> {
    const cmd = rotate(["--quiet-period", "1h"]);
    await waitFor("rotate to reach Verifying", async () => phasesOf(cmd.stdout()).includes("Verifying"), {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    noteTokens();
    cmd.proc.kill("SIGINT");
    expect(await cmd.exited, cmd.stdout() + cmd.stderr()).toBe(130);
    return cmd;
  }

  function expectNoTokenIn(text: string): void {
    for (const token of seenTokens) expect(text.includes(token), "a token value was printed").toBe(false);
  }

  beforeAll(async () => {
    live = await startUp();
    noteTokens();
  }, 240_000);

  afterAll(async () => {
    for (const p of spawned) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 200));
    for (const pid of processesMentioning(stateDir)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it("rotates both tokens while git clones and lists refs through the gateway, without one failure", async () => {
    const run = live as Runner;
    const before = { internal: readToken(secrets.internal), client: readToken(secrets.client) };
    const load = startGitLoad(run.ready.demo.cloneUrl, work);
    await waitFor("git traffic", async () => load.stats.ops > 0, { timeoutMs: 30_000, intervalMs: 50 });

    const cmd = rotate(["--quiet-period", "3s"]);
    const opsBefore = load.stats.ops;
    const code = await cmd.exited;
    const opsDuring = load.stats.ops - opsBefore;
    const { failures } = await load.stop();
    noteTokens();
    const printed = cmd.stdout() + cmd.stderr();

    expect(code, printed).toBe(0);
    expect(failures).toEqual([]);
    expect(opsDuring).toBeGreaterThan(0);
    expect(phasesOf(cmd.stdout()), printed).toEqual([
      "Transitioning",
      "RollingOut",
      "Verifying",
      "Enforcing",
      "Stable",
    ]);
    expect(cmd.stdout()).toContain("done: generation 2 is in force");

    // New values in both token files, still private; every server enforces again.
    const after = { internal: readToken(secrets.internal), client: readToken(secrets.client) };
    expect(after.internal).not.toBe(before.internal);
    expect(after.client).not.toBe(before.client);
    for (const file of Object.values(secrets)) expect(statSync(file).mode & 0o777).toBe(0o600);
    for (const config of configs()) expect(authTransitioning(config), config).toBe(false);

    // The gateway presents the new client token: a clone after the rotation works.
    await gitClient(["clone", "--quiet", "--bare", run.ready.demo.cloneUrl, join(work, "after.git")]);

    // No token value anywhere it printed, and none in the record once the rotation is over.
    expectNoTokenIn(printed);
    expectNoTokenIn(readFileSync(join(stateDir, "secrets/rotation.json"), "utf8"));
  }, 120_000);

  it("keeps a rotation stopped by Ctrl-C; a restarted cluster starts in its phase; the next rotate resumes it", async () => {
    const interrupted = await interruptInVerifying();
    expect(interrupted.stderr()).toContain("resumes it");
    expect(JSON.parse(readFileSync(join(stateDir, "secrets/rotation.json"), "utf8")).state).toMatchObject({
      phase: "Verifying",
      targetGeneration: 3,
    });

    // The cluster stops cleanly; rotate refuses while it is down and says what resumes.
    expect(await (live as Runner).interrupt()).toBe(0);
    live = undefined;
    const refused = rotate(["--quiet-period", "3s"]);
    expect(await refused.exited).toBe(1);
    expect(refused.stderr()).toContain("is not running");
    expect(refused.stderr()).toContain("the rotation to generation 3 in phase Verifying resumes");

    // Restarted in the middle of the rotation: every server accepts any token, as in Verifying.
    const restarted = await startUp();
    live = restarted;
    expect(restarted.output()).toContain("a token rotation is in progress (to generation 3, phase Verifying)");
    for (const config of configs()) expect(authTransitioning(config), config).toBe(true);

    const load = startGitLoad(restarted.ready.demo.cloneUrl, work);
    await waitFor("git traffic", async () => load.stats.ops > 0, { timeoutMs: 30_000, intervalMs: 50 });
    const resumed = rotate(["--quiet-period", "3s"]);
    const code = await resumed.exited;
    const { failures } = await load.stop();
    const printed = resumed.stdout() + resumed.stderr();
    expect(code, printed).toBe(0);
    expect(failures).toEqual([]);
    expect(resumed.stdout()).toContain("resuming the rotation to generation 3");
    expect(phasesOf(resumed.stdout()).slice(-2), printed).toEqual(["Enforcing", "Stable"]);
    expect(resumed.stdout()).toContain("done: generation 3 is in force");
    for (const config of configs()) expect(authTransitioning(config), config).toBe(false);
    expectNoTokenIn(interrupted.stdout() + interrupted.stderr() + refused.stderr() + printed + restarted.output());
  }, 240_000);

  it("--abort goes back to the old tokens; with nothing under way it refuses", async () => {
    const before = { internal: readToken(secrets.internal), client: readToken(secrets.client) };
    await interruptInVerifying();
    expect(readToken(secrets.client)).not.toBe(before.client);

    const aborted = rotate(["--abort", "--quiet-period", "2s"]);
    const printed = () => aborted.stdout() + aborted.stderr();
    expect(await aborted.exited, printed()).toBe(0);
    expect(aborted.stdout()).toContain("aborting the rotation to generation 4");
    expect(phasesOf(aborted.stdout()), printed()).toEqual(["RollingOut", "Verifying", "Enforcing", "Stable"]);
    expect(aborted.stdout()).toContain("aborted: the tokens of generation 3 are enforced again");
    expect({ internal: readToken(secrets.internal), client: readToken(secrets.client) }).toEqual(before);
    await gitClient(["ls-remote", (live as Runner).ready.demo.cloneUrl]);

    const nothing = rotate(["--abort"]);
    expect(await nothing.exited).toBe(1);
    expect(nothing.stderr()).toContain("no rotation is in progress");
    expectNoTokenIn(printed() + nothing.stderr());
  }, 120_000);

  it("the cluster stops on Ctrl-C with exit code 0 and leaves no process behind", async () => {
    const run = live as Runner;
    live = undefined;
    expect(await run.interrupt()).toBe(0);
    expectNoTokenIn(run.output());
    expect(processesMentioning(stateDir)).toEqual([]);
  });
});
