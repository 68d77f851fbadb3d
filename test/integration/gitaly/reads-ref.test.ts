// RefService against the fixture repositories, compared with git for-each-ref, git
// show-ref and git tag; and the two ref-writing RPCs, which must go through git with
// the call's hook environment (the recording reference-transaction hook proves it).
import { createHash } from "node:crypto";
import { cpSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  FindAllTagsRequest_SortBy_Key,
  FindLocalBranchesRequest_SortBy,
  ListRefsRequest_SortBy_Key,
} from "../../../src/gen/ref_pb.js";
import { SortDirection } from "../../../src/gen/shared_pb.js";
import { serializeTransactionMetadata, TRANSACTION_METADATA_KEY } from "../../../src/gitaly/hooks/payload.js";
import { refService } from "../../../src/gitaly/service/ref/ref-service.js";
import { TransactionAbortedError, type TransactionManager, VotePhase } from "../../../src/gitaly/transaction/voting.js";
import { git } from "../../harness/git-fixtures.js";
import { createReadsFixtures, lines, type ReadsFixtures, revParse } from "./reads-fixtures.js";
import { bytes, collect, type ReadsServer, startReadsServer, str } from "./reads-helpers.js";
import { expectStatus } from "./repository-helpers.js";

let server: ReadsServer;
let fx: ReadsFixtures;
let copies = 0;
const STD = () => server.repo("standard.git");
const MANY = () => server.repo("many.git");
const ZERO = "0".repeat(40);

beforeAll(async () => {
  server = await startReadsServer();
  fx = createReadsFixtures(server.storage.path);
});

afterAll(async () => {
  await server?.close();
});

/** A private copy of the standard fixture for tests that write. */
function copyStandard(): { repository: { storageName: string; relativePath: string }; path: string } {
  const relativePath = `copy-${++copies}.git`;
  const path = join(server.storage.path, relativePath);
  cpSync(fx.standard.path, path, { recursive: true });
  return { repository: server.repo(relativePath), path };
}

const forEachRef = (repoPath: string, args: string[]) => lines(git(repoPath, ["for-each-ref", ...args]));

describe("FindDefaultBranchName", () => {
  it("names HEAD's branch, falling back like upstream", async () => {
    const res = await server.ref.findDefaultBranchName({ repository: STD() });
    expect(str(res.name)).toBe(git(fx.standard.path, ["symbolic-ref", "HEAD"]).trim());

    const { repository, path } = copyStandard();
    git(path, ["symbolic-ref", "HEAD", "refs/heads/unborn"]);
    // HEAD is unborn: main exists, so main it is; head_only still reports HEAD itself.
    expect(str((await server.ref.findDefaultBranchName({ repository })).name)).toBe("refs/heads/main");
    expect(str((await server.ref.findDefaultBranchName({ repository, headOnly: true })).name)).toBe(
      "refs/heads/unborn",
    );
    git(path, ["update-ref", "-d", "refs/heads/main"]);
    // Neither main nor master: the first branch by name.
    expect(str((await server.ref.findDefaultBranchName({ repository })).name)).toBe(
      forEachRef(path, ["--count=1", "--format=%(refname)", "refs/heads/"])[0],
    );
    await expectStatus(server.ref.findDefaultBranchName({}), grpc.status.INVALID_ARGUMENT, "repository not set");
  });
});

describe("RefExists", () => {
  it("answers like git show-ref --verify", async () => {
    const exists = async (ref: string) => (await server.ref.refExists({ repository: STD(), ref: bytes(ref) })).value;
    expect(await exists("refs/heads/main")).toBe(true);
    expect(await exists("refs/tags/v1.1.0")).toBe(true);
    expect(await exists("refs/heads/nope")).toBe(false);
    expect(await exists("refs/heads")).toBe(false);
    await expectStatus(
      server.ref.refExists({ repository: STD(), ref: bytes("main") }),
      grpc.status.INVALID_ARGUMENT,
      "invalid refname",
    );
  });
});

describe("FindBranch", () => {
  it("returns the branch's commit, nothing for unknown names, an error for ambiguous ones", async () => {
    const res = await server.ref.findBranch({ repository: STD(), name: bytes("feature") });
    expect(str(res.branch?.name)).toBe("feature");
    expect(res.branch?.targetCommit?.id).toBe(revParse(fx.standard.path, "refs/heads/feature"));
    expect(str(res.branch?.targetCommit?.subject)).toBe(
      git(fx.standard.path, ["log", "-1", "--format=%s", "feature"]).trim(),
    );
    expect((await server.ref.findBranch({ repository: STD(), name: bytes("nope") })).branch).toBeUndefined();
    await expectStatus(
      server.ref.findBranch({ repository: STD(), name: bytes("") }),
      grpc.status.INVALID_ARGUMENT,
      "Branch name cannot be empty",
    );
    const { repository, path } = copyStandard();
    git(path, ["update-ref", "refs/heads/team/a", fx.standard.commits.second]);
    await expectStatus(
      server.ref.findBranch({ repository, name: bytes("team") }),
      grpc.status.INVALID_ARGUMENT,
      'target reference is ambiguous: reference is ambiguous: conflicts with "refs/heads/team/a"',
    );
  });
});

describe("FindLocalBranches", () => {
  const names = async (req: Parameters<typeof server.ref.findLocalBranches>[0]) => {
    const msgs = await collect(server.ref.findLocalBranches(req));
    return { msgs, names: msgs.flatMap((m) => m.localBranches.map((b) => str(b.name))) };
  };

  it("lists branches like git for-each-ref, sorted and with their commits", async () => {
    const { msgs, names: got } = await names({ repository: STD() });
    expect(got).toEqual(forEachRef(fx.standard.path, ["--format=%(refname)", "refs/heads"]));
    for (const b of msgs.flatMap((m) => m.localBranches)) {
      expect(b.targetCommit?.id).toBe(revParse(fx.standard.path, str(b.name)));
      expect(b.targetCommit?.treeId).toBe(revParse(fx.standard.path, `${str(b.name)}^{tree}`));
    }
    for (const [sortBy, key] of [
      [FindLocalBranchesRequest_SortBy.UPDATED_ASC, "committerdate"],
      [FindLocalBranchesRequest_SortBy.UPDATED_DESC, "-committerdate"],
    ] as const) {
      expect((await names({ repository: STD(), sortBy })).names).toEqual(
        forEachRef(fx.standard.path, ["--format=%(refname)", `--sort=${key}`, "refs/heads"]),
      );
    }
  });

  it("sends 20 branches per message and paginates by ref name", async () => {
    const all = forEachRef(fx.many.path, ["--format=%(refname)", "refs/heads"]);
    const { msgs, names: got } = await names({ repository: MANY() });
    expect(got).toEqual(all);
    expect(msgs.map((m) => m.localBranches.length)).toEqual(
      Array.from({ length: Math.ceil(all.length / 20) }, (_, i) => Math.min(20, all.length - 20 * i)),
    );
    const page = await names({ repository: MANY(), paginationParams: { pageToken: all[9], limit: 5 } });
    expect(page.names).toEqual(all.slice(10, 15));
    expect((await names({ repository: MANY(), paginationParams: { limit: 0 } })).names).toEqual([]);
    expect((await names({ repository: MANY(), paginationParams: { limit: -1 } })).names).toEqual(all);
    await expectStatus(
      collect(
        server.ref.findLocalBranches({
          repository: MANY(),
          paginationParams: { pageToken: "refs/heads/nope", limit: 5 },
        }),
      ),
      grpc.status.INVALID_ARGUMENT,
      "invalid page token: sending lines: could not find page token",
    );
  });

  it("excludes patterns with git's matching rules", async () => {
    const { names: got } = await names({
      repository: MANY(),
      excludePatterns: [bytes("refs/heads/branch-00*"), bytes("refs/heads/main")],
    });
    expect(got).toEqual(
      forEachRef(fx.many.path, ["--format=%(refname)", "refs/heads"]).filter(
        (r) => !r.startsWith("refs/heads/branch-00") && r !== "refs/heads/main",
      ),
    );
    await expectStatus(
      collect(server.ref.findLocalBranches({ repository: MANY(), excludePatterns: [bytes("refs/tags/x")] })),
      grpc.status.INVALID_ARGUMENT,
      'exclude pattern must start with "refs/heads/": "refs/tags/x"',
    );
    await expectStatus(
      collect(server.ref.findLocalBranches({ repository: MANY(), excludePatterns: [bytes("")] })),
      grpc.status.INVALID_ARGUMENT,
      "empty exclude pattern",
    );
  });
});

describe("FindAllBranches", () => {
  it("lists local and remote branches, or those merged into the default branch", async () => {
    const { repository, path } = copyStandard();
    git(path, ["update-ref", "refs/remotes/origin/feature", fx.standard.commits.feature1]);
    const all = (await collect(server.ref.findAllBranches({ repository }))).flatMap((m) => m.branches);
    expect(all.map((b) => str(b.name))).toEqual(
      forEachRef(path, ["--format=%(refname)", "refs/heads", "refs/remotes"]),
    );
    expect(all.map((b) => b.target?.id)).toEqual(
      forEachRef(path, ["--format=%(objectname)", "refs/heads", "refs/remotes"]),
    );
    const merged = (await collect(server.ref.findAllBranches({ repository, mergedOnly: true }))).flatMap(
      (m) => m.branches,
    );
    expect(merged.map((b) => str(b.name))).toEqual(
      forEachRef(path, ["--format=%(refname)", "--merged=refs/heads/main", "refs/heads", "refs/remotes"]),
    );
    expect(merged.map((b) => str(b.name))).not.toContain("refs/heads/large-file");
    const only = (
      await collect(
        server.ref.findAllBranches({ repository, mergedOnly: true, mergedBranches: [bytes("refs/heads/feature")] }),
      )
    ).flatMap((m) => m.branches);
    expect(only.map((b) => str(b.name))).toEqual(["refs/heads/feature"]);
  });
});

describe("FindTag and FindAllTags", () => {
  it("finds annotated and lightweight tags like git tag", async () => {
    const annotated = (await server.ref.findTag({ repository: STD(), tagName: bytes("v1.1.0") })).tag;
    expect(annotated?.id).toBe(revParse(fx.standard.path, "refs/tags/v1.1.0"));
    expect(str(annotated?.name)).toBe("v1.1.0");
    expect(str(annotated?.message)).toBe(git(fx.standard.path, ["tag", "-l", "--format=%(contents)", "v1.1.0"]).trim());
    expect(annotated?.messageSize).toBe(BigInt(annotated?.message.length ?? -1));
    expect(str(annotated?.tagger?.name)).toBe(
      git(fx.standard.path, ["tag", "-l", "--format=%(taggername)", "v1.1.0"]).trim(),
    );
    expect(annotated?.targetCommit?.id).toBe(fx.standard.tags.annotated.target);

    const light = (await server.ref.findTag({ repository: STD(), tagName: bytes("v1.0.0") })).tag;
    expect(light?.id).toBe(fx.standard.tags.lightweight.target);
    expect(light?.message.length).toBe(0);
    expect(light?.targetCommit?.id).toBe(fx.standard.tags.lightweight.target);

    const nested = (await server.ref.findTag({ repository: server.repo("extra.git"), tagName: bytes("outer") })).tag;
    expect(nested?.id).toBe(fx.extra.tagOfTag);
    expect(nested?.targetCommit?.id).toBe(fx.extra.commit);
    const blobTag = (await server.ref.findTag({ repository: server.repo("extra.git"), tagName: bytes("blobtag") })).tag;
    expect(blobTag?.id).toBe(fx.extra.blobTag);
    expect(blobTag?.targetCommit).toBeUndefined();

    await expectStatus(
      server.ref.findTag({ repository: STD(), tagName: bytes("v9") }),
      grpc.status.NOT_FOUND,
      "tag does not exist",
    );
    await expectStatus(server.ref.findTag({ repository: STD() }), grpc.status.INVALID_ARGUMENT, "tag name is empty");
  });

  it("lists every tag with the same content FindTag gives, sorted and paginated", async () => {
    const repository = server.repo("extra.git");
    const tags = (await collect(server.ref.findAllTags({ repository }))).flatMap((m) => m.tags);
    expect(tags.map((t) => str(t.name))).toEqual(
      forEachRef(fx.extra.path, ["--format=%(refname:lstrip=2)", "refs/tags/"]),
    );
    expect(tags.map((t) => t.id)).toEqual(forEachRef(fx.extra.path, ["--format=%(objectname)", "refs/tags/"]));
    for (const t of tags) {
      const single = (await server.ref.findTag({ repository, tagName: t.name })).tag;
      expect(t).toEqual(single);
    }
    const std = (await collect(server.ref.findAllTags({ repository: STD() }))).flatMap((m) => m.tags);
    expect(std.map((t) => [str(t.name), t.targetCommit?.id])).toEqual([
      ["v1.0.0", fx.standard.tags.lightweight.target],
      ["v1.1.0", fx.standard.tags.annotated.target],
    ]);

    const desc = (
      await collect(
        server.ref.findAllTags({
          repository,
          sortBy: { key: FindAllTagsRequest_SortBy_Key.REFNAME, direction: SortDirection.DESCENDING },
        }),
      )
    ).flatMap((m) => m.tags);
    expect(desc.map((t) => str(t.name))).toEqual(
      forEachRef(fx.extra.path, ["--format=%(refname:lstrip=2)", "--sort=-refname", "refs/tags/"]),
    );
    const page = (
      await collect(
        server.ref.findAllTags({ repository, paginationParams: { pageToken: "refs/tags/blobtag", limit: 1 } }),
      )
    ).flatMap((m) => m.tags);
    expect(page.map((t) => str(t.name))).toEqual(["inner"]);
    await expectStatus(
      collect(server.ref.findAllTags({ repository, paginationParams: { pageToken: "refs/tags/nope", limit: 1 } })),
      grpc.status.INVALID_ARGUMENT,
      "could not find page token",
    );
    await expectStatus(
      collect(
        server.ref.findAllTags({
          repository,
          sortBy: { key: 7 as FindAllTagsRequest_SortBy_Key, direction: SortDirection.ASCENDING },
        }),
      ),
      grpc.status.INVALID_ARGUMENT,
      "unsupported sorting key: 7",
    );
  });
});

describe("ListRefs", () => {
  const refs = async (req: Parameters<typeof server.ref.listRefs>[0]) => {
    const msgs = await collect(server.ref.listRefs(req));
    return { msgs, refs: msgs.flatMap((m) => m.references.map((r) => [str(r.name), r.target, r.peeledTarget])) };
  };

  it("lists like git for-each-ref, with HEAD and peeled tags on request", async () => {
    const got = await refs({ repository: STD(), patterns: [bytes("refs/")], head: true, peelTags: true });
    const expected = forEachRef(fx.standard.path, [
      "--format=%(refname)%00%(objectname)%00%(*objectname)",
      "refs/",
    ]).map((l) => l.split("\0"));
    expect(got.refs).toEqual([["HEAD", revParse(fx.standard.path, "HEAD"), ""], ...expected]);
    const tagsOnly = await refs({ repository: STD(), patterns: [bytes("refs/tags/")] });
    expect(tagsOnly.refs).toEqual(
      forEachRef(fx.standard.path, ["--format=%(refname)%00%(objectname)", "refs/tags/"]).map((l) => [
        ...l.split("\0"),
        "",
      ]),
    );
  });

  it("sorts, filters by target and excludes", async () => {
    const sorted = await refs({
      repository: STD(),
      patterns: [bytes("refs/heads/")],
      sortBy: { key: ListRefsRequest_SortBy_Key.COMMITTERDATE, direction: SortDirection.DESCENDING },
    });
    expect(sorted.refs.map((r) => r[0])).toEqual(
      forEachRef(fx.standard.path, ["--format=%(refname)", "--sort=-committerdate", "refs/heads/"]),
    );
    const pointing = await refs({
      repository: STD(),
      patterns: [bytes("refs/")],
      pointingAtOids: [bytes(fx.standard.commits.merge)],
    });
    expect(pointing.refs.map((r) => r[0])).toEqual(
      forEachRef(fx.standard.path, ["--format=%(refname)", `--points-at=${fx.standard.commits.merge}`, "refs/"]),
    );
    const excluded = await refs({
      repository: STD(),
      patterns: [bytes("refs/")],
      excludePatterns: [bytes("refs/tags/")],
    });
    expect(excluded.refs.map((r) => r[0])).toEqual(
      forEachRef(fx.standard.path, ["--format=%(refname)", "refs/heads/"]),
    );
  });

  it("paginates with a cursor", async () => {
    const all = forEachRef(fx.many.path, ["--format=%(refname)", "refs/"]);
    const seen: string[] = [];
    let token = "";
    for (;;) {
      const page = await refs({
        repository: MANY(),
        patterns: [bytes("refs/")],
        paginationParams: { pageToken: token, limit: 40 },
      });
      seen.push(...page.refs.map((r) => r[0] as string));
      token = page.msgs[page.msgs.length - 1]?.paginationCursor?.nextCursor ?? "";
      if (token === "") break;
      expect(JSON.parse(Buffer.from(token, "base64").toString())).toEqual({ ref_name: seen[seen.length - 1] });
    }
    expect(seen).toEqual(all);
    // A raw ref name is accepted as a token too.
    const raw = await refs({
      repository: MANY(),
      patterns: [bytes("refs/")],
      paginationParams: { pageToken: all[0], limit: 2 },
    });
    expect(raw.refs.map((r) => r[0])).toEqual(all.slice(1, 3));
  });

  it("validates like upstream", async () => {
    await expectStatus(
      collect(server.ref.listRefs({ repository: STD() })),
      grpc.status.INVALID_ARGUMENT,
      "patterns must have at least one entry",
    );
    await expectStatus(
      collect(
        server.ref.listRefs({ repository: STD(), patterns: [bytes("refs/")], excludePatterns: [bytes("heads/")] }),
      ),
      grpc.status.INVALID_ARGUMENT,
      'exclude pattern must start with "refs/": "heads/"',
    );
    await expectStatus(
      collect(
        server.ref.listRefs({
          repository: STD(),
          patterns: [bytes("refs/")],
          paginationParams: { pageToken: "refs/nope", limit: 1 },
        }),
      ),
      grpc.status.INVALID_ARGUMENT,
      "invalid page token: sending lines: could not find page token",
    );
  });
});

describe("UpdateReferences", () => {
  it("applies all updates atomically through git and the reference-transaction hook", async () => {
    const { repository, path } = copyStandard();
    const before = server.hookLog().length;
    const c = fx.standard.commits;
    await server.ref.updateReferences([
      {
        repository,
        updates: [
          { reference: bytes("refs/heads/new"), newObjectId: bytes(c.second), oldObjectId: bytes(ZERO) },
          { reference: bytes("refs/heads/feature"), newObjectId: bytes(c.merge), oldObjectId: bytes(c.feature2) },
        ],
      },
      { updates: [{ reference: bytes("refs/heads/large-file"), newObjectId: bytes(ZERO) }] },
    ]);
    expect(revParse(path, "refs/heads/new")).toBe(c.second);
    expect(revParse(path, "refs/heads/feature")).toBe(c.merge);
    expect(forEachRef(path, ["--format=%(refname)", "refs/heads/large-file"])).toEqual([]);
    const log = server.hookLog().slice(before);
    expect(log).toContain("phase prepared\n");
    expect(log).toContain("phase committed\n");
    expect(log).toContain(`${ZERO} ${c.second} refs/heads/new\n`);
    expect(log).toContain(`${c.feature2} ${c.merge} refs/heads/feature\n`);
  });

  it("changes nothing when one expected old value is wrong", async () => {
    const { repository, path } = copyStandard();
    const c = fx.standard.commits;
    const refsBefore = forEachRef(path, ["--format=%(objectname) %(refname)"]);
    const err = await server.ref
      .updateReferences([
        {
          repository,
          updates: [
            { reference: bytes("refs/heads/new"), newObjectId: bytes(c.second) },
            { reference: bytes("refs/heads/main"), newObjectId: bytes(c.second), oldObjectId: bytes(c.initial) },
          ],
        },
      ])
      .catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({
      code: grpc.status.ABORTED,
      details: "The operation could not be completed. Please try again.",
    });
    const md = (err as grpc.ServiceError).metadata.getMap();
    expect(md).toMatchObject({
      error_details: "reference does not point to expected object",
      reference: "refs/heads/main",
      expected_object_id: c.initial,
      actual_object_id: c.merge,
    });
    expect(forEachRef(path, ["--format=%(objectname) %(refname)"])).toEqual(refsBefore);
  });

  it("rejects invalid names and IDs, and missing objects", async () => {
    const { repository, path } = copyStandard();
    const c = fx.standard.commits;
    const one = (update: object) => server.ref.updateReferences([{ repository, updates: [update] }]);
    await expectStatus(
      one({ reference: bytes("foobar"), newObjectId: bytes(c.second) }),
      grpc.status.INVALID_ARGUMENT,
      "validating reference: reference is not fully qualified",
    );
    await expectStatus(
      one({ reference: bytes("HEAD"), newObjectId: bytes(c.second) }),
      grpc.status.INVALID_ARGUMENT,
      "validating reference: HEAD reference not allowed",
    );
    await expectStatus(
      one({ reference: bytes("refs/heads/x"), newObjectId: bytes("invalid-hex") }),
      grpc.status.INVALID_ARGUMENT,
      'validating new object ID: invalid object ID: "invalid-hex", expected length 40, got 11',
    );
    await expectStatus(
      one({ reference: bytes("refs/heads/x"), newObjectId: bytes(c.second), oldObjectId: bytes("invalid-hex") }),
      grpc.status.INVALID_ARGUMENT,
      'validating old object ID: invalid object ID: "invalid-hex", expected length 40, got 11',
    );
    await expectStatus(
      one({ reference: bytes("refs/heads/x"), newObjectId: bytes("1".repeat(40)) }),
      grpc.status.NOT_FOUND,
      "target object missing",
    );
    await expectStatus(
      server.ref.updateReferences([{ repository, updates: [] }]),
      grpc.status.INVALID_ARGUMENT,
      "no updates specified",
    );
    await expectStatus(
      server.ref.updateReferences([
        { repository, updates: [{ reference: bytes("refs/heads/x"), newObjectId: bytes(c.second) }] },
        { repository, updates: [{ reference: bytes("refs/heads/y"), newObjectId: bytes(c.second) }] },
      ]),
      grpc.status.INVALID_ARGUMENT,
      "repository set in subsequent request",
    );
    await expectStatus(
      server.ref.updateReferences([{ updates: [] }]),
      grpc.status.INVALID_ARGUMENT,
      "repository not set",
    );
    expect(forEachRef(path, ["--format=%(refname)", "refs/heads/x", "refs/heads/y"])).toEqual([]);
  });

  it("reports a locked reference as Aborted", async () => {
    const { repository, path } = copyStandard();
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(path, "refs/heads/main.lock"), "");
    const err = await server.ref
      .updateReferences([
        {
          repository,
          updates: [{ reference: bytes("refs/heads/main"), newObjectId: bytes(fx.standard.commits.second) }],
        },
      ])
      .catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.ABORTED });
    expect((err as grpc.ServiceError).metadata.getMap()).toMatchObject({
      error_details: "reference is already locked",
      reference: "refs/heads/main",
    });
  });
});

describe("DeleteRefs", () => {
  it("deletes the listed refs through git and the hook", async () => {
    const { repository, path } = copyStandard();
    const calls = server.hookCalls;
    await server.ref.deleteRefs({
      repository,
      refs: [bytes("refs/heads/feature"), bytes("refs/tags/v1.0.0"), bytes("refs/heads/none")],
    });
    expect(forEachRef(path, ["--format=%(refname)"])).toEqual([
      "refs/heads/large-file",
      "refs/heads/main",
      "refs/tags/v1.1.0",
    ]);
    expect(server.hookCalls).toBe(calls + 1);
    // Force deletions carry no old value; git reports zeros for it.
    expect(server.hookLog()).toContain(`phase committed\n${ZERO} ${ZERO} refs/heads/feature\n`);
  });

  it("deletes everything outside the kept prefixes", async () => {
    const { repository, path } = copyStandard();
    await server.ref.deleteRefs({ repository, exceptWithPrefix: [bytes("refs/tags/"), bytes("refs/heads/main")] });
    expect(forEachRef(path, ["--format=%(refname)"])).toEqual([
      "refs/heads/main",
      "refs/tags/v1.0.0",
      "refs/tags/v1.1.0",
    ]);
  });

  it("validates like upstream", async () => {
    const cases: [object, string][] = [
      [{}, "empty ExceptWithPrefix and Refs"],
      [
        { refs: [bytes("refs/heads/a")], exceptWithPrefix: [bytes("refs/")] },
        "ExceptWithPrefix and Refs are mutually exclusive",
      ],
      [{ exceptWithPrefix: [bytes("refs/"), bytes("")] }, "empty prefix for exclusion"],
      [{ refs: [bytes("refs/heads/a"), bytes("")] }, "empty ref"],
      [{ refs: [bytes("refs invalid-ref-format")] }, "invalid references"],
    ];
    for (const [req, message] of cases) {
      await expectStatus(server.ref.deleteRefs({ repository: STD(), ...req }), grpc.status.INVALID_ARGUMENT, message);
    }
    expect(forEachRef(fx.standard.path, ["--format=%(refname)"])).toHaveLength(5);
  });

  it("votes in the call's Praefect transaction itself, before anything is deleted", async () => {
    const votes: { id: bigint; node: string; hash: string; phase: number }[] = [];
    let failPhase: number | undefined;
    const transactions: TransactionManager = {
      async vote(tx, hash, phase) {
        votes.push({ id: tx.id, node: tx.node, hash: Buffer.from(hash).toString("hex"), phase });
        if (phase === failPhase) throw new TransactionAbortedError();
      },
      async stop() {},
    };
    const voting = await startReadsServer({ wrap: (deps) => ({ ref: refService({ ...deps, transactions }) }) });
    try {
      const path = join(voting.storage.path, "voting.git");
      cpSync(fx.standard.path, path, { recursive: true });
      const repository = voting.repo("voting.git");
      const metadata = new grpc.Metadata();
      metadata.set(
        TRANSACTION_METADATA_KEY,
        serializeTransactionMetadata({ id: 42n, node: "gitaly-1", primary: true }),
      );
      const refs = [bytes("refs/heads/feature"), bytes("refs/tags/v1.0.0")];
      const expectedHash = createHash("sha1").update("refs/heads/feature\nrefs/tags/v1.0.0\n").digest("hex");

      failPhase = 4; // upstream's PREPARING_PHASE
      const err = await voting.ref.deleteRefs({ repository, refs }, { metadata }).catch((e: grpc.ServiceError) => e);
      expect(err).toMatchObject({ code: grpc.status.INTERNAL, details: "preparing vote: transaction was aborted" });
      expect(forEachRef(path, ["--format=%(refname)", "refs/heads/feature"])).toEqual(["refs/heads/feature"]);

      votes.length = 0;
      failPhase = undefined;
      await voting.ref.deleteRefs({ repository, refs }, { metadata });
      expect(votes).toEqual([
        { id: 42n, node: "gitaly-1", hash: expectedHash, phase: 4 },
        { id: 42n, node: "gitaly-1", hash: expectedHash, phase: VotePhase.PREPARED_PHASE },
        { id: 42n, node: "gitaly-1", hash: expectedHash, phase: VotePhase.COMMITTED_PHASE },
      ]);
      expect(forEachRef(path, ["--format=%(refname)", "refs/heads/feature", "refs/tags/v1.0.0"])).toEqual([]);

      // Without transaction metadata nothing is voted.
      votes.length = 0;
      await voting.ref.deleteRefs({ repository, refs: [bytes("refs/heads/large-file")] });
      expect(votes).toEqual([]);
    } finally {
      await voting.close();
    }
  });
});
