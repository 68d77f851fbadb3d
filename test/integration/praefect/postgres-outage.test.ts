// Praefect against a PostgreSQL server that goes away and comes back: its own server on a
// persistent data directory (not the shared one, which other suites use), stopped and restarted on
// the same port under a running Praefect. While the database is down, routed calls fail promptly
// with Unavailable naming the database and the process keeps serving its health endpoints; once it
// is back, the same Praefect serves again without a restart.
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/grpc/health/v1/health_pb.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { type PostgresServer, startPostgres } from "../../../src/local/postgres.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { type GitalyProcess, startGitaly } from "../../harness/gitaly.js";
import { type PraefectProcess, startPraefect } from "../../harness/praefect.js";

const VS = "default";
const TOKEN = "praefect-outage-token";
const STORAGES = ["gitaly-1", "gitaly-2"];
const PASSWORD = "outage-superuser-password";
const tokenOf = (storage: string) => `node-token-${storage}`;
/** Generous: a call must come back with a status well before it, never hang until it. */
const CALL_DEADLINE_MS = 20_000;

/** The gRPC status of a call, or OK. */
async function statusOf(call: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await call;
    return { code: grpc.status.OK, details: "" };
  } catch (err) {
    const e = err as { code?: number; details?: string; message?: string };
    return { code: e.code ?? -1, details: e.details ?? e.message ?? "" };
  }
}

describe("Praefect through a PostgreSQL outage", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-outage-"));
  const dataDir = join(work, "pgdata");
  const gitalys: GitalyProcess[] = [];
  let postgres: PostgresServer | undefined;
  let port = 0;
  let dbName = "";
  let praefect: PraefectProcess;

  const repository = (relativePath: string) => ({ storageName: VS, relativePath });
  const deadline = () => ({ deadline: Date.now() + CALL_DEADLINE_MS });
  const since = (offset: number) => praefect.log().slice(offset);

  async function queryDatabase<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = new pg.Client({ connectionString: postgres?.url(dbName) });
    await client.connect();
    try {
      return (await client.query<R>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  /** The database's clock, which node_status times are written with. */
  async function databaseNow(): Promise<Date> {
    const rows = await queryDatabase<{ now: Date }>("SELECT now() AS now");
    return (rows[0] as { now: Date }).now;
  }

  beforeAll(async () => {
    // PostgreSQL runs as its own user when we are root: it must be able to reach its data directory.
    chmodSync(work, 0o755);
    postgres = await startPostgres({ dataDir, password: PASSWORD });
    port = postgres.port;
    dbName = await postgres.createDatabase("praefect_outage");
    for (const storage of STORAGES) gitalys.push(await startGitaly({ storages: [storage], token: tokenOf(storage) }));
    praefect = await startPraefect({
      db: { host: postgres.host, port, user: postgres.user, password: PASSWORD, name: dbName },
      gitalys: gitalys.map((g, i) => ({
        storage: STORAGES[i] as string,
        address: g.address,
        token: tokenOf(STORAGES[i] as string),
      })),
      token: TOKEN,
      virtualStorage: VS,
    });
  });

  afterAll(async () => {
    await praefect?.stop();
    await postgres?.stop();
    await Promise.all(gitalys.map((g) => g.stop()));
    rmSync(work, { recursive: true, force: true });
  });

  it("fails calls with Unavailable while the database is down, stays up, and recovers when it returns", async () => {
    const client = createClient(RepositoryService, praefect.channel());
    const health = createClient(Health, praefect.channel(""));
    // Creation needs both nodes healthy in the database's consensus: retried until the health loop has run.
    await waitFor(
      "a repository to be created through Praefect",
      async () =>
        (await statusOf(client.createRepository({ repository: repository("outage/a.git") }, deadline()))).code ===
        grpc.status.OK,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect((await client.repositoryExists({ repository: repository("outage/a.git") }, deadline())).exists).toBe(true);
    // An accessor proxied to a node (RepositoryExists is answered from the database by Praefect itself).
    await client.objectFormat({ repository: repository("outage/a.git") }, deadline());

    const outageLogStart = praefect.log().length;
    await postgres?.stop();
    postgres = undefined;

    const calls = {
      // Answered by Praefect from the database.
      RepositoryExists: () => client.repositoryExists({ repository: repository("outage/a.git") }, deadline()),
      // An accessor routed to a node: routing needs the repository's replicas from the database.
      ObjectFormat: () => client.objectFormat({ repository: repository("outage/a.git") }, deadline()),
      // A mutator creating a repository: needs an ID and a record.
      CreateRepository: () => client.createRepository({ repository: repository("outage/b.git") }, deadline()),
    };
    for (const [rpc, call] of Object.entries(calls)) {
      // Twice: the first call may meet connections the server just closed, the second must not hang on a new one.
      for (let i = 0; i < 2; i++) {
        const { code, details } = await statusOf(call());
        expect({ rpc, code: grpc.status[code] }).toEqual({ rpc, code: "UNAVAILABLE" });
        expect(details).toMatch(/database/i);
      }
    }

    // The background loops meet the outage too, and survive it: the health loop cannot record its
    // checks, the change listener loses its connection (and with it the read cache).
    await waitFor(
      "the background loops to report the outage",
      async () => {
        const log = since(outageLogStart);
        return (
          log.includes("cannot record health checks in the database") &&
          log.includes("change notifications lost") &&
          log.includes("failed to dequeue replication events")
        );
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );

    // The process is alive and its health endpoints answer.
    expect(praefect.proc.child.exitCode).toBeNull();
    expect(praefect.proc.child.signalCode).toBeNull();
    const serving = await health.check({ service: "" }, deadline());
    expect(serving.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const metrics = await fetch(praefect.metricsUrl);
    expect(metrics.status).toBe(200);

    const restartLogStart = praefect.log().length;
    postgres = await startPostgres({ dataDir, password: PASSWORD, port });
    const restartedAt = await databaseNow();

    // The same Praefect process serves again on its own.
    await waitFor(
      "RepositoryExists to succeed again",
      async () => (await statusOf(calls.RepositoryExists())).code === grpc.status.OK,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect((await calls.RepositoryExists()).exists).toBe(true);
    await waitFor(
      "the accessor to succeed again",
      async () => (await statusOf(calls.ObjectFormat())).code === grpc.status.OK,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor(
      "CreateRepository to succeed again",
      async () => (await statusOf(calls.CreateRepository())).code === grpc.status.OK,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect((await client.repositoryExists({ repository: repository("outage/b.git") }, deadline())).exists).toBe(true);
    // The new repository is served by a node, not only recorded.
    await client.objectFormat({ repository: repository("outage/b.git") }, deadline());
    expect(praefect.proc.child.exitCode).toBeNull();

    // The background loops are back: the listener reconnected, and the health loop records again.
    await waitFor(
      "the change listener to reconnect",
      async () => since(restartLogStart).includes("listening for repository changes: read cache enabled"),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor(
      "health checks of both nodes recorded after the restart",
      async () => {
        const rows = await queryDatabase<{ node_name: string }>(
          "SELECT node_name FROM node_status WHERE last_contact_attempt_at > $1 ORDER BY node_name",
          [restartedAt],
        );
        return rows.map((r) => r.node_name).join() === STORAGES.join();
      },
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect(praefect.log()).not.toMatch(/uncaught|unhandled/i);
  });
});
