// Proves the git fixtures are built by the real git, read back as described, and
// deterministic: the same object IDs on every build and every machine.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createManyRefsRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  LARGE_FILE_SIZE,
} from "../harness/git-fixtures.js";

// The fixture's object IDs, pinned: same bytes, same IDs, on every machine.
const EXPECTED_INITIAL = "c02fa1651ba3fe4128a7835d0452eb0f03f16012";
const EXPECTED_MERGE = "1352fbeae87e8ded119961bf00ae3f4b0688e4a0";

const dir = mkdtempSync(join(tmpdir(), "git-fixtures-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("git fixtures", () => {
  const repo = createStandardRepository(join(dir, "standard.git"));

  it("is deterministic", () => {
    const again = createStandardRepository(join(dir, "standard-again.git"));
    expect(again.commits).toEqual(repo.commits);
    // Pinned: if this changes, every test that relies on fixture IDs is affected.
    expect(repo.commits.initial).toBe(EXPECTED_INITIAL);
    expect(repo.commits.merge).toBe(EXPECTED_MERGE);
  });

  it("has linear history, a merge and branches", () => {
    expect(git(repo.path, ["rev-list", "--count", "main"]).trim()).toBe("6");
    expect(git(repo.path, ["rev-list", "--first-parent", "--count", "main"]).trim()).toBe("4");
    const parents = git(repo.path, ["rev-list", "--parents", "-n1", "main"]).trim().split(" ");
    expect(parents).toEqual([repo.commits.merge, repo.commits.binary, repo.commits.feature2]);
    const heads = git(repo.path, ["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"])
      .trim()
      .split("\n");
    expect(heads).toEqual([
      `refs/heads/feature ${repo.commits.feature2}`,
      `refs/heads/large-file ${repo.commits.large}`,
      `refs/heads/main ${repo.commits.merge}`,
    ]);
    expect(git(repo.path, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/main");
    const author = git(repo.path, ["log", "-1", "--format=%an <%ae> %at", repo.commits.initial]).trim();
    expect(author).toBe("Fixture Author <author@fixtures.gitaly.test> 1700000000");
  });

  it("has a lightweight and an annotated tag", () => {
    expect(git(repo.path, ["cat-file", "-t", "refs/tags/v1.0.0"]).trim()).toBe("commit");
    expect(git(repo.path, ["rev-parse", "refs/tags/v1.0.0"]).trim()).toBe(repo.commits.second);
    expect(git(repo.path, ["cat-file", "-t", "refs/tags/v1.1.0"]).trim()).toBe("tag");
    expect(git(repo.path, ["rev-parse", "refs/tags/v1.1.0^{commit}"]).trim()).toBe(repo.commits.merge);
  });

  it("stores a binary file and a file over 10 MB byte for byte", () => {
    const bin = execGitBytes(repo.path, ["cat-file", "blob", `main:${repo.binaryFile.path}`]);
    expect(bin.equals(repo.binaryFile.content)).toBe(true);
    expect(bin.includes(0)).toBe(true);
    const size = Number(git(repo.path, ["cat-file", "-s", `large-file:${repo.largeFile.path}`]).trim());
    expect(size).toBe(LARGE_FILE_SIZE);
    expect(size).toBeGreaterThan(10 * 1024 * 1024);
    expect(git(repo.path, ["fsck", "--strict", "--no-progress"])).toBe("");
  });

  it("builds an empty repository with no refs", () => {
    const empty = createEmptyRepository(join(dir, "empty.git"));
    expect(git(empty.path, ["for-each-ref"]).trim()).toBe("");
    expect(git(empty.path, ["count-objects"]).trim()).toBe("0 objects, 0 kilobytes");
  });

  it("builds a repository with 1,000 refs", () => {
    const many = createManyRefsRepository(join(dir, "many.git"));
    const refs = git(many.path, ["for-each-ref", "--format=%(refname)"]).trim().split("\n");
    expect(refs).toHaveLength(1000);
    expect(new Set(refs)).toEqual(new Set(many.refs));
    expect(new Set(many.commits).size).toBe(1000);
  });

  it("supports SHA-256 repositories", () => {
    const sha256 = createStandardRepository(join(dir, "sha256.git"), "sha256");
    expect(sha256.commits.merge).toMatch(/^[0-9a-f]{64}$/);
    expect(git(sha256.path, ["rev-parse", "--show-object-format"]).trim()).toBe("sha256");
  });
});

function execGitBytes(repo: string, args: string[]): Buffer {
  return execFileSync("git", ["--git-dir", repo, ...args], { env: isolatedGitEnv(), maxBuffer: 64 * 1024 * 1024 });
}
