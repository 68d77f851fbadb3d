// SmartHTTPService driven by the real git client over HTTP: clone (v0, v2, shallow,
// partial), fetch, and pushes of every kind, through a small Workhorse-like proxy to
// the RPCs (info/refs → InfoRefs*, upload-pack → PostUploadPackWithSidechannel,
// receive-pack → PostReceivePack). Pushes run the node's hooks.
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createEmptyRepository,
  createStandardRepository,
  git,
  isolatedGitEnv,
  pseudoRandomBytes,
  type StandardRepository,
} from "../../harness/git-fixtures.js";
import { metricValue } from "../../harness/gitaly.js";
import {
  HOOK_REJECTION,
  PROXY_USER,
  type SmartHttpProxy,
  startSmartHttpProxy,
  startTransportNode,
  type TransportNode,
} from "./smarthttp-harness.js";

const execFileAsync = promisify(execFile);

const identity = {
  GIT_AUTHOR_NAME: "Pusher",
  GIT_AUTHOR_EMAIL: "pusher@example.com",
  GIT_AUTHOR_DATE: "1700000000 +0000",
  GIT_COMMITTER_NAME: "Pusher",
  GIT_COMMITTER_EMAIL: "pusher@example.com",
  GIT_COMMITTER_DATE: "1700000000 +0000",
};

/** Runs the git client; rejects with stderr on failure. */
function client(args: string[], cwd?: string) {
  return execFileAsync("git", args, {
    cwd,
    env: { ...isolatedGitEnv(), ...identity },
    maxBuffer: 64 * 1024 * 1024,
  });
}

function refs(path: string): string {
  return git(path, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"]);
}

function fsck(path: string): string {
  return git(path, ["fsck", "--no-progress", "--no-dangling"]);
}

describe("SmartHTTPService with git over HTTP", () => {
  let node: TransportNode;
  let proxy: SmartHttpProxy;
  let fixture: StandardRepository;
  const work = mkdtempSync(join(tmpdir(), "smarthttp-git-"));
  const remote = (relativePath: string) => `${proxy.url}/${relativePath}`;

  beforeAll(async () => {
    node = await startTransportNode();
    proxy = await startSmartHttpProxy(node);
    fixture = createStandardRepository(join(node.storage.path, "group/project.git"));
  });
  afterAll(async () => {
    await proxy?.stop();
    await node?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it.each(["0", "2"])("clones every ref with protocol v%s", async (protocol) => {
    const dest = join(work, `clone-v${protocol}.git`);
    await client([
      "-c",
      `protocol.version=${protocol}`,
      "clone",
      "--bare",
      "--quiet",
      remote("group/project.git"),
      dest,
    ]);
    expect(refs(dest)).toBe(refs(fixture.path));
    expect(git(dest, ["cat-file", "-s", `large-file:${fixture.largeFile.path}`]).trim()).toBe(
      String(fixture.largeFile.size),
    );
    expect(fsck(dest)).toBe("");
  });

  it.each(["0", "2"])("makes a shallow clone with protocol v%s", async (protocol) => {
    const dest = join(work, `shallow-v${protocol}.git`);
    await client([
      "-c",
      `protocol.version=${protocol}`,
      "clone",
      "--bare",
      "--quiet",
      "--depth=1",
      "--branch=main",
      remote("group/project.git"),
      dest,
    ]);
    expect(git(dest, ["rev-parse", "HEAD"]).trim()).toBe(fixture.branches.main);
    expect(git(dest, ["rev-list", "--count", "HEAD"]).trim()).toBe("1");
    expect(git(dest, ["rev-parse", "--is-shallow-repository"]).trim()).toBe("true");
  });

  it("makes a partial clone without blobs", async () => {
    const dest = join(work, "partial.git");
    await client([
      "-c",
      "protocol.version=2",
      "clone",
      "--bare",
      "--quiet",
      "--filter=blob:none",
      remote("group/project.git"),
      dest,
    ]);
    expect(refs(dest)).toBe(refs(fixture.path));
    const missing = git(dest, ["rev-list", "--objects", "--all", "--missing=print"])
      .split("\n")
      .filter((l) => l.startsWith("?"));
    // Every blob of the fixture is left out (README, hello, binary, feature, large file).
    expect(missing.length).toBeGreaterThanOrEqual(5);
    expect(git(dest, ["config", "remote.origin.promisor"]).trim()).toBe("true");
  });

  it("fetches commits added after the clone", async () => {
    const server = createStandardRepository(join(node.storage.path, "group/fetch.git"));
    const dest = join(work, "fetch.git");
    await client(["clone", "--bare", "--quiet", remote("group/fetch.git"), dest]);
    const tree = git(server.path, ["rev-parse", "main^{tree}"]).trim();
    const next = execFileSyncCommit(server.path, tree, server.branches.main, "Another commit\n");
    git(server.path, ["update-ref", "refs/heads/main", next]);
    await client(["fetch", "--quiet", "origin", "+refs/heads/*:refs/heads/*"], dest);
    expect(git(dest, ["rev-parse", "refs/heads/main"]).trim()).toBe(next);
    expect(refs(dest)).toBe(refs(server.path));
  });

  describe("push", () => {
    let server: StandardRepository;
    let checkout: string;

    beforeAll(async () => {
      server = createStandardRepository(join(node.storage.path, "group/push.git"));
      checkout = join(work, "push-checkout");
      await client(["clone", "--quiet", remote("group/push.git"), checkout]);
    });

    async function commitFile(name: string, content: string | Buffer, message: string): Promise<string> {
      writeFileSync(join(checkout, name), content);
      await client(["add", name], checkout);
      await client(["commit", "--quiet", "-m", message], checkout);
      return (await client(["rev-parse", "HEAD"], checkout)).stdout.trim();
    }

    it("pushes a new branch and runs every hook for the pusher", async () => {
      node.clearHookLog();
      await client(["checkout", "--quiet", "-b", "topic"], checkout);
      const oid = await commitFile("topic.txt", "topic\n", "Add topic");
      await client(["push", "--quiet", "origin", "topic"], checkout);
      expect(git(server.path, ["rev-parse", "refs/heads/topic"]).trim()).toBe(oid);

      const who = `${PROXY_USER.glId}/${PROXY_USER.glUsername}/${PROXY_USER.glRepository}/http`;
      const zero = "0".repeat(40);
      const log = node.hookLog();
      expect(log).toContain(`pre-receive ${who} ${zero} ${oid} refs/heads/topic`);
      expect(log).toContain(`update ${who} ${zero} ${oid} refs/heads/topic`);
      expect(log).toContain(`reference-transaction:prepared ${who} ${zero} ${oid} refs/heads/topic`);
      expect(log).toContain(`reference-transaction:committed ${who} ${zero} ${oid} refs/heads/topic`);
      expect(log).toContain(`post-receive ${who} ${zero} ${oid} refs/heads/topic`);
      expect(node.hookCalls).toEqual([{ relativePath: "group/push.git", user: { ...PROXY_USER, protocol: "http" } }]);
    });

    it("force-pushes a rewritten branch", async () => {
      await client(["checkout", "--quiet", "-B", "feature", server.commits.feature1], checkout);
      const oid = await commitFile("rewrite.txt", "rewritten\n", "Rewrite feature");
      await expect(client(["push", "--quiet", "origin", "feature"], checkout)).rejects.toMatchObject({
        stderr: expect.stringContaining("[rejected]"),
      });
      expect(git(server.path, ["rev-parse", "refs/heads/feature"]).trim()).toBe(server.commits.feature2);
      await client(["push", "--quiet", "--force", "origin", "feature"], checkout);
      expect(git(server.path, ["rev-parse", "refs/heads/feature"]).trim()).toBe(oid);
    });

    it("deletes a branch", async () => {
      await client(["push", "--quiet", "origin", ":refs/heads/topic"], checkout);
      expect(git(server.path, ["for-each-ref", "refs/heads/topic"])).toBe("");
    });

    it("pushes tags", async () => {
      await client(["tag", "-a", "-m", "Release 2.0.0", "v2.0.0", server.commits.merge], checkout);
      await client(["tag", "light", server.commits.initial], checkout);
      await client(["push", "--quiet", "origin", "v2.0.0", "light"], checkout);
      const local = (await client(["rev-parse", "v2.0.0", "light"], checkout)).stdout;
      expect(git(server.path, ["rev-parse", "refs/tags/v2.0.0", "refs/tags/light"])).toBe(local);
      expect(git(server.path, ["cat-file", "-t", "refs/tags/v2.0.0"]).trim()).toBe("tag");
    });

    it("pushes a 20 MB binary file", async () => {
      await client(["checkout", "--quiet", "-B", "big", server.branches.main], checkout);
      const content = pseudoRandomBytes(20 * 1024 * 1024, 0x1234567);
      const oid = await commitFile("big.bin", content, "Add a big binary");
      await client(["push", "--quiet", "origin", "big"], checkout);
      expect(git(server.path, ["rev-parse", "refs/heads/big"]).trim()).toBe(oid);
      expect(git(server.path, ["cat-file", "-s", "big:big.bin"]).trim()).toBe(String(content.length));
    });

    it("refuses a push that pre-receive declines, with the hook's message", async () => {
      await client(["checkout", "--quiet", "-B", "rejected-change", server.branches.main], checkout);
      await commitFile("nope.txt", "nope\n", "Not welcome");
      const err = await client(["push", "origin", "rejected-change"], checkout).then(
        () => {
          throw new Error("push should have failed");
        },
        (e: { stderr: string }) => e,
      );
      expect(err.stderr).toContain(`remote: ${HOOK_REJECTION}`);
      expect(err.stderr).toContain("pre-receive hook declined");
      expect(git(server.path, ["for-each-ref", "refs/heads/rejected-change"])).toBe("");
    });

    it("leaves a repository that passes fsck", () => {
      expect(fsck(server.path)).toBe("");
    });
  });

  it("takes the first push into an empty repository", async () => {
    const server = createEmptyRepository(join(node.storage.path, "group/empty.git"));
    const checkout = join(work, "empty-checkout");
    await client(["clone", "--quiet", remote("group/empty.git"), checkout]);
    writeFileSync(join(checkout, "README.md"), "# new\n");
    await client(["add", "README.md"], checkout);
    await client(["commit", "--quiet", "-m", "First"], checkout);
    await client(["push", "--quiet", "origin", "HEAD:refs/heads/main"], checkout);
    const head = (await client(["rev-parse", "HEAD"], checkout)).stdout.trim();
    expect(git(server.path, ["rev-parse", "refs/heads/main"]).trim()).toBe(head);
    expect(fsck(server.path)).toBe("");
  });

  it("counts requests by git protocol and negotiation features", async () => {
    const text = await node.registry.metrics();
    const count = (method: string, protocol: string) =>
      metricValue(text, "gitaly_git_protocol_requests_total", {
        grpc_service: "gitaly.SmartHTTPService",
        grpc_method: method,
        git_protocol: protocol,
      });
    expect(count("InfoRefsUploadPack", "v2")).toBeGreaterThan(0);
    expect(count("InfoRefsUploadPack", "v0")).toBeGreaterThan(0);
    expect(count("PostUploadPackWithSidechannel", "v2")).toBeGreaterThan(0);
    expect(count("InfoRefsReceivePack", "v0")).toBeGreaterThan(0);
    expect(count("PostReceivePack", "v0")).toBeGreaterThan(0);
    const features = (feature: string) =>
      metricValue(text, "gitaly_smarthttp_packfile_negotiation_requests_total", { git_negotiation_feature: feature });
    expect(features("total")).toBeGreaterThan(0);
    expect(features("fetch")).toBeGreaterThan(0);
    expect(features("deepen")).toBeGreaterThan(0);
    expect(features("filter")).toBeGreaterThan(0);
    expect(features("have")).toBeGreaterThan(0);
  });
});

/** A commit with `tree` and `parent`, written straight into `repo`. */
function execFileSyncCommit(repo: string, tree: string, parent: string, message: string): string {
  return execFileSync("git", ["--git-dir", repo, "commit-tree", tree, "-p", parent, "-m", message.trim()], {
    env: { ...isolatedGitEnv(), ...identity },
    encoding: "utf8",
  }).trim();
}
