// The cluster's child processes: the built gitaly and praefect programs run by this Node.js,
// each in its own session (see session.ts), logging to its own file, with a parent-death
// signal (startProcess) so none outlives the runner, and a readiness wait on gRPC health.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import { waitFor } from "../../shared/net.js";
import { type ManagedProcess, startProcess } from "../../shared/process.js";
import { inOwnSession } from "./session.js";

export interface ProgramPaths {
  gitaly: string;
  praefect: string;
}

/** The built programs next to this one (dist/); from source (tests), the repository's dist/. */
export function programPaths(): ProgramPaths {
  const here = fileURLToPath(import.meta.url);
  const dist = here.endsWith(".ts") ? resolve(dirname(here), "../../../dist") : resolve(dirname(here), "../..");
  const paths = { gitaly: join(dist, "gitaly/main.js"), praefect: join(dist, "praefect/main.js") };
  for (const p of Object.values(paths)) {
    if (!existsSync(p)) throw new Error(`${p} is missing: build first (npm run build, or ./scripts/up builds it)`);
  }
  return paths;
}

export function logTail(file: string, lines = 15): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

export interface Child {
  readonly name: string;
  readonly logFile: string;
  readonly proc: ManagedProcess;
  /** True once the process has exited. */
  exited(): boolean;
}

/** Starts `node <script> ...args` as the child `name`. */
export function startNodeChild(
  name: string,
  script: string,
  args: readonly string[],
  options: { logFile: string; env?: NodeJS.ProcessEnv },
): Child {
  const wrapped = inOwnSession(process.execPath, [script, ...args]);
  const proc = startProcess(wrapped.command, wrapped.args, {
    logFile: options.logFile,
    env: options.env ?? process.env,
  });
  return {
    name,
    logFile: options.logFile,
    proc,
    exited: () => proc.child.exitCode !== null || proc.child.signalCode !== null,
  };
}

/** Runs a child to completion; throws with its log's tail when it fails. */
export async function runNodeChild(
  name: string,
  script: string,
  args: readonly string[],
  options: { logFile: string; env?: NodeJS.ProcessEnv },
): Promise<void> {
  const child = startNodeChild(name, script, args, options);
  const code = await child.proc.exited;
  if (code !== 0) throw new Error(`${name} failed (${code}); ${options.logFile}:\n${logTail(options.logFile)}`);
}

/** Waits until the child's gRPC health service on host:port says SERVING; throws if it exits first. */
export async function waitServing(child: Child, hostPort: string, timeoutMs = 60_000): Promise<void> {
  // A short reconnect backoff: grpc-js's default would add whole seconds to each start.
  const channel = new grpc.Client(hostPort, grpc.credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 50,
    "grpc.max_reconnect_backoff_ms": 200,
  });
  const health = createClient(Health, channel);
  try {
    const outcome = await waitFor(
      `${child.name} to serve on ${hostPort}`,
      async () => {
        // An exit ends the wait at once: it will not start serving later.
        if (child.exited()) return "exited";
        const res = await health.check({ service: "" }, { deadline: Date.now() + 1_000 });
        return res.status === HealthCheckResponse_ServingStatus.SERVING ? "serving" : false;
      },
      { timeoutMs, intervalMs: 50 },
    );
    if (outcome === "exited") {
      const status = child.proc.child.exitCode ?? child.proc.child.signalCode;
      throw new Error(`${child.name} exited (${status}) before serving; ${child.logFile}:\n${logTail(child.logFile)}`);
    }
  } finally {
    channel.close();
  }
}
