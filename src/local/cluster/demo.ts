// The demo repository a fresh cluster starts with, so `git clone` works at once. It is created
// the way any user repository is: a commit pushed through the gateway, which creates the
// repository on push; Praefect then replicates it like every other write.
import { execFile } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const DEMO_RELATIVE_PATH = "demo.git";

/**
 * git run with none of the user's or the system's configuration (no credential helpers, no
 * url rewrites) and no proxy: everything it talks to is on 127.0.0.1.
 */
export function isolatedGitEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: home,
    LANG: "C",
    LC_ALL: "C",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: "gitaly-cluster",
    GIT_AUTHOR_EMAIL: "gitaly-cluster@localhost",
    GIT_COMMITTER_NAME: "gitaly-cluster",
    GIT_COMMITTER_EMAIL: "gitaly-cluster@localhost",
  };
}

export function demoReadme(clusterName: string, replicationFactor: number): string {
  return [
    "# demo",
    "",
    `A repository of the local Gitaly Cluster "${clusterName}", created by \`gitaly-cluster up\`.`,
    "",
    `Commit and push: Praefect routes every write to the primary Gitaly node and replicates it,`,
    `${replicationFactor} copies in all.`,
    "",
  ].join("\n");
}

async function git(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ ok: boolean; stderr: string }> {
  try {
    await execFileAsync("git", args, { cwd, env, maxBuffer: 16 * 1024 * 1024 });
    return { ok: true, stderr: "" };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr?: string }).stderr ?? (err as Error).message).trim() };
  }
}

/** Creates the demo repository unless it exists; returns whether it created it. */
export async function ensureDemoRepository(options: {
  gatewayUrl: string;
  workDir: string;
  clusterName: string;
  replicationFactor: number;
}): Promise<boolean> {
  const url = `${options.gatewayUrl}/${DEMO_RELATIVE_PATH}`;
  const dir = join(options.workDir, "demo");
  const env = isolatedGitEnv(options.workDir);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  try {
    if ((await git(["ls-remote", "--heads", url], dir, env)).ok) return false;
    const step = async (args: string[]) => {
      const r = await git(args, dir, env);
      if (!r.ok) throw new Error(`git ${args[0]} for the demo repository failed: ${r.stderr}`);
    };
    await step(["init", "--quiet", "--initial-branch=main", "."]);
    writeFileSync(join(dir, "README.md"), demoReadme(options.clusterName, options.replicationFactor));
    await step(["add", "README.md"]);
    await step(["commit", "--quiet", "-m", "Initial commit"]);
    const pushed = await git(["push", "--quiet", url, "main:main"], dir, env);
    if (!pushed.ok) throw new Error(`pushing the demo repository to ${url} failed: ${pushed.stderr}`);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
