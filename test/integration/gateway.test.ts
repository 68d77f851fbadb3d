// Real git clients through the HTTP gateway (a `gitaly-cluster gateway` process) to
// a Gitaly process with auth on: clones with protocol v0 and v2, shallow and partial
// clones, fetches, pushes (new branch, force, delete, tags, a 20 MiB file, the first
// push into a repository that does not exist yet), then `git fsck` in the storage.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createStandardRepository,
  git,
  isolatedGitEnv,
  pseudoRandomBytes,
  type StandardRepository,
} from "../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../harness/gitaly.js";
import { CLIENT_IDENTITY, type GatewayProcess, gitClient, startGatewayProcess } from "./gateway-helpers.js";

const TOKEN = "gateway-suite-token";
const BIG_FILE_SIZE = 20 * 1024 * 1024;

/** Every ref of a repository as "<oid> <name>" lines, sorted by name. */
function refs(repo: string, pattern: string[] = ["refs/heads", "refs/tags"]): string {
  return git(repo, ["for-each-ref", "--format=%(objectname) %(refname)", ...pattern]);
}

function revParse(repo: string, rev: string): string {
  return git(repo, ["rev-parse", "--verify", "--quiet", rev]).trim();
}

function refExists(repo: string, ref: string): boolean {
  try {
    git(repo, ["show-ref", "--verify", "--quiet", ref]);
    return true;
  } catch {
    return false;
  }
}

describe("HTTP git gateway against a Gitaly process", () => {
  let gitaly: GitalyProcess;
  let gateway: GatewayProcess;
  let storage: string;
  let fixture: StandardRepository;
  const work = mkdtempSync(join(tmpdir(), "gateway-git-"));
  const url = (relativePath: string) => `${gateway.url}/${relativePath}`;

  beforeAll(async () => {
    gitaly = await startGitaly({ storages: ["default"], token: TOKEN });
    storage = gitaly.storages[0]?.path ?? "";
    fixture = createStandardRepository(join(storage, "group/project.git"));
    createStandardRepository(join(storage, "group/fetch.git"));
    createStandardRepository(join(storage, "group/push.git"));
    gateway = await startGatewayProcess({ upstream: `tcp://${gitaly.address}`, token: TOKEN, createOnPush: true });
  });

  afterAll(async () => {
    await gateway?.stop();
    await gitaly?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  describe("clone", () => {
    it.each(["0", "2"] as const)("clones every branch and tag with protocol v%s", async (protocol) => {
      const dest = join(work, `clone-v${protocol}.git`);
      await gitClient(["clone", "--bare", "--quiet", url("group/project.git"), dest], { protocol });
      expect(refs(dest)).toBe(refs(fixture.path));
      expect(refs(dest)).toContain("refs/heads/large-file");
      expect(git(dest, ["cat-file", "-s", `large-file:${fixture.largeFile.path}`]).trim()).toBe(
        String(fixture.largeFile.size),
      );
      expect(git(dest, ["fsck", "--no-progress", "--no-dangling"])).toBe("");
    });

    it("accepts a clone URL without the .git suffix", async () => {
      const dest = join(work, "clone-no-suffix.git");
      await gitClient(["clone", "--bare", "--quiet", url("group/project"), dest]);
      expect(refs(dest)).toBe(refs(fixture.path));
    });

    it.each(["0", "2"] as const)("makes a shallow clone (--depth 1) with protocol v%s", async (protocol) => {
      const dest = join(work, `shallow-v${protocol}.git`);
      await gitClient(
        ["clone", "--bare", "--quiet", "--depth", "1", "--branch", "main", url("group/project.git"), dest],
        {
          protocol,
        },
      );
      expect(revParse(dest, "refs/heads/main")).toBe(fixture.branches.main);
      expect(git(dest, ["rev-list", "--count", "refs/heads/main"]).trim()).toBe("1");
      expect(git(dest, ["rev-parse", "--is-shallow-repository"]).trim()).toBe("true");
    });

    it("makes a partial clone (--filter=blob:none) and fetches missing blobs on demand", async () => {
      const dest = join(work, "partial.git");
      const { stderr } = await gitClient([
        "clone",
        "--bare",
        "--quiet",
        "--filter=blob:none",
        url("group/project.git"),
        dest,
      ]);
      // A server without uploadpack.allowFilter makes git fall back to a full clone, saying so.
      expect(stderr).not.toContain("filtering not recognized by server");
      expect(refs(dest)).toBe(refs(fixture.path));
      const largeBlob = revParse(fixture.path, `large-file:${fixture.largeFile.path}`);
      const missing = git(dest, ["rev-list", "--objects", "--all", "--missing=print"])
        .split("\n")
        .filter((l) => l.startsWith("?"))
        .map((l) => l.slice(1));
      expect(missing).toContain(largeBlob);
      // A lazy fetch of one blob by id goes through the gateway too.
      const size = await gitClient(["cat-file", "-s", largeBlob], { cwd: dest });
      expect(size.stdout.trim()).toBe(String(fixture.largeFile.size));
    });
  });

  it("fetches commits added after the clone", async () => {
    const dest = join(work, "fetch.git");
    const remoteRepo = join(storage, "group/fetch.git");
    await gitClient(["clone", "--bare", "--quiet", url("group/fetch.git"), dest]);
    // A new commit on main, written into the storage directly (as another push would).
    const env = { ...isolatedGitEnv(), ...CLIENT_IDENTITY };
    const blob = execFileSync("git", ["--git-dir", remoteRepo, "hash-object", "-w", "--stdin"], {
      env,
      input: "fetched content\n",
    })
      .toString()
      .trim();
    const tree = execFileSync("git", ["--git-dir", remoteRepo, "mktree"], {
      env,
      input: `100644 blob ${blob}\tfetched.txt\n`,
    })
      .toString()
      .trim();
    const commit = execFileSync(
      "git",
      ["--git-dir", remoteRepo, "commit-tree", tree, "-p", fixture.branches.main, "-m", "Added after the clone"],
      { env },
    )
      .toString()
      .trim();
    git(remoteRepo, ["update-ref", "refs/heads/main", commit, fixture.branches.main]);
    git(remoteRepo, ["tag", "fetched-tag", commit]);

    await gitClient(["fetch", "--quiet", "origin", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"], {
      cwd: dest,
    });
    expect(revParse(dest, "refs/heads/main")).toBe(commit);
    expect(revParse(dest, "refs/tags/fetched-tag")).toBe(commit);
    expect(git(dest, ["cat-file", "-p", `${commit}:fetched.txt`])).toBe("fetched content\n");
  });

  describe("push", () => {
    const remoteRepo = () => join(storage, "group/push.git");
    const checkout = join(work, "push-checkout");

    beforeAll(async () => {
      await gitClient(["clone", "--quiet", "--branch", "main", url("group/push.git"), checkout]);
    });

    async function commitFile(name: string, content: string | Buffer, message: string): Promise<string> {
      writeFileSync(join(checkout, name), content);
      await gitClient(["add", name], { cwd: checkout });
      await gitClient(["commit", "--quiet", "-m", message], { cwd: checkout });
      return (await gitClient(["rev-parse", "HEAD"], { cwd: checkout })).stdout.trim();
    }

    it("pushes a new branch", async () => {
      await gitClient(["checkout", "--quiet", "-b", "topic"], { cwd: checkout });
      const head = await commitFile("topic.txt", "a topic\n", "Start a topic");
      await gitClient(["push", "--quiet", "origin", "topic"], { cwd: checkout });
      expect(revParse(remoteRepo(), "refs/heads/topic")).toBe(head);
    });

    it("force-pushes a rewritten branch", async () => {
      const before = revParse(remoteRepo(), "refs/heads/topic");
      writeFileSync(join(checkout, "topic.txt"), "a rewritten topic\n");
      await gitClient(["commit", "--quiet", "--amend", "-a", "-m", "Start a topic, rewritten"], { cwd: checkout });
      const rewritten = (await gitClient(["rev-parse", "HEAD"], { cwd: checkout })).stdout.trim();
      expect(rewritten).not.toBe(before);
      // Without --force the server keeps the branch (git refuses a non-fast-forward).
      await expect(gitClient(["push", "--quiet", "origin", "topic"], { cwd: checkout })).rejects.toThrow();
      expect(revParse(remoteRepo(), "refs/heads/topic")).toBe(before);
      await gitClient(["push", "--quiet", "--force", "origin", "topic"], { cwd: checkout });
      expect(revParse(remoteRepo(), "refs/heads/topic")).toBe(rewritten);
    });

    it("deletes a branch", async () => {
      expect(refExists(remoteRepo(), "refs/heads/topic")).toBe(true);
      await gitClient(["push", "--quiet", "origin", "--delete", "topic"], { cwd: checkout });
      expect(refExists(remoteRepo(), "refs/heads/topic")).toBe(false);
      expect(refExists(remoteRepo(), "refs/heads/main")).toBe(true);
    });

    it("pushes lightweight and annotated tags, and deletes one", async () => {
      await gitClient(["checkout", "--quiet", "main"], { cwd: checkout });
      await gitClient(["tag", "light-1"], { cwd: checkout });
      await gitClient(["tag", "-a", "annotated-1", "-m", "An annotated tag"], { cwd: checkout });
      await gitClient(["push", "--quiet", "origin", "light-1", "annotated-1"], { cwd: checkout });
      const local = (
        await gitClient(["for-each-ref", "--format=%(objectname) %(refname)", "refs/tags"], { cwd: checkout })
      ).stdout;
      expect(refs(remoteRepo(), ["refs/tags"])).toBe(local);
      expect(git(remoteRepo(), ["cat-file", "-t", "refs/tags/annotated-1"]).trim()).toBe("tag");

      await gitClient(["push", "--quiet", "origin", ":refs/tags/light-1"], { cwd: checkout });
      expect(refExists(remoteRepo(), "refs/tags/light-1")).toBe(false);
      expect(refExists(remoteRepo(), "refs/tags/annotated-1")).toBe(true);
    });

    it("pushes a 20 MiB binary file and clones it back", async () => {
      await gitClient(["checkout", "--quiet", "-b", "big", "main"], { cwd: checkout });
      const head = await commitFile("big.bin", pseudoRandomBytes(BIG_FILE_SIZE, 0x1234567), "Add 20 MiB");
      const blob = (await gitClient(["rev-parse", "HEAD:big.bin"], { cwd: checkout })).stdout.trim();
      await gitClient(["push", "--quiet", "origin", "big"], { cwd: checkout });
      expect(revParse(remoteRepo(), "refs/heads/big")).toBe(head);
      expect(git(remoteRepo(), ["cat-file", "-s", blob]).trim()).toBe(String(BIG_FILE_SIZE));

      const back = join(work, "big-clone.git");
      await gitClient([
        "clone",
        "--bare",
        "--quiet",
        "--single-branch",
        "--branch",
        "big",
        url("group/push.git"),
        back,
      ]);
      expect(revParse(back, "refs/heads/big:big.bin")).toBe(blob);
      expect(git(back, ["fsck", "--no-progress", "--no-dangling"])).toBe("");
    });

    it("makes the first push into a repository that does not exist yet (--create-on-push)", async () => {
      expect(readdirSync(join(storage, "group"))).not.toContain("fresh.git");
      await gitClient(["push", "--quiet", url("group/fresh.git"), "main:refs/heads/main", "big:refs/heads/big"], {
        cwd: checkout,
      });
      const fresh = join(storage, "group/fresh.git");
      expect(revParse(fresh, "refs/heads/main")).toBe(revParse(remoteRepo(), "refs/heads/main"));
      expect(revParse(fresh, "refs/heads/big")).toBe(revParse(remoteRepo(), "refs/heads/big"));

      const back = join(work, "fresh-clone.git");
      await gitClient(["clone", "--bare", "--quiet", url("group/fresh.git"), back]);
      expect(refs(back, ["refs/heads"])).toBe(refs(fresh, ["refs/heads"]));
    });
  });

  it("leaves every repository in the storage passing git fsck", () => {
    const repos = readdirSync(join(storage, "group")).filter((d) => d.endsWith(".git"));
    expect(repos.sort()).toEqual(["fetch.git", "fresh.git", "project.git", "push.git"]);
    for (const repo of repos) {
      const path = join(storage, "group", repo);
      expect({ repo, fsck: git(path, ["fsck", "--no-progress", "--no-dangling", "--strict"]) }).toEqual({
        repo,
        fsck: "",
      });
    }
  });
});
