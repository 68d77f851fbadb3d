import { mkdirSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, beforeEach, describe, expect, inject, test } from "vitest";
import { createStandardRepository } from "../../../test/harness/git-fixtures.js";
import { type GitalyProcess, startGitaly } from "../../../test/harness/gitaly.js";
import { freshDatabase, type TestDatabase } from "../../../test/harness/postgres.js";
import { RepositoryService } from "../../gen/repository_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import { freePort } from "../../shared/net.js";
import { loadPraefectConfig } from "../config/load.js";
import { type PraefectConfig, storageNames } from "../config/schema.js";
import { allMigrations, migrate } from "../datastore/migrate.js";
import { RepositoryStore } from "../datastore/repositories.js";
import { setHealthy } from "../datastore/testing.js";
import { type CheckFactory, checkCommand } from "./check.js";
import { runCommand } from "./index.js";

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text += chunk.toString("utf8");
    callback();
  }
}

interface Outcome {
  code: number;
  out: string;
  err: string;
}

async function run(command: string, args: string[], config?: PraefectConfig, stdin?: string): Promise<Outcome> {
  const out = new Capture();
  const err = new Capture();
  const code = await runCommand(command, args, {
    out,
    err,
    ...(config ? { config } : {}),
    ...(stdin !== undefined ? { stdin } : {}),
  });
  return { code, out: out.text, err: err.text };
}

function databaseToml(name: string): string {
  const pg = inject("postgres");
  return `[database]
host = "${pg.host}"
port = ${pg.port}
user = "${pg.user}"
password = "${pg.password}"
dbname = "${name}"
sslmode = "disable"
`;
}

function configWith(toml: string): PraefectConfig {
  return loadPraefectConfig(`listen_addr = "127.0.0.1:2305"\n${toml}`).config;
}

describe("list-storages", () => {
  const config = configWith(`
[[virtual_storage]]
name = "vs-1"
[[virtual_storage.node]]
storage = "storage-1"
address = "tcp://1.2.3.4:1"
[[virtual_storage.node]]
storage = "storage-2"
address = "tcp://4.3.2.1:1"
[[virtual_storage]]
name = "vs-2"
[[virtual_storage.node]]
storage = "storage-3"
address = "tcp://1.1.3.4:1"
`);

  test("prints every virtual storage's nodes as upstream's borderless table", async () => {
    expect(await run("list-storages", [], config)).toEqual({
      code: 0,
      err: "",
      out:
        " VIRTUAL_STORAGE  NODE       ADDRESS         \n" +
        " vs-1             storage-1  tcp://1.2.3.4:1 \n" +
        " vs-1             storage-2  tcp://4.3.2.1:1 \n" +
        " vs-2             storage-3  tcp://1.1.3.4:1 \n",
    });
  });

  test("-virtual-storage picks one", async () => {
    expect((await run("list-storages", ["-virtual-storage", "vs-2"], config)).out).toBe(
      " VIRTUAL_STORAGE  NODE       ADDRESS         \n vs-2             storage-3  tcp://1.1.3.4:1 \n",
    );
    expect(await run("list-storages", ["--virtual-storage=vs-9"], config)).toEqual({
      code: 0,
      err: "",
      out: "No virtual storages named vs-9.\n",
    });
  });

  test("refuses positional arguments and unknown flags like upstream", async () => {
    expect(await run("list-storages", ["-virtual-storage", "vs-1", "positional-arg"], config)).toEqual({
      code: 1,
      out: "",
      err: "list-storages doesn't accept positional arguments\n",
    });
    expect(await run("list-storages", ["-bogus"], config)).toMatchObject({
      code: 1,
      err: "flag provided but not defined: -bogus\n",
    });
  });
});

describe("configuration validate", () => {
  test("accepts a valid configuration silently", async () => {
    const toml = `listen_addr="localhost:1000"
[[virtual_storage]]
name = "praefect"
[[virtual_storage.node]]
address = "tcp://gitaly-internal-1.example.com"
storage = "praefect-internal-1"`;
    expect(await run("configuration validate", [], undefined, toml)).toEqual({ code: 0, out: "", err: "" });
  });

  test("prints upstream's JSON for an empty configuration and exits 2", async () => {
    expect(await run("configuration validate", [], undefined, "")).toEqual({
      code: 2,
      err: "",
      out: `{
  "errors": [
    {
      "message": "none of \\"socket_path\\", \\"listen_addr\\" or \\"tls_listen_addr\\" is set"
    },
    {
      "key": [
        "virtual_storage"
      ],
      "message": "not set"
    }
  ]
}
`,
    });
  });

  test("reports TOML syntax errors with their position", async () => {
    const result = await run(
      "configuration validate",
      [],
      undefined,
      'listen_addr="localhost:1000"\n[failover]\nenabled = true\nelection_strategy = invalid',
    );
    expect(result.code).toBe(2);
    expect(JSON.parse(result.out).errors[0].message).toMatch(/^line 4 column \d+: toml: /);
  });

  test("rejects arguments", async () => {
    expect(await run("configuration validate", ["arg1"], undefined, "")).toEqual({
      code: 1,
      out: "",
      err: "invalid argument(s)\n",
    });
  });
});

describe("check", () => {
  const config = configWith(
    `[[virtual_storage]]\nname = "vs"\n[[virtual_storage.node]]\nstorage = "st"\naddress = "tcp://stub:1"\n`,
  );
  const fake =
    (name: string, description: string, severity: "fatal" | "warning", fail?: string): CheckFactory =>
    () => ({
      name,
      description,
      severity,
      run: async () => {
        if (fail) throw new Error(fail);
      },
    });

  async function runChecks(factories: CheckFactory[], args: string[] = []): Promise<Outcome> {
    const out = new Capture();
    const err = new Capture();
    let code: number;
    try {
      code = await checkCommand(factories)(args, { out, err, config });
    } catch (e) {
      err.text += `${(e as Error).message}\n`;
      code = 1;
    }
    return { code, out: out.text, err: err.text };
  }

  test("prints each check, then the summary", async () => {
    const checks = [fake("check 1", "checks a", "fatal"), fake("check 2", "checks b", "fatal")];
    expect(await runChecks(checks)).toEqual({
      code: 0,
      err: "",
      out: "Checking check 1 - checks a [fatal]\nPassed\nChecking check 2 - checks b [fatal]\nPassed\n\nAll checks passed.\n",
    });
    expect((await runChecks(checks, ["-q"])).out).toBe(
      "Checking check 1...Passed\nChecking check 2...Passed\n\nAll checks passed.\n",
    );
  });

  test("a failed fatal check fails the command; a warning does not", async () => {
    expect(
      await runChecks([fake("check 1", "checks a", "fatal"), fake("check 2", "checks b", "fatal", "i failed")]),
    ).toEqual({
      code: 1,
      err: "checks failed\n",
      out:
        "Checking check 1 - checks a [fatal]\nPassed\nChecking check 2 - checks b [fatal]\nFailed (fatal) error: i failed\n\n" +
        "1 check(s) failed, at least one was fatal.\n",
    });
    expect(await runChecks([fake("check 1", "checks a", "warning", "meh")])).toEqual({
      code: 0,
      err: "",
      out: "Checking check 1 - checks a [warning]\nFailed (warning) error: meh\n\n1 check(s) failed, but none are fatal.\n",
    });
  });
});

describe("sql-* against a real database", () => {
  let db: TestDatabase;
  let config: PraefectConfig;
  const stub = `[[virtual_storage]]\nname = "p"\n[[virtual_storage.node]]\nstorage = "s"\naddress = "tcp://localhost:1"\n`;

  beforeAll(async () => {
    db = await freshDatabase("praefect_cli_sql");
    config = configWith(`${stub}${databaseToml(db.name)}`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  test("sql-ping says OK, and names what failed when the database is unreachable", async () => {
    expect(await run("sql-ping", [], config)).toEqual({ code: 0, out: "praefect sql-ping: OK\n", err: "" });
    const unreachable = configWith(
      `${stub}[database]\nhost = "127.0.0.1"\nport = ${await freePort()}\nuser = "x"\ndbname = "x"\n`,
    );
    const result = await run("sql-ping", [], unreachable);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^sql open: send ping: .*ECONNREFUSED/);
    expect(await run("sql-ping", ["positional-arg"], config)).toEqual({
      code: 1,
      out: "",
      err: "sql-ping doesn't accept positional arguments\n",
    });
  });

  test("sql-migrate applies every migration, then finds them all up", async () => {
    const result = await run("sql-migrate", ["-verbose"], config);
    expect(result.err).toBe("");
    expect(result.code).toBe(0);
    expect(result.out).toContain(`praefect sql-migrate: migrations to apply: ${allMigrations.length}\n\n`);
    expect(result.out).toMatch(/^= {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d 20200109161404_hello_world: migrating$/m);
    expect(result.out).toContain("\t[CREATE TABLE hello_world (id integer)]\n");
    expect(result.out).toMatch(/^== \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d 20200109161404_hello_world: applied \(.+\)$/m);
    expect(result.out.endsWith(`\npraefect sql-migrate: OK (applied ${allMigrations.length} migrations)\n`)).toBe(true);
    expect(await run("sql-migrate", [], config)).toEqual({
      code: 0,
      err: "",
      out: "praefect sql-migrate: all migrations are up\n",
    });
  });

  test("sql-migrate-status prints the box table of migrations", async () => {
    const result = await run("sql-migrate-status", [], config);
    expect(result.code).toBe(0);
    const lines = result.out.split("\n");
    expect(lines[0]).toMatch(/^┌─+┬─+┐$/);
    expect(lines[1]).toMatch(/^│ +MIGRATION +│ +APPLIED +│$/);
    expect(lines[2]).toMatch(/^├─+┼─+┤$/);
    expect(result.out).toMatch(/│ 20200109161404_hello_world +│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC +│/);
    expect(result.out).toContain(allMigrations.at(-1)?.id);
    expect(lines.at(-2)).toMatch(/^└─+┴─+┘$/);
  });

  test("sql-migrate-down dry-runs unless -f", async () => {
    const newest = allMigrations.at(-1)?.id as string;
    expect(await run("sql-migrate-down", ["1"], config)).toEqual({
      code: 0,
      err: "",
      out: `DRY RUN -- would roll back:\n\n- ${newest}\n\nTo apply these migrations run with -f\n`,
    });
    expect(await run("sql-migrate-down", ["-f", "1"], config)).toEqual({
      code: 0,
      err: "",
      out: 'OK (applied 1 "down" migrations)\n',
    });
    const status = await run("sql-migrate-status", [], config);
    expect(status.out).toMatch(new RegExp(`│ ${newest} +│ no +│`));
    expect(await run("sql-migrate-down", [], config)).toMatchObject({
      code: 1,
      err: "sql-migrate-down requires a single positional argument\n",
    });
    expect(await run("sql-migrate-down", ["1", "2"], config)).toMatchObject({
      code: 1,
      err: "sql-migrate-down accepts only single positional argument\n",
    });
    expect(await run("sql-migrate-down", ["0"], config)).toMatchObject({
      code: 1,
      err: "number of migrations to roll back must be 1 or more\n",
    });
    expect((await run("sql-migrate", [], config)).out).toContain("migrations to apply: 1\n");
  });
});

describe("repository commands against a real database", () => {
  let db: TestDatabase;
  let config: PraefectConfig;

  beforeAll(async () => {
    db = await freshDatabase("praefect_cli_repos");
    await migrate(db.pool);
    config = configWith(`
[[virtual_storage]]
name = "virtual-storage-1"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://127.0.0.1:1"
[[virtual_storage.node]]
storage = "gitaly-2"
address = "tcp://127.0.0.1:1"
[[virtual_storage.node]]
storage = "gitaly-3"
address = "tcp://127.0.0.1:1"
[[virtual_storage]]
name = "virtual-storage-2"
[[virtual_storage.node]]
storage = "gitaly-4"
address = "tcp://127.0.0.1:1"
${databaseToml(db.name)}`);
    // Upstream's dataloss fixture: two repositories, gitaly-1 and gitaly-3 healthy.
    await setHealthy(db.pool, "virtual-storage-1", ["gitaly-1", "gitaly-3"], ["gitaly-2"]);
    await db.pool.query(`INSERT INTO repositories (repository_id, virtual_storage, relative_path, "primary")
      VALUES (1, 'virtual-storage-1', 'repository-1', 'gitaly-1'), (2, 'virtual-storage-1', 'repository-2', 'gitaly-3')`);
    await db.pool.query(`INSERT INTO repository_assignments (repository_id, virtual_storage, relative_path, storage)
      VALUES (1, 'virtual-storage-1', 'repository-1', 'gitaly-1'), (1, 'virtual-storage-1', 'repository-1', 'gitaly-2'),
             (2, 'virtual-storage-1', 'repository-2', 'gitaly-1'), (2, 'virtual-storage-1', 'repository-2', 'gitaly-3')`);
    const store = new RepositoryStore(db.pool, storageNames(config));
    await store.setGeneration(1, "gitaly-1", "repository-1", 1);
    await store.setGeneration(1, "gitaly-2", "repository-1", 0);
    await store.setGeneration(1, "gitaly-3", "repository-1", 0);
    await store.setGeneration(2, "gitaly-2", "repository-2", 1);
    await store.setGeneration(2, "gitaly-3", "repository-2", 0);
  });
  afterAll(async () => {
    await db?.drop();
  });

  // healthy_storages only counts reports from the last 10 s.
  beforeEach(async () => {
    await setHealthy(db.pool, "virtual-storage-1", ["gitaly-1", "gitaly-3"], ["gitaly-2"]);
  });

  test("dataloss prints upstream's tree", async () => {
    expect(await run("dataloss", ["-virtual-storage=virtual-storage-1"], config)).toEqual({
      code: 0,
      err: "",
      out: `Virtual storage: virtual-storage-1
  Repositories:
    repository-2 (unavailable):
      Primary: gitaly-3
      In-Sync Storages:
        gitaly-2, unhealthy
      Outdated Storages:
        gitaly-1 is behind by 2 changes or less, assigned host
        gitaly-3 is behind by 1 change or less, assigned host
`,
    });
  });

  test("dataloss -partially-unavailable over every virtual storage", async () => {
    expect((await run("dataloss", ["-partially-unavailable"], config)).out).toBe(`Virtual storage: virtual-storage-1
  Repositories:
    repository-1:
      Primary: gitaly-1
      In-Sync Storages:
        gitaly-1, assigned host
      Outdated Storages:
        gitaly-2 is behind by 1 change or less, assigned host, unhealthy
        gitaly-3 is behind by 1 change or less
    repository-2 (unavailable):
      Primary: gitaly-3
      In-Sync Storages:
        gitaly-2, unhealthy
      Outdated Storages:
        gitaly-1 is behind by 2 changes or less, assigned host
        gitaly-3 is behind by 1 change or less, assigned host
Virtual storage: virtual-storage-2
  All repositories are fully available on all assigned storages!
`);
    expect((await run("dataloss", ["-virtual-storage", "virtual-storage-2"], config)).out).toBe(
      "Virtual storage: virtual-storage-2\n  All repositories are available!\n",
    );
  });

  test("metadata prints upstream's report, by ID or by path", async () => {
    await db.pool.query(
      "UPDATE storage_repositories SET verified_at = '2021-04-01 10:04:20.000064+00' WHERE repository_id = 1 AND storage = 'gitaly-1'",
    );
    const expected = `Repository ID: 1
Virtual Storage: "virtual-storage-1"
Relative Path: "repository-1"
Replica Path: "repository-1"
Primary: "gitaly-1"
Generation: 1
Replicas:
- Storage: "gitaly-1"
  Assigned: true
  Generation: 1, fully up to date
  Healthy: true
  Valid Primary: true
  Verified At: 2021-04-01 10:04:20 +0000 UTC
- Storage: "gitaly-2"
  Assigned: true
  Generation: 0, behind by 1 changes
  Healthy: false
  Valid Primary: false
  Verified At: unverified
- Storage: "gitaly-3"
  Assigned: false
  Generation: 0, behind by 1 changes
  Healthy: true
  Valid Primary: false
  Verified At: unverified
`;
    expect(await run("metadata", ["-repository-id=1"], config)).toEqual({ code: 0, err: "", out: expected });
    expect(
      await run("metadata", ["-virtual-storage=virtual-storage-1", "-relative-path=repository-1"], config),
    ).toEqual({ code: 0, err: "", out: expected });
  });

  test("metadata validates its flags and reports a missing repository like upstream", async () => {
    const cases: [string[], string][] = [
      [[], "repository ID or virtual storage and relative path required"],
      [
        ["-repository-id=1", "-virtual-storage=virtual-storage-1"],
        "virtual storage and relative path can't be provided with a repository ID",
      ],
      [["-virtual-storage=virtual-storage-1"], "relative path is required with virtual storage"],
      [["-relative-path=repository-1"], "virtual storage is required with relative path"],
      [["-repository-id=99"], "get metadata: rpc error: code = NotFound desc = repository not found"],
      [["positional-arg"], "metadata doesn't accept positional arguments"],
    ];
    for (const [args, message] of cases) {
      expect(await run("metadata", args, config)).toEqual({ code: 1, out: "", err: `${message}\n` });
    }
  });

  test("verify marks replicas unverified by repository, storage or virtual storage", async () => {
    await db.pool.query("UPDATE storage_repositories SET verified_at = now()");
    expect(await run("verify", ["-repository-id=1"], config)).toEqual({
      code: 0,
      err: "",
      out: "3 replicas marked unverified\n",
    });
    expect((await run("verify", ["-virtual-storage=virtual-storage-1", "-storage=gitaly-2"], config)).out).toBe(
      "1 replicas marked unverified\n",
    );
    expect((await run("verify", ["-virtual-storage=virtual-storage-1"], config)).out).toBe(
      "1 replicas marked unverified\n",
    );
    expect(await run("verify", ["-storage=gitaly-2"], config)).toEqual({
      code: 1,
      out: "",
      err: "virtual storage must be passed with storage\n",
    });
    expect((await run("verify", [], config)).err).toBe(
      "(repository id), (virtual storage) or (virtual storage, storage) required\n",
    );
  });

  test("set-replication-factor prints the assignments and keeps the primary", async () => {
    const result = await run(
      "set-replication-factor",
      ["-virtual-storage", "virtual-storage-1", "-relative-path", "repository-1", "-replication-factor", "1"],
      config,
    );
    expect(result).toEqual({ code: 0, err: "", out: "current assignments: gitaly-1\n" });
    expect(
      (
        await run(
          "set-replication-factor",
          ["-virtual-storage", "virtual-storage-1", "-relative-path", "repository-1", "-replication-factor", "3"],
          config,
        )
      ).out,
    ).toBe("current assignments: gitaly-1, gitaly-2, gitaly-3\n");
    expect(
      await run(
        "set-replication-factor",
        ["-virtual-storage", "virtual-storage-1", "-relative-path", "repository-1", "-replication-factor", "4"],
        config,
      ),
    ).toEqual({
      code: 1,
      out: "",
      err: "rpc error: code = InvalidArgument desc = set replication factor: attempted to set replication factor 4 but virtual storage only contains 3 storages\n",
    });
    expect(await run("set-replication-factor", ["-virtual-storage", "virtual-storage-1"], config)).toEqual({
      code: 1,
      out: "",
      err: 'Required flags "relative-path, replication-factor" not set\n',
    });
  });

  test("accept-dataloss makes the chosen replica the only up-to-date one", async () => {
    const args = [
      "-virtual-storage=virtual-storage-1",
      "-relative-path=repository-2",
      "-authoritative-storage=gitaly-3",
    ];
    expect(await run("accept-dataloss", args, config)).toEqual({ code: 0, out: "", err: "" });
    const after = await run("metadata", ["-repository-id=2"], config);
    expect(after.out).toContain('Primary: "gitaly-3"\nGeneration: 2\n');
    expect(after.out).toContain(
      '- Storage: "gitaly-3"\n  Assigned: true\n  Generation: 2, fully up to date\n  Healthy: true\n  Valid Primary: true\n',
    );
    expect(after.out).toContain('- Storage: "gitaly-2"\n  Assigned: false\n  Generation: 1, behind by 1 changes\n');
    expect((await run("dataloss", ["-virtual-storage=virtual-storage-1"], config)).out).toBe(
      "Virtual storage: virtual-storage-1\n  All repositories are available!\n",
    );
    expect(
      await run(
        "accept-dataloss",
        ["-virtual-storage=virtual-storage-1", "-relative-path=nope", "-authoritative-storage=gitaly-3"],
        config,
      ),
    ).toEqual({
      code: 1,
      out: "",
      err: "set authoritative storage: rpc error: code = InvalidArgument desc = repository does not exist on virtual storage\n",
    });
    expect(
      (
        await run(
          "accept-dataloss",
          ["-virtual-storage=virtual-storage-1", "-relative-path=repository-2", "-authoritative-storage=gitaly-9"],
          config,
        )
      ).err,
    ).toBe(
      'set authoritative storage: rpc error: code = InvalidArgument desc = unknown authoritative storage: "gitaly-9"\n',
    );
  });
});

describe("commands that talk to Gitaly nodes", () => {
  let db: TestDatabase;
  let gitaly1: GitalyProcess;
  let gitaly2: GitalyProcess;
  let config: PraefectConfig;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "praefect-cli-"));
    db = await freshDatabase("praefect_cli_nodes");
    await migrate(db.pool);
    [gitaly1, gitaly2] = await Promise.all([
      startGitaly({ storages: ["gitaly-1"], token: "token-1" }),
      startGitaly({ storages: ["gitaly-2"], token: "token-2" }),
    ]);
    config = configWith(`
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://${gitaly1.address}"
token = "token-1"
[[virtual_storage.node]]
storage = "gitaly-2"
address = "tcp://${gitaly2.address}"
token = "token-2"
${databaseToml(db.name)}`);
  });
  afterAll(async () => {
    await Promise.all([gitaly1?.stop(), gitaly2?.stop()]);
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  async function exists(g: GitalyProcess, storage: string, relativePath: string): Promise<boolean> {
    const client = createClient(RepositoryService, g.channel());
    return (await client.repositoryExists({ repository: { storageName: storage, relativePath } })).exists;
  }

  async function checksum(g: GitalyProcess, storage: string, relativePath: string): Promise<string> {
    const client = createClient(RepositoryService, g.channel());
    return (await client.calculateChecksum({ repository: { storageName: storage, relativePath } })).checksum;
  }

  test("dial-nodes checks health and the storages each node serves", async () => {
    const result = await run("dial-nodes", [], config);
    expect(result).toEqual({
      code: 0,
      err: "",
      out: [gitaly1, gitaly2]
        .map((g, i) => {
          const a = `[tcp://${g.address}]`;
          return (
            `${a}: dialing...\n${a}: dialed successfully!\n${a}: checking health...\n${a}: SUCCESS: node is healthy!\n` +
            `${a}: checking consistency...\n${a}: SUCCESS: confirmed Gitaly storage "gitaly-${i + 1}" in virtual storages [default] is served\n` +
            `${a}: SUCCESS: node configuration is consistent!\n`
          );
        })
        .join(""),
    });
  });

  test("dial-nodes names the nodes that failed", async () => {
    const deadAddress = `tcp://127.0.0.1:${await freePort()}`;
    const broken = configWith(`
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://${gitaly1.address}"
token = "wrong-token"
[[virtual_storage.node]]
storage = "gitaly-9"
address = "${deadAddress}"
`);
    const result = await run("dial-nodes", ["-timeout", "2s"], broken);
    expect(result.code).toBe(1);
    expect(result.err).toBe(`the following nodes are not healthy: tcp://${gitaly1.address}, ${deadAddress}\n`);
    // Health checks need no token; ServerInfo does.
    expect(result.out).toContain(`[tcp://${gitaly1.address}]: SUCCESS: node is healthy!\n`);
    expect(result.out).toContain(
      `[tcp://${gitaly1.address}]: ERROR: failed to receive state from the remote: rpc error: code = PermissionDenied desc =`,
    );
    expect(result.out).toContain(
      `[${deadAddress}]: ERROR: unable to request health check: rpc error: code = Unavailable desc =`,
    );
  });

  test("track-repository records a repository found on the authoritative node and queues replication", async () => {
    const replicaPath = "@hashed/aa/bb/tracked.git";
    const diskPath = join(gitaly1.storages[0]?.path as string, replicaPath);
    mkdirSync(dirname(diskPath), { recursive: true });
    createStandardRepository(diskPath);
    const args = [
      "-virtual-storage=default",
      "-relative-path=group/tracked.git",
      `-replica-path=${replicaPath}`,
      "-authoritative-storage=gitaly-1",
    ];
    expect(await run("track-repository", args, config)).toEqual({
      code: 0,
      err: "",
      out: 'Finished adding new repository to be tracked in praefect database.\nAdded replication job to replicate repository to "gitaly-2".\n',
    });
    const meta = await run("metadata", ["-virtual-storage=default", "-relative-path=group/tracked.git"], config);
    expect(meta.out).toContain(`Replica Path: "${replicaPath}"\nPrimary: "gitaly-1"\nGeneration: 0\n`);
    const { rows } = await db.pool.query(
      "SELECT job ->> 'change' AS change, job ->> 'source_node_storage' AS source, job ->> 'target_node_storage' AS target FROM replication_queue",
    );
    expect(rows).toEqual([{ change: "update", source: "gitaly-1", target: "gitaly-2" }]);

    // Again: already tracked, and the identical job is still waiting.
    const again = await run("track-repository", args, config);
    expect(again.code).toBe(0);
    expect(again.out).toMatch(
      /^repository is already tracked in praefect database\nFinished adding new repository to be tracked in praefect database\.\nreplication event queue already has similar entry: .*\.\n$/,
    );
  });

  test("track-repository -replicate-immediately copies the replica before returning", async () => {
    const replicaPath = "@hashed/cc/dd/immediate.git";
    const diskPath = join(gitaly1.storages[0]?.path as string, replicaPath);
    mkdirSync(dirname(diskPath), { recursive: true });
    createStandardRepository(diskPath);
    const result = await run(
      "track-repository",
      [
        "-virtual-storage=default",
        "-relative-path=group/immediate.git",
        `-replica-path=${replicaPath}`,
        "-authoritative-storage=gitaly-1",
        "-replicate-immediately",
      ],
      config,
    );
    expect(result).toEqual({
      code: 0,
      err: "",
      out: 'Finished adding new repository to be tracked in praefect database.\nFinished replicating repository to "gitaly-2".\n',
    });
    expect(await checksum(gitaly2, "gitaly-2", replicaPath)).toBe(await checksum(gitaly1, "gitaly-1", replicaPath));
    expect(
      (await run("metadata", ["-virtual-storage=default", "-relative-path=group/immediate.git"], config)).out,
    ).toContain('- Storage: "gitaly-2"\n  Assigned: true\n  Generation: 0, fully up to date\n');
  });

  test("track-repository refuses a repository the authoritative node does not have", async () => {
    expect(
      await run(
        "track-repository",
        ["-virtual-storage=default", "-relative-path=x.git", "-replica-path=x.git", "-authoritative-storage=gitaly-1"],
        config,
      ),
    ).toEqual({
      code: 1,
      out: "",
      err: "attempting to track repository in praefect database: authoritative repository does not exist\n",
    });
    expect(
      (
        await run(
          "track-repository",
          ["-virtual-storage=default", "-relative-path=x.git", "-replica-path=x.git"],
          config,
        )
      ).err,
    ).toBe('Required flag "authoritative-storage" not set\n');
  });

  test("remove-repository dry-runs, then removes records, jobs and replicas", async () => {
    const args = ["-virtual-storage=default", "-relative-path=group/immediate.git"];
    expect(await run("remove-repository", args, config)).toEqual({
      code: 0,
      err: "",
      out:
        "Repository found in the database.\n" +
        "Re-run the command with -apply to remove repositories from the database and disk or -apply and -db-only to remove from database only.\n",
    });
    expect(await run("remove-repository", [...args, "-apply"], config)).toEqual({
      code: 0,
      err: "",
      out:
        "Repository found in the database.\n" +
        "Attempting to remove group/immediate.git from the database, and delete it from all gitaly nodes...\n" +
        "Repository removal completed.\nRemoving replication events...\nReplication event removal completed.\n",
    });
    expect(await exists(gitaly1, "gitaly-1", "@hashed/cc/dd/immediate.git")).toBe(false);
    expect(await exists(gitaly2, "gitaly-2", "@hashed/cc/dd/immediate.git")).toBe(false);
    expect(await run("remove-repository", args, config)).toEqual({
      code: 1,
      out: "",
      err: "repository is not being tracked in Praefect\n",
    });
  });

  test("remove-repository -db-only keeps the replicas on disk and drops queued jobs", async () => {
    const args = ["-virtual-storage=default", "-relative-path=group/tracked.git", "-apply", "-db-only"];
    expect(await run("remove-repository", args, config)).toEqual({
      code: 0,
      err: "",
      out:
        "Repository found in the database.\nAttempting to remove group/tracked.git from the database...\n" +
        "Repository removal from database completed.\n",
    });
    expect(await exists(gitaly1, "gitaly-1", "@hashed/aa/bb/tracked.git")).toBe(true);
    expect((await db.pool.query("SELECT count(*)::int AS n FROM replication_queue")).rows[0]).toEqual({ n: 0 });
  });

  test("check runs upstream's four checks against the database and the nodes", async () => {
    const result = await run("check", [], config);
    expect(result.err).toBe("");
    expect(result.code).toBe(0);
    expect(result.out).toContain(
      "Checking praefect migrations - confirms whether or not all praefect migrations have run [fatal]\nPassed\n",
    );
    expect(result.out).toContain("Checking gitaly node connectivity & disk access - ");
    expect(result.out).toContain("successfully read from database\nsuccessfully wrote to database\nPassed\n");
    expect(result.out).toContain(
      "Checking unavailable repositories - lists repositories that are missing a valid primary, hence rendering them unavailable [warning]\n",
    );
    expect(result.out.endsWith("\nAll checks passed.\n") || result.out.endsWith("but none are fatal.\n")).toBe(true);
    // The write check rolls back.
    expect((await db.pool.query("SELECT count(*)::int AS n FROM hello_world WHERE id = 1")).rows[0]).toEqual({ n: 1 });
  });

  test("commands need a configuration", async () => {
    expect(await run("dataloss", [])).toEqual({ code: 2, out: "", err: 'Required flag "config" not set\n' });
    await writeFile(join(dir, "unused"), "");
  });
});
