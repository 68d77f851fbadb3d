// Child processes that must not outlive us: test servers, the local cluster's
// PostgreSQL, Gitaly and Praefect processes started by the local runner.
//
// Two layers make sure they stop even when a test fails or the runner is killed:
// an exit hook that signals every live child, and, where util-linux's setpriv is
// available, a parent-death signal so the kernel stops them if we die hard (SIGKILL).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { openSync, readFileSync } from "node:fs";

const live = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const child of live) {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
}

let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath === undefined) {
    const r = spawnSync("setpriv", ["--help"], { encoding: "utf8" });
    setprivPath = r.status === 0 && r.stdout.includes("--pdeathsig") ? "setpriv" : null;
  }
  return setprivPath;
}

export interface UnixUser {
  name: string;
  uid: number;
  gid: number;
}

/** Looks a user up in /etc/passwd (Node has no getpwnam). */
export function lookupUser(name: string): UnixUser | null {
  let passwd: string;
  try {
    passwd = readFileSync("/etc/passwd", "utf8");
  } catch {
    return null;
  }
  for (const line of passwd.split("\n")) {
    const [user, , uid, gid] = line.split(":");
    if (user === name && uid !== undefined && gid !== undefined) {
      return { name, uid: Number(uid), gid: Number(gid) };
    }
  }
  return null;
}

export interface ManagedProcessOptions {
  /** File that receives stdout and stderr (appended). */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Run as this user (requires root). PostgreSQL, for one, refuses to run as root. */
  user?: UnixUser;
}

export interface ManagedProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Sends `signal`, then SIGKILL after `graceMs`, and waits for the exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

export function startProcess(command: string, args: string[], options: ManagedProcessOptions = {}): ManagedProcess {
  hookExit();
  const out = options.logFile ? openSync(options.logFile, "a") : "ignore";
  let file = command;
  let argv = args;
  const sp = setpriv();
  if (sp) {
    // The kernel sends SIGKILL to the child if this process dies first.
    const prefix = ["--pdeathsig", "SIGKILL"];
    if (options.user) {
      prefix.push("--reuid", String(options.user.uid), "--regid", String(options.user.gid), "--clear-groups");
    }
    file = sp;
    argv = [...prefix, "--", command, ...args];
  }
  const child = spawn(file, argv, {
    stdio: ["ignore", out, out],
    env: options.env ?? process.env,
    cwd: options.cwd,
    ...(options.user && !sp ? { uid: options.user.uid, gid: options.user.gid } : {}),
  });
  live.add(child);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
    child.once("error", (err) => {
      live.delete(child);
      resolve(`spawn error: ${err.message}`);
    });
  });
  return {
    child,
    pid: child.pid ?? -1,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
