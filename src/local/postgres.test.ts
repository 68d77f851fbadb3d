import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, test } from "vitest";
import { type PostgresServer, startPostgres } from "./postgres.js";

const work = mkdtempSync(join(tmpdir(), "gitaly-pg-test-"));
// As root, PostgreSQL runs as another user that must be able to enter the directories.
chmodSync(work, 0o711);
const running: PostgresServer[] = [];
afterAll(async () => {
  await Promise.all(running.map((s) => s.stop().catch(() => undefined)));
  rmSync(work, { recursive: true, force: true });
});

async function query<T extends pg.QueryResultRow>(server: PostgresServer, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: server.url() });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe("startPostgres", () => {
  test("a throwaway server's directory is gone after stop", async () => {
    const server = await startPostgres({ baseDir: work });
    running.push(server);
    expect(await query(server, "SELECT 1 AS one")).toEqual([{ one: 1 }]);
    expect(existsSync(server.dataDir)).toBe(true);
    await server.stop();
    expect(existsSync(server.dataDir)).toBe(false);
  });

  test("a persistent data directory is initialised once and its data survives a restart", async () => {
    const parent = join(work, "persistent");
    mkdirSync(parent, { mode: 0o711 });
    const dataDir = join(parent, "data");
    const logFile = join(parent, "postgres.log");
    const first = await startPostgres({ dataDir, password: "first-password", logFile });
    running.push(first);
    await query(first, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')");
    await first.stop();
    expect(existsSync(join(dataDir, "PG_VERSION"))).toBe(true);

    const second = await startPostgres({ dataDir, password: "first-password", logFile });
    running.push(second);
    expect(second.pid).toBeGreaterThan(0);
    expect(await query(second, "SELECT v FROM kept")).toEqual([{ v: "still here" }]);
    await second.stop();
    expect(existsSync(join(dataDir, "PG_VERSION"))).toBe(true);

    await expect(startPostgres({ dataDir, password: "another-password", logFile })).rejects.toThrow(
      /refused the password/,
    );
  });

  test("refuses a non-empty directory that is not PostgreSQL's, and a data dir without a password", async () => {
    const dataDir = join(work, "other");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "notes.txt"), "mine");
    await expect(startPostgres({ dataDir, password: "p" })).rejects.toThrow(
      /neither empty nor a PostgreSQL data directory/,
    );
    await expect(startPostgres({ dataDir: join(work, "x") })).rejects.toThrow(/needs a password/);
    expect(existsSync(join(dataDir, "notes.txt"))).toBe(true);
  });
});
