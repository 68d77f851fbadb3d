// Golden files plus a round trip through the real loaders: whatever the operator puts in a
// ConfigMap (and the local runner on disk) must load cleanly in Gitaly and Praefect.
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { loadGitalyConfig } from "../../gitaly/config/load.js";
import { loadPraefectConfig } from "../../praefect/config/load.js";
import { type GitalyRenderParams, renderGitalyConfig } from "./gitaly-config.js";
import { GITALY_PORTS, GITALY_STORAGE_PATH, gitalyNodeAddress, PRAEFECT_PORTS, storageName } from "./names.js";
import { type DatabaseParams, type PraefectRenderParams, renderPraefectConfig } from "./praefect-config.js";

const golden = (name: string) => join(import.meta.dirname, "testdata", name);

const CLUSTER = "demo";
const NAMESPACE = "git";
const HEADLESS = "demo-gitaly";
const SECRETS = "/etc/gitaly-secrets";

// What a leaked secret would look like; the paths used below never contain these strings.
const SENTINELS = ["SENTINEL-client-token-9f2c", "SENTINEL-internal-token-41ab", "SENTINEL-db-password-77de"];

const TLS_FILES = { certificatePath: "/etc/gitaly-tls/tls.crt", keyPath: "/etc/gitaly-tls/tls.key" };

function gitalyParams(index: number, opts: { tls: boolean; concurrency: boolean }): GitalyRenderParams {
  return {
    listenAddr: `0.0.0.0:${GITALY_PORTS.grpc}`,
    ...(opts.tls ? { tls: { listenAddr: `0.0.0.0:${GITALY_PORTS.tls}`, ...TLS_FILES } } : {}),
    prometheusListenAddr: `0.0.0.0:${GITALY_PORTS.metrics}`,
    runtimeDir: "/run/gitaly",
    gracefulRestartTimeoutMs: 30_000,
    auth: { tokenFile: `${SECRETS}/internal-token`, transitioning: false },
    storage: { name: storageName(CLUSTER, index), path: GITALY_STORAGE_PATH },
    logging: { format: "json", level: "info" },
    ...(opts.concurrency
      ? {
          concurrency: [
            {
              rpc: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel",
              maxConcurrency: 20,
              maxQueueSize: 100,
              maxQueueWaitMs: 60_000,
            },
            {
              rpc: "/gitaly.SSHService/SSHUploadPackWithSidechannel",
              adaptive: true,
              initialLimit: 10,
              minLimit: 2,
              maxLimit: 40,
              unauthenticated: { maxConcurrency: 1, maxQueueSize: 5 },
            },
          ],
          git: {
            catfileCacheSize: 50,
            config: [
              { key: "pack.threads", value: "4" },
              { key: "core.bigFileThreshold", value: '50m "quoted"' },
            ],
          },
          gitlab: { url: "http://gitlab-webservice.gitlab.svc:8181", secretFile: `${SECRETS}/gitlab-shell-secret` },
          hooks: { customHooksDir: "/var/lib/gitaly/custom_hooks" },
        }
      : {}),
  };
}

const MANAGED_DB: DatabaseParams = {
  host: `${CLUSTER}-postgresql.${NAMESPACE}.svc`,
  port: 5432,
  user: "praefect",
  dbname: "praefect",
  sslmode: "disable",
};

const EXTERNAL_DB: DatabaseParams = {
  host: "pgbouncer.db.example.com",
  port: 6432,
  user: "praefect",
  dbname: "praefect_production",
  sslmode: "verify-full",
  sslrootcert: "/etc/praefect-db-ca/ca.crt",
  // LISTEN/NOTIFY needs a session: straight to the server, bypassing the transaction pooler.
  sessionPooled: { host: "postgres.db.example.com", port: 5432, user: "praefect", sslmode: "verify-full" },
};

function praefectParams(nodes: number, opts: { tls: boolean; database: DatabaseParams }): PraefectRenderParams {
  return {
    listenAddr: `0.0.0.0:${PRAEFECT_PORTS.grpc}`,
    ...(opts.tls
      ? {
          tls: {
            listenAddr: `0.0.0.0:${PRAEFECT_PORTS.tls}`,
            certificatePath: "/etc/praefect-tls/tls.crt",
            keyPath: "/etc/praefect-tls/tls.key",
            minVersion: "TLS 1.2",
          },
        }
      : {}),
    prometheusListenAddr: `0.0.0.0:${PRAEFECT_PORTS.metrics}`,
    gracefulStopTimeoutMs: 45_000,
    auth: { tokenFile: "/etc/praefect-secrets/client-token", transitioning: false },
    logging: { format: "json", level: "info" },
    virtualStorages: [
      {
        name: "default",
        defaultReplicationFactor: Math.min(3, nodes),
        nodes: Array.from({ length: nodes }, (_, i) => ({
          storage: storageName(CLUSTER, i),
          address: gitalyNodeAddress({
            cluster: CLUSTER,
            index: i,
            namespace: NAMESPACE,
            headlessService: HEADLESS,
            tls: opts.tls,
          }),
          tokenFile: "/etc/praefect-secrets/internal-token",
        })),
      },
    ],
    database: opts.database,
    failover: {
      enabled: true,
      errorThresholdWindowMs: 20_000,
      writeErrorThresholdCount: 1500,
      readErrorThresholdCount: 100,
    },
    replication: { batchSize: 10, parallelStorageProcessingWorkers: 2 },
    reconciliation: { schedulingIntervalMs: 5 * 60_000, histogramBuckets: [0.01, 0.1, 1, 10] },
    yamux: { maximumStreamWindowSizeBytes: 4 * 1024 * 1024 },
  };
}

const GITALY_CASES = [
  { file: "gitaly-plain.toml", index: 0, tls: false, concurrency: false },
  { file: "gitaly-tls-concurrency.toml", index: 4, tls: true, concurrency: true },
] as const;

const PRAEFECT_CASES = [
  { file: "praefect-1-node-plain-managed-db.toml", nodes: 1, tls: false, database: MANAGED_DB },
  { file: "praefect-5-nodes-tls-external-db.toml", nodes: 5, tls: true, database: EXTERNAL_DB },
] as const;

/**
 * Our Praefect loader has no per-node token_file yet (upstream only has `token`, a value). Until
 * it does, the only warnings tolerated are exactly those keys; once the loader learns the key, the
 * node carries `token_file` and this list becomes empty on its own.
 */
function knownNodeTokenFileGaps(text: string): string[] {
  const { config } = loadPraefectConfig(text);
  return config.virtual_storage.flatMap((vs, v) =>
    vs.node.flatMap((node, n) =>
      "token_file" in node ? [] : [`virtual_storage[${v}].node[${n}].token_file: unknown key, ignored`],
    ),
  );
}

describe("renderGitalyConfig", () => {
  test.each(GITALY_CASES)("matches testdata/$file", async ({ file, index, tls, concurrency }) => {
    await expect(renderGitalyConfig(gitalyParams(index, { tls, concurrency }))).toMatchFileSnapshot(golden(file));
  });

  test.each(GITALY_CASES)("$file loads in Gitaly with no warning and means what was asked", (c) => {
    const params = gitalyParams(c.index, c);
    const { config, warnings } = loadGitalyConfig(renderGitalyConfig(params));
    expect(warnings).toEqual([]);
    expect(config.listen_addr).toBe("0.0.0.0:8075");
    expect(config.prometheus_listen_addr).toBe("0.0.0.0:9236");
    expect(config.tls_listen_addr).toBe(c.tls ? "0.0.0.0:8076" : "");
    expect(config.tls).toMatchObject(
      c.tls ? { certificate_path: TLS_FILES.certificatePath, key_path: TLS_FILES.keyPath } : { certificate_path: "" },
    );
    expect(config.storage).toEqual([{ name: `demo-gitaly-${c.index}`, path: "/var/lib/gitaly/storage" }]);
    expect(config.auth).toEqual({ token: "", token_file: "/etc/gitaly-secrets/internal-token", transitioning: false });
    expect(config.graceful_restart_timeout).toBe(30_000);
    expect(config.runtime_dir).toBe("/run/gitaly");
    expect(config.logging).toMatchObject({ format: "json", level: "info" });
    if (c.concurrency) {
      expect(config.concurrency).toEqual([
        expect.objectContaining({
          rpc: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel",
          max_concurrency: 20,
          max_queue_size: 100,
          max_queue_wait: 60_000,
          unauthenticated: null,
        }),
        expect.objectContaining({
          rpc: "/gitaly.SSHService/SSHUploadPackWithSidechannel",
          adaptive: true,
          initial_limit: 10,
          min_limit: 2,
          max_limit: 40,
          unauthenticated: expect.objectContaining({ max_concurrency: 1, max_queue_size: 5 }),
        }),
      ]);
      expect(config.git.catfile_cache_size).toBe(50);
      expect(config.git.config).toEqual([
        { key: "pack.threads", value: "4" },
        { key: "core.bigFileThreshold", value: '50m "quoted"' },
      ]);
      expect(config.gitlab).toMatchObject({
        url: "http://gitlab-webservice.gitlab.svc:8181",
        secret: "",
        secret_file: "/etc/gitaly-secrets/gitlab-shell-secret",
      });
      expect(config.hooks.custom_hooks_dir).toBe("/var/lib/gitaly/custom_hooks");
    } else {
      expect(config.concurrency).toEqual([]);
      expect(config.gitlab.url).toBe("");
    }
  });

  test("leaves out authentication, TLS and metrics when not asked for", () => {
    const text = renderGitalyConfig({
      listenAddr: "127.0.0.1:0",
      runtimeDir: "/tmp/run",
      storage: { name: "default", path: "/tmp/repos" },
    });
    expect(text).not.toMatch(/\[auth\]|\[tls\]|prometheus_listen_addr|\[git\]|\[gitlab\]|\[hooks\]/);
    const { config, warnings } = loadGitalyConfig(text);
    expect(warnings).toEqual([]);
    expect(config.auth.token_file).toBe("");
    expect(config.graceful_restart_timeout).toBe(60_000);
  });

  test("quotes whatever a path or value holds", () => {
    const path = '/tmp/we"ird \\ dir/\u00e9';
    const { config, warnings } = loadGitalyConfig(
      renderGitalyConfig({
        listenAddr: "127.0.0.1:0",
        runtimeDir: "/tmp/run",
        storage: { name: 'name with "quotes"', path },
        git: { config: [{ key: "user.name", value: "line\nbreak\ttab" }] },
      }),
    );
    expect(warnings).toEqual([]);
    expect(config.storage[0]).toEqual({ name: 'name with "quotes"', path });
    expect(config.git.config).toEqual([{ key: "user.name", value: "line\nbreak\ttab" }]);
  });

  test("refuses relative paths and empty names instead of rendering a config Gitaly rejects", () => {
    const base = gitalyParams(0, { tls: false, concurrency: false });
    expect(() => renderGitalyConfig({ ...base, storage: { name: "x", path: "repos" } })).toThrow(
      /storage path must be an absolute path/,
    );
    expect(() => renderGitalyConfig({ ...base, storage: { name: " ", path: "/r" } })).toThrow(/storage name is empty/);
    expect(() => renderGitalyConfig({ ...base, auth: { tokenFile: "token" } })).toThrow(/auth token file/);
    expect(() => renderGitalyConfig({ ...base, gracefulRestartTimeoutMs: -1 })).toThrow(/duration/);
  });
});

describe("renderPraefectConfig", () => {
  test.each(PRAEFECT_CASES)("matches testdata/$file", async ({ file, nodes, tls, database }) => {
    await expect(renderPraefectConfig(praefectParams(nodes, { tls, database }))).toMatchFileSnapshot(golden(file));
  });

  test.each(PRAEFECT_CASES)("$file loads in Praefect with no warning and means what was asked", (c) => {
    const text = renderPraefectConfig(praefectParams(c.nodes, c));
    const { config, warnings } = loadPraefectConfig(text);
    expect(warnings.map((w) => `${w.key}: ${w.message}`)).toEqual(knownNodeTokenFileGaps(text));
    expect(config.listen_addr).toBe("0.0.0.0:2305");
    expect(config.tls_listen_addr).toBe(c.tls ? "0.0.0.0:3305" : "");
    expect(config.prometheus_listen_addr).toBe("0.0.0.0:9652");
    expect(config.graceful_stop_timeout).toBe(45_000);
    expect(config.auth).toEqual({ token: "", token_file: "/etc/praefect-secrets/client-token", transitioning: false });
    const [vs] = config.virtual_storage;
    expect(vs?.name).toBe("default");
    expect(vs?.default_replication_factor).toBe(Math.min(3, c.nodes));
    expect(vs?.node.map((n) => [n.storage, n.address, n.token])).toEqual(
      Array.from({ length: c.nodes }, (_, i) => [
        `demo-gitaly-${i}`,
        c.tls ? `tls://demo-gitaly-${i}.demo-gitaly.git.svc:8076` : `tcp://demo-gitaly-${i}.demo-gitaly.git.svc:8075`,
        "",
      ]),
    );
    expect(config.failover).toMatchObject({
      enabled: true,
      error_threshold_window: 20_000,
      write_error_threshold_count: 1500,
      read_error_threshold_count: 100,
    });
    expect(config.replication).toEqual({ batch_size: 10, parallel_storage_processing_workers: 2 });
    expect(config.reconciliation).toEqual({ scheduling_interval: 300_000, histogram_buckets: [0.01, 0.1, 1, 10] });
    expect(config.yamux.maximum_stream_window_size_bytes).toBe(4 * 1024 * 1024);
    expect(config.database.password).toBe("");
    expect(config.database.session_pooled.password).toBe("");
  });

  test("a managed database is one connection; an external one adds only the differing session keys", () => {
    const managed = loadPraefectConfig(renderPraefectConfig(praefectParams(1, { tls: false, database: MANAGED_DB })));
    expect(managed.config.database).toMatchObject({
      host: "demo-postgresql.git.svc",
      port: 5432,
      user: "praefect",
      dbname: "praefect",
      sslmode: "disable",
      sslrootcert: "",
    });
    expect(Object.values(managed.config.database.session_pooled).every((v) => v === "" || v === 0)).toBe(true);

    const external = loadPraefectConfig(renderPraefectConfig(praefectParams(1, { tls: false, database: EXTERNAL_DB })));
    expect(external.config.database).toMatchObject({
      host: "pgbouncer.db.example.com",
      port: 6432,
      dbname: "praefect_production",
      sslmode: "verify-full",
      sslrootcert: "/etc/praefect-db-ca/ca.crt",
    });
    // user and sslmode equal the main connection's, so they are not repeated.
    expect(external.config.database.session_pooled).toEqual({
      host: "postgres.db.example.com",
      port: 5432,
      user: "",
      password: "",
      dbname: "",
      sslmode: "",
      sslcert: "",
      sslkey: "",
      sslrootcert: "",
    });
  });

  test("renders failover off without thresholds, and refuses half-set thresholds", () => {
    const base = praefectParams(3, { tls: false, database: MANAGED_DB });
    const { config } = loadPraefectConfig(renderPraefectConfig({ ...base, failover: { enabled: false } }));
    expect(config.failover.enabled).toBe(false);
    expect(() =>
      renderPraefectConfig({ ...base, failover: { enabled: true, errorThresholdWindowMs: 10_000 } }),
    ).toThrow(/go together/);
  });

  test("refuses a replication factor above the node count and an empty topology", () => {
    const base = praefectParams(2, { tls: false, database: MANAGED_DB });
    const [vs] = base.virtualStorages;
    if (vs === undefined) throw new Error("fixture has a virtual storage");
    expect(() => renderPraefectConfig({ ...base, virtualStorages: [{ ...vs, defaultReplicationFactor: 3 }] })).toThrow(
      /replication factor 3 is higher than its 2 nodes/,
    );
    expect(() => renderPraefectConfig({ ...base, virtualStorages: [{ ...vs, nodes: [] }] })).toThrow(/has no nodes/);
    expect(() => renderPraefectConfig({ ...base, virtualStorages: [] })).toThrow(/no virtual storage/);
  });
});

describe("no secret in a rendered config", () => {
  // Checked by the type checker (tsc --noEmit, part of ./scripts/test): an unused @ts-expect-error fails it.
  test("the params have no field for a secret value", () => {
    const gitaly = gitalyParams(0, { tls: true, concurrency: true });
    const praefect = praefectParams(3, { tls: true, database: EXTERNAL_DB });
    // @ts-expect-error tokens are files, never values
    gitaly.auth = { tokenFile: "/t", token: SENTINELS[1] };
    // @ts-expect-error the GitLab secret is a file, never a value
    gitaly.gitlab = { url: "http://gitlab", secret: SENTINELS[0] };
    // @ts-expect-error the database password comes from PGPASSWORD, never from the config
    praefect.database = { ...EXTERNAL_DB, password: SENTINELS[2] };
    // @ts-expect-error node tokens are files, never values
    praefect.virtualStorages = [{ name: "default", nodes: [{ storage: "s", address: "tcp://s:1", token: "x" }] }];
    expect(gitaly.auth).toBeDefined();
  });

  test("secret values smuggled into the params never reach the output", () => {
    const [client, internal, password] = SENTINELS as [string, string, string];
    // Built through `unknown`, as a careless caller spreading a Secret's data into the params would.
    const smuggle = <T>(value: unknown): T => value as T;
    const gitaly = gitalyParams(1, { tls: true, concurrency: true });
    const gitalyText = renderGitalyConfig({
      ...gitaly,
      auth: smuggle({ tokenFile: `${SECRETS}/internal-token`, token: internal }),
      gitlab: smuggle({ url: "http://gitlab", secretFile: `${SECRETS}/gitlab-secret`, secret: client }),
      ...smuggle<object>({ token: internal, password }),
    });
    const praefect = praefectParams(5, { tls: true, database: EXTERNAL_DB });
    const praefectText = renderPraefectConfig({
      ...praefect,
      auth: smuggle({ tokenFile: "/etc/praefect-secrets/client-token", token: client }),
      database: smuggle({ ...EXTERNAL_DB, password, sessionPooled: { ...EXTERNAL_DB.sessionPooled, password } }),
      virtualStorages: praefect.virtualStorages.map((vs) => ({
        ...vs,
        nodes: vs.nodes.map((n) => smuggle({ ...n, token: internal })),
      })),
    });
    for (const text of [gitalyText, praefectText]) {
      for (const sentinel of SENTINELS) expect(text).not.toContain(sentinel);
      expect(text).not.toMatch(/^\s*(token|password|secret)\s*=/m);
    }
    // The rendered files still name where the secrets live.
    expect(gitalyText).toContain(`token_file = "${SECRETS}/internal-token"`);
    expect(praefectText).toContain('token_file = "/etc/praefect-secrets/client-token"');
  });

  test("every golden file is free of secret keys", () => {
    for (const c of GITALY_CASES) {
      const { config } = loadGitalyConfig(renderGitalyConfig(gitalyParams(c.index, c)));
      expect([
        config.auth.token,
        config.gitlab.secret,
        config.tls.key,
        config.gitlab["http-settings"].password,
      ]).toEqual(["", "", "", ""]);
    }
    for (const c of PRAEFECT_CASES) {
      const { config } = loadPraefectConfig(renderPraefectConfig(praefectParams(c.nodes, c)));
      expect(config.auth.token).toBe("");
      expect(config.tls.key).toBe("");
      expect(config.database.password).toBe("");
      expect(config.virtual_storage.flatMap((vs) => vs.node.map((n) => n.token))).toEqual(Array(c.nodes).fill(""));
    }
  });
});
