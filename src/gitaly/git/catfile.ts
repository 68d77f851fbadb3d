// Object reads through long-lived `git cat-file --batch-command --buffer` processes, one
// per repository, kept in an LRU cache with an idle TTL (upstream: internal/git/catfile).
//
// Requests to one process are pipelined: each writes `info|contents <rev>` plus `flush`,
// and replies come back in request order, so a FIFO of pending requests pairs them up.
// Input is NUL-terminated (-z, or -Z where git ≥ 2.43 also NUL-terminates output), so a
// path-scoped revision may contain newlines; the "<rev> missing" reply is matched against
// the exact bytes that were sent rather than split at the first newline.
import { type GitCommandFactory, type GitProcess, gitVersionAtLeast, type ObjectDirectories } from "./command.js";
import { validateRevision } from "./revision.js";

export type ObjectType = "blob" | "tree" | "commit" | "tag";

export interface ObjectInfo {
  oid: string;
  type: ObjectType;
  size: number;
}

export interface GitObject extends ObjectInfo {
  data: Buffer;
}

export interface ObjectReader {
  readonly repoPath: string;
  /** Type and size, or null if the revision does not name an object. */
  info(revision: string | Uint8Array): Promise<ObjectInfo | null>;
  /** The object with its raw content, or null if the revision does not name an object. */
  object(revision: string | Uint8Array): Promise<GitObject | null>;
}

export interface CatfileCacheOptions {
  /** Most processes kept; the least recently used is stopped beyond it. Default 100 (git.catfile_cache_size). */
  maxEntries?: number;
  /** A process unused this long is stopped. Default 10 000 ms. */
  idleTtlMs?: number;
}

export interface ReaderOptions {
  /** A quarantine's object directories: such readers get their own process. */
  objectDirectories?: ObjectDirectories;
}

export interface CatfileCacheStats {
  /** Processes currently cached. */
  processes: number;
  /** Processes started since the cache was created. */
  spawned: number;
  /** reader() calls served by a cached process / that had to start one. */
  hits: number;
  misses: number;
}

const HEADER = /^([0-9a-f]{40}|[0-9a-f]{64}) (blob|tree|commit|tag) (\d+)$/;
const MISSING_OID = /^(?:[0-9a-f]{40}|[0-9a-f]{64}) missing$/;
// -Z (NUL-terminated output) arrived in git 2.43; -z (NUL-terminated input) is older.
const NUL_OUTPUT_SINCE = "2.43.0";

/** A byte FIFO over stdout chunks that copies only what it hands out. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  indexOf(byte: number): number {
    let base = 0;
    for (const chunk of this.chunks) {
      const i = chunk.indexOf(byte);
      if (i >= 0) return base + i;
      base += chunk.length;
    }
    return -1;
  }

  /** true if the queue starts with `prefix`, "partial" if what is buffered so far matches it, else false. */
  startsWith(prefix: Buffer): boolean | "partial" {
    let pos = 0;
    for (const chunk of this.chunks) {
      const n = Math.min(chunk.length, prefix.length - pos);
      if (chunk.compare(prefix, pos, pos + n, 0, n) !== 0) return false;
      pos += n;
      if (pos === prefix.length) return true;
    }
    return "partial";
  }

  /** A copy of the first `n` bytes, left in the queue. */
  peek(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let pos = 0;
    for (const chunk of this.chunks) {
      if (pos >= n) break;
      pos += chunk.copy(out, pos, 0, Math.min(chunk.length, n - pos));
    }
    return out;
  }

  take(n: number): Buffer {
    if (n > this.length) throw new Error(`take(${n}) with ${this.length} bytes buffered`);
    this.length -= n;
    const first = this.chunks[0];
    if (first && first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      const chunk = this.chunks[0] as Buffer;
      if (chunk.length <= need) {
        parts.push(chunk);
        this.chunks.shift();
        need -= chunk.length;
      } else {
        parts.push(chunk.subarray(0, need));
        this.chunks[0] = chunk.subarray(need);
        need = 0;
      }
    }
    return Buffer.concat(parts, n);
  }
}

interface Pending {
  kind: "info" | "contents";
  revision: Buffer;
  header?: ObjectInfo;
  resolve: (value: ObjectInfo | GitObject | null) => void;
  reject: (err: Error) => void;
}

class BatchProcess {
  readonly proc: GitProcess;
  private readonly queue = new ByteQueue();
  private readonly pending: Pending[] = [];
  private outgoing: Buffer[] = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private dead: Error | undefined;
  private retired = false;
  readonly exited: Promise<void>;

  constructor(
    factory: GitCommandFactory,
    readonly repoPath: string,
    objectDirectories: ObjectDirectories | undefined,
    private readonly nulOutput: boolean,
    private readonly idleTtlMs: number,
    private readonly onGone: (p: BatchProcess) => void,
  ) {
    this.proc = factory.spawn({
      repoPath,
      subcommand: "cat-file",
      flags: ["--batch-command", "--buffer", nulOutput ? "-Z" : "-z"],
      stdin: "pipe",
      objectDirectories,
    });
    this.proc.stdout.on("data", (chunk: Buffer) => {
      this.queue.push(chunk);
      this.parse();
    });
    this.exited = this.proc.wait().then(
      () => this.fail(new Error(`git cat-file in ${repoPath} exited`)),
      (err: Error) => this.fail(err),
    );
    this.startIdleTimer();
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get isDead(): boolean {
    return this.dead !== undefined;
  }

  request(kind: Pending["kind"], revision: Buffer): Promise<ObjectInfo | GitObject | null> {
    if (this.dead) return Promise.reject(this.dead);
    this.clearIdleTimer();
    return new Promise((resolve, reject) => {
      this.pending.push({ kind, revision, resolve, reject });
      if (this.outgoing.length === 0) queueMicrotask(() => this.flush());
      this.outgoing.push(Buffer.from(`${kind} `), revision, Buffer.of(0));
    });
  }

  /** Stop once the requests already sent are answered (eviction while busy). */
  retire(): void {
    this.retired = true;
    if (this.pending.length === 0) this.kill();
  }

  kill(): void {
    this.clearIdleTimer();
    this.proc.kill();
  }

  private flush(): void {
    if (this.dead || this.outgoing.length === 0) return;
    // One flush for everything queued in this tick: git answers in order either way.
    const data = Buffer.concat([...this.outgoing, Buffer.from("flush\0")]);
    this.outgoing = [];
    this.proc.stdin?.write(data);
  }

  private parse(): void {
    const term = this.nulOutput ? 0 : 0x0a;
    for (;;) {
      const req = this.pending[0];
      if (!req) {
        if (this.queue.length > 0) this.protocolError("unexpected output with no request pending");
        return;
      }
      if (!req.header) {
        const failure = this.failureReply(req.revision, term);
        if (failure === "missing" || failure === "ambiguous") {
          this.complete(() => {
            if (failure === "missing") req.resolve(null);
            else req.reject(new Error(`revision ${JSON.stringify(req.revision.toString())} is ambiguous`));
          });
          continue;
        }
        const end = this.queue.indexOf(term);
        if (end < 0) return;
        const line = this.queue.peek(end).toString("latin1");
        if (MISSING_OID.test(line)) {
          // The revision resolved (e.g. to a submodule commit) but the object is absent:
          // git echoes the object ID instead of the revision.
          this.queue.take(end + 1);
          this.complete(() => req.resolve(null));
          continue;
        }
        const m = HEADER.exec(line);
        if (!m) {
          // The revision itself may contain the terminator; wait for the rest of its echo.
          if (failure === "partial") return;
          this.protocolError(`unexpected reply ${JSON.stringify(line)}`);
          return;
        }
        this.queue.take(end + 1);
        req.header = { oid: m[1] as string, type: m[2] as ObjectType, size: Number(m[3]) };
        if (req.kind === "info") {
          const header = req.header;
          this.complete(() => req.resolve(header));
          continue;
        }
      }
      const header = req.header;
      if (this.queue.length < header.size + 1) return;
      const data = this.queue.take(header.size);
      if (this.queue.take(1)[0] !== term) {
        this.protocolError(`object ${header.oid} is not followed by its terminator`);
        return;
      }
      this.complete(() => req.resolve({ ...header, data }));
    }
  }

  /** Consumes a "<rev> missing|ambiguous" reply if one is buffered; "partial" if one may be arriving. */
  private failureReply(revision: Buffer, term: number): "missing" | "ambiguous" | "partial" | null {
    let partial = false;
    for (const reply of ["missing", "ambiguous"] as const) {
      const expected = Buffer.concat([revision, Buffer.from(` ${reply}`), Buffer.of(term)]);
      const match = this.queue.startsWith(expected);
      if (match === true) {
        this.queue.take(expected.length);
        return reply;
      }
      if (match === "partial") partial = true;
    }
    return partial ? "partial" : null;
  }

  private complete(settle: () => void): void {
    this.pending.shift();
    settle();
    if (this.pending.length === 0) {
      if (this.retired) this.kill();
      else this.startIdleTimer();
    }
  }

  private protocolError(detail: string): void {
    this.fail(new Error(`git cat-file in ${this.repoPath}: ${detail}`));
    this.kill();
  }

  private fail(err: Error): void {
    if (!this.dead) {
      this.dead = err;
      this.clearIdleTimer();
      this.onGone(this);
    }
    for (const req of this.pending.splice(0)) req.reject(err);
  }

  private startIdleTimer(): void {
    this.clearIdleTimer();
    this.idleTimer = setTimeout(() => {
      if (this.pending.length === 0) {
        this.onGone(this);
        this.kill();
      }
    }, this.idleTtlMs);
    this.idleTimer.unref();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }
}

export class CatfileCache {
  private readonly maxEntries: number;
  private readonly idleTtlMs: number;
  /** Insertion order is recency order: the first entry is the least recently used. */
  private readonly entries = new Map<string, BatchProcess>();
  private readonly all = new Set<BatchProcess>();
  private closed = false;
  private spawned = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    private readonly factory: GitCommandFactory,
    options: CatfileCacheOptions = {},
  ) {
    this.maxEntries = options.maxEntries && options.maxEntries > 0 ? options.maxEntries : 100;
    this.idleTtlMs = options.idleTtlMs ?? 10_000;
  }

  /** A reader for the repository at `repoPath` (already validated by the locator). */
  async reader(repoPath: string, options: ReaderOptions = {}): Promise<ObjectReader> {
    const version = await this.factory.version();
    const nulOutput = gitVersionAtLeast(version, NUL_OUTPUT_SINCE);
    const key = JSON.stringify([repoPath, options.objectDirectories ?? null]);
    const cached = this.entries.get(key);
    if (cached && !cached.isDead) this.hits++;
    else this.misses++;
    this.processFor(key, repoPath, options, nulOutput);

    const request = async (kind: Pending["kind"], revision: string | Uint8Array) => {
      // Path-scoped revisions ("HEAD:README.md") are what cat-file is for; NUL, which
      // would end the request early, and a leading '-' are still refused.
      validateRevision(revision, { allowPathScopedRevisions: true });
      const bytes = typeof revision === "string" ? Buffer.from(revision, "utf8") : Buffer.from(revision);
      // "<rev>:./path" and "<rev>:../path" are relative to a work tree; in a bare
      // repository cat-file dies on them, failing every request queued behind. No
      // object can be named that way here, so answer "missing" without asking git.
      const colon = bytes.indexOf(0x3a);
      if (colon !== -1 && /^\.\.?\//.test(bytes.subarray(colon + 1).toString("latin1"))) return null;
      return this.processFor(key, repoPath, options, nulOutput).request(kind, bytes);
    };
    return {
      repoPath,
      info: (revision) => request("info", revision) as Promise<ObjectInfo | null>,
      object: (revision) => request("contents", revision) as Promise<GitObject | null>,
    };
  }

  /** PID of the process serving `repoPath` (without object directories), if one is cached. */
  pid(repoPath: string): number | undefined {
    return this.entries.get(JSON.stringify([repoPath, null]))?.pid;
  }

  stats(): CatfileCacheStats {
    return { processes: this.entries.size, spawned: this.spawned, hits: this.hits, misses: this.misses };
  }

  /** Stops every process and waits for them to exit; later reads are refused. */
  async close(): Promise<void> {
    this.closed = true;
    this.entries.clear();
    const processes = [...this.all];
    for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.exited));
  }

  private processFor(key: string, repoPath: string, options: ReaderOptions, nulOutput: boolean): BatchProcess {
    if (this.closed) throw new Error("git cat-file cache is closed");
    const existing = this.entries.get(key);
    if (existing && !existing.isDead) {
      // Refresh recency.
      this.entries.delete(key);
      this.entries.set(key, existing);
      return existing;
    }
    const created = new BatchProcess(
      this.factory,
      repoPath,
      options.objectDirectories,
      nulOutput,
      this.idleTtlMs,
      (gone) => {
        if (this.entries.get(key) === gone) this.entries.delete(key);
      },
    );
    this.spawned++;
    this.all.add(created);
    void created.exited.then(() => this.all.delete(created));
    this.entries.delete(key);
    this.entries.set(key, created);
    while (this.entries.size > this.maxEntries) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, BatchProcess];
      this.entries.delete(oldestKey);
      oldest.retire();
    }
    return created;
  }
}
