// Fixture repositories for the core-read suites, placed inside a storage, plus ways to
// ask git itself what the answers should be.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import {
  createEmptyRepository,
  createManyRefsRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  type ManyRefsRepository,
  type StandardRepository,
} from "../../harness/git-fixtures.js";

/** An object's content, byte for byte. */
export function catFile(repoPath: string, type: string, rev: string): Buffer {
  return execFileSync("git", ["--git-dir", repoPath, "cat-file", type, rev], {
    env: isolatedGitEnv(),
    maxBuffer: 64 * 1024 * 1024,
  });
}

export const revParse = (repoPath: string, rev: string) => git(repoPath, ["rev-parse", "--verify", rev]).trim();
export const lines = (text: string) => text.split("\n").filter((l) => l !== "");

const IDENT = ["-c", "user.name=Extra Author", "-c", "user.email=extra@fixtures.gitaly.test"];
export const SUBMODULE_COMMIT = "1234567890abcdef1234567890abcdef12345678";

export interface ExtraRepository {
  path: string;
  /** A commit whose message has trailers and whose tree holds nested dirs, a submodule, an executable. */
  commit: string;
  /** An annotated tag pointing at another annotated tag, and one pointing at a blob. */
  tagOfTag: string;
  blobTag: string;
}

/**
 * A repository built with plumbing: `a/b/c/file` (a chain of single-entry trees for flat
 * paths), `README`, `run.sh` (100755), `sub` (a submodule), and `a.txt`/`a-b`/`a0` for sort
 * order corner cases; HEAD on `main`.
 */
export function createExtraRepository(path: string): ExtraRepository {
  createEmptyRepository(path);
  const run = (args: string[], input?: string) => git(path, [...IDENT, ...args], input).trim();
  const blob = (content: string) => run(["hash-object", "-w", "--stdin"], content);
  const tree = (entries: string[]) => run(["mktree"], `${entries.join("\n")}\n`);
  const file = blob("deep\n");
  const c = tree([`100644 blob ${file}\tfile`]);
  const b = tree([`040000 tree ${c}\tc`]);
  const a = tree([`040000 tree ${b}\tb`]);
  const root = tree([
    `040000 tree ${a}\ta`,
    `100644 blob ${blob("dotted\n")}\ta.txt`,
    `100644 blob ${blob("dashed\n")}\ta-b`,
    `100644 blob ${blob("zero\n")}\ta0`,
    `100644 blob ${blob("readme\n")}\tREADME`,
    `100755 blob ${blob("#!/bin/sh\n")}\trun.sh`,
    `160000 commit ${SUBMODULE_COMMIT}\tsub`,
  ]);
  const message =
    "Add things\n\nWith a body.\n\nSigned-off-by: Extra Author <extra@fixtures.gitaly.test>\nChange-Id: I0123\n";
  const commit = run(["commit-tree", root, "-m", message.trimEnd()]);
  run(["update-ref", "refs/heads/main", commit]);
  run(["symbolic-ref", "HEAD", "refs/heads/main"]);
  run(["tag", "-a", "-m", "inner", "inner", commit]);
  run(["tag", "-a", "-m", "outer", "outer", "inner"]);
  run(["tag", "-a", "-m", "blob tag", "blobtag", file]);
  return { path, commit, tagOfTag: revParse(path, "refs/tags/outer"), blobTag: revParse(path, "refs/tags/blobtag") };
}

export interface ReadsFixtures {
  standard: StandardRepository;
  extra: ExtraRepository;
  many: ManyRefsRepository;
}

/** Creates the fixtures under `storagePath` as standard.git, extra.git and many.git. */
export function createReadsFixtures(storagePath: string, manyRefs = 150): ReadsFixtures {
  return {
    standard: createStandardRepository(join(storagePath, "standard.git")),
    extra: createExtraRepository(join(storagePath, "extra.git")),
    many: createManyRefsRepository(join(storagePath, "many.git"), manyRefs),
  };
}
