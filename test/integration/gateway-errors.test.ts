// The gateway's behaviour around the happy path, against real Gitaly processes:
// errors as HTTP statuses git can show, token rotation, gzip bodies, clients that
// disconnect mid-transfer, concurrent clones over the shared backchannel, an upstream
// restart, and tls:// and unix: upstreams.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { delimPkt, encodePktLine, flushPkt } from "../../src/gitaly/git/pktline.js";
import { waitFor } from "../../src/shared/net.js";
import { startProcess } from "../../src/shared/process.js";
import { createCertificateAuthority } from "../../src/shared/tls/certificates.js";
import {
  createStandardRepository,
  git,
  isolatedGitEnv,
  pseudoRandomBytes,
  type StandardRepository,
} from "../harness/git-fixtures.js";
import { type GitalyProcess, gitalyMain, startGitaly } from "../harness/gitaly.js";
import { CLIENT_IDENTITY, type GatewayProcess, gitClient, startGatewayProcess } from "./gateway-helpers.js";

const TOKEN = "gateway-errors-token";
const HUGE_BLOB_SIZE = 40 * 1024 * 1024;

/** A protocol v2 `fetch` request for `wants`, as git would POST it. */
function v2FetchRequest(wants: string[]): Buffer {
  return Buffer.concat([
    encodePktLine("command=fetch\n"),
    encodePktLine("agent=git/2.39.5\n"),
    delimPkt,
    encodePktLine("ofs-delta\n"),
    encodePktLine("no-progress\n"),
    ...wants.map((w) => encodePktLine(`want ${w}\n`)),
    encodePktLine("done\n"),
    flushPkt,
  ]);
}

/**
 * A `huge` branch whose pack is far larger than what loopback socket buffers hold, so
 * a client that stops reading really leaves the gateway in the middle of a pack.
 */
function addHugeBranch(repo: string, parent: string): string {
  const env = { ...isolatedGitEnv(), ...CLIENT_IDENTITY };
  const run = (args: string[], input?: Buffer | string) =>
    execFileSync("git", ["--git-dir", repo, ...args], { env, input, maxBuffer: 1024 * 1024 })
      .toString()
      .trim();
  const blob = run(["hash-object", "-w", "--stdin"], pseudoRandomBytes(HUGE_BLOB_SIZE, 0x7777));
  const tree = run(["mktree"], `100644 blob ${blob}\thuge.bin\n`);
  const commit = run(["commit-tree", tree, "-p", parent, "-m", "A huge file"]);
  run(["update-ref", "refs/heads/huge", commit]);
  return commit;
}

/** GET with the path exactly as given (no URL normalisation); resolves with the status. */
function rawGetStatus(base: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/`, { method: "GET", path }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once("error", reject);
    req.end();
  });
}

function v2LsRefsRequest(): Buffer {
  return Buffer.concat([
    encodePktLine("command=ls-refs\n"),
    delimPkt,
    encodePktLine("ref-prefix refs/heads/\n"),
    flushPkt,
  ]);
}

describe("HTTP git gateway: errors, auth, robustness", () => {
  let gitaly: GitalyProcess;
  let gateway: GatewayProcess;
  let fixture: StandardRepository;
  let hugeCommit: string;
  const work = mkdtempSync(join(tmpdir(), "gateway-errors-"));

  beforeAll(async () => {
    gitaly = await startGitaly({ storages: ["default"], token: TOKEN });
    fixture = createStandardRepository(join(gitaly.storages[0]?.path ?? "", "group/project.git"));
    // Its own repository, so the other clones in this suite stay small.
    const huge = createStandardRepository(join(gitaly.storages[0]?.path ?? "", "group/huge.git"));
    hugeCommit = addHugeBranch(huge.path, huge.branches.main);
    gateway = await startGatewayProcess({ upstream: `tcp://${gitaly.address}`, token: TOKEN });
  });

  afterAll(async () => {
    await gateway?.stop();
    // The restart test replaces the process; the harness's stop() knows the first one only.
    await gitaly?.proc.stop("SIGTERM", 10_000);
    await gitaly?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("serves the advertisement with the smart HTTP headers", async () => {
    const res = await fetch(`${gateway.url}/group/project.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-git-upload-pack-advertisement");
    expect(res.headers.get("cache-control")).toBe("no-cache");
    const body = await res.text();
    expect(body.startsWith("001e# service=git-upload-pack\n0000")).toBe(true);
    expect(body).toContain(`${fixture.branches.main} refs/heads/main`);
  });

  it("answers 404 with the upstream's message for a repository that does not exist", async () => {
    const res = await fetch(`${gateway.url}/group/missing.git/info/refs?service=git-upload-pack`);
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain("group/missing.git");
    expect(text).toContain("NOT_FOUND");

    const post = await fetch(`${gateway.url}/group/missing.git/git-upload-pack`, {
      method: "POST",
      headers: { "Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2" },
      body: v2LsRefsRequest(),
    });
    expect(post.status).toBe(404);

    await expect(
      gitClient(["clone", "--bare", `${gateway.url}/group/missing.git`, join(work, "m.git")]),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining("not found"),
    });
  });

  it("without --create-on-push, a push to a missing repository fails with 404", async () => {
    const res = await fetch(`${gateway.url}/group/not-created.git/info/refs?service=git-receive-pack`);
    expect(res.status).toBe(404);
  });

  it("rejects URLs that are not smart HTTP", async () => {
    expect((await fetch(`${gateway.url}/group/project.git/info/refs`)).status).toBe(403);
    expect((await fetch(`${gateway.url}/group/project.git/HEAD`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/group/project.git/git-upload-pack`)).status).toBe(405);
    // Dot segments are resolved like any URL; an encoded "/.." inside a segment is refused.
    // Sent as is: fetch() would normalise the path.
    expect(await rawGetStatus(gateway.url, "/group%2F..%2F..%2Fetc.git/info/refs?service=git-upload-pack")).toBe(400);
    expect(await rawGetStatus(gateway.url, "/%2Fetc%2Fpasswd.git/info/refs?service=git-upload-pack")).toBe(400);
  });

  it("re-reads a rotated token file: wrong token → 403, empty → 401, right one → 200", async () => {
    const infoRefs = () => fetch(`${gateway.url}/group/project.git/info/refs?service=git-upload-pack`);
    try {
      gateway.writeToken("not-the-token");
      const denied = await infoRefs();
      expect(denied.status).toBe(403);
      expect(await denied.text()).toContain("permission denied");

      gateway.writeToken("");
      const unauthenticated = await infoRefs();
      expect(unauthenticated.status).toBe(401);
      expect(await unauthenticated.text()).toContain("authentication required");

      // The sidechannel path signs its calls from the same file.
      gateway.writeToken("not-the-token");
      const post = await fetch(`${gateway.url}/group/project.git/git-upload-pack`, {
        method: "POST",
        headers: { "Git-Protocol": "version=2" },
        body: v2LsRefsRequest(),
      });
      expect(post.status).toBe(403);
    } finally {
      gateway.writeToken(TOKEN);
    }
    expect((await infoRefs()).status).toBe(200);
  });

  it("gunzips a gzip-encoded request body and passes Git-Protocol on", async () => {
    const res = await fetch(`${gateway.url}/group/project.git/git-upload-pack`, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-git-upload-pack-request",
        "Content-Encoding": "gzip",
        "Git-Protocol": "version=2",
      },
      body: gzipSync(v2LsRefsRequest()),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/x-git-upload-pack-result");
    const body = await res.text();
    expect(body).toContain(`${fixture.branches.main} refs/heads/main`);
    expect(body).toContain(`${fixture.branches.feature} refs/heads/feature`);
    expect(body).not.toContain("refs/tags/");
    expect(body.endsWith("0000")).toBe(true);
  });

  it("survives a client that disconnects in the middle of a pack, and keeps serving", async () => {
    const abort = new AbortController();
    const res = await fetch(`${gateway.url}/group/huge.git/git-upload-pack`, {
      method: "POST",
      headers: { "Git-Protocol": "version=2" },
      body: v2FetchRequest([hugeCommit]),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const reader = res.body?.getReader();
    const first = await reader?.read();
    expect(first?.done).toBe(false);
    abort.abort();
    await reader?.cancel().catch(() => undefined);

    await waitFor("the gateway to log the disconnect", async () => gateway.log().includes("client disconnected"), {
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    expect(gateway.proc.child.exitCode).toBeNull();
    const dest = join(work, "after-disconnect.git");
    await gitClient(["clone", "--bare", "--quiet", `${gateway.url}/group/project.git`, dest]);
    expect(git(dest, ["rev-parse", "refs/heads/large-file"]).trim()).toBe(fixture.branches["large-file"]);
  });

  it("serves concurrent clones over its one backchannel connection", async () => {
    const clones = Array.from({ length: 6 }, (_, i) => join(work, `concurrent-${i}.git`));
    await Promise.all(
      clones.map((dest, i) =>
        gitClient(["clone", "--bare", "--quiet", `${gateway.url}/group/project.git`, dest], {
          protocol: i % 2 === 0 ? "2" : "0",
        }),
      ),
    );
    for (const dest of clones)
      expect(git(dest, ["rev-parse", "refs/heads/large-file"]).trim()).toBe(fixture.branches["large-file"]);
  });

  it("reconnects after the upstream restarts", async () => {
    // Establish the backchannel first, so the restart really drops it.
    await gitClient([
      "clone",
      "--bare",
      "--quiet",
      `${gateway.url}/group/project.git`,
      join(work, "before-restart.git"),
    ]);
    await gitaly.proc.stop("SIGTERM", 10_000);
    gitaly.proc = startProcess(process.execPath, [gitalyMain, "serve", gitaly.configPath], { logFile: gitaly.logFile });
    await waitFor(
      "gitaly to serve again",
      async () => (await fetch(`${gateway.url}/group/project.git/info/refs?service=git-upload-pack`)).status === 200,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    const dest = join(work, "after-restart.git");
    await gitClient(["clone", "--bare", "--quiet", `${gateway.url}/group/project.git`, dest]);
    expect(git(dest, ["rev-parse", "refs/heads/main"]).trim()).toBe(fixture.branches.main);
  });
});

describe("HTTP git gateway over tls:// and unix: upstreams", () => {
  let gitaly: GitalyProcess;
  let fixture: StandardRepository;
  const gateways: GatewayProcess[] = [];
  const work = mkdtempSync(join(tmpdir(), "gateway-transports-"));

  beforeAll(async () => {
    const ca = await createCertificateAuthority("gateway-test-ca");
    gitaly = await startGitaly({ storages: ["default"], token: TOKEN, tlsCa: ca, unixSocket: true });
    fixture = createStandardRepository(join(gitaly.storages[0]?.path ?? "", "group/project.git"));
    const caFile = join(work, "ca.crt");
    writeFileSync(caFile, ca.certificate);
    gateways.push(
      await startGatewayProcess({ upstream: `tls://${gitaly.tlsAddress}`, token: TOKEN, tlsCaFile: caFile }),
      await startGatewayProcess({ upstream: `unix:${gitaly.socketPath}`, token: TOKEN }),
    );
  });

  afterAll(async () => {
    for (const g of gateways) await g.stop();
    await gitaly?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it.each(["tls", "unix"])("clones through a %s upstream", async (kind) => {
    const gateway = gateways[kind === "tls" ? 0 : 1] as GatewayProcess;
    const dest = join(work, `${kind}.git`);
    await gitClient(["clone", "--bare", "--quiet", `${gateway.url}/group/project.git`, dest]);
    expect(git(dest, ["for-each-ref", "--format=%(objectname) %(refname)"])).toBe(
      git(fixture.path, ["for-each-ref", "--format=%(objectname) %(refname)"]),
    );
  });
});
