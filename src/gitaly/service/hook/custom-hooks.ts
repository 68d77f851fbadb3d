// Custom server hooks, run as upstream runs them (internal/gitaly/hook/custom.go):
//
//   1. <repository>/custom_hooks/<hook>            the project's hook
//   2. <repository>/custom_hooks/<hook>.d/*        the project's hooks, by file name
//   3. <[hooks] custom_hooks_dir>/<hook>.d/*       global hooks, by file name
//
// A file counts only if it is executable by us, not a directory, and its name does not
// end in "~". Each gets the same stdin; their output streams back to the pusher as it
// comes; the first non-zero exit stops the chain and rejects the change.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";

/** A custom hook exited non-zero; its own output already reached the client. */
export class CustomHookExitError extends Error {
  readonly hookPath: string;
  /** -1 when the hook was killed by a signal, like Go's ExitCode(). */
  readonly exitCode: number;

  constructor(hookPath: string, exitCode: number, signal: NodeJS.Signals | null) {
    super(`error executing ${JSON.stringify(hookPath)}: ${signal ? `signal: ${signal}` : `exit status ${exitCode}`}`);
    this.name = "CustomHookExitError";
    this.hookPath = hookPath;
    this.exitCode = exitCode;
  }
}

export type HookName = "pre-receive" | "update" | "post-receive";

async function isValidHook(path: string): Promise<boolean> {
  if (path.endsWith("~")) return false;
  try {
    if ((await stat(path)).isDirectory()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function hooksIn(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
  const found: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (await isValidHook(path)) found.push(path);
  }
  return found;
}

/** The custom hooks for `hookName`, in the order they run. */
export async function findCustomHooks(repoPath: string, hookName: HookName, globalDir: string): Promise<string[]> {
  const hooks: string[] = [];
  const projectHook = join(repoPath, "custom_hooks", hookName);
  if (await isValidHook(projectHook)) hooks.push(projectHook);
  hooks.push(...(await hooksIn(join(repoPath, "custom_hooks", `${hookName}.d`))));
  if (globalDir !== "") hooks.push(...(await hooksIn(join(globalDir, `${hookName}.d`))));
  return hooks;
}

export interface CustomHookRun {
  repoPath: string;
  args: string[];
  /** The complete environment of the hook (nothing is inherited). */
  env: Record<string, string>;
  stdin?: Uint8Array;
  /** Receive the hook's output as it comes; the promise is waited for (back-pressure). */
  onStdout: (chunk: Buffer) => Promise<void>;
  onStderr: (chunk: Buffer) => Promise<void>;
  signal?: AbortSignal;
}

async function pump(stream: Readable, sink: (chunk: Buffer) => Promise<void>): Promise<void> {
  for await (const chunk of stream) await sink(chunk as Buffer);
}

function runOne(hookPath: string, run: CustomHookRun): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(hookPath, run.args, {
      cwd: run.repoPath,
      env: run.env,
      stdio: ["pipe", "pipe", "pipe"],
      ...(run.signal ? { signal: run.signal } : {}),
    });
    let spawnError: Error | undefined;
    child.once("error", (err) => {
      spawnError ??= err;
      // Never started (not executable after all, vanished): there will be no exit.
      if (child.pid === undefined) reject(new Error(`error executing ${JSON.stringify(hookPath)}: ${err.message}`));
    });
    // A hook need not read its input; it may exit before taking all of it.
    child.stdin.on("error", () => {});
    child.stdin.end(run.stdin ? Buffer.from(run.stdin) : undefined);
    const output = Promise.all([pump(child.stdout, run.onStdout), pump(child.stderr, run.onStderr)]);
    child.once("close", (code, signal) => {
      output.then(
        () => {
          if (spawnError) reject(new Error(`error executing ${JSON.stringify(hookPath)}: ${spawnError.message}`));
          else if (code === 0) resolve();
          else reject(new CustomHookExitError(hookPath, code ?? -1, signal));
        },
        (err: unknown) => reject(err),
      );
    });
  });
}

/** Runs the hooks one after the other; rejects with CustomHookExitError on the first failure. */
export async function runCustomHooks(hooks: readonly string[], run: CustomHookRun): Promise<void> {
  for (const hook of hooks) await runOne(hook, run);
}
