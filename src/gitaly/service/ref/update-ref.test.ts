import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createStandardRepository,
  git,
  isolatedGitEnv,
  type StandardRepository,
} from "../../../../test/harness/git-fixtures.js";
import { RepositorySchema } from "../../../gen/shared_pb.js";
import { CatfileCache } from "../../git/catfile.js";
import { GitCommandFactory } from "../../git/command.js";
import { openRepo } from "../../git/objects/repo-handle.js";
import { StorageLocator } from "../../storage/locator.js";
import { parseUpdateRefStderr, RefUpdateError, RefUpdater } from "./update-ref.js";

let base: string;
let repo: StandardRepository;
const factory = new GitCommandFactory();
const catfile = new CatfileCache(factory);
const ZERO = "0".repeat(40);

beforeAll(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), "update-ref-test-")));
  repo = createStandardRepository(join(base, "repo.git"));
});

afterAll(async () => {
  await catfile.close();
  rmSync(base, { recursive: true, force: true });
});

/** What git update-ref prints on stderr for a failing transaction. */
function stderrOf(commands: string[]): string {
  try {
    execFileSync("git", ["--git-dir", repo.path, "update-ref", "-z", "--stdin"], {
      env: isolatedGitEnv(),
      input: `${commands.join("\0")}\0`,
      stdio: ["pipe", "pipe", "pipe"],
    });
  } catch (err) {
    return String((err as { stderr: Buffer }).stderr);
  }
  throw new Error("update-ref succeeded");
}

const handle = () =>
  openRepo(
    { locator: new StorageLocator([{ name: "s", path: base }]), git: factory, catfile },
    create(RepositorySchema, { storageName: "s", relativePath: "repo.git" }),
  );

describe("parseUpdateRefStderr", () => {
  it("recognises git's own messages", () => {
    const c = repo.commits;
    expect(parseUpdateRefStderr(stderrOf(["start", `update refs/heads/main`, c.second, c.initial, "commit"]))).toEqual({
      kind: "mismatching-state",
      reference: "refs/heads/main",
      expected: c.initial,
      actual: c.merge,
    });
    expect(parseUpdateRefStderr(stderrOf(["start", "update refs/heads/x", "1".repeat(40), "", "commit"]))).toEqual({
      kind: "nonexistent-object",
      reference: "refs/heads/x",
      oid: "1".repeat(40),
    });
    const tree = git(repo.path, ["rev-parse", "main^{tree}"]).trim();
    expect(parseUpdateRefStderr(stderrOf(["start", "update refs/heads/x", tree, "", "commit"]))).toEqual({
      kind: "non-commit-object",
      reference: "refs/heads/x",
      oid: tree,
    });
    expect(parseUpdateRefStderr(stderrOf(["start", "update refs/heads/main", c.second, ZERO, "commit"]))).toEqual({
      kind: "already-exists",
      reference: "refs/heads/main",
    });
    expect(parseUpdateRefStderr(stderrOf(["start", "update refs/heads/main/x", c.second, "", "commit"]))).toEqual({
      kind: "file-directory-conflict",
      existing: "refs/heads/main",
      conflicting: "refs/heads/main/x",
    });
    expect(parseUpdateRefStderr(stderrOf(["start", "update refs/heads/a..b", c.second, "", "commit"]))).toEqual({
      kind: "invalid-format",
      reference: "refs/heads/a..b",
    });
    expect(
      parseUpdateRefStderr(
        stderrOf(["start", "update refs/heads/q", c.second, "", "update refs/heads/q", c.second, "", "commit"]),
      ),
    ).toEqual({ kind: "multiple-updates", reference: "refs/heads/q" });
    writeFileSync(join(repo.path, "refs/heads/main.lock"), "");
    try {
      expect(
        parseUpdateRefStderr(stderrOf(["start", "update refs/heads/main", c.second, "", "prepare", "commit"])),
      ).toEqual({
        kind: "locked",
        reference: "refs/heads/main",
      });
    } finally {
      rmSync(join(repo.path, "refs/heads/main.lock"));
    }
    expect(parseUpdateRefStderr("fatal: something else\n")).toBeNull();
  });
});

describe("RefUpdater", () => {
  it("commits queued updates atomically", async () => {
    const c = repo.commits;
    const updater = await RefUpdater.start(handle());
    updater.update("refs/heads/one", c.initial, ZERO);
    updater.update(Buffer.from("refs/heads/two"), c.second);
    await updater.prepare();
    // Prepared, not committed: nothing is visible yet.
    expect(git(repo.path, ["for-each-ref", "refs/heads/one"])).toBe("");
    await updater.commit();
    expect(git(repo.path, ["rev-parse", "refs/heads/one", "refs/heads/two"]).trim().split("\n")).toEqual([
      c.initial,
      c.second,
    ]);
    const deleter = await RefUpdater.start(handle(), { noDeref: true });
    deleter.delete("refs/heads/one");
    deleter.delete("refs/heads/two");
    await deleter.commit();
    expect(git(repo.path, ["for-each-ref", "refs/heads/one", "refs/heads/two"])).toBe("");
  });

  it("reports typed failures and applies nothing", async () => {
    const c = repo.commits;
    const updater = await RefUpdater.start(handle());
    updater.update("refs/heads/three", c.initial);
    updater.update("refs/heads/main", c.initial, c.second);
    const err = await updater.commit().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefUpdateError);
    expect((err as RefUpdateError).failure?.kind).toBe("mismatching-state");
    expect((err as RefUpdateError).message).toBe("reference does not point to expected object");
    expect(git(repo.path, ["for-each-ref", "refs/heads/three"])).toBe("");
  });

  it("aborts on close without commit and releases its locks", async () => {
    const updater = await RefUpdater.start(handle());
    updater.update("refs/heads/main", repo.commits.initial);
    await updater.prepare();
    expect(existsSync(join(repo.path, "refs/heads/main.lock"))).toBe(true);
    await updater.close();
    expect(existsSync(join(repo.path, "refs/heads/main.lock"))).toBe(false);
    expect(git(repo.path, ["rev-parse", "main"]).trim()).toBe(repo.commits.merge);
  });
});
