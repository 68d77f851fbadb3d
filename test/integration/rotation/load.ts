// Client load through the Praefects, as GitLab would make it while its tokens rotate: readers
// alternate between the two Praefects and read the client token FILE before every call (a
// rotated file is used from the next call on), and a pusher alternates `git push` between the
// two gateways (which re-read the same file). Every request is counted; every failure is kept
// with its error.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { BlobService } from "../../../src/gen/blob_pb.js";
import { CommitService } from "../../../src/gen/commit_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { ServerService } from "../../../src/gen/server_pb.js";
import { authMetadata } from "../../../src/shared/auth/v2-token.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { git } from "../../harness/git-fixtures.js";
import { gitClient } from "../gateway-helpers.js";

export interface Failure {
  kind: string;
  via: string;
  at: string;
  error: string;
}

export interface LoadStats {
  reads: number;
  pushes: number;
  /** Successful requests by RPC (or "push"). */
  byKind: Record<string, number>;
  /** When each successful push began and ended (ms since the epoch): a push takes seconds. */
  pushSpans: { start: number; end: number }[];
  failures: Failure[];
}

export interface LoadTargets {
  praefects: { name: string; address: string }[];
  gateways: { name: string; url: string }[];
  clientTokenFile: string;
  virtualStorage: string;
  relativePath: string;
  /** A blob in every pushed commit, for GetBlob. */
  blobOid: string;
}

/** A local bare repository whose every push carries one new commit on main (same tree). */
export function workingCopy(parent: string, name: string): { dir: string; blobOid: string; nextCommit(): void } {
  const dir = join(parent, name);
  git(parent, ["init", "--quiet", "--bare", dir]);
  const blobOid = git(dir, ["hash-object", "-w", "--stdin"], "rotated, not lost\n").trim();
  const tree = git(dir, ["mktree"], `100644 blob ${blobOid}\tREADME\n`).trim();
  let head: string | undefined;
  let n = 0;
  return {
    dir,
    blobOid,
    nextCommit() {
      n++;
      const args = ["-c", "user.name=T", "-c", "user.email=t@t.invalid", "commit-tree", tree, "-m", `commit ${n}`];
      if (head) args.push("-p", head);
      head = git(dir, args).trim();
      git(dir, ["update-ref", "refs/heads/main", head]);
    },
  };
}

export function pushUrl(gatewayUrl: string, relativePath: string): string {
  return `${gatewayUrl}/${relativePath}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface RunningLoad {
  stats: LoadStats;
  stop(): Promise<LoadStats>;
}

export function startLoad(
  targets: LoadTargets,
  copy: ReturnType<typeof workingCopy>,
  options: { readers: number; pauseMs: number },
): RunningLoad {
  const stats: LoadStats = { reads: 0, pushes: 0, byKind: {}, pushSpans: [], failures: [] };
  let running = true;
  const channels = targets.praefects.map((p) => ({
    name: p.name,
    channel: new grpc.Client(p.address, grpc.credentials.createInsecure()),
  }));
  const clients = channels.map((c) => ({
    name: c.name,
    repository: createClient(RepositoryService, c.channel),
    commit: createClient(CommitService, c.channel),
    blob: createClient(BlobService, c.channel),
    server: createClient(ServerService, c.channel),
  }));
  const repository = { storageName: targets.virtualStorage, relativePath: targets.relativePath };
  const fail = (kind: string, via: string, err: unknown) => {
    const e = err as { code?: number; details?: string; message?: string; stderr?: string };
    stats.failures.push({
      kind,
      via,
      at: new Date().toISOString(),
      error: e.stderr?.trim() || `${e.code ?? ""} ${e.details ?? e.message ?? String(err)}`.trim(),
    });
  };

  const reader = async (index: number) => {
    // DiskStatistics fans out to every Gitaly node, so each node sees client-driven traffic
    // whatever the replicas' state; the repository reads go to up-to-date replicas only.
    const kinds = ["RepositoryExists", "FindCommit", "GetBlob", "DiskStatistics"] as const;
    for (let n = index; running; n++) {
      // Every kind of call through every Praefect in turn.
      const client = clients[Math.floor(n / kinds.length) % clients.length] as (typeof clients)[number];
      const kind = kinds[n % kinds.length] as (typeof kinds)[number];
      try {
        // Like GitLab with a token from a mounted Secret: whatever the file says now.
        const token = (await readFile(targets.clientTokenFile, "utf8")).trim();
        const options = { metadata: authMetadata(token), deadline: Date.now() + 15_000 };
        if (kind === "RepositoryExists") {
          const res = await client.repository.repositoryExists({ repository }, options);
          if (!res.exists) throw new Error("the repository does not exist");
        } else if (kind === "FindCommit") {
          const res = await client.commit.findCommit(
            { repository, revision: new TextEncoder().encode("refs/heads/main") },
            options,
          );
          if (!res.commit) throw new Error("main has no commit");
        } else if (kind === "DiskStatistics") {
          const res = await client.server.diskStatistics({}, options);
          if (res.storageStatuses.length === 0) throw new Error("no storage reported disk statistics");
        } else {
          let size = 0;
          for await (const msg of client.blob.getBlob({ repository, oid: targets.blobOid, limit: -1n }, options)) {
            size += msg.data.length;
          }
          if (size === 0) throw new Error(`blob ${targets.blobOid} came back empty`);
        }
        stats.reads++;
        stats.byKind[kind] = (stats.byKind[kind] ?? 0) + 1;
      } catch (err) {
        fail(kind, client.name, err);
      }
      await sleep(options.pauseMs);
    }
  };

  const pusher = async () => {
    for (let n = 0; running; n++) {
      const gateway = targets.gateways[n % targets.gateways.length] as LoadTargets["gateways"][number];
      copy.nextCommit();
      const t0 = Date.now();
      try {
        await gitClient(["push", "--quiet", pushUrl(gateway.url, targets.relativePath), "main:main"], {
          cwd: copy.dir,
        });
        stats.pushes++;
        stats.pushSpans.push({ start: t0, end: Date.now() });
        stats.byKind.push = (stats.byKind.push ?? 0) + 1;
      } catch (err) {
        fail("push", gateway.name, err);
      }
    }
  };

  const workers = [...Array.from({ length: options.readers }, (_, i) => reader(i)), pusher()];
  return {
    stats,
    async stop() {
      running = false;
      await Promise.all(workers);
      for (const c of channels) c.channel.close();
      return stats;
    },
  };
}
