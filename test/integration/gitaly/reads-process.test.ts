// The core reads through a real Gitaly process (dist/gitaly/main.js) with auth on:
// the services are registered in the server, reads agree with git, errors keep their
// codes through the interceptor chain, and ref updates run through the node's own hooks.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BlobService } from "../../../src/gen/blob_pb.js";
import { CommitService } from "../../../src/gen/commit_pb.js";
import { RefService } from "../../../src/gen/ref_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { git } from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import { catFile, createReadsFixtures, lines, type ReadsFixtures, revParse } from "./reads-fixtures.js";
import { type BlobClient, bytes, type CommitClient, collect, type RefClient, str } from "./reads-helpers.js";
import { expectStatus } from "./repository-helpers.js";

const TOKEN = "reads-process-secret";
let gitaly: GitalyProcess;
let fx: ReadsFixtures;
let ref: RefClient;
let commit: CommitClient;
let blob: BlobClient;
const STD = () => ({ storageName: gitaly.storages[0]?.name ?? "default", relativePath: "standard.git" });

beforeAll(async () => {
  gitaly = await startGitaly({ token: TOKEN });
  fx = createReadsFixtures(gitaly.storages[0]?.path as string, 60);
  const channel = gitaly.channel();
  ref = createClient(RefService, channel);
  commit = createClient(CommitService, channel);
  blob = createClient(BlobService, channel);
});

afterAll(async () => {
  await gitaly?.stop();
});

describe("core reads through the Gitaly process", () => {
  it("refuses calls without the token", async () => {
    const anonymous = createClient(CommitService, gitaly.channel(""));
    const err = await anonymous
      .findCommit({ repository: STD(), revision: bytes("main") })
      .catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it("reads commits, trees and blobs as git does", async () => {
    const found = await commit.findCommit({ repository: STD(), revision: bytes("v1.1.0") });
    expect(found.commit?.id).toBe(fx.standard.commits.merge);
    expect(found.commit?.parentIds).toEqual(
      git(fx.standard.path, ["log", "-1", "--format=%P", "v1.1.0"]).trim().split(" "),
    );
    expect((await commit.findCommit({ repository: STD(), revision: bytes("nope") })).commit).toBeUndefined();

    const large = await collect(
      commit.treeEntry({ repository: STD(), revision: bytes("large-file"), path: bytes("large.bin") }),
    );
    expect(large.length).toBe(Math.ceil(fx.standard.largeFile.size / (128 * 1024)));
    expect(
      Buffer.concat(large.map((m) => m.data)).equals(catFile(fx.standard.path, "blob", "large-file:large.bin")),
    ).toBe(true);

    const entries = (
      await collect(
        commit.getTreeEntries({ repository: STD(), revision: bytes("main"), path: bytes("."), recursive: true }),
      )
    )
      .flatMap((m) => m.entries)
      .map((e) => [e.oid, str(e.path)]);
    expect(entries).toEqual(
      lines(git(fx.standard.path, ["ls-tree", "-r", "-t", "--format=%(objectname)%x09%(path)", "main"])).map((l) =>
        l.split("\t"),
      ),
    );

    const ids = (await collect(commit.listCommits({ repository: STD(), revisions: ["--all"] }))).flatMap((m) =>
      m.commits.map((c) => c.id),
    );
    expect(ids).toEqual(lines(git(fx.standard.path, ["rev-list", "--all"])));
    expect((await commit.countCommits({ repository: STD(), revisions: [bytes("main")] })).count).toBe(
      Number(git(fx.standard.path, ["rev-list", "--count", "main"]).trim()),
    );
    expect(
      (await commit.lastCommitForPath({ repository: STD(), revision: bytes("main"), path: bytes("src") })).commit?.id,
    ).toBe(git(fx.standard.path, ["log", "-1", "--format=%H", "main", "--", "src"]).trim());
    expect(
      (await commit.commitIsAncestor({ repository: STD(), ancestorId: fx.standard.commits.initial, childId: "main" }))
        .value,
    ).toBe(true);

    const blobs = await collect(
      blob.getBlobs({
        repository: STD(),
        limit: -1n,
        revisionPaths: [{ revision: "main", path: bytes("assets/blob.bin") }],
      }),
    );
    expect(Buffer.concat(blobs.map((m) => m.data))).toEqual(fx.standard.binaryFile.content);
    const single = await collect(
      blob.getBlob({ repository: STD(), oid: revParse(fx.standard.path, "main:README.md"), limit: -1n }),
    );
    expect(Buffer.from(single[0]?.data ?? [])).toEqual(catFile(fx.standard.path, "blob", "main:README.md"));
  });

  it("lists refs and tags as git for-each-ref does", async () => {
    const refs = (await collect(ref.listRefs({ repository: STD(), patterns: [bytes("refs/")], head: true })))
      .flatMap((m) => m.references)
      .map((r) => `${r.target} ${str(r.name)}`);
    expect(refs).toEqual([
      `${revParse(fx.standard.path, "HEAD")} HEAD`,
      ...lines(git(fx.standard.path, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/"])),
    ]);
    const many = { storageName: STD().storageName, relativePath: "many.git" };
    const branches = (await collect(ref.findLocalBranches({ repository: many }))).flatMap((m) =>
      m.localBranches.map((b) => str(b.name)),
    );
    expect(branches).toEqual(lines(git(fx.many.path, ["for-each-ref", "--format=%(refname)", "refs/heads"])));
    const tags = (await collect(ref.findAllTags({ repository: STD() }))).flatMap((m) => m.tags.map((t) => str(t.name)));
    expect(tags).toEqual(["v1.0.0", "v1.1.0"]);
    expect(str((await ref.findDefaultBranchName({ repository: STD() })).name)).toBe("refs/heads/main");
  });

  it("keeps upstream's error codes through the interceptor chain", async () => {
    await expectStatus(
      commit.findCommit({ repository: STD(), revision: bytes("-main") }),
      grpc.status.INVALID_ARGUMENT,
      "revision can't start with '-'",
    );
    await expectStatus(
      collect(commit.treeEntry({ repository: STD(), revision: bytes("main"), path: bytes("nope") })),
      grpc.status.NOT_FOUND,
      "tree entry not found",
    );
    await expectStatus(
      ref.findTag({ repository: STD(), tagName: bytes("v9") }),
      grpc.status.NOT_FOUND,
      "tag does not exist",
    );
    await expectStatus(
      commit.findCommit({
        repository: { storageName: STD().storageName, relativePath: "missing.git" },
        revision: bytes("main"),
      }),
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });

  it("updates and deletes references through git with the node's hooks", async () => {
    const c = fx.standard.commits;
    await ref.updateReferences([
      {
        repository: STD(),
        updates: [
          {
            reference: bytes("refs/heads/process-new"),
            newObjectId: bytes(c.second),
            oldObjectId: bytes("0".repeat(40)),
          },
        ],
      },
    ]);
    expect(revParse(fx.standard.path, "refs/heads/process-new")).toBe(c.second);
    const err = await ref
      .updateReferences([
        {
          repository: STD(),
          updates: [
            { reference: bytes("refs/heads/main"), newObjectId: bytes(c.initial), oldObjectId: bytes(c.second) },
          ],
        },
      ])
      .catch((e: grpc.ServiceError) => e);
    expect(err).toMatchObject({ code: grpc.status.ABORTED });
    expect(revParse(fx.standard.path, "refs/heads/main")).toBe(c.merge);

    await ref.deleteRefs({ repository: STD(), refs: [bytes("refs/heads/process-new")] });
    expect((await ref.refExists({ repository: STD(), ref: bytes("refs/heads/process-new") })).value).toBe(false);
  });
});
