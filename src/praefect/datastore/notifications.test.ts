import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { waitFor } from "../../shared/net.js";
import { RepositoryNotFoundError } from "./errors.js";
import { migrate } from "./migrate.js";
import {
  type ConsistentStoragesSource,
  NotificationListener,
  parseRepositoryChanges,
  REPOSITORY_CHANGE_CHANNELS,
  UpToDateCache,
} from "./notifications.js";
import { RepositoryStore } from "./repositories.js";

interface Received {
  channel: string;
  payload: string;
}

describe("change notifications", () => {
  let db: TestDatabase;
  let store: RepositoryStore;

  beforeAll(async () => {
    db = await freshDatabase("notify");
    await migrate(db.pool);
    store = new RepositoryStore(db.pool, { vs: ["s1", "s2"] });
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query("TRUNCATE repositories, storage_repositories, repository_assignments");
  });

  async function createRepo(relativePath: string, secondaries: string[] = ["s2"]): Promise<number> {
    const id = await store.reserveRepositoryId("vs", relativePath);
    await store.createRepository({
      repositoryId: id,
      virtualStorage: "vs",
      relativePath,
      replicaPath: relativePath,
      primary: "s1",
      updatedSecondaries: secondaries,
    });
    return id;
  }

  /** A raw LISTEN connection collecting what arrives. */
  async function listen(channels: string[]): Promise<{ received: Received[]; close(): Promise<void> }> {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const received: Received[] = [];
    client.on("notification", (msg) => received.push({ channel: msg.channel, payload: msg.payload ?? "" }));
    for (const channel of channels) await client.query(`LISTEN ${channel}`);
    return { received, close: () => client.end() };
  }

  it("announces replica changes in upstream's payload format", async () => {
    const l = await listen(REPOSITORY_CHANGE_CHANNELS);
    try {
      const id = await createRepo("a.git");
      await waitFor("the insert notification", async () => l.received.length >= 1);
      expect(l.received).toEqual([
        {
          channel: "storage_repositories_updates",
          payload: '[{"relative_paths": ["a.git"], "virtual_storage": "vs"}]',
        },
      ]);

      // Verification bookkeeping changes no generation: no notification. A generation change does.
      // Notifications arrive in commit order, so the marker shows nothing came in between.
      await db.pool.query("UPDATE storage_repositories SET verified_at = now()");
      await db.pool.query("SELECT pg_notify('storage_repositories_updates', 'marker')");
      await store.incrementGeneration(id, "s1", []);
      await waitFor("the update notification", async () => l.received.length >= 3);
      expect(l.received.slice(1, 3)).toEqual([
        { channel: "storage_repositories_updates", payload: "marker" },
        {
          channel: "storage_repositories_updates",
          payload: '[{"relative_paths": ["a.git"], "virtual_storage": "vs"}]',
        },
      ]);

      await store.deleteRepository("vs", "a.git");
      await waitFor("the delete notifications", async () => l.received.length >= 5);
      expect(
        l.received
          .slice(3)
          .map((r) => r.channel)
          .sort(),
      ).toEqual(["repositories_updates", "storage_repositories_updates"]);
      expect(parseRepositoryChanges(l.received[3]?.payload ?? "")).toEqual([
        { virtualStorage: "vs", relativePaths: ["a.git"] },
      ]);
    } finally {
      await l.close();
    }
  });

  it("groups the paths a statement touched by virtual storage", async () => {
    await createRepo("b.git");
    await createRepo("c.git");
    const l = await listen(["storage_repositories_updates"]);
    try {
      await db.pool.query("UPDATE storage_repositories SET generation = generation + 1");
      await waitFor("the notification", async () => l.received.length >= 1);
      expect(parseRepositoryChanges(l.received[0]?.payload ?? "")).toEqual([
        { virtualStorage: "vs", relativePaths: ["b.git", "c.git"] },
      ]);
    } finally {
      await l.close();
    }
  });

  it("announces released reference write locks", async () => {
    const l = await listen(["repository_reference_write_lock_releases"]);
    try {
      await db.pool.query(
        "INSERT INTO repository_reference_write_locks (lock_id, holder_txn_id, expired_at) VALUES ('lock-1', 7, now())",
      );
      await db.pool.query("DELETE FROM repository_reference_write_locks");
      await waitFor("the release notification", async () => l.received.length >= 1);
      expect(l.received).toEqual([{ channel: "repository_reference_write_lock_releases", payload: "lock-1" }]);
    } finally {
      await l.close();
    }
  });

  it("rejects payloads of another shape", () => {
    expect(() => parseRepositoryChanges("{}")).toThrow(/not an array/);
    expect(() => parseRepositoryChanges('[{"virtual_storage": 1}]')).toThrow(/malformed/);
    expect(() => parseRepositoryChanges("not json")).toThrow();
  });

  it("listens, reconnects after the connection is killed, and stops", async () => {
    const received: Received[] = [];
    const events: string[] = [];
    const listener = new NotificationListener({
      connection: db.url,
      channels: ["custom_channel"],
      initialBackoffMs: 20,
      handlers: {
        onNotification: (channel, payload) => received.push({ channel, payload }),
        onConnected: () => events.push("connected"),
        onDisconnected: () => events.push("disconnected"),
      },
    });
    listener.start();
    try {
      await listener.connected;
      await db.pool.query("SELECT pg_notify('custom_channel', 'one')");
      await waitFor("the first notification", async () => received.length >= 1);

      await db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
      );
      await waitFor("a new connection", async () => listener.connections >= 2);
      expect(events.slice(0, 3)).toEqual(["connected", "disconnected", "connected"]);
      await db.pool.query("SELECT pg_notify('custom_channel', 'two')");
      await waitFor("the notification after reconnecting", async () => received.length >= 2);
      expect(received.map((r) => r.payload)).toEqual(["one", "two"]);
    } finally {
      await listener.stop();
    }
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()",
    );
    expect(rows[0]?.n).toBe(0);
  });

  it("serves up-to-date replicas without queries in the steady state and follows writes", async () => {
    const id = await createRepo("cached.git");
    let queries = 0;
    const counting: ConsistentStoragesSource = {
      getConsistentStorages: (vs, rp) => {
        queries++;
        return store.getConsistentStorages(vs, rp);
      },
    };
    const cache = new UpToDateCache(counting);
    const listener = new NotificationListener({
      connection: db.url,
      channels: REPOSITORY_CHANGE_CHANNELS,
      handlers: cache,
      initialBackoffMs: 20,
    });
    listener.start();
    try {
      await listener.connected;
      expect(cache.isEnabled).toBe(true);
      expect(await cache.get("vs", "cached.git")).toEqual({ replicaPath: "cached.git", storages: ["s1", "s2"] });
      const before = queries;
      for (let i = 0; i < 50; i++) await cache.get("vs", "cached.git");
      expect(queries - before).toBe(0);
      expect(cache.stats.queries).toBe(1);

      await store.incrementGeneration(id, "s1", []);
      await waitFor("the cache to drop the entry", async () => cache.stats.invalidations >= 1);
      expect(await cache.get("vs", "cached.git")).toEqual({ replicaPath: "cached.git", storages: ["s1"] });
      expect(queries).toBe(2);

      await store.deleteRepository("vs", "cached.git");
      await waitFor("the deletion to reach the cache", async () => cache.size === 0);
      await expect(cache.get("vs", "cached.git")).rejects.toThrow(RepositoryNotFoundError);

      // After the connection is killed and re-established the cache works again, starting empty.
      await createRepo("again.git");
      await db.pool.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
      );
      await waitFor("the listener to reconnect", async () => listener.connections >= 2 && cache.isEnabled);
      let q = queries;
      await cache.get("vs", "again.git");
      await cache.get("vs", "again.git");
      expect(queries - q).toBe(1);

      // Without a listener nothing may be cached: every read queries.
      await listener.stop();
      expect(cache.isEnabled).toBe(false);
      q = queries;
      await cache.get("vs", "again.git");
      await cache.get("vs", "again.git");
      expect(queries - q).toBe(2);
    } finally {
      await listener.stop();
    }
  });
});

describe("UpToDateCache", () => {
  function deferredSource() {
    const pending: { resolve: (v: { replicaPath: string; storages: string[] }) => void; key: string }[] = [];
    const source: ConsistentStoragesSource = {
      getConsistentStorages: (vs, rp) =>
        new Promise((resolve) => {
          pending.push({ resolve, key: `${vs}/${rp}` });
        }),
    };
    return { source, pending };
  }

  it("shares one query between concurrent misses", async () => {
    const { source, pending } = deferredSource();
    const cache = new UpToDateCache(source);
    cache.onConnected();
    const reads = [cache.get("vs", "r.git"), cache.get("vs", "r.git"), cache.get("vs", "r.git")];
    expect(pending).toHaveLength(1);
    pending[0]?.resolve({ replicaPath: "p", storages: ["a"] });
    for (const read of await Promise.all(reads)) expect(read.storages).toEqual(["a"]);
    expect(cache.stats.queries).toBe(1);
  });

  it("does not cache a load that raced with an invalidation", async () => {
    const { source, pending } = deferredSource();
    const cache = new UpToDateCache(source);
    cache.onConnected();
    const stale = cache.get("vs", "r.git");
    cache.onNotification("storage_repositories_updates", '[{"virtual_storage": "vs", "relative_paths": ["r.git"]}]');
    pending[0]?.resolve({ replicaPath: "p", storages: ["old"] });
    expect((await stale).storages).toEqual(["old"]);
    const fresh = cache.get("vs", "r.git");
    expect(pending).toHaveLength(2);
    pending[1]?.resolve({ replicaPath: "p", storages: ["new"] });
    expect((await fresh).storages).toEqual(["new"]);
    expect((await cache.get("vs", "r.git")).storages).toEqual(["new"]);
    expect(cache.stats.queries).toBe(2);
  });

  it("disables itself on an unreadable payload until the next connection", async () => {
    let n = 0;
    const cache = new UpToDateCache(
      {
        getConsistentStorages: async () => {
          n++;
          return { replicaPath: "p", storages: ["a"] };
        },
      },
      10,
      () => undefined,
    );
    cache.onConnected();
    await cache.get("vs", "r.git");
    await cache.get("vs", "r.git");
    expect(n).toBe(1);
    cache.onNotification("storage_repositories_updates", "garbage");
    expect(cache.isEnabled).toBe(false);
    await cache.get("vs", "r.git");
    await cache.get("vs", "r.git");
    expect(n).toBe(3);
    cache.onConnected();
    await cache.get("vs", "r.git");
    await cache.get("vs", "r.git");
    expect(n).toBe(4);
  });

  it("evicts the least recently used entry beyond its capacity", async () => {
    let n = 0;
    const cache = new UpToDateCache(
      {
        getConsistentStorages: async () => {
          n++;
          return { replicaPath: "p", storages: [] };
        },
      },
      2,
    );
    cache.onConnected();
    await cache.get("vs", "a");
    await cache.get("vs", "b");
    await cache.get("vs", "a");
    await cache.get("vs", "c");
    expect(cache.size).toBe(2);
    const q = n;
    await cache.get("vs", "a");
    expect(n).toBe(q);
    await cache.get("vs", "b");
    expect(n).toBe(q + 1);
  });
});
