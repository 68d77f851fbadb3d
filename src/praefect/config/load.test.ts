import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../../shared/config/issues.js";
import { connectionKeys, hasDirectConnection, pgConnectionConfig } from "./database.js";
import { checkPraefectEnvironment } from "./environment.js";
import { loadPraefectConfig, loadPraefectConfigFile } from "./load.js";
import { parseNodeAddress } from "./node-address.js";
import { defaultReplicationFactors, errorThresholdsConfigured, storageNames, stripListenScheme } from "./schema.js";

const MINIMAL = `listen_addr = "127.0.0.1:2305"
[[virtual_storage]]
name = "default"
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://127.0.0.1:8075"
token = "secret-1"
`;

function errorsOf(text: string): { key: string; message: string }[] {
  try {
    loadPraefectConfig(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.errors.map((e) => ({ key: e.key, message: e.message }));
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("loadPraefectConfig", () => {
  test("applies upstream's defaults", () => {
    const { config, warnings } = loadPraefectConfig(MINIMAL);
    expect(warnings).toEqual([]);
    expect(config.graceful_stop_timeout).toBe(60_000);
    expect(config.failover).toMatchObject({
      enabled: true,
      election_strategy: "per_repository",
      error_threshold_window: 0,
      read_error_threshold_count: 0,
      write_error_threshold_count: 0,
    });
    expect(config.reconciliation.scheduling_interval).toBe(5 * 60_000);
    expect(config.replication).toEqual({ batch_size: 10, parallel_storage_processing_workers: 1 });
    expect(config.background_verification).toEqual({
      verification_interval: 7 * 24 * 3_600_000,
      delete_invalid_records: true,
    });
    expect(config.yamux).toEqual({ maximum_stream_window_size_bytes: 262_144, accept_backlog: 256 });
    expect(config.logging).toMatchObject({ format: "text", level: "info" });
    expect(config.virtual_storage).toEqual([
      {
        name: "default",
        default_replication_factor: 0,
        node: [{ storage: "gitaly-1", address: "tcp://127.0.0.1:8075", token: "secret-1", token_file: "" }],
      },
    ]);
    expect(storageNames(config)).toEqual({ default: ["gitaly-1"] });
  });

  test("reads every upstream key", () => {
    const { config, warnings } = loadPraefectConfig(`
listen_addr = "tcp://0.0.0.0:2305"
tls_listen_addr = "0.0.0.0:2306"
socket_path = "/var/opt/praefect.socket"
prometheus_listen_addr = "127.0.0.1:9652"
graceful_stop_timeout = "30s"
[auth]
token = "praefect-token"
transitioning = true
[tls]
certificate_path = "/etc/cert.pem"
key_path = "/etc/key.pem"
[logging]
format = "json"
level = "debug"
[prometheus]
grpc_latency_buckets = [0.1, 1.0]
[[virtual_storage]]
name = "default"
default_replication_factor = 2
[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://gitaly-1:8075"
token = "t1"
[[virtual_storage.node]]
storage = "gitaly-2"
address = "tls://gitaly-2:9999"
token = "t2"
[[virtual_storage.node]]
storage = "gitaly-3"
address = "unix:/var/run/gitaly-3.socket"
[database]
host = "db.internal"
port = 5432
user = "praefect"
password = "db-secret"
dbname = "praefect_production"
sslmode = "disable"
[database.session_pooled]
host = "db-direct.internal"
port = 6432
[failover]
enabled = true
election_strategy = "per_repository"
error_threshold_window = "20s"
write_error_threshold_count = 1500
read_error_threshold_count = 100
[reconciliation]
scheduling_interval = "0"
[replication]
batch_size = 5
parallel_storage_processing_workers = 2
[background_verification]
verification_interval = "24h"
delete_invalid_records = false
[yamux]
maximum_stream_window_size_bytes = 1048576
accept_backlog = 512
`);
    expect(warnings).toEqual([]);
    expect(config.listen_addr).toBe("tcp://0.0.0.0:2305");
    expect(stripListenScheme(config.listen_addr, "tcp")).toBe("0.0.0.0:2305");
    expect(config.graceful_stop_timeout).toBe(30_000);
    expect(config.auth).toEqual({ token: "praefect-token", token_file: "", transitioning: true });
    expect(config.logging).toMatchObject({ format: "json", level: "debug" });
    expect(config.prometheus.grpc_latency_buckets).toEqual([0.1, 1.0]);
    expect(defaultReplicationFactors(config)).toEqual({ default: 2 });
    expect(config.database.session_pooled.port).toBe(6432);
    expect(config.failover.error_threshold_window).toBe(20_000);
    expect(errorThresholdsConfigured(config.failover)).toBe(true);
    expect(config.reconciliation.scheduling_interval).toBe(0);
    expect(config.replication).toEqual({ batch_size: 5, parallel_storage_processing_workers: 2 });
    expect(config.background_verification).toEqual({
      verification_interval: 24 * 3_600_000,
      delete_invalid_records: false,
    });
    expect(config.yamux.accept_backlog).toBe(512);
  });

  test("warns about unknown, deprecated and ignored keys without failing", () => {
    const { warnings } = loadPraefectConfig(
      `memory_queue_enabled = false\n${MINIMAL}[database]\nhost_no_proxy = "x"\nhostt = "y"\n[failover]\nelection_strategy = "sql"\n[virtual_storage_x]\na = 1\n`,
    );
    expect(warnings.map((w) => `${w.key}: ${w.message}`)).toEqual([
      "database.hostt: unknown key, ignored",
      "virtual_storage_x: unknown key, ignored",
      "database.host_no_proxy: deprecated, use database.session_pooled.host instead",
      'failover.election_strategy: "sql" is ignored: the per_repository election strategy is used',
    ]);
  });

  test("refuses a legacy election strategy that is explicitly insisted on", () => {
    expect(
      errorsOf(
        `i_understand_my_election_strategy_is_unsupported_and_will_be_removed_without_warning = true\n${MINIMAL}[failover]\nelection_strategy = "sql"\n`,
      ),
    ).toEqual([
      {
        key: "failover.election_strategy",
        message: 'not supported by this implementation: "sql" (only "per_repository")',
      },
    ]);
    expect(errorsOf(`${MINIMAL}[failover]\nelection_strategy = "magic"\n`)).toEqual([
      { key: "failover.election_strategy", message: 'invalid election strategy: "magic"' },
    ]);
  });

  test("reports an empty file like upstream: no listener, no virtual storage", () => {
    expect(errorsOf("")).toEqual([
      { key: "", message: 'none of "socket_path", "listen_addr" or "tls_listen_addr" is set' },
      { key: "virtual_storage", message: "not set" },
    ]);
  });

  test("names every bad key", () => {
    const errors = errorsOf(`
listen_addr = "127.0.0.1:99999"
graceful_stop_timeout = "soon"
[[virtual_storage]]
name = ""
default_replication_factor = 3
[[virtual_storage.node]]
storage = "a"
address = "http://a:1"
[[virtual_storage.node]]
storage = "a"
address = ""
[[virtual_storage]]
name = "other"
[replication]
batch_size = 0
[failover]
error_threshold_window = "10s"
[yamux]
accept_backlog = 0
`);
    expect(errors).toEqual(
      expect.arrayContaining([
        { key: "listen_addr", message: "address 127.0.0.1:99999: port 99999 out of range 0-65535" },
        { key: "graceful_stop_timeout", message: 'time: invalid duration "soon"' },
        { key: "virtual_storage[0].name", message: "blank or empty" },
        { key: "virtual_storage[0].node[0].address", message: 'invalid connection string: "http://a:1"' },
        { key: "virtual_storage[0].node[1].address", message: "blank or empty" },
        { key: "virtual_storage[0].node[1].storage", message: 'not unique: "a"' },
        {
          key: "virtual_storage[0].default_replication_factor",
          message:
            'virtual storage "" has a default replication factor (3) which is higher than the number of storages (2)',
        },
        { key: "virtual_storage[1].node", message: "not set" },
        { key: "replication.batch_size", message: "not in range: 0 is not greater than or equal to 1" },
        { key: "failover.write_error_threshold_count", message: "not set" },
        { key: "failover.read_error_threshold_count", message: "not set" },
        { key: "yamux.accept_backlog", message: "not in range: 0 is not greater than or equal to 1" },
      ]),
    );
  });

  test("refuses duplicate virtual storage names", () => {
    const twice = `${MINIMAL}${MINIMAL.slice(MINIMAL.indexOf("[[virtual_storage]]"))}`;
    expect(errorsOf(twice)).toEqual([{ key: "virtual_storage[1].name", message: 'not unique: "default"' }]);
  });

  test("reports TOML syntax errors with their position", () => {
    const errors = errorsOf('listen_addr="localhost:1000"\n[failover]\nenabled = true\nelection_strategy = invalid');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.message).toMatch(/^line 4 column \d+: toml: /);
  });

  test("loadPraefectConfigFile names the file it could not read", async () => {
    await expect(loadPraefectConfigFile("/nonexistent/praefect.toml")).rejects.toThrow(
      /reading configuration "\/nonexistent\/praefect.toml"/,
    );
  });
});

describe("checkPraefectEnvironment", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "praefect-config-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("checks the token file's existence and mode", async () => {
    const loose = join(dir, "loose-token");
    await writeFile(loose, "t", { mode: 0o644 });
    const { config } = loadPraefectConfig(`${MINIMAL}[auth]\ntoken_file = "${loose}"\n`);
    expect(await checkPraefectEnvironment(config)).toEqual([
      {
        key: "auth.token_file",
        path: ["auth", "token_file"],
        message: "file permission 0644 is too permissive, should be 0600 or 0400 (0440 or 0640 under a pod's fsGroup)",
      },
    ]);
    const missing = join(dir, "missing");
    const { config: other } = loadPraefectConfig(`${MINIMAL}[auth]\ntoken_file = "${missing}"\n`);
    expect((await checkPraefectEnvironment(other)).map((i) => i.message)).toEqual([`doesn't exist: "${missing}"`]);
  });
});

describe("database connection settings", () => {
  const { config } = loadPraefectConfig(`${MINIMAL}
[database]
host = "main"
port = 5432
user = "praefect"
password = "pw"
dbname = "praefect_db"
sslmode = "disable"
[database.session_pooled]
host = "direct"
port = 6432
`);

  test("the main connection uses [database]", () => {
    expect(pgConnectionConfig(config.database)).toEqual({
      host: "main",
      port: 5432,
      user: "praefect",
      password: "pw",
      database: "praefect_db",
      ssl: false,
    });
  });

  test("the direct connection takes session_pooled keys first, then [database]", () => {
    expect(pgConnectionConfig(config.database, { direct: true })).toEqual({
      host: "direct",
      port: 6432,
      user: "praefect",
      password: "pw",
      database: "praefect_db",
      ssl: false,
    });
    expect(hasDirectConnection(config.database)).toBe(true);
  });

  test("empty keys are left to libpq's environment (PGPASSWORD and friends)", () => {
    const { config: bare } = loadPraefectConfig(MINIMAL);
    expect(pgConnectionConfig(bare.database)).toEqual({});
    expect(hasDirectConnection(bare.database)).toBe(false);
    expect(connectionKeys(bare.database, true).host).toBe("");
  });
});

describe("parseNodeAddress", () => {
  test.each([
    ["tcp://gitaly:8075", { grpcTarget: "gitaly:8075", tls: false, backchannelAddress: "tcp://gitaly:8075" }],
    ["tls://gitaly:9999", { grpcTarget: "gitaly:9999", tls: true, backchannelAddress: "tls://gitaly:9999" }],
    ["unix:/run/g.sock", { grpcTarget: "unix:/run/g.sock", tls: false, backchannelAddress: "unix:/run/g.sock" }],
    ["unix:///run/g.sock", { grpcTarget: "unix:/run/g.sock", tls: false, backchannelAddress: "unix:/run/g.sock" }],
    ["dns:///gitaly:8075", { grpcTarget: "dns:///gitaly:8075", tls: false, backchannelAddress: "tcp://gitaly:8075" }],
    [
      "dns://10.0.0.1:53/gitaly:8075",
      { grpcTarget: "dns:///gitaly:8075", tls: false, backchannelAddress: "tcp://gitaly:8075" },
    ],
    ["dns+tls:gitaly:9999", { grpcTarget: "dns:///gitaly:9999", tls: true, backchannelAddress: "tls://gitaly:9999" }],
  ])("%s", (address, expected) => {
    expect(parseNodeAddress(address)).toEqual(expected);
  });

  test("rejects other forms in upstream's words", () => {
    expect(() => parseNodeAddress("gitaly:8075")).toThrow('invalid connection string: "gitaly:8075"');
    expect(() => parseNodeAddress("tcp://")).toThrow(/invalid connection string/);
  });
});

describe("node token files", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "praefect-node-token-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const config = (node: string) => `listen_addr = "127.0.0.1:2305"

[[virtual_storage]]
name = "default"

[[virtual_storage.node]]
storage = "gitaly-1"
address = "tcp://127.0.0.1:8075"
${node}

[database]
host = "127.0.0.1"
dbname = "praefect"
`;

  test("reads the node token from token_file, so configs never hold it", async () => {
    await writeFile(join(dir, "node-token"), "secret-node-token\n", { mode: 0o600 });
    const path = join(dir, "a.toml");
    await writeFile(path, config(`token_file = ${JSON.stringify(join(dir, "node-token"))}`));
    const { config: loaded, warnings } = await loadPraefectConfigFile(path);
    expect(warnings).toEqual([]);
    expect(loaded.virtual_storage[0]?.node[0]?.token).toBe("secret-node-token");
  });

  test("refuses token together with token_file, and a missing file", async () => {
    expect(errorsOf(config(`token = "x"\ntoken_file = "/tmp/x"`))).toContainEqual({
      key: "virtual_storage[0].node[0].token_file",
      message: "token and token_file are mutually exclusive",
    });
    const path = join(dir, "b.toml");
    await writeFile(path, config(`token_file = ${JSON.stringify(join(dir, "missing"))}`));
    await expect(loadPraefectConfigFile(path)).rejects.toThrow(
      /virtual_storage\[0\]\.node\[0\]\.token_file: reading token file/,
    );
  });
});
