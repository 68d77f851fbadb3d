// The README's main job, as a user runs it: `./scripts/up` brings up the local Gitaly Cluster
// from config/samples/minimal.yaml (3 Gitaly nodes, 2 Praefects, PostgreSQL, TLS), real git
// clones, pushes and reads back through it, Ctrl-C stops it with exit code 0 and no process
// left behind, and a second start on the same state directory finds the repositories again.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parseReadyLine, type ReadyInfo } from "../../../src/local/cluster/banner.js";
import { waitFor } from "../../../src/shared/net.js";
import { repoRoot } from "../../harness/gitaly.js";
import { praefectMain } from "../../harness/praefect.js";
import { gitClient } from "../gateway-helpers.js";

const execFileAsync = promisify(execFile);

interface Runner {
  proc: ChildProcess;
  ready: ReadyInfo;
  /** Everything the command printed so far, stdout and stderr. */
  output(): string;
  /** SIGINT, as a Ctrl-C; resolves with the exit code. */
  interrupt(): Promise<number | null>;
}

/** Processes (other than ours) whose command line mentions `text`. */
function processesMentioning(text: string): { pid: number; cmdline: string }[] {
  const found: { pid: number; cmdline: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trim();
    } catch {
      continue;
    }
    if (cmdline.includes(text)) found.push({ pid, cmdline });
  }
  return found;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function rev(dir: string, ref = "HEAD"): Promise<string> {
  return (await gitClient(["--git-dir", dir, "rev-parse", ref])).stdout.trim();
}

describe("./scripts/up (the README's main-job command)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "gitaly-quickstart-state-"));
  const work = mkdtempSync(join(tmpdir(), "gitaly-quickstart-work-"));
  const runners: Runner[] = [];
  let pushed = "";
  /** The cluster the first cases share. */
  let live: Runner | undefined;

  function startUp(): Promise<Runner> {
    // Port 0 everywhere: the suite must not depend on 8181 or 2305 being free on the machine.
    const proc = spawn(
      join(repoRoot, "scripts/up"),
      ["--state-dir", stateDir, "--http-port", "0", "--praefect-port", "0", "--praefect-tls-port", "0"],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] },
    );
    let output = "";
    let pending = "";
    const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
    return new Promise<Runner>((resolve, reject) => {
      proc.stderr?.on("data", (d: Buffer) => {
        output += d.toString();
      });
      proc.stdout?.on("data", (d: Buffer) => {
        const text = d.toString();
        output += text;
        pending += text;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) {
          const ready = parseReadyLine(line);
          if (!ready) continue;
          const runner: Runner = {
            proc,
            ready,
            output: () => output,
            interrupt: () => {
              proc.kill("SIGINT");
              return exited;
            },
          };
          runners.push(runner);
          resolve(runner);
        }
      });
      void exited.then((code) => reject(new Error(`./scripts/up exited (${code}) before READY:\n${output}`)));
    });
  }

  function expectNothingLeft(ready: ReadyInfo): void {
    expect(processesMentioning(stateDir)).toEqual([]);
    const pids = [
      ready.pid,
      ready.postgres.pid,
      ...ready.gitaly.map((g) => g.pid),
      ...ready.praefect.map((p) => p.pid),
    ];
    expect(pids.filter(isAlive)).toEqual([]);
  }

  afterAll(async () => {
    for (const r of runners) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGKILL");
    // SIGKILL of the runner takes its children with it (parent-death signal); sweep anything else.
    await new Promise((r) => setTimeout(r, 200));
    for (const p of processesMentioning(stateDir)) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it("brings the cluster up; git clones, pushes and reads back through it", async () => {
    const run = await startUp();
    const { ready } = run;
    expect(ready.name).toBe("minimal");
    expect(ready.gitaly.map((g) => g.name)).toEqual(["minimal-gitaly-0", "minimal-gitaly-1", "minimal-gitaly-2"]);
    expect(ready.praefect).toHaveLength(2);
    expect(ready.praefectAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    expect(ready.caFile).toBe(join(stateDir, "tls/ca.crt"));
    expect(run.output()).toContain(`git clone ${ready.demo.cloneUrl}`);

    // The demo repository is there at once.
    const first = join(work, "first");
    await gitClient(["clone", "--quiet", ready.demo.cloneUrl, first]);
    expect(readFileSync(join(first, "README.md"), "utf8")).toContain('local Gitaly Cluster "minimal"');

    // A commit pushed to it, and to a repository that does not exist yet.
    writeFileSync(join(first, "hello.txt"), "hello from the quick start\n");
    await gitClient(["add", "hello.txt"], { cwd: first });
    await gitClient(["commit", "--quiet", "-m", "Say hello"], { cwd: first });
    await gitClient(["push", "--quiet", "origin", "main"], { cwd: first });
    await gitClient(["push", "--quiet", `${ready.gatewayUrl}/quickstart/new.git`, "main:main"], { cwd: first });
    pushed = await rev(join(first, ".git"));

    // Read back through fresh clones.
    const second = join(work, "second");
    await gitClient(["clone", "--quiet", ready.demo.cloneUrl, second]);
    expect(await rev(join(second, ".git"))).toBe(pushed);
    expect(readFileSync(join(second, "hello.txt"), "utf8")).toBe("hello from the quick start\n");
    const created = join(work, "created.git");
    await gitClient(["clone", "--quiet", "--bare", `${ready.gatewayUrl}/quickstart/new.git`, created]);
    expect(await rev(created, "refs/heads/main")).toBe(pushed);

    // Secrets stay in their files: neither printed nor logged, nor in any config.
    const secrets = [ready.tokenFiles.praefect, ready.tokenFiles.gitaly, join(stateDir, "secrets/postgres-password")];
    const texts = [
      run.output(),
      ...readdirSync(ready.logDir).map((f) => readFileSync(join(ready.logDir, f), "utf8")),
      readFileSync(join(stateDir, "praefect/praefect-0/config.toml"), "utf8"),
      readFileSync(join(stateDir, "gitaly/minimal-gitaly-0/config.toml"), "utf8"),
    ];
    for (const file of secrets) {
      const secret = readFileSync(file, "utf8").trim();
      expect(secret.length).toBeGreaterThan(20);
      for (const text of texts) expect(text.includes(secret)).toBe(false);
    }

    live = run;
  }, 240_000);

  // A replica is created with ReplicateRepository, whose git fetch runs gitaly-ssh over tls://:
  // this only works when Gitaly hands its trust (SSL_CERT_FILE) on to gitaly-ssh.
  it("replicates the pushes to all three Gitaly nodes over TLS", async () => {
    const run = live as Runner;
    const praefectConfig = join(stateDir, "praefect/praefect-0/config.toml");
    const env = {
      ...process.env,
      PGPASSWORD: readFileSync(join(stateDir, "secrets/postgres-password"), "utf8").trim(),
    };
    for (const relativePath of ["demo.git", "quickstart/new.git"]) {
      await waitFor(
        `${relativePath} on every node`,
        async () => {
          const { stdout } = await execFileAsync(
            process.execPath,
            [
              praefectMain,
              "-config",
              praefectConfig,
              "metadata",
              "-virtual-storage",
              run.ready.virtualStorage,
              "-relative-path",
              relativePath,
            ],
            { env },
          );
          return (stdout.match(/fully up to date/g) ?? []).length === 3;
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );
    }
  });

  it("stops on Ctrl-C with exit code 0 and leaves no process behind", async () => {
    const run = live as Runner;
    live = undefined;
    expect(await run.interrupt()).toBe(0);
    expectNothingLeft(run.ready);
  });

  it("starts again on the same state directory with the pushed repositories in place", async () => {
    expect(pushed).not.toBe("");
    const run = await startUp();
    const { ready } = run;
    const again = join(work, "again.git");
    await gitClient(["clone", "--quiet", "--bare", ready.demo.cloneUrl, again]);
    expect(await rev(again, "refs/heads/main")).toBe(pushed);
    const created = join(work, "created-again.git");
    await gitClient(["clone", "--quiet", "--bare", `${ready.gatewayUrl}/quickstart/new.git`, created]);
    expect(await rev(created, "refs/heads/main")).toBe(pushed);
    expect(run.output()).not.toContain("created the demo repository");

    expect(await run.interrupt()).toBe(0);
    expectNothingLeft(ready);
  }, 180_000);

  it("refuses a busy gateway port before starting anything", async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as AddressInfo).port;
    const otherState = join(work, "busy-port-state");
    try {
      const result = await execFileAsync(
        join(repoRoot, "scripts/up"),
        ["--state-dir", otherState, "--http-port", String(port)],
        {
          cwd: repoRoot,
        },
      ).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? "" }),
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`127.0.0.1:${port} is already in use; pick another port with --http-port`);
      expect(processesMentioning(otherState)).toEqual([]);
      expect(existsSync(join(otherState, "postgres/data/PG_VERSION"))).toBe(false);
    } finally {
      busy.close();
    }
  }, 120_000);
});
