// The local cluster's children run in a session of their own. A Ctrl-C in the terminal is
// sent to the whole foreground process group; in their own session the children do not get
// it, and the runner stops them in order (gateway, Praefect, Gitaly, PostgreSQL) instead of
// all of them tearing down at once. util-linux's setsid(1) does it without a fork: our
// children are never process-group leaders, so it calls setsid(2) and execs in place, and the
// pid we hold (and the parent-death signal set before it) stays the program's.
import { spawnSync } from "node:child_process";

let setsidAvailable: boolean | undefined;

function hasSetsid(): boolean {
  if (setsidAvailable === undefined) {
    const r = spawnSync("setsid", ["--version"], { encoding: "utf8" });
    setsidAvailable = r.status === 0;
  }
  return setsidAvailable;
}

/** `command args` wrapped to run in a new session, or unchanged where setsid(1) is missing. */
export function inOwnSession(command: string, args: readonly string[]): { command: string; args: string[] } {
  return hasSetsid() ? { command: "setsid", args: [command, ...args] } : { command, args: [...args] };
}
