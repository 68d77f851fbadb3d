// Proves the real PostgreSQL server runs: queries, settings, and isolation between
// the databases handed to different suites.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshDatabase, type TestDatabase } from "../harness/postgres.js";

describe("PostgreSQL test server", () => {
  let a: TestDatabase;
  let b: TestDatabase;

  beforeAll(async () => {
    a = await freshDatabase("smoke_a");
    b = await freshDatabase("smoke_b");
  });
  afterAll(async () => {
    await a?.drop();
    await b?.drop();
  });

  it("answers queries on loopback with durability off", async () => {
    const { rows } = await a.pool.query<{ sum: number; db: string; fsync: string; addr: string }>(
      "SELECT 40 + 2 AS sum, current_database() AS db, current_setting('fsync') AS fsync, inet_server_addr()::text AS addr",
    );
    expect(rows[0]).toEqual({ sum: 42, db: a.name, fsync: "off", addr: "127.0.0.1/32" });
    const { rows: version } = await a.pool.query<{ v: number }>(
      "SELECT current_setting('server_version_num')::int AS v",
    );
    // Praefect needs PostgreSQL 11 or newer.
    expect(version[0]?.v).toBeGreaterThanOrEqual(110000);
  });

  it("gives each suite its own database", async () => {
    await a.pool.query("CREATE TABLE only_in_a (id int primary key)");
    await a.pool.query("INSERT INTO only_in_a VALUES (1)");
    const inA = await a.pool.query("SELECT count(*)::int AS n FROM only_in_a");
    expect(inA.rows[0]).toEqual({ n: 1 });
    await expect(b.pool.query("SELECT * FROM only_in_a")).rejects.toThrow(/does not exist/);
  });

  it("supports LISTEN/NOTIFY, which Praefect's read cache relies on", async () => {
    const listener = await a.pool.connect();
    try {
      await listener.query("LISTEN smoke_channel");
      const got = new Promise<string | undefined>((resolve) =>
        listener.once("notification", (n) => resolve(n.payload)),
      );
      await a.pool.query("SELECT pg_notify('smoke_channel', 'hello')");
      expect(await got).toBe("hello");
    } finally {
      listener.release();
    }
  });
});
