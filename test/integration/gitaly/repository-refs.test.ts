// WriteRef and CalculateChecksum against a running Gitaly process: reference updates
// with and without expected old values, HEAD, refusal of option-like input, and the
// replica checksum compared with an independent computation.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createManyRefsRepository,
  createStandardRepository,
  git,
  type StandardRepository,
} from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import {
  copyFixture,
  expectStatus,
  expectStatusMatching,
  independentChecksum,
  listTree,
  outsideStorages,
  type RepositoryClient,
  refsOf,
  repo,
  repositoryClient,
  showRefHead,
  storagePath,
} from "./repository-helpers.js";

const ZERO = "0".repeat(40);

let gitaly: GitalyProcess;
let client: RepositoryClient;
let outside: string;
let counter = 0;
let template: StandardRepository;

beforeAll(async () => {
  gitaly = await startGitaly();
  client = repositoryClient(gitaly);
  outside = mkdtempSync(join(tmpdir(), "gitaly-outside-"));
  template = createStandardRepository(join(outside, "template.git"));
});

afterAll(async () => {
  await gitaly?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

/** A fresh copy of the standard fixture in the storage. */
function freshStandard(): { relativePath: string; fixture: StandardRepository } {
  const relativePath = `refs/standard-${++counter}.git`;
  return { relativePath, fixture: copyFixture(template, storagePath(gitaly, relativePath)) };
}

const revParse = (path: string, rev: string) => git(path, ["rev-parse", "--verify", "--quiet", rev]).trim();
const b = (s: string) => Buffer.from(s);

describe("WriteRef", () => {
  it("creates a branch from an object ID and updates it from a ref name", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/heads/new"),
      revision: b(fixture.commits.second),
    });
    expect(revParse(fixture.path, "refs/heads/new")).toBe(fixture.commits.second);
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/heads/new"),
      revision: b("refs/heads/feature"),
    });
    expect(revParse(fixture.path, "refs/heads/new")).toBe(fixture.commits.feature2);
  });

  it("points a ref at an annotated tag object itself, not at its commit", async () => {
    const { relativePath, fixture } = freshStandard();
    const tagObject = revParse(fixture.path, "refs/tags/v1.1.0");
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/tags/copy"),
      revision: b("refs/tags/v1.1.0"),
    });
    expect(revParse(fixture.path, "refs/tags/copy")).toBe(tagObject);
    expect(tagObject).not.toBe(fixture.commits.merge);
  });

  it("updates only when the old revision matches", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/heads/feature"),
      revision: b(fixture.commits.merge),
      oldRevision: b(fixture.commits.feature2),
    });
    expect(revParse(fixture.path, "refs/heads/feature")).toBe(fixture.commits.merge);
  });

  it("fails on an old revision mismatch and leaves the ref unchanged", async () => {
    const { relativePath, fixture } = freshStandard();
    const before = refsOf(fixture.path);
    const err = await client
      .writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/feature"),
        revision: b(fixture.commits.merge),
        oldRevision: b(fixture.commits.initial),
      })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toBe("error when running update-ref command: reference does not point to expected object");
    expect(err?.metadata.get("actual_object_id")).toEqual([fixture.commits.feature2]);
    expect(err?.metadata.get("expected_object_id")).toEqual([fixture.commits.initial]);
    expect(refsOf(fixture.path)).toBe(before);
  });

  it("creates with an all-zero old revision only if the ref does not exist", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/heads/brand-new"),
      revision: b(fixture.commits.initial),
      oldRevision: b(ZERO),
    });
    expect(revParse(fixture.path, "refs/heads/brand-new")).toBe(fixture.commits.initial);
    const before = refsOf(fixture.path);
    await expectStatus(
      client.writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/main"),
        revision: b(fixture.commits.initial),
        oldRevision: b(ZERO),
      }),
      grpc.status.INTERNAL,
      "error when running update-ref command: reference already exists",
    );
    expect(refsOf(fixture.path)).toBe(before);
  });

  it("deletes a ref when the new revision is all zeros", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("refs/heads/feature"),
      revision: b(ZERO),
      oldRevision: b(fixture.commits.feature2),
    });
    expect(git(fixture.path, ["for-each-ref", "--format=%(refname)", "refs/heads/"]).trim().split("\n")).toEqual([
      "refs/heads/large-file",
      "refs/heads/main",
    ]);
  });

  it("points HEAD at another branch symbolically, even one that does not exist yet", async () => {
    const { relativePath, fixture } = freshStandard();
    await client.writeRef({
      repository: repo(gitaly, relativePath),
      ref: b("HEAD"),
      revision: b("refs/heads/feature"),
    });
    expect(git(fixture.path, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/feature");
    expect(revParse(fixture.path, "HEAD")).toBe(fixture.commits.feature2);
    await client.writeRef({ repository: repo(gitaly, relativePath), ref: b("HEAD"), revision: b("refs/heads/unborn") });
    expect(git(fixture.path, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/unborn");
    // Branches themselves are untouched.
    expect(revParse(fixture.path, "refs/heads/main")).toBe(fixture.commits.merge);
  });

  it("refuses to point HEAD at a malformed reference name", async () => {
    const { relativePath, fixture } = freshStandard();
    for (const name of ["feature", "refs/heads/a..b", "refs/heads/x.lock"]) {
      await expectStatus(
        client.writeRef({ repository: repo(gitaly, relativePath), ref: b("HEAD"), revision: b(name) }),
        grpc.status.INTERNAL,
        `setting default branch: ${JSON.stringify(name)} is a malformed refname`,
      );
    }
    expect(git(fixture.path, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/main");
  });

  it.each<[string, { ref: string; revision: string; oldRevision?: string }, string]>([
    ["an empty revision", { ref: "refs/heads/x", revision: "" }, "invalid revision: empty revision"],
    ["an empty ref", { ref: "", revision: "refs/heads/main" }, "invalid ref: empty revision"],
    ["a short ref name", { ref: "main", revision: "refs/heads/main" }, "ref has to be a full reference"],
    [
      "a ref with whitespace",
      { ref: "refs/heads /x", revision: "refs/heads/main" },
      "invalid ref: revision can't contain whitespace",
    ],
    [
      "a revision with NUL",
      { ref: "refs/heads/x", revision: "refs/heads/ma\0in" },
      "invalid revision: revision can't contain NUL",
    ],
    [
      "a revision --output=…",
      { ref: "refs/heads/x", revision: "--output=OUTSIDE/meow" },
      "invalid revision: revision can't start with '-'",
    ],
    [
      "a revision --upload-pack=x",
      { ref: "refs/heads/x", revision: "--upload-pack=x" },
      "invalid revision: revision can't start with '-'",
    ],
    ["a revision -ofoo", { ref: "refs/heads/x", revision: "-ofoo" }, "invalid revision: revision can't start with '-'"],
    ["a ref -ofoo", { ref: "-ofoo", revision: "refs/heads/main" }, "invalid ref: revision can't start with '-'"],
    ["a ref --stdin", { ref: "--stdin", revision: "refs/heads/main" }, "invalid ref: revision can't start with '-'"],
    [
      "an old revision --upload-pack=x",
      { ref: "refs/heads/x", revision: "refs/heads/main", oldRevision: "--upload-pack=x" },
      "invalid OldRevision: revision can't start with '-'",
    ],
    [
      "a revision with a colon",
      { ref: "refs/heads/x", revision: "main:README.md" },
      "invalid revision: revision can't contain ':'",
    ],
    [
      "a ref with a backslash",
      { ref: "refs\\heads\\x", revision: "refs/heads/main" },
      "invalid ref: revision can't contain '\\'",
    ],
  ])("refuses %s with InvalidArgument and writes nothing", async (_name, fields, details) => {
    const { relativePath, fixture } = freshStandard();
    const before = refsOf(fixture.path);
    const outsideBefore = outsideStorages(gitaly, [outside]);
    const repoFilesBefore = listTree(fixture.path);
    await expectStatus(
      client.writeRef({
        repository: repo(gitaly, relativePath),
        ref: b(fields.ref),
        revision: b(fields.revision.replace("OUTSIDE", outside)),
        oldRevision: b(fields.oldRevision ?? ""),
      }),
      grpc.status.INVALID_ARGUMENT,
      details,
    );
    expect(refsOf(fixture.path)).toBe(before);
    expect(listTree(fixture.path)).toEqual(repoFilesBefore);
    expect(outsideStorages(gitaly, [outside])).toEqual(outsideBefore);
    expect(readdirSync(outside)).toEqual(["template.git"]);
  });

  it("refuses ref names git rejects, writing nothing outside the repository", async () => {
    const { relativePath, fixture } = freshStandard();
    const outsideBefore = outsideStorages(gitaly, [outside]);
    const storageBefore = listTree(storagePath(gitaly), (rel) => rel.startsWith("+gitaly"));
    for (const ref of ["refs/heads/../../../../escaped", "refs/../../escaped", "refs/heads/x.lock"]) {
      await expectStatus(
        client.writeRef({ repository: repo(gitaly, relativePath), ref: b(ref), revision: b(fixture.commits.merge) }),
        grpc.status.INTERNAL,
        "error when running update-ref command: invalid reference format",
      );
    }
    expect(outsideStorages(gitaly, [outside])).toEqual(outsideBefore);
    expect(listTree(storagePath(gitaly), (rel) => rel.startsWith("+gitaly"))).toEqual(storageBefore);
  });

  it("reports a missing new or old revision as NotFound", async () => {
    const { relativePath, fixture } = freshStandard();
    const before = refsOf(fixture.path);
    await expectStatus(
      client.writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/x"),
        revision: b("refs/heads/missing"),
      }),
      grpc.status.NOT_FOUND,
      "resolving new revision: reference not found",
    );
    await expectStatus(
      client.writeRef({ repository: repo(gitaly, relativePath), ref: b("refs/heads/x"), revision: b("1".repeat(40)) }),
      grpc.status.NOT_FOUND,
      "resolving new revision: reference not found",
    );
    await expectStatus(
      client.writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/main"),
        revision: b(fixture.commits.initial),
        oldRevision: b("1".repeat(40)),
      }),
      grpc.status.NOT_FOUND,
      "resolving old revision: reference not found",
    );
    expect(refsOf(fixture.path)).toBe(before);
  });

  it("reports a ref locked by another writer as Aborted", async () => {
    const { relativePath, fixture } = freshStandard();
    writeFileSync(join(fixture.path, "refs/heads/feature.lock"), "");
    const err = await client
      .writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/feature"),
        revision: b(fixture.commits.merge),
      })
      .then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );
    expect(err?.code).toBe(grpc.status.ABORTED);
    expect(err?.details).toBe("reference is locked already");
    expect(err?.metadata.get("reference")).toEqual(["refs/heads/feature"]);
    expect(revParse(fixture.path, "refs/heads/feature")).toBe(fixture.commits.feature2);
  });

  it("refuses to point a branch at a tag object", async () => {
    const { relativePath, fixture } = freshStandard();
    await expectStatus(
      client.writeRef({
        repository: repo(gitaly, relativePath),
        ref: b("refs/heads/tagged"),
        revision: b("refs/tags/v1.1.0"),
      }),
      grpc.status.INTERNAL,
      "error when running update-ref command: target object not a commit",
    );
    expect(existsSync(join(fixture.path, "refs/heads/tagged"))).toBe(false);
  });
});

describe("CalculateChecksum", () => {
  const checksum = async (relativePath: string) =>
    (await client.calculateChecksum({ repository: repo(gitaly, relativePath) })).checksum;

  it("matches an independent computation for the standard fixture", async () => {
    const { relativePath, fixture } = freshStandard();
    const expected = independentChecksum(showRefHead(fixture.path));
    expect(await checksum(relativePath)).toBe(expected);
    // HEAD, three branches, two tags: six lines, a real value.
    expect(showRefHead(fixture.path).trim().split("\n")).toHaveLength(6);
    expect(expected).not.toBe(ZERO);
  });

  it("matches an independent computation for 1,000 refs, packed or loose", async () => {
    const many = createManyRefsRepository(storagePath(gitaly, "checksum/many.git"), 1000);
    const expected = independentChecksum(showRefHead(many.path));
    expect(await checksum("checksum/many.git")).toBe(expected);
    git(many.path, ["pack-refs", "--all"]);
    expect(await checksum("checksum/many.git")).toBe(expected);
  });

  it("changes when a counted ref changes and ignores refs outside GitLab's namespaces", async () => {
    const { relativePath, fixture } = freshStandard();
    const before = await checksum(relativePath);
    git(fixture.path, ["update-ref", "refs/unknown/ignored", fixture.commits.initial]);
    git(fixture.path, ["update-ref", "refs/pipelines/1", fixture.commits.initial]);
    expect(await checksum(relativePath)).toBe(before);
    git(fixture.path, ["update-ref", "refs/keep-around/x", fixture.commits.initial]);
    const after = await checksum(relativePath);
    expect(after).not.toBe(before);
    expect(after).toBe(independentChecksum(showRefHead(fixture.path)));
  });

  it("drops leading zero bytes, as upstream's big-integer encoding does", async () => {
    const relativePath = "checksum/leading-zero.git";
    const path = storagePath(gitaly, relativePath);
    createEmptyRepository(path);
    const blob = git(path, ["hash-object", "-w", "--stdin"], "checksum\n").trim();
    // HEAD is unborn, so the single tag line is the whole checksum: find a name whose
    // line hashes to a leading zero byte (about one in 256).
    let name = "";
    for (let i = 0; i < 100_000 && name === ""; i++) {
      const line = `${blob} refs/tags/t-${i}`;
      if (createHash("sha1").update(line).digest("hex").startsWith("00")) name = `refs/tags/t-${i}`;
    }
    expect(name).not.toBe("");
    git(path, ["update-ref", name, blob]);
    const got = await checksum(relativePath);
    expect(got).toBe(independentChecksum(showRefHead(path)));
    expect(got.length).toBeLessThan(40);
    expect(got.startsWith("00")).toBe(false);
  });

  it("is 40 zeros for an empty repository", async () => {
    createEmptyRepository(storagePath(gitaly, "checksum/empty.git"));
    expect(await checksum("checksum/empty.git")).toBe(ZERO);
  });

  it("is DataLoss for a repository git cannot read", async () => {
    const { relativePath, fixture } = freshStandard();
    writeFileSync(join(fixture.path, "HEAD"), "");
    await expectStatusMatching(
      client.calculateChecksum({ repository: repo(gitaly, relativePath) }),
      grpc.status.DATA_LOSS,
      /^not a git repository '.*refs\/standard-\d+\.git'$/,
    );
  });

  it("is FailedPrecondition for a directory that is not a repository", async () => {
    mkdirSync(storagePath(gitaly, "checksum/plain"), { recursive: true });
    await expectStatus(
      client.calculateChecksum({ repository: repo(gitaly, "checksum/plain") }),
      grpc.status.FAILED_PRECONDITION,
      'repository not valid: "objects" does not exist',
    );
  });
});
