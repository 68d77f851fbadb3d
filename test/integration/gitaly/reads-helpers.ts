// Shared setup for the core-read suites: the Ref, Commit and Blob services served on a
// loopback port by an in-process grpc-js server with the node's real dependencies
// (storage locator, git command factory, cat-file cache), a reference-transaction hook
// that records what git reports, and typed clients.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { BlobService } from "../../../src/gen/blob_pb.js";
import { CommitService } from "../../../src/gen/commit_pb.js";
import { RefService } from "../../../src/gen/ref_pb.js";
import { loadGitalyConfig } from "../../../src/gitaly/config/load.js";
import { CatfileCache } from "../../../src/gitaly/git/catfile.js";
import { GitCommandFactory } from "../../../src/gitaly/git/command.js";
import { blobService } from "../../../src/gitaly/service/blob/blob-service.js";
import { commitService } from "../../../src/gitaly/service/commit/commit-service.js";
import type { HookEnvironment, NodeDeps } from "../../../src/gitaly/service/deps.js";
import { refService } from "../../../src/gitaly/service/ref/ref-service.js";
import { StorageLocator } from "../../../src/gitaly/storage/locator.js";
import { addService, createClient, type PromiseClient } from "../../../src/shared/grpc/service.js";
import { createLogger } from "../../../src/shared/logging.js";

export type RefClient = PromiseClient<(typeof RefService)["method"]>;
export type CommitClient = PromiseClient<(typeof CommitService)["method"]>;
export type BlobClient = PromiseClient<(typeof BlobService)["method"]>;

export interface ReadsServer {
  readonly dir: string;
  /** host:port of the gRPC listener. */
  readonly address: string;
  readonly storage: { name: string; path: string };
  readonly deps: NodeDeps;
  readonly ref: RefClient;
  readonly commit: CommitClient;
  readonly blob: BlobClient;
  /** A Repository message for `relativePath` in the storage. */
  repo(relativePath: string): { storageName: string; relativePath: string };
  /** What the reference-transaction hook saw so far: "phase <name>" lines, then git's stdin. */
  hookLog(): string;
  /** How often HookEnvironment.forCall was asked for an environment. */
  readonly hookCalls: number;
  close(): Promise<void>;
}

const HOOK_SCRIPT = `#!/bin/sh
{ echo "phase $1"; cat; } >> "$READS_TEST_HOOK_LOG"
`;

export interface ReadsServerOptions {
  /** Replaces services before registration, e.g. to observe a stream's generator. */
  wrap?: (deps: NodeDeps) => Partial<{
    ref: ReturnType<typeof refService>;
    commit: ReturnType<typeof commitService>;
    blob: ReturnType<typeof blobService>;
  }>;
}

export async function startReadsServer(options: ReadsServerOptions = {}): Promise<ReadsServer> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), "gitaly-reads-")));
  const storage = { name: "default", path: join(dir, "storage") };
  mkdirSync(storage.path);
  const hooksDir = join(dir, "hooks");
  mkdirSync(hooksDir);
  writeFileSync(join(hooksDir, "reference-transaction"), HOOK_SCRIPT);
  chmodSync(join(hooksDir, "reference-transaction"), 0o755);
  const hookLogPath = join(dir, "hook.log");
  writeFileSync(hookLogPath, "");

  let hookCalls = 0;
  // Stands in for the node's hook environment: same contract (env + config for git),
  // pointing git at a hook that records its phases and input.
  const hooks: HookEnvironment = {
    async forCall() {
      hookCalls++;
      return { env: { READS_TEST_HOOK_LOG: hookLogPath }, config: [{ key: "core.hooksPath", value: hooksDir }] };
    },
  };
  const { config } = loadGitalyConfig(
    `listen_addr = "127.0.0.1:0"\n[[storage]]\nname = "${storage.name}"\npath = ${JSON.stringify(storage.path)}\n`,
  );
  const git = new GitCommandFactory();
  const deps: NodeDeps = {
    locator: new StorageLocator([storage]),
    git,
    catfile: new CatfileCache(git),
    logger: createLogger({ level: "error", component: "reads-test" }),
    config,
    hooks,
  };

  const server = new grpc.Server();
  const wrapped = options.wrap?.(deps) ?? {};
  addService(server, RefService, wrapped.ref ?? refService(deps));
  addService(server, CommitService, wrapped.commit ?? commitService(deps));
  addService(server, BlobService, wrapped.blob ?? blobService(deps));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());

  return {
    dir,
    address: `127.0.0.1:${port}`,
    storage,
    deps,
    ref: createClient(RefService, channel),
    commit: createClient(CommitService, channel),
    blob: createClient(BlobService, channel),
    repo: (relativePath) => ({ storageName: storage.name, relativePath }),
    hookLog: () => readFileSync(hookLogPath, "utf8"),
    get hookCalls() {
      return hookCalls;
    },
    async close() {
      channel.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await deps.catfile.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Collects every message of a server stream. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const msg of stream) out.push(msg);
  return out;
}

export const bytes = (s: string) => Buffer.from(s);
export const str = (b: Uint8Array | undefined) => Buffer.from(b ?? new Uint8Array()).toString("utf8");
