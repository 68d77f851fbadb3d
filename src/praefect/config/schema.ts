// Praefect's configuration file (config.toml), as upstream names it.
//
// As for Gitaly, the parsed object keeps upstream's TOML key names verbatim (snake_case,
// `virtual_storage`, `node`, `session_pooled`), so the key in an error message, in upstream's
// documentation and in our code is the same string. Durations are numbers of milliseconds.
// Defaults are upstream's (FromReader + setDefaults), including "0 means the default" for
// graceful_stop_timeout.
import { z } from "zod";
import { durationField } from "../../shared/config/duration.js";
import { listenAddressField, parseListenAddress } from "../../shared/config/listen-address.js";
import { authSection, loggingFields, prometheusSection, tlsSection } from "../../shared/config/sections.js";
import { nodeAddressProblem } from "./node-address.js";

export const DEFAULT_GRACEFUL_STOP_TIMEOUT_MS = 60_000;
export const DEFAULT_RECONCILIATION_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_VERIFICATION_INTERVAL_MS = 7 * 24 * 3_600_000;
export const DEFAULT_REPLICATION_BATCH_SIZE = 10;
/** Prometheus' DefBuckets, upstream's default for the reconciliation histogram. */
export const DEFAULT_RECONCILIATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** hashicorp/yamux's defaults, which upstream takes as its own. */
export const DEFAULT_YAMUX_WINDOW_BYTES = 256 * 1024;
export const DEFAULT_YAMUX_ACCEPT_BACKLOG = 256;
const MINIMAL_CLEANUP_INTERVAL_MS = 60_000;

export const ELECTION_STRATEGIES = ["per_repository", "sql", "local"] as const;
export type ElectionStrategy = (typeof ELECTION_STRATEGIES)[number];

const str = () => z.string().default("");
const int = () => z.number().int();

function notBlank() {
  return z.string().superRefine((value, ctx) => {
    if (value.trim() === "") ctx.addIssue({ code: "custom", message: "blank or empty" });
  });
}

/** Praefect's listen_addr/tls_listen_addr may carry a scheme (`tcp://`, `tls://`), unlike Gitaly's. */
function praefectListenAddress(scheme: "tcp" | "tls") {
  return z
    .string()
    .default("")
    .superRefine((addr, ctx) => {
      if (addr === "") return;
      try {
        parseListenAddress(stripListenScheme(addr, scheme));
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
      }
    });
}

/**
 * The bare address a listener binds: `tcp://host:port` → `host:port`, `unix:///p` or `unix:/p`
 * → `/p`. Addresses without a scheme are returned as they are (upstream's getStarterConfigs).
 */
export function stripListenScheme(addr: string, scheme: "tcp" | "tls" | "unix"): string {
  if (scheme === "unix") {
    if (addr.startsWith("unix://")) return addr.slice("unix://".length);
    if (addr.startsWith("unix:")) return addr.slice("unix:".length);
    return addr;
  }
  const prefix = `${scheme}://`;
  return addr.startsWith(prefix) ? addr.slice(prefix.length) : addr;
}

const nodeSchema = z
  .object({
    storage: notBlank(),
    address: z.string().superRefine((address, ctx) => {
      if (address.trim() === "") {
        ctx.addIssue({ code: "custom", message: "blank or empty" });
        return;
      }
      const problem = nodeAddressProblem(address);
      if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
    }),
    token: str(),
    /**
     * Not in upstream: the node's token read from a file, so a rendered config (a
     * Kubernetes ConfigMap) never holds the secret. Read at load time into `token`.
     */
    token_file: str(),
  })
  .superRefine((node, ctx) => {
    if (node.token !== "" && node.token_file !== "") {
      ctx.addIssue({ code: "custom", path: ["token_file"], message: "token and token_file are mutually exclusive" });
    }
  });
export type NodeConfig = z.output<typeof nodeSchema>;

const virtualStorageSchema = z
  .object({
    name: notBlank(),
    node: z.array(nodeSchema).min(1),
    /** 0 or below: no assignments are stored and every node holds every repository. */
    default_replication_factor: int().default(0),
  })
  .superRefine((vs, ctx) => {
    vs.node.forEach((node, i) => {
      if (vs.node.slice(0, i).some((other) => other.storage === node.storage)) {
        ctx.addIssue({
          code: "custom",
          path: ["node", i, "storage"],
          message: `not unique: ${JSON.stringify(node.storage)}`,
        });
      }
    });
    if (vs.default_replication_factor > vs.node.length) {
      ctx.addIssue({
        code: "custom",
        path: ["default_replication_factor"],
        message: `virtual storage ${JSON.stringify(vs.name)} has a default replication factor (${vs.default_replication_factor}) which is higher than the number of storages (${vs.node.length})`,
      });
    }
  });
export type VirtualStorageConfig = z.output<typeof virtualStorageSchema>;

const connectionFields = {
  host: str(),
  port: int().gte(0).default(0),
  user: str(),
  password: str(),
  dbname: str(),
  sslmode: str(),
  sslcert: str(),
  sslkey: str(),
  sslrootcert: str(),
};

const databaseSchema = z
  .object({
    ...connectionFields,
    /** The direct (not transaction-pooled) connection, used for LISTEN/NOTIFY. */
    session_pooled: z.object(connectionFields).prefault({}),
    /** Deprecated upstream in favour of session_pooled.host/port (still honoured, as upstream does). */
    host_no_proxy: str(),
    port_no_proxy: int().gte(0).default(0),
  })
  .prefault({});
export type DatabaseConfig = z.output<typeof databaseSchema>;
export type DatabaseConnectionConfig = z.output<z.ZodObject<typeof connectionFields>>;

const failoverSchema = z
  .object({
    enabled: z.boolean().default(true),
    election_strategy: z
      .string()
      .default("per_repository")
      .superRefine((value, ctx) => {
        if (!(ELECTION_STRATEGIES as readonly string[]).includes(value)) {
          ctx.addIssue({ code: "custom", message: `invalid election strategy: ${JSON.stringify(value)}` });
        }
      })
      .transform((value) => value as ElectionStrategy),
    /** 0 with both counts 0: error-based failure detection is off. */
    error_threshold_window: durationField().default(0),
    write_error_threshold_count: int().gte(0).default(0),
    read_error_threshold_count: int().gte(0).default(0),
    /** Legacy electors only; accepted and unused. */
    bootstrap_interval: durationField().default(1_000),
    monitor_interval: durationField().default(3_000),
  })
  .superRefine((failover, ctx) => {
    if (!failover.enabled) return;
    const { error_threshold_window: window, write_error_threshold_count: w, read_error_threshold_count: r } = failover;
    if (window === 0 && w === 0 && r === 0) return;
    const notSet = (key: string) => ctx.addIssue({ code: "custom", path: [key], message: "not set" });
    if (window === 0) notSet("error_threshold_window");
    if (w === 0) notSet("write_error_threshold_count");
    if (r === 0) notSet("read_error_threshold_count");
  })
  .prefault({});
export type FailoverConfig = z.output<typeof failoverSchema>;

const reconciliationSchema = z
  .object({
    /** 0 disables automatic reconciliation. */
    scheduling_interval: durationField().default(DEFAULT_RECONCILIATION_INTERVAL_MS),
    histogram_buckets: z.array(z.number()).default([...DEFAULT_RECONCILIATION_BUCKETS]),
  })
  .superRefine((r, ctx) => {
    if (r.scheduling_interval === 0) return;
    if (r.histogram_buckets.some((b, i) => i > 0 && b < (r.histogram_buckets[i - 1] ?? Number.NEGATIVE_INFINITY))) {
      ctx.addIssue({ code: "custom", path: ["histogram_buckets"], message: "bad order" });
    }
  })
  .prefault({});

const replicationSchema = z
  .object({
    batch_size: int().gte(1).default(DEFAULT_REPLICATION_BATCH_SIZE),
    parallel_storage_processing_workers: int().gte(1).default(1),
  })
  .prefault({});

const backgroundVerificationSchema = z
  .object({
    /** 0 disables the background verifier. */
    verification_interval: durationField().default(DEFAULT_VERIFICATION_INTERVAL_MS),
    delete_invalid_records: z.boolean().default(true),
  })
  .prefault({});

const repositoriesCleanupSchema = z
  .object({
    check_interval: durationField().default(30 * 60_000),
    run_interval: durationField().default(24 * 3_600_000),
    repositories_in_batch: int().gte(0).default(16),
  })
  .superRefine((rc, ctx) => {
    if (rc.run_interval === 0) return;
    const atLeastAMinute = (key: "check_interval" | "run_interval") => {
      if (rc[key] < MINIMAL_CLEANUP_INTERVAL_MS) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `not in range: ${formatMs(rc[key])} is not greater than or equal to 1m0s`,
        });
      }
    };
    atLeastAMinute("check_interval");
    atLeastAMinute("run_interval");
    if (rc.repositories_in_batch < 1) {
      ctx.addIssue({
        code: "custom",
        path: ["repositories_in_batch"],
        message: `not in range: ${rc.repositories_in_batch} is not greater than or equal to 1`,
      });
    }
  })
  .prefault({});

function formatMs(ms: number): string {
  // Only used for sub-minute values in one message; Go prints e.g. "30s", "1.5s".
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const yamuxSchema = z
  .object({
    maximum_stream_window_size_bytes: int().gte(262_144).default(DEFAULT_YAMUX_WINDOW_BYTES),
    accept_backlog: int().gte(1).default(DEFAULT_YAMUX_ACCEPT_BACKLOG),
  })
  .prefault({});

export const praefectConfigSchema = z
  .object({
    listen_addr: praefectListenAddress("tcp"),
    tls_listen_addr: praefectListenAddress("tls"),
    socket_path: str(),
    prometheus_listen_addr: listenAddressField().default(""),
    graceful_stop_timeout: durationField()
      .default(DEFAULT_GRACEFUL_STOP_TIMEOUT_MS)
      .transform((ms) => (ms === 0 ? DEFAULT_GRACEFUL_STOP_TIMEOUT_MS : ms)),
    /** Upstream's in-memory queue (for tests); not implemented here, warned about on load. */
    memory_queue_enabled: z.boolean().default(false),
    /** Parsed but not run: not supported by this implementation (warned about on load). */
    config_command: str(),
    i_understand_my_election_strategy_is_unsupported_and_will_be_removed_without_warning: z.boolean().default(false),
    auth: authSection(),
    tls: tlsSection(),
    logging: z.object({ ...loggingFields, dir: str() }).prefault({}),
    sentry: z.object({ sentry_dsn: str(), sentry_environment: str() }).prefault({}),
    prometheus: prometheusSection(),
    virtual_storage: z
      .array(virtualStorageSchema)
      .default([])
      .superRefine((list, ctx) => {
        if (list.length === 0) {
          ctx.addIssue({ code: "custom", message: "not set" });
          return;
        }
        list.forEach((vs, i) => {
          if (list.slice(0, i).some((other) => other.name === vs.name)) {
            ctx.addIssue({ code: "custom", path: [i, "name"], message: `not unique: ${JSON.stringify(vs.name)}` });
          }
        });
      }),
    database: databaseSchema,
    failover: failoverSchema,
    reconciliation: reconciliationSchema,
    replication: replicationSchema,
    background_verification: backgroundVerificationSchema,
    repositories_cleanup: repositoriesCleanupSchema,
    yamux: yamuxSchema,
  })
  .superRefine((cfg, ctx) => {
    if (cfg.socket_path === "" && cfg.listen_addr === "" && cfg.tls_listen_addr === "") {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: `none of "socket_path", "listen_addr" or "tls_listen_addr" is set`,
      });
    }
    const legacyAllowed = cfg.i_understand_my_election_strategy_is_unsupported_and_will_be_removed_without_warning;
    if (legacyAllowed && cfg.failover.enabled && cfg.failover.election_strategy !== "per_repository") {
      ctx.addIssue({
        code: "custom",
        path: ["failover", "election_strategy"],
        message: `not supported by this implementation: ${JSON.stringify(cfg.failover.election_strategy)} (only "per_repository")`,
      });
    }
    if (
      cfg.tls_listen_addr !== "" &&
      cfg.tls.certificate_path === "" &&
      cfg.tls.key_path === "" &&
      cfg.tls.key === ""
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["tls", "certificate_path"],
        message: "not set (required by tls_listen_addr)",
      });
      ctx.addIssue({ code: "custom", path: ["tls", "key_path"], message: "not set (required by tls_listen_addr)" });
    }
    const listeners = [
      ["listen_addr", stripListenScheme(cfg.listen_addr, "tcp")],
      ["tls_listen_addr", stripListenScheme(cfg.tls_listen_addr, "tls")],
    ] as const;
    if (listeners[0][1] !== "" && listeners[0][1] === listeners[1][1]) {
      ctx.addIssue({
        code: "custom",
        path: ["tls_listen_addr"],
        message: `same address can't be used for different schemas ${JSON.stringify(cfg.tls_listen_addr)}`,
      });
    }
  })
  .transform((cfg) => ({
    ...cfg,
    failover: {
      ...cfg.failover,
      // Upstream ignores a legacy strategy unless the scary flag is set; with the flag we refused above.
      election_strategy: "per_repository" as ElectionStrategy,
    },
  }));

export type PraefectConfig = z.output<typeof praefectConfigSchema>;
export type PraefectConfigInput = z.input<typeof praefectConfigSchema>;

/** Physical storage names per virtual storage, in configuration order (upstream's StorageNames). */
export function storageNames(config: Pick<PraefectConfig, "virtual_storage">): Record<string, string[]> {
  return Object.fromEntries(config.virtual_storage.map((vs) => [vs.name, vs.node.map((n) => n.storage)]));
}

/** Virtual storage names in configuration order. */
export function virtualStorageNames(config: Pick<PraefectConfig, "virtual_storage">): string[] {
  return config.virtual_storage.map((vs) => vs.name);
}

/** default_replication_factor per virtual storage. */
export function defaultReplicationFactors(config: Pick<PraefectConfig, "virtual_storage">): Record<string, number> {
  return Object.fromEntries(config.virtual_storage.map((vs) => [vs.name, vs.default_replication_factor]));
}

/** Whether [failover] asks for error-based failure detection. */
export function errorThresholdsConfigured(failover: FailoverConfig): boolean {
  return (
    failover.enabled &&
    failover.error_threshold_window > 0 &&
    failover.read_error_threshold_count > 0 &&
    failover.write_error_threshold_count > 0
  );
}
