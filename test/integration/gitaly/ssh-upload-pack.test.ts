// SSHUploadPackWithSidechannel driven by a real `git clone`, with gitaly-ssh as git's
// ssh command: pkt-line stdin over the sidechannel, sideband output back.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStandardRepository, git, isolatedGitEnv, type StandardRepository } from "../../harness/git-fixtures.js";
import { type GitalyProcess, repoRoot, startGitaly } from "../../harness/gitaly.js";

const run = promisify(execFile);
const TOKEN = "ssh-token";
const gitalySsh = join(repoRoot, "dist/gitaly/gitaly-ssh.js");

describe("SSHUploadPackWithSidechannel", () => {
  let gitaly: GitalyProcess;
  let fixture: StandardRepository;
  const work = mkdtempSync(join(tmpdir(), "ssh-clone-"));

  beforeAll(async () => {
    gitaly = await startGitaly({ storages: ["default"], token: TOKEN });
    fixture = createStandardRepository(join(gitaly.storages[0]?.path ?? "", "group/project.git"));
  });
  afterAll(async () => {
    await gitaly?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  function clone(dest: string, relativePath: string, protocol: "0" | "2", token = TOKEN) {
    return run(
      "git",
      [
        "-c",
        `core.sshCommand=${process.execPath} ${gitalySsh}`,
        "-c",
        "ssh.variant=ssh",
        "-c",
        `protocol.version=${protocol}`,
        "clone",
        "--bare",
        "--quiet",
        "ssh://gitaly/project.git",
        dest,
      ],
      {
        env: {
          ...isolatedGitEnv(),
          GITALY_ADDRESS: `tcp://${gitaly.address}`,
          GITALY_TOKEN: token,
          GITALY_PAYLOAD: JSON.stringify({ repository: { storageName: "default", relativePath } }),
        },
      },
    );
  }

  it.each(["0", "2"] as const)("clones every ref with protocol v%s", async (protocol) => {
    const dest = join(work, `clone-v${protocol}.git`);
    await clone(dest, "group/project.git", protocol);
    const refs = (p: string) =>
      git(p, ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"]);
    expect(refs(dest)).toBe(refs(fixture.path));
    expect(git(dest, ["cat-file", "-s", `large-file:${fixture.largeFile.path}`]).trim()).toBe(
      String(fixture.largeFile.size),
    );
    expect(git(dest, ["fsck", "--no-progress"])).toBe("");
  });

  it("fails cleanly for a repository that does not exist", async () => {
    await expect(clone(join(work, "missing.git"), "group/missing.git", "2")).rejects.toMatchObject({
      stderr: expect.stringContaining("repository not found"),
    });
  });

  it("fails cleanly with a wrong token", async () => {
    await expect(clone(join(work, "denied.git"), "group/project.git", "2", "wrong")).rejects.toMatchObject({
      stderr: expect.stringContaining("permission denied"),
    });
  });
});
