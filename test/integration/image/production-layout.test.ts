// The container image without a container engine: scripts/lib/install-production.sh (the
// Dockerfile's install step) makes the image's /app in a temp dir, and the programs are
// started from it the way the image starts them: through the entry point, as user 1000
// (when the suite runs as root), with the image's environment and the app read-only.
// A separate suite builds the real image where a container engine answers.
import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { OPERATOR_VERSION } from "../../../src/controller/main.js";
import { APP_UID } from "../../../src/controller/resources/pods.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/grpc/health/v1/health_pb.js";
import { v2AuthInterceptor } from "../../../src/shared/auth/v2-token.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { freePort, waitFor } from "../../../src/shared/net.js";
import { type ManagedProcess, startProcess, type UnixUser } from "../../../src/shared/process.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { type GatewayProcess, gitClient, startGatewayProcess } from "../gateway-helpers.js";

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, "../../..");
const PROGRAMS = ["gitaly", "praefect", "gitaly-operator"] as const;
// devDependencies that would betray a build toolchain left in the image, whatever
// package.json lists today.
const TOOLCHAIN_PACKAGES = ["typescript", "vitest", "@biomejs/biome", "@bufbuild/buf", "@bufbuild/protoc-gen-es"];

const dockerfile = readFileSync(join(repoRoot, "Dockerfile"), "utf8");
const packageJson = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as {
  version: string;
  dependencies: Record<string, string>;
};

function dockerfileMatch(pattern: RegExp, what: string): RegExpExecArray {
  const m = pattern.exec(dockerfile);
  if (!m) throw new Error(`Dockerfile: no ${what} (${pattern})`);
  return m;
}

/** `ARG NAME=value` (the first one: global ARGs come before any FROM). */
function dockerfileArg(name: string): string {
  return dockerfileMatch(new RegExp(`^ARG ${name}=(\\S*)$`, "m"), `ARG ${name}`)[1] ?? "";
}

/** An exec-form instruction (`ENTRYPOINT [...]`, `CMD [...]`) of the final stage. */
function dockerfileExecForm(instruction: string): string[] {
  const lines = dockerfile.split("\n").filter((l) => l.startsWith(`${instruction} `));
  const last = lines.at(-1);
  if (!last) throw new Error(`Dockerfile: no ${instruction}`);
  return JSON.parse(last.slice(instruction.length + 1)) as string[];
}

/** Where the Dockerfile installs the app: the TARGET of its install-production.sh step. */
const appDirInImage = dockerfileMatch(
  /bash scripts\/lib\/install-production\.sh \S+ (\S+)$/m,
  "install-production.sh step",
)[1] as string;
const imageEntrypoint = dockerfileExecForm("ENTRYPOINT");
const imageCmd = dockerfileExecForm("CMD");

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Outputs of a one-shot process; never rejects on a non-zero exit. */
function collect(command: string, args: string[], options: Parameters<typeof spawn>[2]): Promise<Outcome> {
  return new Promise((resolveOutcome, reject) => {
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.once("error", reject);
    child.once("close", (code) => resolveOutcome({ code, stdout, stderr }));
  });
}

/** Hard-links (or copies) the node binary, so user 1000 can run it from outside /root. */
function installNode(binDir: string): void {
  mkdirSync(binDir, { recursive: true });
  const target = join(binDir, "node");
  try {
    linkSync(process.execPath, target);
  } catch {
    copyFileSync(process.execPath, target);
    chmodSync(target, 0o755);
  }
}

/** The directory git is in, when it is not one the image's PATH has anyway. */
function extraGitDir(): string[] {
  const found = spawnSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).stdout.trim();
  const dir = found ? dirname(found) : "";
  return dir && !["/usr/bin", "/bin"].includes(dir) ? [dir] : [];
}

describe("the Dockerfile", () => {
  it("builds every stage on the pinned node:<.node-version>-bookworm-slim", () => {
    const nodeVersion = readFileSync(join(repoRoot, ".node-version"), "utf8").trim();
    const bases = [...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) =>
      (m[1] ?? "").replace(/\$\{(\w+)\}/g, (_, name: string) => dockerfileArg(name)),
    );
    expect(bases).toEqual([`node:${nodeVersion}-bookworm-slim`, `node:${nodeVersion}-bookworm-slim`]);
  });

  it("starts the entry point install-production.sh writes, with its bin/ on PATH, as the operator's user", () => {
    expect(appDirInImage).toMatch(/^\/[a-z]/);
    // tini as PID 1 reaps the orphans of git processes Gitaly kills; the test runs without it.
    expect(imageEntrypoint).toEqual(["/usr/bin/tini", "--", `${appDirInImage}/entrypoint`]);
    expect(dockerfile).toMatch(/apt-get install -y --no-install-recommends git ca-certificates tini \\$/m);
    expect(dockerfile).toMatch(new RegExp(`^COPY --from=build ${appDirInImage} ${appDirInImage}$`, "m"));
    expect(dockerfile).toMatch(new RegExp(`^ENV PATH=${appDirInImage}/bin:\\$PATH`, "m"));
    expect(dockerfileMatch(/^USER (\S+)$/m, "USER")[1]).toBe(`${APP_UID}:${APP_UID}`);
  });

  it("labels the version the operator uses as its default image tag", () => {
    expect(dockerfileArg("VERSION")).toBe(packageJson.version);
    expect(dockerfileArg("VERSION")).toBe(OPERATOR_VERSION);
    expect(dockerfile).toMatch(/org\.opencontainers\.image\.version="\$\{VERSION\}"/);
  });
});

describe("the image's programs, from the production layout", () => {
  const root = mkdtempSync(join(tmpdir(), "image-layout-"));
  const imageRoot = join(root, "image");
  const app = join(imageRoot, appDirInImage);
  const nodeBin = join(imageRoot, "usr/local/bin");
  // The pods' writable mounts (HOME=/tmp, /run/gitaly, the storage volume).
  const home = join(root, "tmp");
  const runtimeDir = join(root, "run/gitaly");
  const storage = join(root, "storage");
  // Root can write anywhere, so as root the programs run as the image's user, as in a pod.
  const user: UnixUser | undefined = process.getuid?.() === 0 ? { name: "git", uid: APP_UID, gid: APP_UID } : undefined;
  const asUser = user ? { uid: user.uid, gid: user.gid } : {};
  let installLog = "";

  const imageEnv = (): NodeJS.ProcessEnv => ({
    // The image: PATH=/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, node in /usr/local/bin.
    PATH: [join(app, "bin"), nodeBin, "/usr/sbin", "/usr/bin", "/sbin", "/bin", ...extraGitDir()].join(delimiter),
    NODE_ENV: "production",
    // The pods' environment.
    HOME: home,
  });
  /** Runs the image's entry point with `args`, as `docker run IMAGE ...args` would (less tini, which only forwards). */
  const runImage = (args: string[]) =>
    collect(join(imageRoot, imageEntrypoint.at(-1) as string), args, { env: imageEnv(), cwd: "/", ...asUser });

  beforeAll(async () => {
    chmodSync(root, 0o755);
    for (const dir of [home, runtimeDir, storage]) {
      mkdirSync(dir, { recursive: true });
      if (user) chownSync(dir, user.uid, user.gid);
    }
    installNode(nodeBin);
    // The test runner's node and npm run the install, as the build stage's do.
    const env = { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}` };
    try {
      const out = await run("bash", [join(repoRoot, "scripts/lib/install-production.sh"), repoRoot, app], {
        env,
        maxBuffer: 16 * 1024 * 1024,
      });
      installLog = out.stdout + out.stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`install-production.sh failed: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}`);
    }
    // The image's /app belongs to root and cannot be written by its user; without root to
    // switch users, take write permission away instead.
    execFileSync("chmod", ["-R", "a-w", app]);
  }, 300_000);

  afterAll(() => {
    if (existsSync(app)) execFileSync("chmod", ["-R", "u+w", app]);
    rmSync(root, { recursive: true, force: true });
  });

  describe("entry point", () => {
    it.each(PROGRAMS)("%s --help prints its usage and exits 0", async (program) => {
      const out = await runImage([program, "--help"]);
      expect(out, installLog).toMatchObject({ code: 0 });
      expect(out.stdout).toMatch(/^usage:/);
      expect(out.stdout).toContain(program);
    });

    it("the image's CMD (no arguments to docker run) lists the programs and exits 0", async () => {
      const out = await runImage(imageCmd);
      expect(out.code).toBe(0);
      expect(out.stdout).toContain(`programs: ${PROGRAMS.join(" ")}`);
    });

    it("an unknown program name fails and says which programs there are", async () => {
      for (const name of ["gitaly-cluster", "node", "sh", "../dist/gitaly/main.js"]) {
        const out = await runImage([name, "--help"]);
        expect(out.code).toBe(2);
        expect(out.stdout).toBe("");
        expect(out.stderr).toBe(`unknown program "${name}"; this image runs: ${PROGRAMS.join(" ")}\n`);
      }
    });

    it("no arguments at all prints the usage to stderr and fails", async () => {
      const out = await runImage([]);
      expect(out.code).toBe(2);
      expect(out.stderr).toMatch(/^usage: PROGRAM \[ARGUMENTS\.\.\.\]/);
    });

    it("passes the exit status through: praefect with a config it cannot read", async () => {
      const out = await runImage(["praefect", "-config", join(root, "missing.toml"), "sql-ping"]);
      expect(out.code).toBe(1);
      expect(out.stderr).toContain("error reading config file");
    });

    it("puts the programs on PATH, for `kubectl exec POD -- praefect ...`", async () => {
      for (const program of PROGRAMS) {
        const out = await collect(program, ["--help"], { env: imageEnv(), cwd: "/", ...asUser });
        expect(out.code).toBe(0);
        expect(out.stdout).toContain(program);
      }
    });
  });

  describe("installed files", () => {
    const nodeModules = () => join(app, "node_modules");
    const installed = (name: string) => existsSync(join(nodeModules(), name, "package.json"));

    it("holds every production dependency and nothing only development needs", () => {
      for (const name of Object.keys(packageJson.dependencies)) expect(installed(name), name).toBe(true);
      for (const name of TOOLCHAIN_PACKAGES) expect(installed(name), name).toBe(false);
      expect(existsSync(join(nodeModules(), "@biomejs"))).toBe(false);
      // A devDependency may also be a production package's dependency (@types/node is one of
      // @kubernetes/client-node's); the lock marks what only development needs.
      const lock = JSON.parse(readFileSync(join(repoRoot, "package-lock.json"), "utf8")) as {
        packages: Record<string, { dev?: boolean }>;
      };
      const devOnly = Object.entries(lock.packages)
        .filter(([path, p]) => p.dev && path !== "")
        .map(([path]) => path);
      expect(devOnly).toContain("node_modules/typescript");
      expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);
      // npm's own record of the tree: nothing in it is there only for development.
      const hidden = JSON.parse(readFileSync(join(nodeModules(), ".package-lock.json"), "utf8")) as {
        packages: Record<string, { dev?: boolean }>;
      };
      expect(Object.entries(hidden.packages).filter(([, p]) => p.dev)).toEqual([]);
    });

    it("has no TypeScript, type declarations or source maps in node_modules, and keeps licences", () => {
      const out = execFileSync(
        "find",
        [nodeModules(), "-type", "f", "(", "-name", "*.ts", "-o", "-name", "*.map", ")"],
        {
          encoding: "utf8",
        },
      );
      expect(out).toBe("");
      expect(existsSync(join(nodeModules(), "@grpc/grpc-js/LICENSE"))).toBe(true);
    });

    it("ships the programs and the helpers Gitaly starts, but not the local cluster runner", () => {
      for (const file of [
        "dist/gitaly/main.js",
        "dist/praefect/main.js",
        "dist/controller/main.js",
        "dist/gitaly/hooks/gitaly-hooks.js",
        "dist/gitaly/gitaly-ssh.js",
      ]) {
        expect(existsSync(join(app, file)), file).toBe(true);
      }
      expect(existsSync(join(app, "dist/local"))).toBe(false);
      expect(readdirSync(join(app, "bin")).sort()).toEqual([...PROGRAMS].sort());
    });

    it("reports its size (a proxy for the image's /app layer)", () => {
      const du = (path: string) => Number(execFileSync("du", ["-sk", path], { encoding: "utf8" }).split("\t")[0]);
      const sizes = { node_modules: du(nodeModules()), dist: du(join(app, "dist")), app: du(app) };
      process.stdout.write(
        `production layout: /app ${(sizes.app / 1024).toFixed(1)} MiB ` +
          `(node_modules ${(sizes.node_modules / 1024).toFixed(1)} MiB, dist ${(sizes.dist / 1024).toFixed(1)} MiB)\n`,
      );
      expect(sizes.node_modules).toBeGreaterThan(0);
    });
  });

  describe("gitaly serve, as a Gitaly pod runs it", () => {
    const TOKEN = "image-layout-token";
    let gitaly: ManagedProcess;
    let gateway: GatewayProcess | undefined;
    let address = "";
    const logFile = join(root, "gitaly.log");
    const log = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
    const channels: grpc.Client[] = [];

    beforeAll(async () => {
      const port = await freePort();
      address = `127.0.0.1:${port}`;
      const etc = join(root, "etc/gitaly");
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, "token"), TOKEN, { mode: 0o644 });
      const q = JSON.stringify;
      writeFileSync(
        join(etc, "config.toml"),
        [
          `listen_addr = ${q(address)}`,
          `runtime_dir = ${q(runtimeDir)}`,
          "",
          "[auth]",
          `token_file = ${q(join(etc, "token"))}`,
          "",
          "[logging]",
          `format = "json"`,
          `level = "info"`,
          "",
          "[[storage]]",
          `name = "default"`,
          `path = ${q(storage)}`,
          "",
        ].join("\n"),
      );
      gitaly = startProcess(
        join(imageRoot, imageEntrypoint.at(-1) as string),
        ["gitaly", "serve", join(etc, "config.toml")],
        { env: imageEnv(), cwd: "/", logFile, ...(user ? { user } : {}) },
      );
    });

    afterAll(async () => {
      for (const c of channels) c.close();
      await gateway?.stop();
      await gitaly?.stop("SIGKILL", 0);
    });

    it("answers the gRPC health check", async () => {
      const channel = new grpc.Client(address, grpc.credentials.createInsecure(), {
        interceptors: [v2AuthInterceptor(TOKEN)],
        "grpc.initial_reconnect_backoff_ms": 20,
        "grpc.max_reconnect_backoff_ms": 100,
      });
      channels.push(channel);
      const health = createClient(Health, channel);
      await waitFor(
        "gitaly to serve",
        async () => {
          if (gitaly.child.exitCode !== null) throw new Error(`gitaly exited with ${gitaly.child.exitCode}:\n${log()}`);
          const res = await health.check({ service: "" }, { deadline: Date.now() + 1000 });
          return res.status === HealthCheckResponse_ServingStatus.SERVING;
        },
        { timeoutMs: 20_000, intervalMs: 25 },
      );
      expect(log()).toContain('"msg":"gitaly started"');
    });

    it("takes a push, running the git hooks through gitaly-hooks from the layout", async () => {
      gateway = await startGatewayProcess({ upstream: `tcp://${address}`, token: TOKEN, createOnPush: true });
      const work = join(root, "client");
      await gitClient(["init", "--quiet", "--initial-branch=main", work]);
      writeFileSync(join(work, "README"), "hello from the production layout\n");
      await gitClient(["add", "README"], { cwd: work });
      await gitClient(["commit", "--quiet", "-m", "first"], { cwd: work });
      const pushed = (await gitClient(["rev-parse", "HEAD"], { cwd: work })).stdout.trim();

      await gitClient(["push", `${gateway.url}/group/project.git`, "main"], { cwd: work });

      const clone = join(root, "clone");
      await gitClient(["clone", "--quiet", `${gateway.url}/group/project.git`, clone]);
      expect((await gitClient(["rev-parse", "HEAD"], { cwd: clone })).stdout.trim()).toBe(pushed);
      // git ran the hook scripts, and they reached HookService: gitaly-hooks.js ran.
      const hookCalls = log()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e["grpc.service"] === "gitaly.HookService")
        .map((e) => `${e["grpc.method"]} ${e["grpc.code"]}`);
      expect(hookCalls).toEqual(expect.arrayContaining(["PreReceiveHook OK", "UpdateHook OK", "PostReceiveHook OK"]));
    });

    it("stops on SIGTERM with exit status 0", async () => {
      expect(await gitaly.stop("SIGTERM", 15_000)).toBe(0);
      expect(log()).toContain('"msg":"stopped"');
    });
  });

  describe("praefect, as the migration Job and the pods run it", () => {
    let db: TestDatabase;
    let configPath = "";

    beforeAll(async () => {
      db = await freshDatabase("image_layout");
      const pg = inject("postgres");
      const q = JSON.stringify;
      configPath = join(root, "praefect.toml");
      writeFileSync(
        configPath,
        [
          `listen_addr = "127.0.0.1:0"`,
          "",
          "[database]",
          `host = ${q(pg.host)}`,
          `port = ${pg.port}`,
          `user = ${q(pg.user)}`,
          `password = ${q(pg.password)}`,
          `dbname = ${q(db.name)}`,
          `sslmode = "disable"`,
          "",
          "[[virtual_storage]]",
          `name = "default"`,
          "[[virtual_storage.node]]",
          `storage = "gitaly-0"`,
          `address = "tcp://127.0.0.1:1"`,
          "",
        ].join("\n"),
        { mode: 0o644 },
      );
    });

    afterAll(async () => {
      await db?.drop();
    });

    it("sql-migrate, then sql-ping, succeed", async () => {
      const migrate = await runImage(["praefect", "-config", configPath, "sql-migrate"]);
      expect(migrate, migrate.stderr).toMatchObject({ code: 0 });
      expect(migrate.stdout).toMatch(/praefect sql-migrate: OK/);
      const ping = await runImage(["praefect", "-config", configPath, "sql-ping"]);
      expect(ping).toEqual({ code: 0, stdout: "praefect sql-ping: OK\n", stderr: "" });
    });
  });
});

/** A container engine that answers, or why there is none. */
function containerEngine(): { command: string } | { reason: string } {
  const reasons: string[] = [];
  for (const command of ["docker", "podman"]) {
    const r = spawnSync(command, ["info"], { encoding: "utf8", timeout: 20_000 });
    if (r.error) {
      reasons.push(`${command}: not installed`);
      continue;
    }
    if (r.status === 0) return { command };
    const lastLine = (r.stderr || r.stdout).trim().split("\n").at(-1) ?? "";
    reasons.push(`${command}: ${lastLine || `info exited with ${r.status}`}`);
  }
  return { reason: reasons.join("; ") };
}

const engine = containerEngine();
if ("reason" in engine) process.stderr.write(`skipping the image build: no container engine (${engine.reason})\n`);

describe.skipIf("reason" in engine)(
  "reason" in engine ? `the built image (skipped: no container engine: ${engine.reason})` : "the built image",
  () => {
    const command = "command" in engine ? engine.command : "docker";
    const tag = `gitaly-operator:layout-test-${process.pid}`;

    beforeAll(async () => {
      await run(command, ["build", "--tag", tag, repoRoot], { maxBuffer: 64 * 1024 * 1024 });
    }, 1_800_000);

    afterAll(async () => {
      await run(command, ["image", "rm", "--force", tag]).catch(() => undefined);
    });

    it.each(PROGRAMS)("%s --help exits 0, read-only, as the pods run it", async (program) => {
      const out = await collect(
        command,
        ["run", "--rm", "--read-only", "--user", `${APP_UID}:${APP_UID}`, "--env", "HOME=/tmp", tag, program, "--help"],
        {},
      );
      expect(out.code).toBe(0);
      expect(out.stdout).toContain(program);
    });

    it("refuses an unknown program", async () => {
      const out = await collect(command, ["run", "--rm", tag, "gitaly-cluster"], {});
      expect(out.code).toBe(2);
      expect(out.stderr).toContain('unknown program "gitaly-cluster"');
    });

    it("has git for gitaly, and runs as user 1000", async () => {
      const out = await collect(
        command,
        ["run", "--rm", "--entrypoint", "sh", tag, "-c", "git --version && id -u"],
        {},
      );
      expect(out.code).toBe(0);
      expect(out.stdout).toMatch(/^git version .*\n1000\n$/);
    });
  },
);
