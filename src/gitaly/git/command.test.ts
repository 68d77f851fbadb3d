import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createStandardRepository,
  type StandardRepository,
} from "../../../test/harness/git-fixtures.js";
import { Code, RpcError } from "../../shared/grpc/errors.js";
import { waitFor } from "../../shared/net.js";
import { GitCommandError, GitCommandFactory, gitLocale, gitVersionAtLeast, parseGitVersion } from "./command.js";

let base: string;
let repo: StandardRepository;
const factory = new GitCommandFactory();

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected a throw");
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "gitcmd-test-")));
  repo = createStandardRepository(join(base, "repo.git"));
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

describe("GitCommandFactory argument rules", () => {
  it("refuses subcommands outside the allow-list, naming them", () => {
    for (const sub of ["daemon", "filter-branch", "credential", "!sh", "-c", "upload-pack "]) {
      const err = thrown(() => factory.spawn({ repoPath: repo.path, subcommand: sub }));
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
      expect((err as RpcError).message).toBe(`invalid sub command name ${JSON.stringify(sub)}: invalid argument`);
    }
  });

  it("builds --git-dir, flags, --end-of-options, arguments and the -- separator in order", () => {
    expect(
      factory.argv({
        repoPath: repo.path,
        globalFlags: ["--literal-pathspecs"],
        subcommand: "log",
        flags: ["--format=%H", "-n1", { name: "--max-count", value: "-3" }],
        args: ["main"],
        postSeparatorArgs: ["-odd path"],
      }),
    ).toEqual([
      "--git-dir",
      repo.path,
      "--literal-pathspecs",
      "log",
      "--format=%H",
      "-n1",
      "--max-count",
      "-3",
      "--end-of-options",
      "main",
      "--",
      "-odd path",
    ]);
    expect(factory.argv({ subcommand: "commit-graph", action: "write", flags: ["--reachable"] })).toEqual([
      "commit-graph",
      "write",
      "--reachable",
      "--end-of-options",
    ]);
  });

  it.each(["main", "-", "--", "--a b", "- x", "-a=b", "--=x", "---x"])("refuses the flag %j", (flag) => {
    const err = thrown(() => factory.argv({ subcommand: "log", flags: [flag] }));
    expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as RpcError).message).toMatch(/failed regex validation/);
  });

  it("refuses bad actions, global flags and value-flag names", () => {
    expect(() => factory.argv({ subcommand: "commit-graph", action: "--write" })).toThrow(/invalid action/);
    expect(() => factory.argv({ subcommand: "log", globalFlags: ["--exec-path=/tmp"] })).toThrow(/not allowed/);
    expect(() => factory.argv({ subcommand: "log", flags: [{ name: "--x=y", value: "1" }] })).toThrow(/regex/);
  });

  it("refuses dash arguments for subcommands without --end-of-options", () => {
    expect(() => factory.argv({ subcommand: "rev-parse", args: ["--output=/tmp/x"] })).toThrow(
      /positional arg "--output=\/tmp\/x" cannot start with dash/,
    );
    // rev-list takes pseudo revisions, but nothing else that looks like an option.
    expect(factory.argv({ subcommand: "rev-list", args: ["--all", "--not", "main"] })).toEqual([
      "rev-list",
      "--all",
      "--not",
      "main",
    ]);
    expect(() => factory.argv({ subcommand: "rev-list", args: ["--output=/tmp/x"] })).toThrow(
      "validating positional argument: revision can't start with '-'",
    );
  });

  it("treats an option-looking argument after --end-of-options as a revision", async () => {
    const target = join(base, "smuggled-output");
    // Control: without --end-of-options git would write the file.
    execFileSync("git", ["--git-dir", repo.path, "log", "-1", `--output=${join(base, "control-output")}`, "main"]);
    expect(existsSync(join(base, "control-output"))).toBe(true);

    const err = await factory.run({ repoPath: repo.path, subcommand: "log", args: [`--output=${target}`] }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GitCommandError);
    expect((err as GitCommandError).exitCode).toBe(128);
    expect(existsSync(target)).toBe(false);
  });

  it("refuses per-call environment that would undo the hardening", () => {
    for (const key of ["GIT_CONFIG_COUNT", "GIT_CONFIG_GLOBAL", "GIT_DIR", "HOME", "PATH", "LC_ALL", "A=B"]) {
      expect(() => factory.environment({ subcommand: "log", env: { [key]: "x" } }), key).toThrow(/may not be set/);
    }
    expect(factory.environment({ subcommand: "upload-pack", env: { GIT_PROTOCOL: "version=2" } }).GIT_PROTOCOL).toBe(
      "version=2",
    );
  });
});

describe("GitCommandFactory execution", () => {
  it("runs git and returns its output", async () => {
    const { stdout } = await factory.run({ repoPath: repo.path, subcommand: "rev-parse", args: ["main"] });
    expect(stdout.toString().trim()).toBe(repo.branches.main);
  });

  it("reports failures with exit code and stderr", async () => {
    const err = await factory
      .run({ repoPath: repo.path, subcommand: "cat-file", flags: ["-t"], args: ["no-such-object"] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(GitCommandError);
    const e = err as GitCommandError;
    expect(e.exitCode).toBe(128);
    expect(e.stderr).toMatch(/Not a valid object name no-such-object/);
    expect(e.message).toContain(`git cat-file in ${repo.path} failed: exit status 128`);
  });

  it("feeds stdin from a Buffer, a string or a stream", async () => {
    const expected = execFileSync("git", ["hash-object", "--stdin"], { input: "hello\n" }).toString().trim();
    for (const stdin of [Buffer.from("hello\n"), "hello\n", Readable.from([Buffer.from("hel"), Buffer.from("lo\n")])]) {
      const { stdout } = await factory.run({
        repoPath: repo.path,
        subcommand: "hash-object",
        flags: ["--stdin"],
        stdin,
      });
      expect(stdout.toString().trim()).toBe(expected);
    }
  });

  it("streams through spawn() with an open stdin", async () => {
    const proc = factory.spawn({
      repoPath: repo.path,
      subcommand: "cat-file",
      flags: ["--batch-check"],
      stdin: "pipe",
    });
    const chunks: Buffer[] = [];
    proc.stdout.on("data", (c: Buffer) => chunks.push(c));
    proc.stdin?.end(`${repo.commits.initial}\n`);
    await proc.wait();
    expect(Buffer.concat(chunks).toString()).toMatch(new RegExp(`^${repo.commits.initial} commit \\d+\\n$`));
  });

  it("does not let the server's environment reach git", async () => {
    const other = createEmptyRepository(join(base, "other.git"));
    const evilConfig = join(base, "evil.gitconfig");
    writeFileSync(evilConfig, "[leak]\n\tglobal = yes\n");
    writeFileSync(join(base, ".gitconfig"), "[leak]\n\thome = yes\n");
    const saved = { ...process.env };
    Object.assign(process.env, {
      GIT_DIR: other.path,
      GIT_CONFIG_GLOBAL: evilConfig,
      GIT_CONFIG_SYSTEM: evilConfig,
      GIT_CONFIG_PARAMETERS: "'leak.parameters'='yes'",
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "leak.count",
      GIT_CONFIG_VALUE_0: "yes",
      GIT_OBJECT_DIRECTORY: join(other.path, "objects"),
      HOME: base,
      XDG_CONFIG_HOME: base,
    });
    try {
      const leaky = new GitCommandFactory({
        extraConfig: [
          { key: "core.bigFileThreshold", value: "7m" },
          { key: "admin.setting", value: "from-config-toml" },
        ],
      });
      const { stdout } = await leaky.run({
        repoPath: repo.path,
        subcommand: "config",
        flags: ["--list", "--show-origin"],
        config: [{ key: "percall.setting", value: "yes" }],
      });
      const lines = stdout.toString().trim().split("\n");
      expect(stdout.toString()).not.toMatch(/leak/);
      for (const line of lines) {
        expect(line.startsWith("command line:\t") || line.startsWith(`file:${repo.path}/config\t`), line).toBe(true);
      }
      expect(lines).toContain("command line:\tgc.auto=0");
      expect(lines).toContain("command line:\tcore.usereplacerefs=false");
      expect(lines).toContain("command line:\tcore.fsync=objects,derived-metadata,reference");
      expect(lines).toContain("command line:\tpercall.setting=yes");
      expect(lines).toContain("command line:\tadmin.setting=from-config-toml");

      // The admin's configuration wins over the built-in defaults.
      const threshold = await leaky.run({
        repoPath: repo.path,
        subcommand: "config",
        flags: ["--get"],
        args: ["core.bigFileThreshold"],
      });
      expect(threshold.stdout.toString().trim()).toBe("7m");

      // Without --git-dir, git does not pick up the server's GIT_DIR either.
      const noRepo = await leaky.run({ subcommand: "rev-parse", flags: ["--absolute-git-dir"], cwd: base }).then(
        () => null,
        (e: unknown) => e,
      );
      expect((noRepo as GitCommandError).stderr).toMatch(/not a git repository/);

      const env = leaky.environment({ repoPath: repo.path, subcommand: "log" });
      expect(Object.keys(env).filter((k) => k.startsWith("GIT_") && !k.startsWith("GIT_CONFIG_"))).toEqual([
        "GIT_TERMINAL_PROMPT",
      ]);
      expect(env).toMatchObject({
        LANG: gitLocale(),
        GIT_CONFIG_GLOBAL: "/dev/null",
        GIT_CONFIG_SYSTEM: "/dev/null",
        XDG_CONFIG_HOME: "/dev/null",
        HOME: "/nonexistent",
      });
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
  });

  it("kills git when the signal aborts", async () => {
    const controller = new AbortController();
    // Waits for input forever.
    const proc = factory.spawn({
      repoPath: repo.path,
      subcommand: "cat-file",
      flags: ["--batch"],
      stdin: "pipe",
      signal: controller.signal,
    });
    const pid = proc.pid as number;
    expect(isAlive(pid)).toBe(true);
    controller.abort();
    const err = await proc.wait().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GitCommandError);
    expect((err as GitCommandError).aborted).toBe(true);
    await waitFor("git to be gone", async () => !isAlive(pid));
    // An already aborted signal does not start git at all.
    expect(() => factory.spawn({ subcommand: "version", signal: controller.signal })).toThrow(/cancelled/);
  });

  it("reports the git version", async () => {
    const version = await factory.version();
    expect(execFileSync("git", ["version"]).toString().trim()).toBe(`git version ${version}`);
    expect(parseGitVersion(version)[0]).toBeGreaterThanOrEqual(2);
    expect(gitVersionAtLeast("2.39.5", "2.39.5")).toBe(true);
    expect(gitVersionAtLeast("2.39.5", "2.43.0")).toBe(false);
    expect(gitVersionAtLeast("2.47.1.gl1", "2.43.0")).toBe(true);
  });
});
