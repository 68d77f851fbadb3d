// Git repositories with known, deterministic history for tests and benchmarks.
//
// Everything is written by `git fast-import` from a stream built here, with fixed
// identities and dates, so the same fixture always has the same object IDs on every
// machine: tests can assert exact IDs, and a change in them means the fixture changed.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

export type ObjectFormat = "sha1" | "sha256";

export const FIXTURE_AUTHOR = { name: "Fixture Author", email: "author@fixtures.gitaly.test" };
export const FIXTURE_COMMITTER = { name: "Fixture Committer", email: "committer@fixtures.gitaly.test" };
/** 2023-11-14T22:13:20Z; each commit is one minute after the previous one. */
export const FIXTURE_EPOCH = 1_700_000_000;
export const LARGE_FILE_SIZE = 10 * 1024 * 1024 + 512 * 1024;

/** An environment that ignores the user's and the system's git configuration. */
export function isolatedGitEnv(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    LANG: "C",
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    HOME: "/nonexistent",
  };
}

export function git(repo: string, args: string[], input?: Buffer | string): string {
  return execFileSync("git", ["--git-dir", repo, ...args], {
    env: isolatedGitEnv(),
    input,
    maxBuffer: 256 * 1024 * 1024,
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
  });
}

function initBare(path: string, objectFormat: ObjectFormat): void {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
  execFileSync("git", ["init", "--quiet", "--bare", `--object-format=${objectFormat}`, "--initial-branch=main", path], {
    env: isolatedGitEnv(),
  });
}

/** Deterministic bytes that do not compress: xorshift32 from a fixed seed. */
export function pseudoRandomBytes(size: number, seed = 0x2545f491): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = seed >>> 0;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf.writeUInt32LE(x, i);
  }
  for (; i < size; i++) buf[i] = i & 0xff;
  return buf;
}

/** Builds a fast-import stream; marks are assigned in order starting at 1. */
class FastImport {
  private readonly parts: Buffer[] = [];
  private nextMark = 1;
  private tick = 0;

  private push(text: string): void {
    this.parts.push(Buffer.from(text, "utf8"));
  }

  private data(content: Buffer | string): void {
    const buf = typeof content === "string" ? Buffer.from(content, "utf8") : content;
    this.push(`data ${buf.length}\n`);
    this.parts.push(buf);
    this.push("\n");
  }

  private when(): string {
    return `${FIXTURE_EPOCH + 60 * this.tick++} +0000`;
  }

  blob(content: Buffer | string): number {
    const mark = this.nextMark++;
    this.push(`blob\nmark :${mark}\n`);
    this.data(content);
    return mark;
  }

  commit(
    ref: string,
    message: string,
    changes: { path: string; blob: number; mode?: string }[],
    parents: number[] = [],
  ): number {
    const mark = this.nextMark++;
    const when = this.when();
    this.push(`commit ${ref}\nmark :${mark}\n`);
    this.push(`author ${FIXTURE_AUTHOR.name} <${FIXTURE_AUTHOR.email}> ${when}\n`);
    this.push(`committer ${FIXTURE_COMMITTER.name} <${FIXTURE_COMMITTER.email}> ${when}\n`);
    this.data(message);
    const [first, ...rest] = parents;
    if (first !== undefined) this.push(`from :${first}\n`);
    for (const p of rest) this.push(`merge :${p}\n`);
    for (const c of changes) this.push(`M ${c.mode ?? "100644"} :${c.blob} ${c.path}\n`);
    this.push("\n");
    return mark;
  }

  annotatedTag(name: string, target: number, message: string): void {
    this.push(`tag ${name}\nfrom :${target}\n`);
    this.push(`tagger ${FIXTURE_COMMITTER.name} <${FIXTURE_COMMITTER.email}> ${this.when()}\n`);
    this.data(message);
  }

  /** Points a ref at a commit without a new commit: a branch or a lightweight tag. */
  ref(ref: string, target: number): void {
    this.push(`reset ${ref}\nfrom :${target}\n\n`);
  }

  run(repo: string): Map<number, string> {
    const marks = join(repo, "fixture-marks");
    execFileSync("git", ["--git-dir", repo, "fast-import", "--quiet", `--export-marks=${marks}`], {
      env: isolatedGitEnv(),
      input: Buffer.concat([...this.parts, Buffer.from("done\n")]),
      maxBuffer: 64 * 1024 * 1024,
    });
    const map = new Map<number, string>();
    for (const line of readFileSync(marks, "utf8").split("\n")) {
      const m = /^:(\d+) ([0-9a-f]+)$/.exec(line);
      if (m?.[1] && m[2]) map.set(Number(m[1]), m[2]);
    }
    rmSync(marks);
    return map;
  }
}

function oid(marks: Map<number, string>, mark: number): string {
  const id = marks.get(mark);
  if (!id) throw new Error(`fast-import did not report mark :${mark}`);
  return id;
}

export interface EmptyRepository {
  path: string;
  objectFormat: ObjectFormat;
}

/** A bare repository with no objects and no refs; HEAD points at the unborn `main`. */
export function createEmptyRepository(path: string, objectFormat: ObjectFormat = "sha1"): EmptyRepository {
  initBare(path, objectFormat);
  return { path, objectFormat };
}

export interface StandardRepository {
  path: string;
  objectFormat: ObjectFormat;
  commits: {
    initial: string;
    second: string;
    binary: string;
    feature1: string;
    feature2: string;
    merge: string;
    large: string;
  };
  branches: Record<"main" | "feature" | "large-file", string>;
  tags: { lightweight: { name: string; target: string }; annotated: { name: string; target: string } };
  binaryFile: { path: string; content: Buffer };
  largeFile: { path: string; size: number };
}

/**
 * A bare repository with:
 * - `main`: three linear commits (the third adds a binary file) and a merge of `feature`;
 * - `feature`: two commits branched from main's second commit;
 * - `large-file`: main plus a commit adding a 10.5 MiB file of incompressible bytes;
 * - `v1.0.0`, a lightweight tag on main's second commit;
 * - `v1.1.0`, an annotated tag on the merge.
 */
export function createStandardRepository(path: string, objectFormat: ObjectFormat = "sha1"): StandardRepository {
  initBare(path, objectFormat);
  const fi = new FastImport();
  const binaryContent = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256));
  const readme = fi.blob("# Fixture repository\n\nBuilt by test/harness/git-fixtures.ts.\n");
  const initial = fi.commit("refs/heads/main", "Initial commit\n", [{ path: "README.md", blob: readme }]);
  const hello = fi.blob("hello, world\n");
  const second = fi.commit("refs/heads/main", "Add hello\n\nA second line of body.\n", [
    { path: "src/hello.txt", blob: hello },
  ]);
  const bin = fi.blob(binaryContent);
  const binary = fi.commit("refs/heads/main", "Add a binary file\n", [{ path: "assets/blob.bin", blob: bin }]);
  const f1blob = fi.blob("feature one\n");
  const feature1 = fi.commit(
    "refs/heads/feature",
    "Start feature\n",
    [{ path: "feature.txt", blob: f1blob }],
    [second],
  );
  const f2blob = fi.blob("feature one\nfeature two\n");
  const feature2 = fi.commit(
    "refs/heads/feature",
    "Finish feature\n",
    [{ path: "feature.txt", blob: f2blob }],
    [feature1],
  );
  const merge = fi.commit(
    "refs/heads/main",
    "Merge branch 'feature'\n",
    [{ path: "feature.txt", blob: f2blob }],
    [binary, feature2],
  );
  const largeBlob = fi.blob(pseudoRandomBytes(LARGE_FILE_SIZE));
  const large = fi.commit(
    "refs/heads/large-file",
    "Add a large file\n",
    [{ path: "large.bin", blob: largeBlob }],
    [merge],
  );
  fi.ref("refs/tags/v1.0.0", second);
  fi.annotatedTag("v1.1.0", merge, "Release 1.1.0\n");
  const marks = fi.run(path);

  const commits = {
    initial: oid(marks, initial),
    second: oid(marks, second),
    binary: oid(marks, binary),
    feature1: oid(marks, feature1),
    feature2: oid(marks, feature2),
    merge: oid(marks, merge),
    large: oid(marks, large),
  };
  return {
    path,
    objectFormat,
    commits,
    branches: { main: commits.merge, feature: commits.feature2, "large-file": commits.large },
    tags: {
      lightweight: { name: "v1.0.0", target: commits.second },
      annotated: { name: "v1.1.0", target: commits.merge },
    },
    binaryFile: { path: "assets/blob.bin", content: binaryContent },
    largeFile: { path: "large.bin", size: LARGE_FILE_SIZE },
  };
}

export interface ManyRefsRepository {
  path: string;
  objectFormat: ObjectFormat;
  /** Every ref, including `refs/heads/main`. */
  refs: string[];
  commits: string[];
}

/**
 * A bare repository with `count` refs in total: `main` plus branches
 * `refs/heads/branch-0001`… each on its own commit, so ref advertisement and
 * checksums see distinct values.
 */
export function createManyRefsRepository(
  path: string,
  count = 1000,
  objectFormat: ObjectFormat = "sha1",
): ManyRefsRepository {
  initBare(path, objectFormat);
  const fi = new FastImport();
  const base = fi.commit("refs/heads/main", "Base\n", [{ path: "README.md", blob: fi.blob("many refs\n") }]);
  const marks: number[] = [base];
  const refs = ["refs/heads/main"];
  for (let i = 1; i < count; i++) {
    const name = `refs/heads/branch-${String(i).padStart(4, "0")}`;
    const file = fi.blob(`branch ${i}\n`);
    marks.push(fi.commit(name, `Branch ${i}\n`, [{ path: "branch.txt", blob: file }], [base]));
    refs.push(name);
  }
  const ids = fi.run(path);
  return { path, objectFormat, refs, commits: marks.map((m) => oid(ids, m)) };
}
