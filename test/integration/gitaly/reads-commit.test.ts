// CommitService reads against the fixture repositories, each answer compared with what
// git itself prints (git log, git ls-tree, git cat-file, git rev-list), including
// missing objects and bad revisions with upstream's codes and messages.
import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  GetTreeEntriesRequest_SortBy,
  ListCommitsRequest_Order,
  TreeEntry_EntryType,
  TreeEntryResponse_ObjectType,
} from "../../../src/gen/commit_pb.js";
import type { GitCommit } from "../../../src/gen/shared_pb.js";
import { FIXTURE_EPOCH, git } from "../../harness/git-fixtures.js";
import {
  catFile,
  createReadsFixtures,
  lines,
  type ReadsFixtures,
  revParse,
  SUBMODULE_COMMIT,
} from "./reads-fixtures.js";
import { bytes, collect, type ReadsServer, startReadsServer, str } from "./reads-helpers.js";
import { expectStatus } from "./repository-helpers.js";

let server: ReadsServer;
let fx: ReadsFixtures;
const STD = () => server.repo("standard.git");
const EXTRA = () => server.repo("extra.git");

beforeAll(async () => {
  server = await startReadsServer();
  fx = createReadsFixtures(server.storage.path);
});

afterAll(async () => {
  await server?.close();
});

/** What git log says about a commit, in GitCommit's terms. */
function gitLogCommit(repoPath: string, rev: string) {
  const [id, tree, parents, an, ae, at, az, cn, ce, ct, cz, body] = git(repoPath, [
    "log",
    "-1",
    "--date=format:%z",
    "--format=%H%x00%T%x00%P%x00%an%x00%ae%x00%at%x00%ad%x00%cn%x00%ce%x00%ct%x00%cd%x00%B",
    rev,
  ]).split("\0") as string[];
  const message = (body as string).slice(0, -1);
  return {
    id,
    treeId: tree,
    parentIds: parents === "" ? [] : (parents as string).split(" "),
    author: { name: an, email: ae, seconds: BigInt(at as string), timezone: az },
    committer: { name: cn, email: ce, seconds: BigInt(ct as string), timezone: cz },
    subject: message.split("\n")[0],
    body: message,
    bodySize: BigInt(Buffer.byteLength(message)),
  };
}

function asLog(c: GitCommit | undefined) {
  return {
    id: c?.id,
    treeId: c?.treeId,
    parentIds: c?.parentIds,
    author: {
      name: str(c?.author?.name),
      email: str(c?.author?.email),
      seconds: c?.author?.date?.seconds,
      timezone: str(c?.author?.timezone),
    },
    committer: {
      name: str(c?.committer?.name),
      email: str(c?.committer?.email),
      seconds: c?.committer?.date?.seconds,
      timezone: str(c?.committer?.timezone),
    },
    subject: str(c?.subject),
    body: str(c?.body),
    bodySize: c?.bodySize,
  };
}

describe("FindCommit", () => {
  it("returns what git log says, for IDs, branches, tags and relative revisions", async () => {
    const std = fx.standard;
    for (const rev of [...Object.values(std.commits), "main", "feature~1", "v1.1.0", "v1.0.0", "HEAD"]) {
      const { commit } = await server.commit.findCommit({ repository: STD(), revision: bytes(rev) });
      expect(asLog(commit), rev).toEqual(gitLogCommit(std.path, rev));
    }
  });

  it("returns trailers when asked, as git interprets them", async () => {
    const { commit } = await server.commit.findCommit({ repository: EXTRA(), revision: bytes("main"), trailers: true });
    expect(commit?.trailers.map((t) => [str(t.key), str(t.value)])).toEqual(
      lines(
        git(fx.extra.path, ["log", "-1", "--format=%(trailers:unfold,separator=%x0a,key_value_separator=%x00)"]),
      ).map((l) => l.split("\0")),
    );
    expect(commit?.trailers).toHaveLength(2);
    const plain = await server.commit.findCommit({ repository: EXTRA(), revision: bytes("main") });
    expect(plain.commit?.trailers).toEqual([]);
  });

  it("answers an empty response for revisions that name no commit", async () => {
    const tree = revParse(fx.standard.path, "main^{tree}");
    for (const rev of ["does-not-exist", tree, "0".repeat(40), "main~100"]) {
      const res = await server.commit.findCommit({ repository: STD(), revision: bytes(rev) });
      expect(res.commit, rev).toBeUndefined();
    }
  });

  it("rejects bad revisions and repositories with upstream's codes", async () => {
    const cases: [string, string][] = [
      ["-main", "revision can't start with '-'"],
      ["", "empty revision"],
      ["a b", "revision can't contain whitespace"],
      ["main:README.md", "revision can't contain ':'"],
    ];
    for (const [rev, message] of cases) {
      await expectStatus(
        server.commit.findCommit({ repository: STD(), revision: bytes(rev) }),
        grpc.status.INVALID_ARGUMENT,
        message,
      );
    }
    await expectStatus(
      server.commit.findCommit({ revision: bytes("main") }),
      grpc.status.INVALID_ARGUMENT,
      "repository not set",
    );
    await expectStatus(
      server.commit.findCommit({ repository: server.repo("missing.git"), revision: bytes("main") }),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });
});

describe("TreeEntry", () => {
  it("streams a blob with git's ID, size, mode and content", async () => {
    const msgs = await collect(
      server.commit.treeEntry({ repository: STD(), revision: bytes("main"), path: bytes("README.md") }),
    );
    expect(msgs).toHaveLength(1);
    expect(msgs[0]?.type).toBe(TreeEntryResponse_ObjectType.BLOB);
    expect(msgs[0]?.oid).toBe(revParse(fx.standard.path, "main:README.md"));
    expect(msgs[0]?.size).toBe(BigInt(git(fx.standard.path, ["cat-file", "-s", "main:README.md"]).trim()));
    expect(msgs[0]?.mode).toBe(0o100644);
    expect(Buffer.from(msgs[0]?.data ?? [])).toEqual(catFile(fx.standard.path, "blob", "main:README.md"));
  });

  it("chunks a 10.5 MiB blob at 128 KiB, describing it in the first message only", async () => {
    const expected = catFile(fx.standard.path, "blob", "large-file:large.bin");
    const msgs = await collect(
      server.commit.treeEntry({ repository: STD(), revision: bytes("large-file"), path: bytes("large.bin") }),
    );
    expect(msgs).toHaveLength(Math.ceil(expected.length / (128 * 1024)));
    expect(msgs.every((m) => m.data.length <= 128 * 1024)).toBe(true);
    expect(msgs[0]?.size).toBe(BigInt(expected.length));
    expect(msgs[0]?.oid).toBe(revParse(fx.standard.path, "large-file:large.bin"));
    expect(msgs.slice(1).every((m) => m.oid === "" && m.size === 0n)).toBe(true);
    expect(Buffer.concat(msgs.map((m) => m.data)).equals(expected)).toBe(true);
  });

  it("honours limit and max_size", async () => {
    const req = { repository: STD(), revision: bytes("main"), path: bytes("assets/blob.bin") };
    const limited = await collect(server.commit.treeEntry({ ...req, limit: 100n }));
    expect(Buffer.concat(limited.map((m) => m.data))).toEqual(fx.standard.binaryFile.content.subarray(0, 100));
    expect(limited[0]?.size).toBe(1024n);
    await expectStatus(
      collect(server.commit.treeEntry({ ...req, maxSize: 1000n })),
      grpc.status.FAILED_PRECONDITION,
      "object size (1024) is bigger than the maximum allowed size (1000)",
    );
    const exact = await collect(server.commit.treeEntry({ ...req, maxSize: 1024n }));
    expect(Buffer.concat(exact.map((m) => m.data))).toEqual(fx.standard.binaryFile.content);
  });

  it("describes trees and submodules without data", async () => {
    for (const path of ["src", "src/"]) {
      const [tree] = await collect(
        server.commit.treeEntry({ repository: STD(), revision: bytes("main"), path: bytes(path) }),
      );
      expect(tree?.type).toBe(TreeEntryResponse_ObjectType.TREE);
      expect(tree?.oid).toBe(revParse(fx.standard.path, "main:src"));
      expect(tree?.size).toBe(BigInt(git(fx.standard.path, ["cat-file", "-s", "main:src"]).trim()));
      expect(tree?.mode).toBe(0o40000);
      expect(tree?.data.length).toBe(0);
    }
    const [sub] = await collect(
      server.commit.treeEntry({ repository: EXTRA(), revision: bytes("main"), path: bytes("sub") }),
    );
    expect(sub?.type).toBe(TreeEntryResponse_ObjectType.COMMIT);
    expect(sub?.oid).toBe(SUBMODULE_COMMIT);
    expect(sub?.mode).toBe(0o160000);
  });

  it("answers NotFound for missing paths and revisions, InvalidArgument for bad requests", async () => {
    for (const [rev, path] of [
      ["main", "nope.txt"],
      ["does-not-exist", "README.md"],
      ["main", "./README.md"],
      ["main", "../README.md"],
      ["main", "README.md/x"],
    ] as const) {
      await expectStatus(
        collect(server.commit.treeEntry({ repository: STD(), revision: bytes(rev), path: bytes(path) })),
        grpc.status.NOT_FOUND,
        "tree entry not found",
      );
    }
    const ok = { repository: STD(), revision: bytes("main"), path: bytes("README.md") };
    const cases: [object, string][] = [
      [{ path: bytes("") }, "empty Path"],
      [{ limit: -1n }, "negative Limit"],
      [{ maxSize: -1n }, "negative MaxSize"],
      [{ revision: bytes("-main") }, "revision can't start with '-'"],
      [{ revision: bytes("") }, "empty revision"],
    ];
    for (const [change, message] of cases) {
      await expectStatus(collect(server.commit.treeEntry({ ...ok, ...change })), grpc.status.INVALID_ARGUMENT, message);
    }
    // The relative paths above must not have broken the shared cat-file process.
    expect(await collect(server.commit.treeEntry(ok))).toHaveLength(1);
  });
});

/** `git ls-tree` entries as [oid, path, type, mode]. */
function lsTree(repoPath: string, args: string[]) {
  return lines(git(repoPath, ["ls-tree", ...args])).map((l) => {
    const [meta, path] = l.split("\t") as [string, string];
    const [mode, type, oid] = meta.split(" ") as [string, string, string];
    const t = { blob: TreeEntry_EntryType.BLOB, tree: TreeEntry_EntryType.TREE, commit: TreeEntry_EntryType.COMMIT }[
      type as "blob" | "tree" | "commit"
    ];
    return [oid, path, t, Number.parseInt(mode, 8)];
  });
}

describe("GetTreeEntries", () => {
  const entriesOf = async (req: Parameters<typeof server.commit.getTreeEntries>[0]) => {
    const msgs = await collect(server.commit.getTreeEntries(req));
    return { msgs, entries: msgs.flatMap((m) => m.entries) };
  };

  it("lists a tree like git ls-tree, with commit_oid and flat paths", async () => {
    for (const [repo, rev, path] of [
      [STD, "main", "."],
      [STD, "main", "src"],
      [EXTRA, "main", "."],
    ] as const) {
      const { msgs, entries } = await entriesOf({ repository: repo(), revision: bytes(rev), path: bytes(path) });
      const repoPath = repo === STD ? fx.standard.path : fx.extra.path;
      const treeish = path === "." ? rev : `${rev}:${path}`;
      const expected = lsTree(repoPath, [treeish]).map(([oid, name, t, m]) => [
        oid,
        path === "." ? name : `${path}/${name}`,
        t,
        m,
      ]);
      expect(entries.map((e) => [e.oid, str(e.path), e.type, e.mode])).toEqual(expected);
      expect(entries.every((e) => e.commitOid === rev)).toBe(true);
      // The first message carries an (empty) cursor: nothing is paginated.
      expect(msgs[0]?.paginationCursor?.nextCursor).toBe("");
    }
    const { entries } = await entriesOf({ repository: EXTRA(), revision: bytes("main"), path: bytes(".") });
    const flat = Object.fromEntries(entries.map((e) => [str(e.path), str(e.flatPath)]));
    expect(flat).toMatchObject({ a: "a/b/c", README: "README", sub: "sub", "run.sh": "run.sh" });
    const skipped = await entriesOf({
      repository: EXTRA(),
      revision: bytes("main"),
      path: bytes("."),
      skipFlatPaths: true,
    });
    expect(skipped.entries.every((e) => e.flatPath.length === 0)).toBe(true);
  });

  it("lists recursively like git ls-tree -r -t", async () => {
    for (const [repo, repoPath, path] of [
      [STD, fx.standard.path, "."],
      [EXTRA, fx.extra.path, "."],
      [EXTRA, fx.extra.path, "a"],
    ] as const) {
      const { entries } = await entriesOf({
        repository: repo(),
        revision: bytes("main"),
        path: bytes(path),
        recursive: true,
      });
      const treeish = path === "." ? "main" : `main:${path}`;
      const expected = lsTree(repoPath, ["-r", "-t", treeish]).map(([oid, name, t, m]) => [
        oid,
        path === "." ? name : `${path}/${name}`,
        t,
        m,
      ]);
      expect(entries.map((e) => [e.oid, str(e.path), e.type, e.mode])).toEqual(expected);
      expect(entries.every((e) => e.flatPath.length === 0)).toBe(true);
    }
  });

  it("sorts trees first or by path bytes", async () => {
    const base = { repository: EXTRA(), revision: bytes("main"), path: bytes("."), skipFlatPaths: true };
    const treesFirst = await entriesOf({ ...base, sort: GetTreeEntriesRequest_SortBy.TREES_FIRST });
    expect(treesFirst.entries.map((e) => str(e.path))).toEqual(["a", "README", "a-b", "a.txt", "a0", "run.sh", "sub"]);
    const fs = await entriesOf({ ...base, sort: GetTreeEntriesRequest_SortBy.FILESYSTEM });
    expect(fs.entries.map((e) => str(e.path))).toEqual(["README", "a", "a-b", "a.txt", "a0", "run.sh", "sub"]);
    // git's own tree order sorts "a" as "a/".
    const plain = await entriesOf(base);
    expect(plain.entries.map((e) => str(e.path))).toEqual(["README", "a-b", "a.txt", "a", "a0", "run.sh", "sub"]);
  });

  it("paginates with a cursor that pins the tree", async () => {
    const base = { repository: EXTRA(), revision: bytes("main"), path: bytes("."), skipFlatPaths: true };
    const all = (await entriesOf(base)).entries.map((e) => str(e.path));
    const seen: string[] = [];
    let token = "";
    for (let page = 0; page < 10; page++) {
      const { msgs, entries } = await entriesOf({ ...base, paginationParams: { pageToken: token, limit: 3 } });
      seen.push(...entries.map((e) => str(e.path)));
      token = msgs[0]?.paginationCursor?.nextCursor ?? "";
      if (token === "") break;
      const decoded = JSON.parse(Buffer.from(token, "base64").toString("utf8"));
      expect(decoded).toEqual({ file_name: seen[seen.length - 1], tree_oid: revParse(fx.extra.path, "main^{tree}") });
    }
    expect(seen).toEqual(all);
    const none = await entriesOf({ ...base, paginationParams: { limit: 0 } });
    expect(none.entries).toEqual([]);
    await expectStatus(
      collect(server.commit.getTreeEntries({ ...base, paginationParams: { pageToken: "non-existent", limit: 2 } })),
      grpc.status.INTERNAL,
      "could not find starting OID: non-existent",
    );
  });

  it("fails like upstream for non-trees, missing paths and bad requests", async () => {
    const req = (path: string, extra: object = {}) =>
      collect(
        server.commit.getTreeEntries({ repository: STD(), revision: bytes("main"), path: bytes(path), ...extra }),
      );
    await expectStatus(req("README.md"), grpc.status.INVALID_ARGUMENT, "path not treeish");
    await expectStatus(req("does-not-exist"), grpc.status.INVALID_ARGUMENT, "invalid revision or path");
    await expectStatus(req("does-not-exist", { recursive: true }), grpc.status.NOT_FOUND, "invalid revision or path");
    await expectStatus(req("./.."), grpc.status.INVALID_ARGUMENT, "invalid revision or path");
    await expectStatus(
      req("src", { revision: bytes("nope") }),
      grpc.status.INVALID_ARGUMENT,
      "invalid revision or path",
    );
    await expectStatus(req(""), grpc.status.INVALID_ARGUMENT, "empty path");
    await expectStatus(
      req("src", { revision: bytes("-x") }),
      grpc.status.INVALID_ARGUMENT,
      "revision can't start with '-'",
    );
    await expectStatus(
      collect(server.commit.getTreeEntries({ repository: EXTRA(), revision: bytes("main"), path: bytes("sub") })),
      grpc.status.NOT_FOUND,
      "revision doesn't exist",
    );
  });
});

describe("ListCommits", () => {
  const ids = async (req: Parameters<typeof server.commit.listCommits>[0]) =>
    (await collect(server.commit.listCommits(req))).flatMap((m) => m.commits.map((c) => c.id));
  const revList = (args: string[]) => lines(git(fx.standard.path, ["rev-list", ...args]));

  it("lists what git rev-list lists, pseudo revisions and options included", async () => {
    const cases: [Parameters<typeof server.commit.listCommits>[0], string[]][] = [
      [{ revisions: ["main"] }, ["main"]],
      [{ revisions: ["main", "--not", "feature"] }, ["main", "--not", "feature"]],
      [{ revisions: ["--all"] }, ["--all"]],
      [{ revisions: ["--branches=feat*"] }, ["--branches=feat*"]],
      [{ revisions: ["main"], order: ListCommitsRequest_Order.TOPO }, ["--topo-order", "main"]],
      [
        { revisions: ["main"], order: ListCommitsRequest_Order.DATE, reverse: true },
        ["--date-order", "--reverse", "main"],
      ],
      [{ revisions: ["main"], firstParent: true }, ["--first-parent", "main"]],
      [{ revisions: ["main"], maxParents: 1 }, ["--max-parents=1", "main"]],
      [{ revisions: ["main"], skip: 2 }, ["--skip=2", "main"]],
      [{ revisions: ["main", "feature"], disableWalk: true }, ["--no-walk", "main", "feature"]],
      [{ revisions: ["main"], paths: [bytes("feature.txt")] }, ["main", "--", "feature.txt"]],
      [
        { revisions: ["--all"], commitMessagePatterns: [bytes("FEATURE")], ignoreCase: true },
        ["--grep=FEATURE", "--regexp-ignore-case", "--all"],
      ],
      [{ revisions: ["main"], author: bytes("Nobody") }, ["--author=Nobody", "main"]],
      [
        { revisions: ["main"], after: create(TimestampSchema, { seconds: BigInt(FIXTURE_EPOCH + 90) }) },
        [`--after=@${FIXTURE_EPOCH + 90}`, "main"],
      ],
      [
        { revisions: ["main"], before: create(TimestampSchema, { seconds: BigInt(FIXTURE_EPOCH + 90) }) },
        [`--before=@${FIXTURE_EPOCH + 90}`, "main"],
      ],
    ];
    for (const [req, args] of cases) {
      const full = { ...req, repository: STD() } as Parameters<typeof server.commit.listCommits>[0];
      expect(await ids(full), args.join(" ")).toEqual(revList(args));
    }
  });

  it("sends fully parsed commits", async () => {
    const msgs = await collect(server.commit.listCommits({ repository: STD(), revisions: ["main"] }));
    for (const c of msgs.flatMap((m) => m.commits)) expect(asLog(c)).toEqual(gitLogCommit(fx.standard.path, c.id));
  });

  it("paginates by the last commit ID", async () => {
    const all = revList(["main"]);
    const first = await collect(
      server.commit.listCommits({ repository: STD(), revisions: ["main"], paginationParams: { limit: 2 } }),
    );
    expect(first.flatMap((m) => m.commits.map((c) => c.id))).toEqual(all.slice(0, 2));
    expect(first[first.length - 1]?.paginationCursor?.nextCursor).toBe(all[1]);
    const rest = await ids({
      repository: STD(),
      revisions: ["main"],
      paginationParams: { pageToken: all[1], limit: 100 },
    });
    expect(rest).toEqual(all.slice(2));
    const last = await collect(
      server.commit.listCommits({ repository: STD(), revisions: ["main"], paginationParams: { limit: all.length } }),
    );
    expect(last.every((m) => m.paginationCursor === undefined)).toBe(true);
  });

  it("rejects bad requests and reports git's failure", async () => {
    await expectStatus(
      collect(server.commit.listCommits({ repository: STD() })),
      grpc.status.INVALID_ARGUMENT,
      "missing revisions",
    );
    await expectStatus(
      collect(server.commit.listCommits({ repository: STD(), revisions: ["asdf", "-invalid"] })),
      grpc.status.INVALID_ARGUMENT,
      "invalid revision: revision can't start with '-'",
    );
    const err = await collect(server.commit.listCommits({ repository: STD(), revisions: ["does-not-exist"] })).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((err as grpc.ServiceError).code).toBe(grpc.status.INTERNAL);
  });
});

describe("CountCommits", () => {
  const count = async (req: Parameters<typeof server.commit.countCommits>[0]) =>
    (await server.commit.countCommits({ ...req, repository: STD() } as typeof req)).count;
  const gitCount = (args: string[]) => Number(git(fx.standard.path, ["rev-list", "--count", ...args]).trim());

  it("counts like git rev-list --count", async () => {
    expect(await count({ revisions: [bytes("main")] })).toBe(gitCount(["main"]));
    expect(await count({ revisions: [bytes("main"), bytes("--not"), bytes("feature")] })).toBe(
      gitCount(["main", "--not", "feature"]),
    );
    expect(await count({ revision: bytes("large-file") })).toBe(gitCount(["large-file"]));
    expect(await count({ all: true })).toBe(gitCount(["--all"]));
    expect(await count({ revisions: [bytes("main")], path: bytes("feature.txt") })).toBe(
      gitCount(["main", "--", "feature.txt"]),
    );
    expect(await count({ revisions: [bytes("main")], maxCount: 2 })).toBe(2);
    expect(await count({ revisions: [bytes("main")], firstParent: true })).toBe(gitCount(["--first-parent", "main"]));
    const at = create(TimestampSchema, { seconds: BigInt(FIXTURE_EPOCH + 90) });
    expect(await count({ revisions: [bytes("main")], before: at })).toBe(
      gitCount([`--before=@${FIXTURE_EPOCH + 90}`, "main"]),
    );
    expect(await count({ revisions: [bytes("main")], after: at })).toBe(
      gitCount([`--after=@${FIXTURE_EPOCH + 90}`, "main"]),
    );
    expect(await count({ revisions: [bytes("main")], before: at })).toBeGreaterThan(0);
  });

  it("counts 0 for unknown revisions and validates like upstream", async () => {
    expect(await count({ revisions: [bytes("does-not-exist")] })).toBe(0);
    await expectStatus(
      server.commit.countCommits({ repository: STD() }),
      grpc.status.INVALID_ARGUMENT,
      "empty Revision and false All",
    );
    await expectStatus(
      server.commit.countCommits({ repository: STD(), revisions: [bytes("-x")] }),
      grpc.status.INVALID_ARGUMENT,
      "invalid revision: revision can't start with '-'",
    );
    await expectStatus(
      server.commit.countCommits({ repository: STD(), revision: bytes("-x") }),
      grpc.status.INVALID_ARGUMENT,
      "revision can't start with '-'",
    );
  });
});

describe("CommitIsAncestor", () => {
  it("answers like git merge-base --is-ancestor", async () => {
    const c = fx.standard.commits;
    const is = async (ancestorId: string, childId: string) =>
      (await server.commit.commitIsAncestor({ repository: STD(), ancestorId, childId })).value;
    expect(await is(c.second, c.merge)).toBe(true);
    expect(await is(c.feature1, c.merge)).toBe(true);
    expect(await is(c.merge, c.second)).toBe(false);
    expect(await is(c.binary, c.feature2)).toBe(false);
    expect(await is("does-not-exist", c.merge)).toBe(false);
    expect(await is("--help", c.merge)).toBe(false);
    await expectStatus(
      server.commit.commitIsAncestor({ repository: STD(), childId: c.merge }),
      grpc.status.INVALID_ARGUMENT,
      "empty ancestor sha",
    );
    await expectStatus(
      server.commit.commitIsAncestor({ repository: STD(), ancestorId: c.merge }),
      grpc.status.INVALID_ARGUMENT,
      "empty child sha",
    );
  });
});

describe("LastCommitForPath", () => {
  const last = async (revision: string, path: string, extra: object = {}) =>
    (
      await server.commit.lastCommitForPath({
        repository: STD(),
        revision: bytes(revision),
        path: bytes(path),
        ...extra,
      })
    ).commit;

  it("returns what git log -1 -- <path> says", async () => {
    for (const [rev, path] of [
      ["main", "feature.txt"],
      ["main", "README.md"],
      ["main", "src"],
      ["large-file", "large.bin"],
      ["main", ""],
      ["main", "/"],
    ]) {
      const expected = git(fx.standard.path, [
        "log",
        "-1",
        "--format=%H",
        rev as string,
        "--",
        path === "" || path === "/" ? "." : (path as string),
      ]).trim();
      const commit = await last(rev as string, path as string);
      expect(commit?.id, `${rev} ${path}`).toBe(expected);
      expect(asLog(commit)).toEqual(gitLogCommit(fx.standard.path, expected));
    }
  });

  it("honours literal pathspecs", async () => {
    const glob = git(fx.standard.path, ["log", "-1", "--format=%H", "main", "--", "*.txt"]).trim();
    expect((await last("main", "*.txt"))?.id).toBe(glob);
    expect(await last("main", "*.txt", { literalPathspec: true })).toBeUndefined();
    expect(await last("main", "*.txt", { globalOptions: { literalPathspecs: true } })).toBeUndefined();
  });

  it("answers empty for unknown revisions and paths, rejects escaping paths", async () => {
    expect(await last("does-not-exist", "README.md")).toBeUndefined();
    expect(await last("main", "nope.txt")).toBeUndefined();
    const base = { repository: STD(), revision: bytes("main") };
    await expectStatus(
      server.commit.lastCommitForPath({ ...base, path: bytes("/etc/passwd") }),
      grpc.status.INVALID_ARGUMENT,
      "path is an absolute path",
    );
    await expectStatus(
      server.commit.lastCommitForPath({ ...base, path: bytes("a/../../x") }),
      grpc.status.INVALID_ARGUMENT,
      "path escapes repository",
    );
    await expectStatus(
      server.commit.lastCommitForPath({ ...base, revision: bytes("-main"), path: bytes("x") }),
      grpc.status.INVALID_ARGUMENT,
      "revision can't start with '-'",
    );
  });
});
