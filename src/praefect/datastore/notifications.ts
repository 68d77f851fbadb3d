// LISTEN/NOTIFY plumbing for the read path. The schema's triggers announce every change of
// replica generations on `storage_repositories_updates` (and repository deletions on
// `repositories_updates`) as [{"virtual_storage": ..., "relative_paths": [...]}]. A dedicated
// connection listens for them, and UpToDateCache uses them to serve "which replicas are up to
// date" without querying PostgreSQL on every routed read.
import pg from "pg";

export const REPOSITORIES_UPDATES_CHANNEL = "repositories_updates";
export const STORAGE_REPOSITORIES_UPDATES_CHANNEL = "storage_repositories_updates";
/** The channels that invalidate the up-to-date replica cache. */
export const REPOSITORY_CHANGE_CHANNELS = [REPOSITORIES_UPDATES_CHANNEL, STORAGE_REPOSITORIES_UPDATES_CHANNEL];

export interface RepositoryChange {
  virtualStorage: string;
  relativePaths: string[];
}

/** Parses a trigger payload; throws on anything else (the caller must then distrust its cache). */
export function parseRepositoryChanges(payload: string): RepositoryChange[] {
  const parsed: unknown = JSON.parse(payload);
  if (!Array.isArray(parsed)) throw new Error(`notification payload is not an array: ${payload.slice(0, 200)}`);
  return parsed.map((entry: unknown) => {
    const e = entry as { virtual_storage?: unknown; relative_paths?: unknown };
    if (
      typeof e?.virtual_storage !== "string" ||
      !Array.isArray(e.relative_paths) ||
      !e.relative_paths.every((p) => typeof p === "string")
    ) {
      throw new Error(`malformed notification entry: ${JSON.stringify(entry).slice(0, 200)}`);
    }
    return { virtualStorage: e.virtual_storage, relativePaths: e.relative_paths as string[] };
  });
}

export interface ListenerHandlers {
  onNotification(channel: string, payload: string): void;
  /** The connection is up and listening on every channel. */
  onConnected?(): void;
  /** The connection was lost (or could not be made); a reconnect is scheduled. */
  onDisconnected?(err: Error): void;
}

export interface NotificationListenerOptions {
  /** How to reach the database: a URL or node-postgres client settings. */
  connection: string | pg.ClientConfig;
  channels: readonly string[];
  handlers: ListenerHandlers;
  /** First reconnect delay; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
}

/**
 * Listens on channels over one dedicated connection (LISTEN does not survive connection pooling
 * in transaction mode), reconnecting with exponential backoff whenever the connection drops.
 */
export class NotificationListener {
  private client: pg.Client | null = null;
  private stopped = true;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs: number;
  private connectedOnce: Promise<void>;
  private resolveConnected: () => void = () => undefined;
  /** How many times a connection was established (for tests and metrics). */
  connections = 0;

  constructor(private readonly options: NotificationListenerOptions) {
    this.backoffMs = options.initialBackoffMs ?? 250;
    this.connectedOnce = new Promise((resolve) => {
      this.resolveConnected = resolve;
    });
  }

  /** Starts listening; returns at once (see `connected` to wait for the first connection). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  /** Resolves when the first connection is listening. */
  get connected(): Promise<void> {
    return this.connectedOnce;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const client = this.client;
    this.client = null;
    if (client) {
      await client.end().catch(() => undefined);
      // Nothing invalidates caches from now on: they must stop trusting their entries.
      this.options.handlers.onDisconnected?.(new Error("notification listener stopped"));
    }
  }

  private async connect(): Promise<void> {
    const { connection, channels, handlers } = this.options;
    const config: pg.ClientConfig =
      typeof connection === "string"
        ? { connectionString: connection, keepAlive: true }
        : { keepAlive: true, ...connection };
    const client = new pg.Client(config);
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      if (this.client === client) this.client = null;
      client.end().catch(() => undefined);
      if (this.stopped) return;
      handlers.onDisconnected?.(err);
      this.scheduleReconnect();
    };
    client.on("error", fail);
    client.on("end", () => fail(new Error("notification connection closed")));
    client.on("notification", (msg) => {
      if (client === this.client) handlers.onNotification(msg.channel, msg.payload ?? "");
    });
    try {
      await client.connect();
      for (const channel of channels) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (err) {
      fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (this.stopped || failed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.connections++;
    this.backoffMs = this.options.initialBackoffMs ?? 250;
    handlers.onConnected?.();
    this.resolveConnected();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxBackoffMs ?? 5_000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.connect();
    }, delay);
  }
}

/** What the cache reads through to on a miss. RepositoryStore provides it. */
export interface ConsistentStoragesSource {
  getConsistentStorages(
    virtualStorage: string,
    relativePath: string,
  ): Promise<{ replicaPath: string; storages: string[] }>;
}

export interface UpToDateReplicas {
  replicaPath: string;
  /** Storages holding the latest generation. */
  storages: readonly string[];
}

export interface UpToDateCacheStats {
  /** Queries sent to the source. In the steady state a read adds none. */
  queries: number;
  hits: number;
  misses: number;
  invalidations: number;
}

/**
 * The up-to-date replicas of each repository, cached per (virtual storage, relative path) and
 * invalidated by change notifications. The cache is used only while the listener is connected:
 * notifications missed while disconnected could leave stale entries, so a disconnect empties
 * and disables it until the next connection. Concurrent misses for one key share a single query.
 */
export class UpToDateCache implements ListenerHandlers {
  private readonly entries = new Map<string, UpToDateReplicas>();
  private readonly loading = new Map<string, Promise<UpToDateReplicas>>();
  /** Bumped per key on invalidation, so a load that raced with a change is not cached. */
  private readonly epochs = new Map<string, number>();
  private globalEpoch = 0;
  private enabled = false;
  readonly stats: UpToDateCacheStats = { queries: 0, hits: 0, misses: 0, invalidations: 0 };

  constructor(
    private readonly source: ConsistentStoragesSource,
    private readonly maxEntries = 1 << 20,
    private readonly onBadPayload: (err: Error) => void = () => undefined,
  ) {}

  private static key(virtualStorage: string, relativePath: string): string {
    return `${virtualStorage}\u0000${relativePath}`;
  }

  get isEnabled(): boolean {
    return this.enabled;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The up-to-date replicas; errors (such as RepositoryNotFoundError) pass through uncached. */
  async get(virtualStorage: string, relativePath: string): Promise<UpToDateReplicas> {
    const key = UpToDateCache.key(virtualStorage, relativePath);
    if (this.enabled) {
      const hit = this.entries.get(key);
      if (hit) {
        this.stats.hits++;
        // Re-insert to keep Map order as recency order for eviction.
        this.entries.delete(key);
        this.entries.set(key, hit);
        return hit;
      }
      const pending = this.loading.get(key);
      if (pending) return pending;
    }
    this.stats.misses++;
    return this.load(key, virtualStorage, relativePath);
  }

  private load(key: string, virtualStorage: string, relativePath: string): Promise<UpToDateReplicas> {
    const epoch = this.epochs.get(key) ?? 0;
    const globalEpoch = this.globalEpoch;
    const cacheable = this.enabled;
    this.stats.queries++;
    const promise = this.source
      .getConsistentStorages(virtualStorage, relativePath)
      .then((found) => {
        const value: UpToDateReplicas = {
          replicaPath: found.replicaPath,
          storages: Object.freeze([...found.storages]),
        };
        if (cacheable && this.enabled && (this.epochs.get(key) ?? 0) === epoch && this.globalEpoch === globalEpoch) {
          this.entries.set(key, value);
          if (this.entries.size > this.maxEntries) {
            const oldest = this.entries.keys().next().value;
            if (oldest !== undefined) this.entries.delete(oldest);
          }
        }
        return value;
      })
      .finally(() => {
        if (this.loading.get(key) === promise) this.loading.delete(key);
      });
    if (cacheable) this.loading.set(key, promise);
    return promise;
  }

  /** Drops the entries of the given repositories. */
  invalidate(virtualStorage: string, relativePaths: readonly string[]): void {
    for (const relativePath of relativePaths) {
      const key = UpToDateCache.key(virtualStorage, relativePath);
      this.epochs.set(key, (this.epochs.get(key) ?? 0) + 1);
      this.entries.delete(key);
      this.loading.delete(key);
      this.stats.invalidations++;
    }
  }

  private purge(): void {
    this.globalEpoch++;
    this.entries.clear();
    this.loading.clear();
    this.epochs.clear();
  }

  onNotification(_channel: string, payload: string): void {
    let changes: RepositoryChange[];
    try {
      changes = parseRepositoryChanges(payload);
    } catch (err) {
      // Without knowing what changed nothing cached can be trusted until the next reconnect.
      this.enabled = false;
      this.purge();
      this.onBadPayload(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    for (const change of changes) this.invalidate(change.virtualStorage, change.relativePaths);
  }

  onConnected(): void {
    this.purge();
    this.enabled = true;
  }

  onDisconnected(): void {
    this.enabled = false;
    this.purge();
  }
}
