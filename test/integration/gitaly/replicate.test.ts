// ReplicateRepository between two real Gitaly processes: the target fetches through
// gitaly-ssh -> SSHUploadPackWithSidechannel on the source (backchannel + sidechannel),
// and the result must be byte-for-byte the same refs, config and custom hooks.
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { encodeGitalyServers } from "../../../src/shared/gitaly/servers.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { createManyRefsRepository, createStandardRepository, git } from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";

const TOKEN_A = "source-token";
const TOKEN_B = "target-token";

/** The checksum computed independently of the server, from `git show-ref --head`. */
function independentChecksum(repoPath: string): string {
  let out = "";
  try {
    out = git(repoPath, ["show-ref", "--head"]);
  } catch {
    out = "";
  }
  let sum = 0n;
  for (const line of out.split("\n")) {
    if (!/HEAD|(refs\/(heads|tags|keep-around|merge-requests|environments|notes)\/)/.test(line)) continue;
    sum ^= BigInt(`0x${createHash("sha1").update(line).digest("hex")}`);
  }
  if (sum === 0n) return "0".repeat(40);
  const hex = sum.toString(16);
  return hex.length % 2 ? `0${hex}` : hex;
}

describe("ReplicateRepository between two Gitaly processes", () => {
  let source: GitalyProcess;
  let target: GitalyProcess;

  beforeAll(async () => {
    [source, target] = await Promise.all([
      startGitaly({ storages: ["gitaly-a"], token: TOKEN_A }),
      startGitaly({ storages: ["gitaly-b"], token: TOKEN_B }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop()]);
  });

  const serversMetadata = () => {
    const md = new grpc.Metadata();
    md.set(
      "gitaly-servers",
      encodeGitalyServers({ "gitaly-a": { address: `tcp://${source.address}`, token: TOKEN_A } }),
    );
    return md;
  };

  async function replicate(relativePath: string) {
    const repo = createClient(RepositoryService, target.channel(TOKEN_B));
    await repo.replicateRepository(
      {
        repository: { storageName: "gitaly-b", relativePath },
        source: { storageName: "gitaly-a", relativePath },
      },
      { metadata: serversMetadata() },
    );
  }

  async function checksums(relativePath: string) {
    const a = createClient(RepositoryService, source.channel(TOKEN_A));
    const b = createClient(RepositoryService, target.channel(TOKEN_B));
    const [ca, cb] = await Promise.all([
      a.calculateChecksum({ repository: { storageName: "gitaly-a", relativePath } }),
      b.calculateChecksum({ repository: { storageName: "gitaly-b", relativePath } }),
    ]);
    return { source: ca.checksum, target: cb.checksum };
  }

  it("creates a missing replica with refs, HEAD, config and custom hooks", async () => {
    const rel = "group/standard.git";
    const srcPath = join(source.storages[0]?.path ?? "", rel);
    const fixture = createStandardRepository(srcPath);
    git(srcPath, ["symbolic-ref", "HEAD", "refs/heads/feature"]);
    git(srcPath, ["config", "gitlab.fullpath", "group/standard"]);
    mkdirSync(join(srcPath, "custom_hooks"));
    writeFileSync(join(srcPath, "custom_hooks", "pre-receive"), "#!/bin/sh\necho checked\n");
    chmodSync(join(srcPath, "custom_hooks", "pre-receive"), 0o755);

    await replicate(rel);

    const dstPath = join(target.storages[0]?.path ?? "", rel);
    const { source: sa, target: sb } = await checksums(rel);
    expect(sb).toBe(sa);
    expect(sa).toBe(independentChecksum(srcPath));
    expect(sa).not.toBe("0".repeat(40));
    expect(git(dstPath, ["rev-parse", "refs/heads/large-file"]).trim()).toBe(fixture.commits.large);
    expect(git(dstPath, ["symbolic-ref", "HEAD"]).trim()).toBe("refs/heads/feature");
    expect(git(dstPath, ["config", "gitlab.fullpath"]).trim()).toBe("group/standard");
    expect(readFileSync(join(dstPath, "custom_hooks", "pre-receive"), "utf8")).toBe("#!/bin/sh\necho checked\n");
    expect(statSync(join(dstPath, "custom_hooks", "pre-receive")).mode & 0o111).not.toBe(0);
    expect(git(dstPath, ["fsck", "--no-progress"])).toBe("");
  });

  it("replicates a repository with 1,000 refs and then only what changed", async () => {
    const rel = "group/many.git";
    const srcPath = join(source.storages[0]?.path ?? "", rel);
    createManyRefsRepository(srcPath);
    await replicate(rel);
    let sums = await checksums(rel);
    expect(sums.target).toBe(sums.source);
    expect(sums.source).toBe(independentChecksum(srcPath));

    // Change the source: delete a branch, move another, add a tag; replicate again.
    git(srcPath, ["update-ref", "-d", "refs/heads/branch-0001"]);
    git(srcPath, [
      "update-ref",
      "refs/heads/branch-0002",
      git(srcPath, ["rev-parse", "refs/heads/branch-0003"]).trim(),
    ]);
    git(srcPath, ["update-ref", "refs/tags/new-tag", git(srcPath, ["rev-parse", "refs/heads/main"]).trim()]);
    await replicate(rel);
    sums = await checksums(rel);
    expect(sums.target).toBe(sums.source);
    expect(sums.source).toBe(independentChecksum(srcPath));
    const dstPath = join(target.storages[0]?.path ?? "", rel);
    expect(git(dstPath, ["for-each-ref", "--format=%(refname)", "refs/heads/branch-0001"]).trim()).toBe("");
  });

  it("refuses a missing source with NotFound and creates nothing", async () => {
    const repo = createClient(RepositoryService, target.channel(TOKEN_B));
    await expect(
      repo.replicateRepository(
        {
          repository: { storageName: "gitaly-b", relativePath: "group/missing.git" },
          source: { storageName: "gitaly-a", relativePath: "group/missing.git" },
        },
        { metadata: serversMetadata() },
      ),
    ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND, details: "invalid source repository" });
    expect(existsSync(join(target.storages[0]?.path ?? "", "group/missing.git"))).toBe(false);
  });

  it("needs gitaly-servers metadata naming the source", async () => {
    const repo = createClient(RepositoryService, target.channel(TOKEN_B));
    await expect(
      repo.replicateRepository({
        repository: { storageName: "gitaly-b", relativePath: "group/x.git" },
        source: { storageName: "gitaly-a", relativePath: "group/x.git" },
      }),
    ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });
});
