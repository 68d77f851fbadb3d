// SSHReceivePack: real `git push` with gitaly-ssh as git's ssh command (it picks
// SSHReceivePack from the `git-receive-pack '...'` command git asks for), and the RPC
// driven by hand for upstream's validation and failure statuses.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SSHReceivePackRequestSchema, type SSHReceivePackResponse, SSHService } from "../../../src/gen/ssh_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { createStandardRepository, git, isolatedGitEnv, type StandardRepository } from "../../harness/git-fixtures.js";
import { metricValue, repoRoot } from "../../harness/gitaly.js";
import { expectStatus } from "./repository-helpers.js";
import { HOOK_REJECTION, startTransportNode, type TransportNode } from "./smarthttp-harness.js";

const execFileAsync = promisify(execFile);
const gitalySsh = join(repoRoot, "dist/gitaly/gitaly-ssh.js");
const pusher = { gl_id: "user-9", gl_username: "joe", gl_repository: "project-3" };
const identity = {
  GIT_AUTHOR_NAME: "Pusher",
  GIT_AUTHOR_EMAIL: "pusher@example.com",
  GIT_COMMITTER_NAME: "Pusher",
  GIT_COMMITTER_EMAIL: "pusher@example.com",
};

describe("SSHReceivePack", () => {
  let node: TransportNode;
  let server: StandardRepository;
  const work = mkdtempSync(join(tmpdir(), "ssh-receive-pack-"));
  const checkout = join(work, "checkout");
  const zero = "0".repeat(40);
  const who = `${pusher.gl_id}/${pusher.gl_username}/${pusher.gl_repository}/ssh`;

  /** The git client, talking to the node through gitaly-ssh. */
  function client(args: string[], protocol = "0") {
    return execFileAsync(
      "git",
      [
        "-c",
        `core.sshCommand=${process.execPath} ${gitalySsh}`,
        "-c",
        "ssh.variant=ssh",
        "-c",
        `protocol.version=${protocol}`,
        ...args,
      ],
      {
        cwd: checkout,
        env: {
          ...isolatedGitEnv(),
          ...identity,
          GITALY_ADDRESS: `tcp://${node.address}`,
          GITALY_PAYLOAD: JSON.stringify({
            repository: { storage_name: "default", relative_path: "group/push.git" },
            ...pusher,
          }),
        },
        maxBuffer: 64 * 1024 * 1024,
      },
    );
  }

  async function commitFile(name: string, content: string): Promise<string> {
    writeFileSync(join(checkout, name), content);
    await client(["add", name]);
    await client(["commit", "--quiet", "-m", `Add ${name}`]);
    return (await client(["rev-parse", "HEAD"])).stdout.trim();
  }

  beforeAll(async () => {
    node = await startTransportNode();
    server = createStandardRepository(join(node.storage.path, "group/push.git"));
    await execFileAsync("git", ["clone", "--quiet", server.path, checkout], { env: isolatedGitEnv() });
    await client(["remote", "set-url", "origin", "ssh://gitaly/group/push.git"]);
  });
  afterAll(async () => {
    await node?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("pushes a new branch and runs every hook for the pusher", async () => {
    node.clearHookLog();
    await client(["checkout", "--quiet", "-b", "topic"]);
    const oid = await commitFile("topic.txt", "topic\n");
    await client(["push", "--quiet", "origin", "topic"], "1");
    expect(git(server.path, ["rev-parse", "refs/heads/topic"]).trim()).toBe(oid);
    const log = node.hookLog();
    for (const hook of ["pre-receive", "update", "reference-transaction:prepared", "post-receive"]) {
      expect(log).toContain(`${hook} ${who} ${zero} ${oid} refs/heads/topic`);
    }
    expect(node.hookCalls).toEqual([
      {
        relativePath: "group/push.git",
        user: { glId: "user-9", glUsername: "joe", glRepository: "project-3", protocol: "ssh" },
      },
    ]);
    const text = await node.registry.metrics();
    expect(
      metricValue(text, "gitaly_git_protocol_requests_total", {
        grpc_service: "gitaly.SSHService",
        grpc_method: "SSHReceivePack",
        // git pushes with v0 even when v2 is configured; v1 it does pass on.
        git_protocol: "v1",
      }),
    ).toBe(1);
  });

  it("force-pushes, deletes branches and pushes tags", async () => {
    await client(["checkout", "--quiet", "-B", "feature", server.commits.feature1]);
    const rewritten = await commitFile("rewrite.txt", "rewritten\n");
    await client(["push", "--quiet", "--force", "origin", "feature"]);
    expect(git(server.path, ["rev-parse", "refs/heads/feature"]).trim()).toBe(rewritten);

    await client(["push", "--quiet", "origin", ":refs/heads/topic"]);
    expect(git(server.path, ["for-each-ref", "refs/heads/topic"])).toBe("");

    await client(["tag", "-a", "-m", "Release 3", "v3.0.0", server.commits.merge]);
    await client(["push", "--quiet", "origin", "v3.0.0"]);
    expect(git(server.path, ["rev-parse", "refs/tags/v3.0.0"]).trim()).toBe(
      (await client(["rev-parse", "v3.0.0"])).stdout.trim(),
    );
    expect(git(server.path, ["fsck", "--no-progress", "--no-dangling"])).toBe("");
  });

  it("refuses a push that pre-receive declines, with the hook's message", async () => {
    await client(["checkout", "--quiet", "-B", "rejected-x", server.branches.main]);
    await commitFile("nope.txt", "nope\n");
    const err = await client(["push", "origin", "rejected-x"]).then(
      () => {
        throw new Error("push should have failed");
      },
      (e: { stderr: string }) => e,
    );
    expect(err.stderr).toContain(`remote: ${HOOK_REJECTION}`);
    expect(err.stderr).toContain("pre-receive hook declined");
    expect(git(server.path, ["for-each-ref", "refs/heads/rejected-x"])).toBe("");
  });

  describe("RPC", () => {
    const repository = { storageName: "default", relativePath: "group/push.git" };

    function receivePack(messages: MessageInitShape<typeof SSHReceivePackRequestSchema>[]) {
      const call = createClient(SSHService, node.channel()).sSHReceivePack();
      const responses: SSHReceivePackResponse[] = [];
      const done = new Promise<SSHReceivePackResponse[]>((resolve, reject) => {
        call.on("data", (m: SSHReceivePackResponse) => responses.push(m));
        call.on("end", () => resolve(responses));
        call.on("error", reject);
      });
      for (const m of messages) call.write(create(SSHReceivePackRequestSchema, m));
      call.end();
      return { done, responses };
    }

    it("validates the first message like upstream", async () => {
      await expectStatus(receivePack([{ repository }]).done, grpc.status.INVALID_ARGUMENT, "empty GlId");
      await expectStatus(
        receivePack([{ repository, glId: "user-1", stdin: Buffer.from("0000") }]).done,
        grpc.status.INVALID_ARGUMENT,
        "non-empty data in first request",
      );
      await expectStatus(
        receivePack([{ repository: { storageName: "default", relativePath: "" }, glId: "user-1" }]).done,
        grpc.status.INVALID_ARGUMENT,
        "repository path not set",
      );
      await expectStatus(
        receivePack([{ repository: { storageName: "fake", relativePath: "x" }, glId: "user-1" }]).done,
        grpc.status.INVALID_ARGUMENT,
        "storage name not found",
      );
      await expectStatus(
        receivePack([{ repository: { storageName: "default", relativePath: "nope.git" }, glId: "user-1" }]).done,
        grpc.status.NOT_FOUND,
        "repository not found",
      );
    });

    it("sends git's stderr and exit status when receive-pack fails", async () => {
      const { done, responses } = receivePack([
        { repository, glId: "user-1" },
        { stdin: Buffer.from("not a pkt-line at all") },
      ]);
      await expectStatus(done, grpc.status.INTERNAL, "cmd wait: exit status 128");
      const stderr = Buffer.concat(responses.map((r) => Buffer.from(r.stderr))).toString();
      expect(stderr).toContain("fatal: protocol error: bad line length character");
      expect(responses.at(-1)?.exitStatus?.value).toBe(128);
    });

    it("reports a successful run with exit status 0", async () => {
      // A client that only reads the advertisement and says it has nothing to push.
      const { done, responses } = receivePack([{ repository, glId: "user-1" }, { stdin: Buffer.from("0000") }]);
      await done;
      const stdout = Buffer.concat(responses.map((r) => Buffer.from(r.stdout))).toString();
      expect(stdout).toContain(`${server.branches.main} refs/heads/main`);
      expect(responses.at(-1)?.exitStatus?.value).toBe(0);
    });
  });
});
