// Read RPC benchmark (anchors W1/W2): FindCommit, TreeEntry and GetBlob against a
// Gitaly process (auth on) on the benchmark repository, closed loop at a fixed
// concurrency (10 by default): each of the workers sends its next request as soon as
// the previous one finished, until the request count or the time limit is reached.
// After a warm-up (the catfile cache fills, grpc-js warms up), it reports throughput
// and p50/p90/p99 latency per RPC. Every answer is checked (the commit id asked for,
// the blob's full size), and a wrong one counts as an error.
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";
import type * as Support from "./support.js";

const support = (await import(new URL("./support.ts", import.meta.url).href)) as typeof Support;
const {
  benchRepo,
  dist,
  distribution,
  git,
  machine,
  notePath,
  NOTE_FILES,
  round,
  scratchDir,
  stageRepository,
  startGitaly,
} = support;

type Service = typeof import("../src/shared/grpc/service.js");
type CommitPb = typeof import("../src/gen/commit_pb.js");
type BlobPb = typeof import("../src/gen/blob_pb.js");
type V2Token = typeof import("../src/shared/auth/v2-token.js");

export interface ReadsBenchOptions {
  commits: number;
  blobKiB: number;
  concurrency: number;
  requests: number;
  warmup: number;
  maxSeconds: number;
  log: (msg: string) => void;
}

interface RpcResult {
  status: "ok" | "failed";
  /** The first error, when every warm-up call failed (e.g. the service is not registered yet). */
  error?: string;
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  latencyMs?: Support.Distribution;
}

/** Runs `call(i)` `count` times with `concurrency` workers, stopping early at `deadline`. */
async function closedLoop(
  count: number,
  concurrency: number,
  deadline: number,
  call: (i: number) => Promise<void>,
): Promise<{ latencies: number[]; errors: number; firstError?: string; seconds: number }> {
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count && performance.now() < deadline) {
      const i = next++;
      const start = performance.now();
      try {
        await call(i);
        latencies.push(performance.now() - start);
      } catch (err) {
        errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return {
    latencies,
    errors,
    ...(firstError !== undefined ? { firstError } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}

export async function runReadsBench(options: ReadsBenchOptions) {
  const { log } = options;
  const repo = await benchRepo({ commits: options.commits, blobKiB: options.blobKiB }, log);
  const [service, commitPb, blobPb, v2] = await Promise.all([
    dist<Service>("shared/grpc/service.js"),
    dist<CommitPb>("gen/commit_pb.js"),
    dist<BlobPb>("gen/blob_pb.js"),
    dist<V2Token>("shared/auth/v2-token.js"),
  ]);

  const dir = scratchDir("reads");
  const storage = `${dir}/storage`;
  const relativePath = "bench/reads.git";
  const staged = stageRepository(repo.path, storage, relativePath);
  const commits = git(staged, ["rev-list", "refs/heads/main"]).split("\n").filter(Boolean);
  const notes = Array.from({ length: NOTE_FILES }, (_, k) => {
    const path = notePath(k);
    const oid = git(staged, ["rev-parse", `refs/heads/main:${path}`]).trim();
    return { path, oid, size: Number(git(staged, ["cat-file", "-s", oid]).trim()) };
  });

  const gitaly = await startGitaly(dir, { default: storage });
  const channel = new grpc.Client(gitaly.address, grpc.credentials.createInsecure(), {
    interceptors: [v2.v2AuthInterceptor(gitaly.token)],
  });
  try {
    const commitClient = service.createClient(commitPb.CommitService, channel);
    const blobClient = service.createClient(blobPb.BlobService, channel);
    const repository = { storageName: "default", relativePath };
    const pick = <T>(list: readonly T[], i: number): T => list[(i * 7919) % list.length] as T;

    const rpcs: Record<string, (i: number) => Promise<void>> = {
      FindCommit: async (i) => {
        const oid = pick(commits, i);
        const res = await commitClient.findCommit({ repository, revision: Buffer.from(oid) });
        if (res.commit?.id !== oid) throw new Error(`FindCommit ${oid}: got ${res.commit?.id ?? "no commit"}`);
      },
      TreeEntry: async (i) => {
        const note = pick(notes, i);
        let bytes = 0;
        let size = -1;
        for await (const msg of commitClient.treeEntry({
          repository,
          revision: Buffer.from("refs/heads/main"),
          path: Buffer.from(note.path),
        })) {
          if (size < 0) size = Number(msg.size);
          bytes += msg.data.length;
        }
        if (size !== note.size || bytes !== note.size) {
          throw new Error(`TreeEntry ${note.path}: size ${size}, ${bytes} bytes, want ${note.size}`);
        }
      },
      GetBlob: async (i) => {
        const note = pick(notes, i);
        let bytes = 0;
        for await (const msg of blobClient.getBlob({ repository, oid: note.oid, limit: -1n })) bytes += msg.data.length;
        if (bytes !== note.size) throw new Error(`GetBlob ${note.oid}: ${bytes} bytes, want ${note.size}`);
      },
    };

    const results: Record<string, RpcResult> = {};
    for (const [name, call] of Object.entries(rpcs)) {
      log(`${name}: warm-up ${options.warmup} calls`);
      const warm = await closedLoop(options.warmup, options.concurrency, performance.now() + 60_000, call);
      if (warm.latencies.length === 0) {
        results[name] = {
          status: "failed",
          error: warm.firstError ?? "no call succeeded",
          requests: 0,
          errors: warm.errors,
          seconds: 0,
          rps: 0,
        };
        log(`${name}: every warm-up call failed: ${warm.firstError}`);
        continue;
      }
      const run = await closedLoop(
        options.requests,
        options.concurrency,
        performance.now() + options.maxSeconds * 1000,
        call,
      );
      const latency = distribution(run.latencies);
      results[name] = {
        status: run.errors === 0 ? "ok" : "failed",
        ...(run.firstError !== undefined ? { error: run.firstError } : {}),
        requests: run.latencies.length + run.errors,
        errors: run.errors,
        seconds: round(run.seconds, 2),
        rps: round(run.latencies.length / run.seconds, 1),
        latencyMs: {
          n: latency.n,
          min: round(latency.min, 3),
          p50: round(latency.p50, 3),
          p90: round(latency.p90, 3),
          p99: round(latency.p99, 3),
          max: round(latency.max, 3),
          mean: round(latency.mean, 3),
        },
      };
      log(
        `${name}: ${results[name]?.rps} rps, p50 ${round(latency.p50, 2)} ms, p99 ${round(latency.p99, 2)} ms, errors ${run.errors}`,
      );
    }

    return {
      benchmark: "reads",
      description: `FindCommit, TreeEntry and GetBlob, closed loop at concurrency ${options.concurrency} against one Gitaly process`,
      date: new Date().toISOString(),
      machine: machine(),
      repository: { ...repo.params, commits: commits.length, noteBlobBytes: notes.map((n) => n.size) },
      concurrency: options.concurrency,
      requestsPerRpc: options.requests,
      maxSecondsPerRpc: options.maxSeconds,
      warmupPerRpc: options.warmup,
      anchors:
        "W1: p99 <= 50 ms at 100 rps; W2: >= 1,500 FindCommit rps on 2 cores (shared/reference/performance-anchors.md)",
      rpcs: results,
    };
  } finally {
    channel.close();
    await gitaly.stop();
    const { rmSync } = await import("node:fs");
    rmSync(dir, { recursive: true, force: true });
  }
}

export function reportReads(result: Awaited<ReturnType<typeof runReadsBench>>): string {
  return Object.entries(result.rpcs)
    .map(([name, r]) =>
      r.latencyMs
        ? `${name} ${r.rps} rps p50 ${r.latencyMs.p50} ms p99 ${r.latencyMs.p99} ms${r.errors ? ` (${r.errors} errors)` : ""}`
        : `${name} failed: ${r.error}`,
    )
    .join(" | ");
}
