// Pushes rejected on the server reach the pushing client with the reason: by a
// custom pre-receive hook in the repository, and by GitLab's internal API (a small
// fake on loopback that checks the Gitlab-Shell-Api-Request JWT).
import { createHmac } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStandardRepository, git } from "../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../harness/gitaly.js";
import { type GatewayProcess, gitClient, startGatewayProcess } from "./gateway-helpers.js";

const TOKEN = "push-rejection-token";
const SECRET = "gitlab-shell-secret";

interface FakeGitlab {
  url: string;
  calls: { path: string; body: Record<string, unknown>; jwtOk: boolean }[];
  deny: string | null;
  close(): Promise<void>;
}

function verifyJwt(token: string | undefined): boolean {
  if (!token) return false;
  const [h, p, sig] = token.split(".");
  if (!h || !p || !sig) return false;
  const want = createHmac("sha256", SECRET).update(`${h}.${p}`).digest("base64url");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as { iss?: string };
  return want === sig && claims.iss === "gitlab-shell";
}

async function startFakeGitlab(): Promise<FakeGitlab> {
  const fake: FakeGitlab = { url: "", calls: [], deny: null, close: async () => {} };
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => {
      raw += c;
    });
    req.on("end", () => {
      const jwtOk = verifyJwt(req.headers["gitlab-shell-api-request"] as string | undefined);
      const path = (req.url ?? "").replace(/\?.*$/, "");
      fake.calls.push({ path, body: raw ? (JSON.parse(raw) as Record<string, unknown>) : {}, jwtOk });
      res.setHeader("content-type", "application/json");
      if (!jwtOk) {
        res.writeHead(401).end(JSON.stringify({ message: "401 Unauthorized" }));
      } else if (path.endsWith("/allowed")) {
        res.end(JSON.stringify(fake.deny ? { status: false, message: fake.deny } : { status: true }));
      } else if (path.endsWith("/pre_receive")) {
        res.end(JSON.stringify({ reference_counter_increased: true }));
      } else if (path.endsWith("/post_receive")) {
        res.end(JSON.stringify({ reference_counter_decreased: true, messages: [] }));
      } else {
        res.writeHead(404).end("{}");
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  fake.url = `http://127.0.0.1:${port}`;
  fake.close = () => new Promise((r) => server.close(() => r()));
  return fake;
}

describe("push rejections reach the client", () => {
  let gitlab: FakeGitlab;
  let gitaly: GitalyProcess;
  let gateway: GatewayProcess;
  const work = mkdtempSync(join(tmpdir(), "push-reject-"));
  const secretFile = join(work, "gitlab-secret");

  beforeAll(async () => {
    gitlab = await startFakeGitlab();
    writeFileSync(secretFile, SECRET, { mode: 0o600 });
    gitaly = await startGitaly({
      token: TOKEN,
      extraToml: `[gitlab]\nurl = ${JSON.stringify(gitlab.url)}\nsecret_file = ${JSON.stringify(secretFile)}\n`,
    });
    gateway = await startGatewayProcess({ upstream: `tcp://${gitaly.address}`, token: TOKEN });
  });
  afterAll(async () => {
    await gateway?.stop();
    await gitaly?.stop();
    await gitlab?.close();
    rmSync(work, { recursive: true, force: true });
  });

  async function cloneAndCommit(relative: string, name: string): Promise<string> {
    const dir = join(work, name);
    await gitClient(["clone", "--quiet", `${gateway.url}/${relative}`, dir]);
    writeFileSync(join(dir, `${name}.txt`), `${name}\n`);
    await gitClient(["add", "."], { cwd: dir });
    await gitClient(["commit", "--quiet", "-m", name], { cwd: dir });
    return dir;
  }

  it("shows a custom pre-receive hook's message and leaves the refs alone", async () => {
    const repoPath = join(gitaly.storages[0]?.path ?? "", "group/hooked.git");
    createStandardRepository(repoPath);
    mkdirSync(join(repoPath, "custom_hooks"));
    writeFileSync(
      join(repoPath, "custom_hooks", "pre-receive"),
      "#!/bin/sh\necho 'no pushes on fridays' >&2\nexit 1\n",
    );
    chmodSync(join(repoPath, "custom_hooks", "pre-receive"), 0o755);
    const before = git(repoPath, ["rev-parse", "refs/heads/main"]).trim();
    const dir = await cloneAndCommit("group/hooked.git", "hooked");
    await expect(gitClient(["push", "origin", "HEAD:main"], { cwd: dir })).rejects.toMatchObject({
      stderr: expect.stringContaining("no pushes on fridays"),
    });
    expect(git(repoPath, ["rev-parse", "refs/heads/main"]).trim()).toBe(before);
  });

  it("shows GitLab's denial message", async () => {
    const repoPath = join(gitaly.storages[0]?.path ?? "", "group/denied.git");
    createStandardRepository(repoPath);
    const before = git(repoPath, ["rev-parse", "refs/heads/main"]).trim();
    const dir = await cloneAndCommit("group/denied.git", "denied");
    gitlab.deny = "You are not allowed to push code to this project.";
    gitlab.calls.length = 0;
    await expect(gitClient(["push", "origin", "HEAD:main"], { cwd: dir })).rejects.toMatchObject({
      stderr: expect.stringContaining("GitLab: You are not allowed to push code to this project."),
    });
    expect(git(repoPath, ["rev-parse", "refs/heads/main"]).trim()).toBe(before);
    expect(gitlab.calls.map((c) => c.path)).toEqual(["/api/v4/internal/allowed"]);
    expect(gitlab.calls.every((c) => c.jwtOk)).toBe(true);
    expect(gitlab.calls[0]?.body).toMatchObject({ action: "git-receive-pack", protocol: "http" });
  });

  it("lets the push through when GitLab allows it, calling all three endpoints", async () => {
    const repoPath = join(gitaly.storages[0]?.path ?? "", "group/allowed.git");
    createStandardRepository(repoPath);
    const dir = await cloneAndCommit("group/allowed.git", "allowed");
    gitlab.deny = null;
    gitlab.calls.length = 0;
    await gitClient(["push", "--quiet", "origin", "HEAD:main"], { cwd: dir });
    expect(git(repoPath, ["rev-parse", "refs/heads/main"]).trim()).toBe(
      (await gitClient(["rev-parse", "HEAD"], { cwd: dir })).stdout.trim(),
    );
    expect(gitlab.calls.map((c) => c.path)).toEqual([
      "/api/v4/internal/allowed",
      "/api/v4/internal/pre_receive",
      "/api/v4/internal/post_receive",
    ]);
    expect(git(repoPath, ["fsck", "--no-progress"])).toBe("");
  });
});
