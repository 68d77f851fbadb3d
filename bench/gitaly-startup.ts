// Gitaly start-up time: from spawning `gitaly serve` (3 storages, fresh directories)
// to the first SERVING answer of grpc.health.v1.Health/Check, over N runs, next to
// two baselines measured in the same run on the same machine:
//   - `node -e ""`: bare Node start-up and exit, the floor for any Node program;
//   - `gitaly --version`: Node plus loading Gitaly's modules, without serving.
//
// Run (Node 24 strips the types itself; it runs the built program, so build first):
//   npx tsc -p tsconfig.build.json && node bench/gitaly-startup.ts [--runs 10]
// Writes bench/results/gitaly-startup.json and prints a one-line summary.
//
// Only node: built-ins and @grpc/grpc-js are imported: under type stripping Node
// cannot resolve the repository's `.js` imports of `.ts` sources.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";

const repoRoot = resolve(import.meta.dirname, "..");
const gitalyMain = join(repoRoot, "dist/gitaly/main.js");
const resultsFile = join(repoRoot, "bench/results/gitaly-startup.json");
const STORAGES = ["default", "storage-1", "storage-2"];

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => done(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** Milliseconds from spawn to exit of `node <args>`. */
function timeNode(args: string[]): Promise<number> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: "ignore" });
    child.once("error", fail);
    child.once("exit", (code) => {
      const ms = performance.now() - t0;
      if (code === 0) done(ms);
      else fail(new Error(`node ${args.join(" ")} exited with ${code}`));
    });
  });
}

// grpc.health.v1.HealthCheckRequest{service: ""} is the empty message; the response's
// field 1 (status) is a varint, SERVING = 1. Hand-coded so no generated code is needed.
const SERVING_RESPONSE = Buffer.from([0x08, 0x01]);

function healthCheck(client: grpc.Client): Promise<boolean> {
  return new Promise((done) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.alloc(0),
      (b: Buffer) => b,
      Buffer.alloc(0),
      // waitForReady: keep retrying the connection (with the short backoff below)
      // instead of failing while the listener is not up yet.
      new grpc.Metadata({ waitForReady: true }),
      { deadline: Date.now() + 5_000 },
      (err, res) => done(!err && res !== undefined && res.equals(SERVING_RESPONSE)),
    );
  });
}

/** Milliseconds from spawning Gitaly to its first SERVING health answer. */
async function timeGitalyStartup(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "gitaly-bench-"));
  const port = await freePort();
  const metricsPort = await freePort();
  const lines = [
    `listen_addr = "127.0.0.1:${port}"`,
    `prometheus_listen_addr = "127.0.0.1:${metricsPort}"`,
    `runtime_dir = ${JSON.stringify(join(dir, "run"))}`,
    "",
    "[logging]",
    `format = "json"`,
    `level = "warn"`,
  ];
  for (const name of STORAGES) {
    const path = join(dir, "storages", name);
    mkdirSync(path, { recursive: true });
    lines.push("", "[[storage]]", `name = ${JSON.stringify(name)}`, `path = ${JSON.stringify(path)}`);
  }
  const configPath = join(dir, "config.toml");
  writeFileSync(configPath, `${lines.join("\n")}\n`);
  const logPath = join(dir, "gitaly.log");
  writeFileSync(logPath, "");

  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.initial_reconnect_backoff_ms": 5,
    "grpc.max_reconnect_backoff_ms": 10,
  });
  const t0 = performance.now();
  const child = spawn(process.execPath, [gitalyMain, "serve", configPath], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`gitaly exited with ${child.exitCode}: ${stderr.slice(-2000)}`);
      if (await healthCheck(client)) return performance.now() - t0;
    }
  } finally {
    client.close();
    child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Summary {
  samplesMs: number[];
  medianMs: number;
  p90Ms: number;
  minMs: number;
}

function summarize(samples: number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (i: number) => sorted[Math.min(sorted.length - 1, Math.max(0, i))] ?? Number.NaN;
  const mid = sorted.length / 2;
  const median = sorted.length % 2 === 1 ? at(Math.floor(mid)) : (at(mid - 1) + at(mid)) / 2;
  const round = (n: number) => Math.round(n * 10) / 10;
  return {
    samplesMs: samples.map(round),
    medianMs: round(median),
    // Nearest rank.
    p90Ms: round(at(Math.ceil(0.9 * sorted.length) - 1)),
    minMs: round(at(0)),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`);
  try {
    readFileSync(gitalyMain);
  } catch {
    throw new Error(`${gitalyMain} is missing: build first with \`npx tsc -p tsconfig.build.json\``);
  }

  // One unmeasured round of each warms the page cache for node and the modules.
  await timeNode(["-e", ""]);
  await timeNode([gitalyMain, "--version"]);
  await timeGitalyStartup();

  // Interleaved, so a machine that slows down mid-run affects all three alike.
  const bare: number[] = [];
  const version: number[] = [];
  const serving: number[] = [];
  for (let i = 0; i < runs; i++) {
    bare.push(await timeNode(["-e", ""]));
    version.push(await timeNode([gitalyMain, "--version"]));
    serving.push(await timeGitalyStartup());
  }

  const result = {
    benchmark: "gitaly-startup",
    description: "spawn of `gitaly serve` (3 storages) to first SERVING health check",
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? "unknown",
    cpuCount: cpus().length,
    runs,
    storages: STORAGES.length,
    gitalyServing: summarize(serving),
    baselineNodeBare: summarize(bare),
    baselineGitalyVersion: summarize(version),
  };
  mkdirSync(join(repoRoot, "bench/results"), { recursive: true });
  writeFileSync(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
  const s = result.gitalyServing;
  const b = result.baselineNodeBare;
  const v = result.baselineGitalyVersion;
  process.stdout.write(
    `gitaly-startup: serving median ${s.medianMs} ms, p90 ${s.p90Ms} ms | node -e "" median ${b.medianMs} ms, p90 ${b.p90Ms} ms | gitaly --version median ${v.medianMs} ms (n=${runs}, ${process.version}) -> ${resultsFile}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`gitaly-startup: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
