// Runs the built `gitaly-cluster gateway` (dist/local/main.js) as a real process for
// the gateway suites, and real `git` clients against it.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort, waitFor } from "../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../src/shared/process.js";
import { isolatedGitEnv } from "../harness/git-fixtures.js";
import { repoRoot } from "../harness/gitaly.js";

const run = promisify(execFile);
export const clusterMain = join(repoRoot, "dist/local/main.js");

export interface GatewayProcessOptions {
  /** tcp://…, tls://… or unix:… */
  upstream: string;
  token: string;
  storage?: string;
  createOnPush?: boolean;
  tlsCaFile?: string;
}

export interface GatewayProcess {
  readonly url: string;
  readonly dir: string;
  readonly tokenFile: string;
  readonly logFile: string;
  proc: ManagedProcess;
  /** Replaces the token file the way a secret rotation would: write, then rename over. */
  writeToken(token: string): void;
  log(): string;
  stop(): Promise<void>;
}

export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), "gateway-proc-"));
  const tokenFile = join(dir, "token");
  const writeToken = (token: string) => {
    writeFileSync(`${tokenFile}.tmp`, `${token}\n`, { mode: 0o600 });
    renameSync(`${tokenFile}.tmp`, tokenFile);
  };
  writeToken(options.token);
  const port = await freePort();
  const logFile = join(dir, "gateway.log");
  const args = [
    clusterMain,
    "gateway",
    "--listen",
    `127.0.0.1:${port}`,
    "--upstream",
    options.upstream,
    "--token-file",
    tokenFile,
    "--storage",
    options.storage ?? "default",
    ...(options.createOnPush ? ["--create-on-push"] : []),
    ...(options.tlsCaFile ? ["--tls-ca-file", options.tlsCaFile] : []),
  ];
  const proc = startProcess(process.execPath, args, { logFile });
  const url = `http://127.0.0.1:${port}`;
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const stop = async () => {
    await proc.stop("SIGTERM", 10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      "the gateway to listen",
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`gateway exited with ${proc.child.exitCode}:\n${log()}`);
        const res = await fetch(`${url}/-/health`);
        return res.ok;
      },
      { timeoutMs: 15_000, intervalMs: 25 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, dir, tokenFile, logFile, proc, writeToken, log, stop };
}

export const CLIENT_IDENTITY = {
  GIT_AUTHOR_NAME: "Gateway Test",
  GIT_AUTHOR_EMAIL: "gateway@test.invalid",
  GIT_COMMITTER_NAME: "Gateway Test",
  GIT_COMMITTER_EMAIL: "gateway@test.invalid",
  GIT_AUTHOR_DATE: "1700000000 +0000",
  GIT_COMMITTER_DATE: "1700000000 +0000",
};

/** Runs a git client command (isolated from the user's configuration); rejects with stderr on failure. */
export async function gitClient(
  args: string[],
  options: { cwd?: string; protocol?: "0" | "1" | "2" } = {},
): Promise<{ stdout: string; stderr: string }> {
  return run("git", ["-c", `protocol.version=${options.protocol ?? "2"}`, ...args], {
    cwd: options.cwd,
    env: { ...isolatedGitEnv(), ...CLIENT_IDENTITY },
    maxBuffer: 64 * 1024 * 1024,
  });
}
