// RepositoryService against a running Gitaly process: creating, finding, measuring and
// removing repositories, and how every RPC treats bad repository messages (nothing may
// ever be created outside the storage root).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OptimizeRepositoryRequest_Strategy } from "../../../src/gen/repository_pb.js";
import { ObjectFormat } from "../../../src/gen/shared_pb.js";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  type StandardRepository,
} from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import {
  copyFixture,
  expectStatus,
  expectStatusMatching,
  listTree,
  outsideStorages,
  type RepositoryClient,
  repo,
  repositoryClient,
  storagePath,
} from "./repository-helpers.js";

let gitaly: GitalyProcess;
let client: RepositoryClient;
let standard: StandardRepository;
/** A directory outside every storage that symlinks point into. */
let outside: string;

beforeAll(async () => {
  gitaly = await startGitaly({ storages: ["default", "other"] });
  client = repositoryClient(gitaly);
  standard = createStandardRepository(storagePath(gitaly, "fixtures/standard.git"));
  createEmptyRepository(storagePath(gitaly, "fixtures/empty.git"));
  outside = mkdtempSync(join(tmpdir(), "gitaly-outside-"));
  // A repository outside the storage that a symlink inside it points at.
  createEmptyRepository(join(outside, "target.git"));
  symlinkSync(join(outside, "target.git"), storagePath(gitaly, "escape-link.git"));
  symlinkSync(outside, storagePath(gitaly, "escape-dir"));
});

afterAll(async () => {
  await gitaly?.stop();
  if (outside) rmSync(outside, { recursive: true, force: true });
});

const headOf = (path: string) => git(path, ["symbolic-ref", "HEAD"]).trim();
/** The storage's top-level entries: a failed call must not add any. */
const storageTopLevel = () => readdirSync(storagePath(gitaly)).sort();
const tmpEntries = () => {
  const dir = storagePath(gitaly, "+gitaly/tmp");
  return existsSync(dir) ? readdirSync(dir) : [];
};

describe("CreateRepository", () => {
  it("creates a bare repository whose HEAD points at main by default", async () => {
    await client.createRepository({ repository: repo(gitaly, "group/created-default.git") });
    const path = storagePath(gitaly, "group/created-default.git");
    expect(git(path, ["rev-parse", "--is-bare-repository"]).trim()).toBe("true");
    expect(headOf(path)).toBe("refs/heads/main");
    expect(git(path, ["rev-parse", "--show-object-format"]).trim()).toBe("sha1");
    expect(statSync(path).isDirectory()).toBe(true);
    expect((await client.repositoryExists({ repository: repo(gitaly, "group/created-default.git") })).exists).toBe(
      true,
    );
    expect(tmpEntries()).toEqual([]);
  });

  it("uses the default branch the client names", async () => {
    await client.createRepository({
      repository: repo(gitaly, "group/created-develop.git"),
      defaultBranch: Buffer.from("develop"),
    });
    expect(headOf(storagePath(gitaly, "group/created-develop.git"))).toBe("refs/heads/develop");
  });

  it("fails with git's message for a default branch git refuses, leaving nothing behind", async () => {
    await expectStatusMatching(
      client.createRepository({ repository: repo(gitaly, "bad-branch.git"), defaultBranch: Buffer.from("./.lock") }),
      grpc.status.INTERNAL,
      /^creating repository: .*invalid initial branch name: '\.\/\.lock'/,
    );
    expect(existsSync(storagePath(gitaly, "bad-branch.git"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });

  it.each([
    [ObjectFormat.UNSPECIFIED, "sha1", ObjectFormat.SHA1],
    [ObjectFormat.SHA1, "sha1", ObjectFormat.SHA1],
    [ObjectFormat.SHA256, "sha256", ObjectFormat.SHA256],
  ])("creates object format %s as %s, which ObjectFormat reports", async (requested, onDisk, reported) => {
    const relativePath = `formats/${requested}.git`;
    await client.createRepository({ repository: repo(gitaly, relativePath), objectFormat: requested });
    expect(git(storagePath(gitaly, relativePath), ["rev-parse", "--show-object-format"]).trim()).toBe(onDisk);
    expect((await client.objectFormat({ repository: repo(gitaly, relativePath) })).format).toBe(reported);
  });

  it("refuses an unknown object format", async () => {
    await expectStatus(
      client.createRepository({ repository: repo(gitaly, "formats/unknown.git"), objectFormat: 3 as ObjectFormat }),
      grpc.status.INVALID_ARGUMENT,
      'unknown object format: "3"',
    );
    expect(existsSync(storagePath(gitaly, "formats/unknown.git"))).toBe(false);
  });

  it("refuses to overwrite an existing repository", async () => {
    const before = git(standard.path, ["for-each-ref"]);
    await expectStatus(
      client.createRepository({ repository: repo(gitaly, "fixtures/standard.git") }),
      grpc.status.ALREADY_EXISTS,
      "creating repository: repository exists already",
    );
    expect(git(standard.path, ["for-each-ref"])).toBe(before);
  });

  it("joins an absolute relative path under the storage root, as upstream does", async () => {
    await client.createRepository({ repository: repo(gitaly, "/absolute/inside.git") });
    expect(git(storagePath(gitaly, "absolute/inside.git"), ["rev-parse", "--is-bare-repository"]).trim()).toBe("true");
    expect(existsSync("/absolute/inside.git")).toBe(false);
    expect(
      (await client.repositoryExists({ repository: repo(gitaly, "absolute/inside.git") })).exists,
      "the same repository without the leading slash",
    ).toBe(true);
  });

  it("creates in the storage the message names", async () => {
    await client.createRepository({ repository: { storageName: "other", relativePath: "on-other.git" } });
    expect(existsSync(join(gitaly.storages[1]?.path ?? "", "on-other.git", "HEAD"))).toBe(true);
    expect(existsSync(storagePath(gitaly, "on-other.git"))).toBe(false);
  });
});

describe("RepositoryExists", () => {
  it("is true for a repository and false for a missing one or another storage", async () => {
    expect((await client.repositoryExists({ repository: repo(gitaly, "fixtures/standard.git") })).exists).toBe(true);
    expect((await client.repositoryExists({ repository: repo(gitaly, "fixtures/missing.git") })).exists).toBe(false);
    expect(
      (await client.repositoryExists({ repository: { storageName: "other", relativePath: "fixtures/standard.git" } }))
        .exists,
    ).toBe(false);
  });

  it("is false for a directory that is not a git repository", async () => {
    mkdirSync(storagePath(gitaly, "plain-directory"), { recursive: true });
    expect((await client.repositoryExists({ repository: repo(gitaly, "plain-directory") })).exists).toBe(false);
  });

  it.each([
    ["no repository", undefined, grpc.status.INVALID_ARGUMENT, "repository not set"],
    [
      "an empty storage name",
      { storageName: "", relativePath: "x.git" },
      grpc.status.INVALID_ARGUMENT,
      "storage name not set",
    ],
    [
      "an empty relative path",
      { storageName: "default", relativePath: "" },
      grpc.status.INVALID_ARGUMENT,
      "repository path not set",
    ],
    [
      "an unknown storage",
      { storageName: "nope", relativePath: "x.git" },
      grpc.status.INVALID_ARGUMENT,
      "storage name not found",
    ],
    [
      "a ../ path",
      { storageName: "default", relativePath: "../x.git" },
      grpc.status.INVALID_ARGUMENT,
      "relative path escapes root directory",
    ],
  ])("fails for %s", async (_name, repository, code, details) => {
    await expectStatus(client.repositoryExists({ repository }), code, details);
  });
});

describe("RemoveRepository", () => {
  it("removes the repository and leaves no trace in the temp directory", async () => {
    copyFixture(standard, storagePath(gitaly, "group/to-remove.git"));
    await client.removeRepository({ repository: repo(gitaly, "group/to-remove.git") });
    expect(existsSync(storagePath(gitaly, "group/to-remove.git"))).toBe(false);
    expect((await client.repositoryExists({ repository: repo(gitaly, "group/to-remove.git") })).exists).toBe(false);
    expect(tmpEntries()).toEqual([]);
    // Other repositories in the same directory are untouched.
    expect(existsSync(storagePath(gitaly, "group/created-default.git/HEAD"))).toBe(true);
  });

  it("fails with NotFound for a missing repository", async () => {
    await expectStatus(
      client.removeRepository({ repository: repo(gitaly, "group/never-existed.git") }),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });
});

describe("RepositorySize", () => {
  it("is the size of the repository's files in KiB", async () => {
    const res = await client.repositorySize({ repository: repo(gitaly, "fixtures/standard.git") });
    // Independent: the sum of regular file sizes, in whole KiB.
    let bytes = 0;
    for (const rel of listTree(standard.path)) {
      if (!rel.endsWith("/")) bytes += statSync(join(standard.path, rel)).size;
    }
    expect(res.size).toBe(BigInt(Math.floor(bytes / 1024)));
    // The fixture holds a 10.5 MiB file of incompressible bytes.
    expect(res.size).toBeGreaterThanOrEqual(10_752n);
  });

  it("is small but counted for an empty repository", async () => {
    const res = await client.repositorySize({ repository: repo(gitaly, "fixtures/empty.git") });
    expect(res.size).toBeLessThan(1024n);
  });
});

describe("HasLocalBranches and ObjectFormat", () => {
  it("reports branches only where there are some", async () => {
    expect((await client.hasLocalBranches({ repository: repo(gitaly, "fixtures/standard.git") })).value).toBe(true);
    expect((await client.hasLocalBranches({ repository: repo(gitaly, "fixtures/empty.git") })).value).toBe(false);
  });

  it("does not count tags as branches", async () => {
    const path = storagePath(gitaly, "fixtures/tags-only.git");
    createEmptyRepository(path);
    const blob = git(path, ["hash-object", "-w", "--stdin"], "tagged\n").trim();
    git(path, ["update-ref", "refs/tags/only", blob]);
    expect((await client.hasLocalBranches({ repository: repo(gitaly, "fixtures/tags-only.git") })).value).toBe(false);
  });

  it("reports SHA1 for the fixture", async () => {
    expect((await client.objectFormat({ repository: repo(gitaly, "fixtures/standard.git") })).format).toBe(
      ObjectFormat.SHA1,
    );
  });
});

describe("RepositoryInfo", () => {
  it("describes the on-disk layout and changes after OptimizeRepository", async () => {
    const relativePath = "fixtures/info.git";
    const path = storagePath(gitaly, relativePath);
    copyFixture(standard, path);
    // Some loose objects and loose references besides the fixture's pack.
    for (let i = 0; i < 3; i++) {
      const blob = git(path, ["hash-object", "-w", "--stdin"], `loose ${i}\n`).trim();
      git(path, ["update-ref", `refs/tags/loose-${i}`, blob]);
    }
    const before = await client.repositoryInfo({ repository: repo(gitaly, relativePath) });
    // fast-import explodes small imports: the fixture's 23 objects are loose, plus 3.
    expect(before.objects?.looseObjectsCount).toBe(26n);
    expect(before.objects?.packfileCount).toBe(0n);
    expect(before.references?.looseCount).toBe(8n); // 3 branches, 2 fixture tags, 3 loose tags
    expect(before.references?.packedSize).toBe(0n);
    expect(before.size).toBeGreaterThan(10n * 1024n * 1024n);
    expect(before.objects?.size).toBeGreaterThan(10n * 1024n * 1024n);
    expect(before.objects?.size).toBeLessThanOrEqual(before.size);
    expect(before.objects?.staleSize).toBe(0n);
    expect(before.objects?.recentSize).toBe(before.objects?.size);
    expect(before.isObjectPool).toBe(false);
    // Optional parts are absent until the repository has them.
    expect(before.commitGraph).toBeUndefined();
    expect(before.bitmap).toBeUndefined();
    expect(before.multiPackIndex).toBeUndefined();
    expect(before.alternates).toBeUndefined();

    await client.optimizeRepository({
      repository: repo(gitaly, relativePath),
      strategy: OptimizeRepositoryRequest_Strategy.EAGER,
    });

    const after = await client.repositoryInfo({ repository: repo(gitaly, relativePath) });
    expect(after.objects?.looseObjectsCount).toBe(0n);
    expect(after.objects?.packfileCount).toBe(1n);
    expect(after.references?.looseCount).toBe(0n);
    expect(after.references?.packedSize).toBeGreaterThan(0n);
    expect(after.commitGraph?.commitGraphChainLength ?? 0n).toBeGreaterThan(0n);
    expect(after.bitmap?.version).toBe(1n);
  });

  it("reports nothing for a missing repository", async () => {
    await expectStatus(
      client.repositoryInfo({ repository: repo(gitaly, "fixtures/missing.git") }),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });
});

/** One call of every RPC with `repository` as its repository message. */
const everyRpc: [
  string,
  (c: RepositoryClient, r: { storageName: string; relativePath: string } | undefined) => Promise<unknown>,
][] = [
  ["RepositoryExists", (c, r) => c.repositoryExists({ repository: r })],
  ["RemoveRepository", (c, r) => c.removeRepository({ repository: r })],
  ["RepositorySize", (c, r) => c.repositorySize({ repository: r })],
  ["RepositoryInfo", (c, r) => c.repositoryInfo({ repository: r })],
  ["ObjectFormat", (c, r) => c.objectFormat({ repository: r })],
  ["HasLocalBranches", (c, r) => c.hasLocalBranches({ repository: r })],
  [
    "WriteRef",
    (c, r) => c.writeRef({ repository: r, ref: Buffer.from("refs/heads/x"), revision: Buffer.from("refs/heads/main") }),
  ],
  ["CalculateChecksum", (c, r) => c.calculateChecksum({ repository: r })],
  ["GetConfig", (c, r) => drainCall(c.getConfig({ repository: r }))],
  ["GetSnapshot", (c, r) => drainCall(c.getSnapshot({ repository: r }))],
  ["GetCustomHooks", (c, r) => drainCall(c.getCustomHooks({ repository: r }))],
  ["SetCustomHooks", (c, r) => c.setCustomHooks([{ repository: r, data: new Uint8Array() }])],
  ["OptimizeRepository", (c, r) => c.optimizeRepository({ repository: r })],
  ["CreateBundle", (c, r) => drainCall(c.createBundle({ repository: r }))],
  ["FetchBundle", (c, r) => c.fetchBundle([{ repository: r, data: new Uint8Array() }])],
];

async function drainCall(stream: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of stream) {
    // Only the status matters.
  }
}

describe("every RPC refuses bad repository messages without touching anything outside the storage", () => {
  const cases: [string, { storageName: string; relativePath: string } | undefined, grpc.status, string][] = [
    ["no repository", undefined, grpc.status.INVALID_ARGUMENT, "repository not set"],
    [
      "an empty relative path",
      { storageName: "default", relativePath: "" },
      grpc.status.INVALID_ARGUMENT,
      "repository path not set",
    ],
    [
      "an unknown storage",
      { storageName: "nope", relativePath: "x.git" },
      grpc.status.INVALID_ARGUMENT,
      "storage name not found",
    ],
    [
      "a ../ path",
      { storageName: "default", relativePath: "../escaped.git" },
      grpc.status.INVALID_ARGUMENT,
      "relative path escapes root directory",
    ],
    [
      "a deep ../ path",
      { storageName: "default", relativePath: "a/../../../escaped.git" },
      grpc.status.INVALID_ARGUMENT,
      "relative path escapes root directory",
    ],
    [
      "a symlink to a repository outside",
      { storageName: "default", relativePath: "escape-link.git" },
      grpc.status.INVALID_ARGUMENT,
      "relative path escapes root directory",
    ],
    [
      "a path below a symlink to outside",
      { storageName: "default", relativePath: "escape-dir/new.git" },
      grpc.status.INVALID_ARGUMENT,
      "relative path escapes root directory",
    ],
    [
      "a missing repository",
      { storageName: "default", relativePath: "nowhere/missing.git" },
      grpc.status.NOT_FOUND,
      "repository not found",
    ],
    [
      "an absolute path (joined under the root, so missing)",
      { storageName: "default", relativePath: "/nowhere/abs.git" },
      grpc.status.NOT_FOUND,
      "repository not found",
    ],
  ];
  for (const [rpc, call] of everyRpc) {
    describe(rpc, () => {
      it.each(cases)("%s", async (name, repository, code, details) => {
        const before = outsideStorages(gitaly, [outside]);
        const storageBefore = storageTopLevel();
        const result = call(client, repository);
        if (rpc === "RepositoryExists" && code === grpc.status.NOT_FOUND) {
          expect((await result) as { exists: boolean }).toMatchObject({ exists: false });
        } else {
          await expectStatus(result, code, details);
        }
        expect(outsideStorages(gitaly, [outside]), name).toEqual(before);
        expect(storageTopLevel()).toEqual(storageBefore);
        expect(tmpEntries()).toEqual([]);
      });
    });
  }

  it("CreateRepository refuses escaping paths and creates nothing outside", async () => {
    const before = outsideStorages(gitaly, [outside]);
    for (const relativePath of ["../escaped.git", "a/../../escaped.git", "escape-dir/new.git", "escape-link.git"]) {
      await expectStatus(
        client.createRepository({ repository: repo(gitaly, relativePath) }),
        grpc.status.INVALID_ARGUMENT,
        "relative path escapes root directory",
      );
    }
    await expectStatus(client.createRepository({}), grpc.status.INVALID_ARGUMENT, "repository not set");
    expect(outsideStorages(gitaly, [outside])).toEqual(before);
    expect(existsSync(join(outside, "new.git"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });

  it("the symlinked repository outside is never modified", () => {
    expect(execFileSync("git", ["--git-dir", join(outside, "target.git"), "for-each-ref"], { encoding: "utf8" })).toBe(
      "",
    );
  });
});

describe("messages over 16 MiB", () => {
  const huge = Buffer.alloc(17 * 1024 * 1024, "a");

  it("are refused by gRPC with ResourceExhausted (unary)", async () => {
    const before = outsideStorages(gitaly, [outside]);
    await expectStatusMatching(
      client.writeRef({
        repository: repo(gitaly, "fixtures/standard.git"),
        ref: Buffer.concat([Buffer.from("refs/heads/"), huge]),
        revision: Buffer.from("refs/heads/main"),
      }),
      grpc.status.RESOURCE_EXHAUSTED,
      /larger than max/i,
    );
    expect(outsideStorages(gitaly, [outside])).toEqual(before);
    expect(git(standard.path, ["for-each-ref", "--format=%(refname)", "refs/heads/"]).trim().split("\n")).toEqual([
      "refs/heads/feature",
      "refs/heads/large-file",
      "refs/heads/main",
    ]);
  });

  it("are refused by gRPC with ResourceExhausted (client stream)", async () => {
    await expectStatusMatching(
      client.setCustomHooks([{ repository: repo(gitaly, "fixtures/standard.git"), data: huge }]),
      grpc.status.RESOURCE_EXHAUSTED,
      /larger than max/i,
    );
    expect(existsSync(join(standard.path, "custom_hooks"))).toBe(false);
    expect(tmpEntries()).toEqual([]);
  });
});
