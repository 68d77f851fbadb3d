// Full-clone benchmark (anchor W4): the pack for every ref of a ≥ 100 MB repository,
// requested with one protocol v2 `fetch` (want every ref, done), read into a byte sink:
//   direct   `git upload-pack --stateless-rpc` on the repository, request on stdin;
//   gitaly   PostUploadPackWithSidechannel over a backchannel connection to a Gitaly
//            process (auth on), request and pack over the sidechannel;
//   gateway  the same through the HTTP gateway (`gitaly-cluster gateway`), like a
//            git client behind Workhorse.
// Runs are interleaved (direct, gitaly, gateway, direct, ...) after one warm-up of each,
// so a machine that slows down mid-run affects all alike. Reports wall time, MB/s and
// the throughput ratio to direct (target ≥ 0.9), plus the CPU time of the Node
// processes (Gitaly, gateway; their git children not included).
import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import type * as Support from "./support.js";

// Bench files load each other by their .ts names at run time (see support.ts).
const support = (await import(new URL("./support.ts", import.meta.url).href)) as typeof Support;
const {
  benchRepo,
  dist,
  git,
  isolatedGitEnv,
  machine,
  median,
  processCpuSeconds,
  round,
  scratchDir,
  stageRepository,
  startGatewayProcess,
  startGitaly,
} = support;

type Backchannel = typeof import("../src/shared/grpc/backchannel-client.js");
type PktLine = typeof import("../src/gitaly/git/pktline.js");
type SmartHttpPb = typeof import("../src/gen/smarthttp_pb.js");
type V2Token = typeof import("../src/shared/auth/v2-token.js");

export interface CloneBenchOptions {
  commits: number;
  blobKiB: number;
  runs: number;
  log: (msg: string) => void;
}

export interface Sample {
  ms: number;
  bytes: number;
  cpuS?: number;
}

export async function countBytes(stream: Readable): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += (chunk as Buffer).length;
  return bytes;
}

export function fetchRequest(pkt: PktLine, wants: string[]): Buffer {
  return Buffer.concat([
    pkt.encodePktLine("command=fetch\n"),
    pkt.encodePktLine("agent=git/2.39.5\n"),
    pkt.encodePktLine("object-format=sha1\n"),
    pkt.delimPkt,
    pkt.encodePktLine("thin-pack\n"),
    pkt.encodePktLine("ofs-delta\n"),
    pkt.encodePktLine("no-progress\n"),
    ...wants.map((w) => pkt.encodePktLine(`want ${w}\n`)),
    pkt.encodePktLine("done\n"),
    pkt.flushPkt,
  ]);
}

export function direct(repo: string, body: Buffer): Promise<Sample> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    // The configuration Gitaly gives upload-pack, so both sides do the same work.
    const child = spawn(
      "git",
      [
        "-c",
        "uploadpack.allowFilter=true",
        "-c",
        "uploadpack.allowAnySHA1InWant=true",
        "upload-pack",
        "--stateless-rpc",
        repo,
      ],
      { env: { ...isolatedGitEnv(), GIT_PROTOCOL: "version=2" }, stdio: ["pipe", "pipe", "inherit"] },
    );
    child.stdin.end(body);
    const counted = countBytes(child.stdout);
    child.once("error", fail);
    child.once("exit", async (code) => {
      const bytes = await counted;
      if (code !== 0) fail(new Error(`git upload-pack exited with ${code}`));
      else done({ ms: performance.now() - t0, bytes });
    });
  });
}

export async function viaGitaly(
  conn: InstanceType<Backchannel["BackchannelConnection"]>,
  pb: SmartHttpPb,
  metadata: () => Record<string, string>,
  relativePath: string,
  body: Buffer,
  storageName = "default",
): Promise<Sample> {
  const t0 = performance.now();
  const { sidechannel: bytes } = await conn.withSidechannel(
    async (sc) => {
      const counted = countBytes(sc.readable);
      await sc.write(body);
      await sc.closeWrite();
      return counted;
    },
    (md) =>
      conn.unary(
        pb.SmartHTTPService.method.postUploadPackWithSidechannel,
        { repository: { storageName, relativePath }, gitProtocol: "version=2" },
        { metadata: md },
      ),
    metadata(),
  );
  return { ms: performance.now() - t0, bytes };
}

export function viaGateway(url: string, body: Buffer): Promise<Sample> {
  return new Promise((done, fail) => {
    const t0 = performance.now();
    const req = httpRequest(
      url,
      {
        method: "POST",
        headers: {
          "Content-Type": "application/x-git-upload-pack-request",
          "Git-Protocol": "version=2",
          "Content-Length": body.length,
        },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          fail(new Error(`gateway answered HTTP ${res.statusCode}`));
          return;
        }
        countBytes(res).then((bytes) => done({ ms: performance.now() - t0, bytes }), fail);
      },
    );
    req.once("error", fail);
    req.end(body);
  });
}

function summarize(samples: Sample[], baselineMs?: number) {
  const ms = median(samples.map((s) => s.ms));
  const bytes = median(samples.map((s) => s.bytes));
  const cpu = samples.map((s) => s.cpuS).filter((c): c is number => c !== undefined && Number.isFinite(c));
  return {
    runs: samples.length,
    medianMs: round(ms, 1),
    samplesMs: samples.map((s) => round(s.ms, 1)),
    bytes,
    mbPerS: round(bytes / 1e6 / (ms / 1000), 1),
    ...(baselineMs !== undefined ? { throughputRatioToDirect: round(baselineMs / ms, 3) } : {}),
    ...(cpu.length > 0 ? { nodeCpuSecondsMedian: round(median(cpu), 3) } : {}),
  };
}

export async function runCloneBench(options: CloneBenchOptions) {
  const { log } = options;
  const repo = await benchRepo({ commits: options.commits, blobKiB: options.blobKiB }, log);
  log(`repository ${repo.path}: ${round(repo.packBytes / 1e6, 1)} MB of packs${repo.cached ? " (cached)" : ""}`);
  if (repo.packBytes < 100e6) log("warning: the repository is smaller than 100 MB; raise --commits or --blob-kib");

  const [backchannel, pkt, pb, v2] = await Promise.all([
    dist<Backchannel>("shared/grpc/backchannel-client.js"),
    dist<PktLine>("gitaly/git/pktline.js"),
    dist<SmartHttpPb>("gen/smarthttp_pb.js"),
    dist<V2Token>("shared/auth/v2-token.js"),
  ]);

  const dir = scratchDir("clone");
  const storage = join(dir, "storage");
  const relativePath = "bench/clone.git";
  const staged = stageRepository(repo.path, storage, relativePath);
  const wants = [...new Set(git(staged, ["for-each-ref", "--format=%(objectname)"]).split("\n").filter(Boolean))];
  const body = fetchRequest(pkt, wants);

  const gitaly = await startGitaly(dir, { default: storage });
  let gateway: Support.GatewayHandle | undefined;
  let conn: InstanceType<Backchannel["BackchannelConnection"]> | undefined;
  try {
    gateway = await startGatewayProcess(dir, `tcp://${gitaly.address}`, gitaly.token);
    conn = await backchannel.dialBackchannel(`tcp://${gitaly.address}`);
    const live = conn;
    const metadata = () => ({ authorization: v2.bearerToken(gitaly.token) });
    const gatewayUrl = `${gateway.url}/${relativePath}/git-upload-pack`;
    const gatewayPid = gateway.pid;

    const measured = async <T extends Sample>(pids: (number | undefined)[], fn: () => Promise<T>): Promise<T> => {
      const before = pids.map(processCpuSeconds);
      const sample = await fn();
      const after = pids.map(processCpuSeconds);
      if (pids.length > 0) sample.cpuS = after.reduce((sum, a, i) => sum + a - (before[i] ?? 0), 0);
      return sample;
    };
    const kinds = {
      direct: () => measured([], () => direct(staged, body)),
      gitaly: () => measured([gitaly.pid], () => viaGitaly(live, pb, metadata, relativePath, body)),
      gateway: () => measured([gitaly.pid, gatewayPid], () => viaGateway(gatewayUrl, body)),
    };
    const samples: Record<keyof typeof kinds, Sample[]> = { direct: [], gitaly: [], gateway: [] };

    log("warm-up: one run of each");
    for (const fn of Object.values(kinds)) await fn();
    for (let i = 1; i <= options.runs; i++) {
      for (const [name, fn] of Object.entries(kinds) as [keyof typeof kinds, () => Promise<Sample>][]) {
        const s = await fn();
        samples[name].push(s);
        log(`run ${i}/${options.runs} ${name.padEnd(7)} ${round(s.ms, 1)} ms, ${round(s.bytes / 1e6, 1)} MB`);
      }
    }

    const directSummary = summarize(samples.direct);
    const bytesDirect = directSummary.bytes;
    for (const name of ["gitaly", "gateway"] as const) {
      const b = median(samples[name].map((s) => s.bytes));
      // Same request, same repository: a pack of a different size means something went wrong.
      if (Math.abs(b - bytesDirect) > bytesDirect * 0.01) {
        throw new Error(`${name} returned ${b} bytes, direct upload-pack ${bytesDirect}`);
      }
    }
    const result = {
      benchmark: "clone",
      description:
        "full clone (protocol v2 fetch of every ref) into a byte sink: direct git upload-pack --stateless-rpc vs PostUploadPackWithSidechannel vs the HTTP gateway",
      date: new Date().toISOString(),
      machine: machine(),
      repository: {
        ...repo.params,
        refs: wants.length,
        packBytes: repo.packBytes,
        cachedAt: repo.path,
      },
      target: "gitaly.throughputRatioToDirect >= 0.9",
      direct: directSummary,
      gitaly: summarize(samples.gitaly, directSummary.medianMs),
      gateway: summarize(samples.gateway, directSummary.medianMs),
    };
    return result;
  } finally {
    await conn?.close();
    await gateway?.stop();
    await gitaly.stop();
    const { rmSync } = await import("node:fs");
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportClone(result: Awaited<ReturnType<typeof runCloneBench>>): string {
  const f = (name: string, s: { medianMs: number; mbPerS: number; throughputRatioToDirect?: number }) =>
    `${name} ${s.medianMs} ms ${s.mbPerS} MB/s${s.throughputRatioToDirect !== undefined ? ` (ratio ${s.throughputRatioToDirect})` : ""}`;
  return `clone ${round(result.direct.bytes / 1e6, 1)} MB: ${f("direct", result.direct)} | ${f("gitaly", result.gitaly)} | ${f("gateway", result.gateway)}`;
}
