// SSHUploadArchive: `git archive --remote` with gitaly-ssh as git's ssh command
// against a real Gitaly process (auth on), compared with local `git archive`; and the
// RPC driven by hand for validation, failures and the negotiation deadline.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SSHService, SSHUploadArchiveRequestSchema, type SSHUploadArchiveResponse } from "../../../src/gen/ssh_pb.js";
import { encodePktLine, flushPkt } from "../../../src/gitaly/git/pktline.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { createStandardRepository, isolatedGitEnv, type StandardRepository } from "../../harness/git-fixtures.js";
import { type GitalyProcess, repoRoot, startGitaly } from "../../harness/gitaly.js";
import { expectStatus, expectStatusMatching } from "./repository-helpers.js";
import { startTransportNode, type TransportNode } from "./smarthttp-harness.js";

const execFileAsync = promisify(execFile);
const gitalySsh = join(repoRoot, "dist/gitaly/gitaly-ssh.js");
const TOKEN = "archive-token";

describe("SSHUploadArchive with git archive --remote", () => {
  let gitaly: GitalyProcess;
  let fixture: StandardRepository;

  beforeAll(async () => {
    gitaly = await startGitaly({ storages: ["default"], token: TOKEN });
    fixture = createStandardRepository(join(gitaly.storages[0]?.path ?? "", "group/project.git"));
  });
  afterAll(async () => {
    await gitaly?.stop();
  });

  function remoteArchive(args: string[], token = TOKEN) {
    return execFileAsync(
      "git",
      [
        "-c",
        `core.sshCommand=${process.execPath} ${gitalySsh}`,
        "archive",
        "--remote=ssh://gitaly/group/project.git",
        ...args,
      ],
      {
        env: {
          ...isolatedGitEnv(),
          GITALY_ADDRESS: `tcp://${gitaly.address}`,
          GITALY_TOKEN: token,
          GITALY_PAYLOAD: JSON.stringify({ repository: { storageName: "default", relativePath: "group/project.git" } }),
        },
        encoding: "buffer",
        maxBuffer: 64 * 1024 * 1024,
      },
    );
  }

  function localArchive(args: string[]): Promise<Buffer> {
    return execFileAsync("git", ["--git-dir", fixture.path, "archive", ...args], {
      env: isolatedGitEnv(),
      encoding: "buffer",
      maxBuffer: 64 * 1024 * 1024,
    }).then((r) => r.stdout);
  }

  it.each([
    ["a tar of HEAD", ["--format=tar", "HEAD"]],
    ["a zip of a tag, one directory", ["--format=zip", "v1.0.0", "src"]],
    ["a prefixed tar.gz of a branch", ["--format=tar.gz", "--prefix=project/", "large-file"]],
  ])("produces the same bytes as local git archive: %s", async (_name, args) => {
    const { stdout } = await remoteArchive(args);
    expect(stdout.length).toBeGreaterThan(0);
    expect(stdout.equals(await localArchive(args))).toBe(true);
  });

  it("passes git's refusal to the client", async () => {
    const err = await remoteArchive(["--format=tar", "no-such-ref"]).then(
      () => {
        throw new Error("archive should have failed");
      },
      (e: { stderr: Buffer }) => e,
    );
    expect(err.stderr.toString()).toContain("no-such-ref");
  });

  it("fails with a wrong token", async () => {
    const err = await remoteArchive(["--format=tar", "HEAD"], "wrong").then(
      () => {
        throw new Error("archive should have failed");
      },
      (e: { stderr: Buffer }) => e,
    );
    expect(err.stderr.toString()).toContain("permission denied");
  });
});

describe("SSHUploadArchive RPC", () => {
  let node: TransportNode;
  let slowNode: TransportNode;
  const work = mkdtempSync(join(tmpdir(), "ssh-upload-archive-"));
  const repository = { storageName: "default", relativePath: "group/project.git" };

  beforeAll(async () => {
    node = await startTransportNode();
    slowNode = await startTransportNode({ extraToml: `[timeout]\nupload_archive_negotiation = "1s"` });
    createStandardRepository(join(node.storage.path, "group/project.git"));
    createStandardRepository(join(slowNode.storage.path, "group/project.git"));
  });
  afterAll(async () => {
    await node?.stop();
    await slowNode?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  function uploadArchive(
    on: TransportNode,
    messages: MessageInitShape<typeof SSHUploadArchiveRequestSchema>[],
    { end = true } = {},
  ) {
    const call = createClient(SSHService, on.channel()).sSHUploadArchive();
    const responses: SSHUploadArchiveResponse[] = [];
    const done = new Promise<SSHUploadArchiveResponse[]>((resolve, reject) => {
      call.on("data", (m: SSHUploadArchiveResponse) => responses.push(m));
      call.on("end", () => resolve(responses));
      call.on("error", reject);
    });
    for (const m of messages) call.write(create(SSHUploadArchiveRequestSchema, m));
    if (end) call.end();
    return { done, responses, call };
  }

  const argumentsFor = (...args: string[]) =>
    Buffer.concat([...args.map((a) => encodePktLine(`argument ${a}\n`)), flushPkt]);

  it("archives and ends with exit status 0", async () => {
    const { done, responses } = uploadArchive(node, [{ repository }, { stdin: argumentsFor("--format=tar", "HEAD") }]);
    await done;
    const stdout = Buffer.concat(responses.map((r) => Buffer.from(r.stdout)));
    // upload-archive's own protocol: ACK, flush, then the archive in side-band packets.
    expect(stdout.subarray(0, 12).toString()).toBe("0008ACK\n0000");
    expect(responses.at(-1)?.exitStatus?.value).toBe(0);
  });

  it("fails with git's exit status while the client still has its side open", async () => {
    const { done, responses, call } = uploadArchive(
      node,
      [{ repository }, { stdin: argumentsFor("--format=tar", "no-such-ref") }],
      { end: false },
    );
    try {
      await expectStatusMatching(
        done,
        grpc.status.INTERNAL,
        /^send: cmd wait: exit status 128, stderr: ".*archiver died with error/,
      );
    } finally {
      call.end();
    }
    const stdout = Buffer.concat(responses.map((r) => Buffer.from(r.stdout))).toString();
    expect(stdout).toContain("fatal: no such ref: no-such-ref");
    expect(responses.at(-1)?.exitStatus?.value).toBe(128);
  });

  it("validates the first message like upstream", async () => {
    await expectStatus(
      uploadArchive(node, [{ repository, stdin: Buffer.from("x") }]).done,
      grpc.status.INVALID_ARGUMENT,
      "non-empty stdin in first request",
    );
    await expectStatus(
      uploadArchive(node, [{ repository: { storageName: "default", relativePath: "" } }]).done,
      grpc.status.INVALID_ARGUMENT,
      "repository path not set",
    );
    await expectStatus(
      uploadArchive(node, [{ repository: { storageName: "default", relativePath: "nope.git" } }]).done,
      grpc.status.NOT_FOUND,
      "repository not found",
    );
  });

  it("gives up on a client that never sends its arguments", async () => {
    const { done, call } = uploadArchive(slowNode, [{ repository }, { stdin: encodePktLine("argument HEAD\n") }], {
      end: false,
    });
    try {
      await expectStatus(
        done,
        grpc.status.DEADLINE_EXCEEDED,
        "running upload-archive: waiting for negotiation: context canceled",
      );
    } finally {
      call.end();
    }
  });
});
