// Shared by the failover and partition suites: a three-node cluster of real Gitaly processes,
// a working copy whose every push adds one commit, repository metadata as Praefect reports it,
// and a TCP proxy that can be cut to put a Praefect on the wrong side of a network partition.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { inject } from "vitest";
import { PraefectInfoService } from "../../../src/gen/praefect_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { git } from "../../harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import type { TestDatabase } from "../../harness/postgres.js";
import type { PraefectDatabase, PraefectNode, PraefectProcess } from "../../harness/praefect.js";
import { gitClient } from "../gateway-helpers.js";

export const VS = "default";
export const STORAGES = ["gitaly-1", "gitaly-2", "gitaly-3"];
export const tokenOf = (storage: string): string => `node-token-${storage}`;

/** Error-based failure detection on: two failed writes (or reads) within 10 s trip a node. */
export const ERROR_THRESHOLDS_TOML = [
  "[failover]",
  "enabled = true",
  `error_threshold_window = "10s"`,
  "write_error_threshold_count = 2",
  "read_error_threshold_count = 2",
].join("\n");

export function praefectDatabase(db: TestDatabase): PraefectDatabase {
  const pg = inject("postgres");
  return { host: pg.host, port: pg.port, user: pg.user, password: pg.password, name: db.name };
}

export interface Metadata {
  primary: string;
  generation: number;
  replicaPath: string;
  replicas: { storage: string; generation: number; healthy: boolean; validPrimary: boolean }[];
}

export async function metadata(via: PraefectProcess, relativePath: string): Promise<Metadata> {
  const info = createClient(PraefectInfoService, via.channel());
  const res = await info.getRepositoryMetadata({
    query: { case: "path", value: { virtualStorage: VS, relativePath } },
  });
  return {
    primary: res.primary,
    generation: Number(res.generation),
    replicaPath: res.replicaPath,
    replicas: res.replicas
      .map((r) => ({
        storage: r.storage,
        generation: Number(r.generation),
        healthy: r.healthy,
        validPrimary: r.validPrimary,
      }))
      .sort((a, b) => a.storage.localeCompare(b.storage)),
  };
}

/** Three Gitaly nodes that can be killed and restarted on their own data and address. */
export class GitalyTrio {
  private readonly processes = new Map<string, GitalyProcess>();
  private readonly homes = new Map<string, { dir: string; port: number }>();

  async start(storage: string): Promise<GitalyProcess> {
    const home = this.homes.get(storage);
    const g = await startGitaly({ storages: [storage], token: tokenOf(storage), ...(home ?? {}) });
    if (!home) this.homes.set(storage, { dir: g.dir, port: Number(g.address.split(":")[1]) });
    this.processes.set(storage, g);
    return g;
  }

  async startAll(): Promise<void> {
    for (const s of STORAGES) await this.start(s);
  }

  of(storage: string): GitalyProcess {
    const g = this.processes.get(storage);
    if (!g) throw new Error(`no Gitaly process for ${storage}`);
    return g;
  }

  port(storage: string): number {
    const home = this.homes.get(storage);
    if (!home) throw new Error(`no Gitaly home for ${storage}`);
    return home.port;
  }

  /** The nodes as a Praefect config names them; `address` may redirect a storage (a proxy). */
  nodes(address: (storage: string) => string = (s) => `127.0.0.1:${this.port(s)}`): PraefectNode[] {
    return STORAGES.map((storage) => ({ storage, address: address(storage), token: tokenOf(storage) }));
  }

  async kill(storage: string): Promise<void> {
    await this.of(storage).proc.stop("SIGKILL");
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.values()].map((g) => g.stop()));
  }
}

/** CalculateChecksum on each node directly, on the replica path Praefect reports. */
export async function checksums(
  trio: GitalyTrio,
  replicaPath: string,
  storages: readonly string[] = STORAGES,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const storage of storages) {
    const client = createClient(RepositoryService, trio.of(storage).channel(tokenOf(storage)));
    const res = await client.calculateChecksum({ repository: { storageName: storage, relativePath: replicaPath } });
    out[storage] = res.checksum;
  }
  return out;
}

/** Waits until every replica holds the repository's generation and all checksums agree. */
export async function converged(
  via: PraefectProcess,
  trio: GitalyTrio,
  relativePath: string,
  timeoutMs = 30_000,
): Promise<Metadata> {
  let meta: Metadata | undefined;
  await waitFor(
    `${relativePath} to reach all storages`,
    async () => {
      meta = await metadata(via, relativePath);
      if (meta.replicas.length !== STORAGES.length) return false;
      if (!meta.replicas.every((r) => r.generation === meta?.generation)) return false;
      const sums = await checksums(trio, meta.replicaPath);
      return new Set(Object.values(sums)).size === 1;
    },
    { timeoutMs, intervalMs: 100 },
  );
  return meta as Metadata;
}

export interface WorkingCopy {
  readonly dir: string;
  /** Commits one more commit on main and pushes it to `url`. */
  push(url: string): Promise<void>;
}

/** A local bare repository whose every push carries one new commit (on the empty tree). */
export function workingCopy(parentDir: string, name: string): WorkingCopy {
  const dir = join(parentDir, `${name}.git`);
  git(parentDir, ["init", "--quiet", "--bare", dir]);
  const emptyTree = git(dir, ["hash-object", "-t", "tree", "-w", "--stdin"], "").trim();
  let parent: string | undefined;
  let n = 0;
  return {
    dir,
    async push(url: string) {
      n++;
      const args = ["-c", "user.name=T", "-c", "user.email=t@t.invalid", "commit-tree", emptyTree, "-m", `commit ${n}`];
      if (parent) args.push("-p", parent);
      // The chain only grows, failed push or not: every push is a fast-forward of whatever the
      // server got before.
      parent = git(dir, args).trim();
      git(dir, ["update-ref", "refs/heads/main", parent]);
      await gitClient(["push", "--quiet", url, "refs/heads/main:refs/heads/main"], { cwd: dir });
    },
  };
}

/**
 * A TCP proxy to `target` (host:port) on a free loopback port. `cut()` drops every connection and
 * black-holes new ones (accepted, never answered: a partition, not a refusal); `heal()` forwards
 * again.
 */
export class PartitionProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private partitioned = false;
  address = "";

  constructor(private readonly target: string) {
    this.server = createServer((client) => this.accept(client));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve());
    });
    const addr = this.server.address();
    if (addr === null || typeof addr === "string") throw new Error("proxy: no TCP address");
    this.address = `127.0.0.1:${addr.port}`;
    return this;
  }

  private track(socket: Socket): void {
    this.sockets.add(socket);
    socket.on("close", () => this.sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  }

  private accept(client: Socket): void {
    this.track(client);
    if (this.partitioned) return;
    const [host, port] = [this.target.split(":")[0] as string, Number(this.target.split(":")[1])];
    const upstream = tcpConnect(port, host);
    this.track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }

  cut(): void {
    this.partitioned = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.partitioned = false;
    // Black-holed connections would hang forever: drop them so the clients dial again.
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
