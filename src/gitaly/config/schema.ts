// Gitaly's configuration file (config.toml), as upstream names it.
//
// Naming decision: the parsed object keeps upstream's TOML key names verbatim (snake_case, and
// `storage`, `gitlab-shell`, `gitlab["http-settings"]` as written), so a key in an error message,
// in upstream documentation and in our code is the same string, and no translation layer exists.
// Two representation changes only:
//   - durations (graceful_restart_timeout, max_queue_wait, …) are numbers of milliseconds;
//   - deprecated aliases are folded into their successors (max_per_repo → max_concurrency,
//     max_queue_length → max_queue_size) and do not appear in the output.
// Defaults are applied as upstream's Sanitize() does, including "0 means the default" for the
// durations and sizes where upstream treats zero that way.
import { isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { durationField } from "../../shared/config/duration.js";
import { listenAddressField } from "../../shared/config/listen-address.js";
import {
  authSection,
  loggingFields,
  prometheusSection,
  tlsConfigured,
  tlsSection,
} from "../../shared/config/sections.js";

export const DEFAULT_GRACEFUL_RESTART_TIMEOUT_MS = 60_000;
export const DEFAULT_UPLOAD_PACK_NEGOTIATION_MS = 10 * 60_000;
export const DEFAULT_UPLOAD_ARCHIVE_NEGOTIATION_MS = 60_000;
export const DEFAULT_CATFILE_CACHE_SIZE = 100;
/** Queue size of a [[concurrency]] limit that sets none. */
export const DEFAULT_CONCURRENCY_QUEUE_SIZE = 500;
export const DEFAULT_PACK_OBJECTS_CONCURRENCY = 200;
export const DEFAULT_PACK_OBJECTS_QUEUE_SIZE = 200;

const str = () => z.string().default("");

function absolutePath(what = "path") {
  return z.string().superRefine((value, ctx) => {
    if (value === "") ctx.addIssue({ code: "custom", message: "not set" });
    else if (!isAbsolute(value)) {
      ctx.addIssue({ code: "custom", message: `not an absolute ${what}: ${JSON.stringify(value)}` });
    }
  });
}

const storageSchema = z.object({
  name: z.string().superRefine((name, ctx) => {
    if (name === "") ctx.addIssue({ code: "custom", message: "not set" });
  }),
  // resolve() of an absolute path only normalises it (like Go's filepath.Clean).
  path: absolutePath().transform((p) => resolve(p)),
});
export type StorageConfig = z.output<typeof storageSchema>;

function isWithin(child: string, parent: string): boolean {
  return parent === "/" ? child !== "/" : child.startsWith(`${parent}/`);
}

const storagesSchema = z
  .array(storageSchema)
  .min(1)
  .superRefine((storages, ctx) => {
    storages.forEach((storage, i) => {
      for (const other of storages.slice(0, i)) {
        if (other.name === storage.name) {
          ctx.addIssue({ code: "custom", path: [i, "name"], message: `not unique: ${JSON.stringify(storage.name)}` });
        }
        if (other.path === storage.path) {
          ctx.addIssue({ code: "custom", path: [i, "path"], message: `not unique: ${JSON.stringify(storage.path)}` });
        } else if (isWithin(storage.path, other.path) || isWithin(other.path, storage.path)) {
          ctx.addIssue({
            code: "custom",
            path: [i, "path"],
            message: `can't nest: ${JSON.stringify(storage.path)} and ${JSON.stringify(other.path)}`,
          });
        }
      }
    });
  });

const int = () => z.number().int();
const nonNegativeInt = () => int().gte(0);

// A limiter's keys as written; [[concurrency]], its .unauthenticated and [pack_objects_limiting]
// share them.
const limitFields = {
  max_concurrency: nonNegativeInt().default(0),
  /** Deprecated: max_concurrency. */
  max_per_repo: nonNegativeInt().optional(),
  max_queue_size: nonNegativeInt().default(0),
  /** Deprecated: max_queue_size. */
  max_queue_length: nonNegativeInt().optional(),
  max_queue_wait: durationField().default(0),
  adaptive: z.boolean().default(false),
  initial_limit: int().default(0),
  min_limit: int().default(0),
  max_limit: int().default(0),
};

type RawLimits = z.output<z.ZodObject<typeof limitFields>>;

export interface LimitConfig {
  /** Effective static limit: max_concurrency, else the deprecated max_per_repo. */
  max_concurrency: number;
  /** Effective queue bound: max_queue_size, else the deprecated max_queue_length, else the default. */
  max_queue_size: number;
  /** Milliseconds a request may wait in the queue; 0 = no limit. */
  max_queue_wait: number;
  adaptive: boolean;
  initial_limit: number;
  min_limit: number;
  max_limit: number;
}

function checkAdaptive(limits: RawLimits, ctx: z.RefinementCtx, at: (string | number)[] = []): void {
  if (!limits.adaptive) return;
  const fail = (key: string, message: string) => ctx.addIssue({ code: "custom", path: [...at, key], message });
  if (limits.min_limit <= 0) fail("min_limit", `not in range: ${limits.min_limit} is not greater than 0`);
  if (limits.max_limit < limits.initial_limit) {
    fail("max_limit", `not in range: ${limits.max_limit} is not greater than or equal to ${limits.initial_limit}`);
  }
  if (limits.initial_limit < limits.min_limit) {
    fail("initial_limit", `not in range: ${limits.initial_limit} is not greater than or equal to ${limits.min_limit}`);
  }
}

function isSet(limits: RawLimits): boolean {
  return limits.adaptive || limits.max_concurrency > 0 || (limits.max_per_repo ?? 0) > 0;
}

function effectiveLimits(limits: RawLimits, defaultQueueSize: number): LimitConfig {
  const queue =
    limits.max_queue_size > 0
      ? limits.max_queue_size
      : (limits.max_queue_length ?? 0) > 0
        ? (limits.max_queue_length as number)
        : defaultQueueSize;
  return {
    max_concurrency: limits.max_concurrency > 0 ? limits.max_concurrency : (limits.max_per_repo ?? 0),
    max_queue_size: queue,
    max_queue_wait: limits.max_queue_wait,
    adaptive: limits.adaptive,
    initial_limit: limits.initial_limit,
    min_limit: limits.min_limit,
    max_limit: limits.max_limit,
  };
}

const unauthenticatedSchema = z.object(limitFields).optional();

/** A full gRPC method name: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel". */
export const FULL_METHOD_NAME = /^\/[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\/[A-Za-z_][A-Za-z0-9_]*$/;

const concurrencySchema = z
  .object({
    rpc: z.string().superRefine((rpc, ctx) => {
      if (rpc === "") ctx.addIssue({ code: "custom", message: "not set" });
      else if (!FULL_METHOD_NAME.test(rpc)) {
        ctx.addIssue({
          code: "custom",
          message: `not a full gRPC method name like "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel": ${JSON.stringify(rpc)}`,
        });
      }
    }),
    ...limitFields,
    unauthenticated: unauthenticatedSchema,
  })
  .superRefine((c, ctx) => {
    checkAdaptive(c, ctx);
    if (c.unauthenticated !== undefined && isSet(c.unauthenticated))
      checkAdaptive(c.unauthenticated, ctx, ["unauthenticated"]);
  })
  .transform((c) => ({
    rpc: c.rpc,
    ...effectiveLimits(c, DEFAULT_CONCURRENCY_QUEUE_SIZE),
    /** null when the table sets no limit (upstream's IsSet()). */
    unauthenticated:
      c.unauthenticated !== undefined && isSet(c.unauthenticated)
        ? effectiveLimits(c.unauthenticated, DEFAULT_CONCURRENCY_QUEUE_SIZE)
        : null,
  }));
export type ConcurrencyConfig = z.output<typeof concurrencySchema>;

const packObjectsLimitingSchema = z
  .object({
    ...limitFields,
    max_concurrency: nonNegativeInt().default(DEFAULT_PACK_OBJECTS_CONCURRENCY),
    unauthenticated: unauthenticatedSchema,
  })
  .superRefine((c, ctx) => {
    checkAdaptive(c, ctx);
    if (c.unauthenticated !== undefined && isSet(c.unauthenticated))
      checkAdaptive(c.unauthenticated, ctx, ["unauthenticated"]);
  })
  .transform((c) => ({
    ...effectiveLimits(c, DEFAULT_PACK_OBJECTS_QUEUE_SIZE),
    unauthenticated:
      c.unauthenticated !== undefined && isSet(c.unauthenticated)
        ? effectiveLimits(c.unauthenticated, DEFAULT_PACK_OBJECTS_QUEUE_SIZE)
        : null,
  }))
  .prefault({});
export type PackObjectsLimitingConfig = z.output<typeof packObjectsLimitingSchema>;

// Upstream's configKeyRegex: `core.gc`, `http.http://example.com.proxy`.
const GIT_CONFIG_KEY = /^[A-Za-z0-9]+(\.[*+,\-./_:@a-zA-Z0-9]+)+$/;

const gitConfigKey = z.string().superRefine((key, ctx) => {
  const fail = (message: string) => ctx.addIssue({ code: "custom", message });
  const q = JSON.stringify(key);
  if (key === "") fail("not set");
  else if (key.includes("=")) fail(`key ${q} cannot contain "="`);
  else if (!key.includes(".")) fail(`key ${q} must contain at least one section`);
  else if (key.startsWith(".") || key.endsWith(".")) fail(`key ${q} must not start or end with a dot`);
  else if (!GIT_CONFIG_KEY.test(key)) fail(`key ${q} failed regexp validation`);
});

const gitSchema = z
  .object({
    // Upstream falls back to the default for zero or negative sizes.
    catfile_cache_size: int()
      .default(DEFAULT_CATFILE_CACHE_SIZE)
      .transform((n) => (n > 0 ? n : DEFAULT_CATFILE_CACHE_SIZE)),
    config: z.array(z.object({ key: gitConfigKey, value: str() })).default([]),
    signing_key: str(),
    rotated_signing_keys: z.array(z.string()).default([]),
    committer_email: str(),
    committer_name: str(),
  })
  .prefault({});

const GITLAB_URL_SCHEMES = new Set(["http:", "https:", "http+unix:"]);

const gitlabSchema = z
  .object({
    url: z
      .string()
      .default("")
      .superRefine((url, ctx) => {
        if (url === "") return;
        let parsed: URL;
        try {
          parsed = new URL(url);
        } catch {
          ctx.addIssue({ code: "custom", message: `invalid URL: ${JSON.stringify(url)}` });
          return;
        }
        if (!GITLAB_URL_SCHEMES.has(parsed.protocol)) {
          ctx.addIssue({
            code: "custom",
            message: `unsupported URL scheme ${JSON.stringify(parsed.protocol.slice(0, -1))}, expected http, https or http+unix`,
          });
        }
      }),
    relative_url_root: str(),
    secret: str(),
    secret_file: str(),
    "http-settings": z
      .object({
        /** Seconds; 0 = the client's default. */
        read_timeout: nonNegativeInt().default(0),
        user: str(),
        password: str(),
        ca_file: str(),
        ca_path: str(),
        self_signed_cert: z.boolean().default(false),
      })
      .superRefine((http, ctx) => {
        // Basic auth needs both halves.
        if (http.user !== "" || http.password !== "") {
          if (http.user.trim() === "") ctx.addIssue({ code: "custom", path: ["user"], message: "blank or empty" });
          if (http.password.trim() === "")
            ctx.addIssue({ code: "custom", path: ["password"], message: "blank or empty" });
        }
      })
      .prefault({}),
  })
  .superRefine((gitlab, ctx) => {
    if (gitlab.secret !== "" && gitlab.secret_file !== "") {
      ctx.addIssue({
        code: "custom",
        path: ["secret_file"],
        message: "ambiguous secret configuration: secret and secret_file are mutually exclusive",
      });
    }
  })
  .prefault({});

/** A table this implementation does not interpret; accepted with any content, never warned about. */
const looseTable = () => z.record(z.string(), z.unknown()).optional();

export const gitalyConfigSchema = z
  .object({
    socket_path: str(),
    listen_addr: listenAddressField().default(""),
    tls_listen_addr: listenAddressField().default(""),
    prometheus_listen_addr: listenAddressField().default(""),
    bin_dir: str(),
    runtime_dir: str(),
    /** Parsed but not run: this implementation does not support config_command (warned on load). */
    config_command: str(),
    graceful_restart_timeout: durationField()
      .default(DEFAULT_GRACEFUL_RESTART_TIMEOUT_MS)
      .transform((ms) => (ms === 0 ? DEFAULT_GRACEFUL_RESTART_TIMEOUT_MS : ms)),
    auth: authSection(),
    tls: tlsSection(),
    storage: storagesSchema,
    logging: z
      .object({
        ...loggingFields,
        dir: str(),
        sentry_dsn: str(),
        sentry_environment: str(),
      })
      .prefault({}),
    prometheus: prometheusSection(),
    git: gitSchema,
    gitlab: gitlabSchema,
    "gitlab-shell": z.object({ dir: str() }).prefault({}),
    hooks: z
      .object({
        custom_hooks_dir: str(),
        packobjects_hook_max_proc: nonNegativeInt().default(0),
      })
      .prefault({}),
    concurrency: z.array(concurrencySchema).default([]),
    pack_objects_limiting: packObjectsLimitingSchema,
    timeout: z
      .object({
        upload_pack_negotiation: durationField()
          .default(DEFAULT_UPLOAD_PACK_NEGOTIATION_MS)
          .transform((ms) => (ms === 0 ? DEFAULT_UPLOAD_PACK_NEGOTIATION_MS : ms)),
        upload_archive_negotiation: durationField()
          .default(DEFAULT_UPLOAD_ARCHIVE_NEGOTIATION_MS)
          .transform((ms) => (ms === 0 ? DEFAULT_UPLOAD_ARCHIVE_NEGOTIATION_MS : ms)),
      })
      .prefault({}),
    use_libp2p_yamux: z.boolean().default(false),
    transactions: looseTable(),
    daily_maintenance: looseTable(),
    pack_objects_cache: looseTable(),
    archive_cache: looseTable(),
    cgroups: looseTable(),
    backup: looseTable(),
    bundle_uri: looseTable(),
    adaptive_limiting: looseTable(),
    load_shedder: looseTable(),
    raft: looseTable(),
    offloading: looseTable(),
    pool_metadata: looseTable(),
  })
  .superRefine((cfg, ctx) => {
    if (cfg.socket_path === "" && cfg.listen_addr === "" && cfg.tls_listen_addr === "") {
      ctx.addIssue({
        code: "custom",
        path: [],
        message: `none of "socket_path", "listen_addr" or "tls_listen_addr" is set`,
      });
    }
    // A half-configured [tls] is reported by the table itself; here only the wholly missing one.
    if (cfg.tls_listen_addr !== "" && !tlsConfigured(cfg.tls)) {
      if (cfg.tls.certificate_path === "" && cfg.tls.key_path === "" && cfg.tls.key === "") {
        ctx.addIssue({
          code: "custom",
          path: ["tls", "certificate_path"],
          message: "not set (required by tls_listen_addr)",
        });
        ctx.addIssue({ code: "custom", path: ["tls", "key_path"], message: "not set (required by tls_listen_addr)" });
      }
    }
  })
  .transform((cfg) => {
    const shellDir = cfg["gitlab-shell"].dir;
    const gitlab = { ...cfg.gitlab };
    // Upstream's legacy fallbacks to the gitlab-shell directory.
    if (gitlab.secret === "" && gitlab.secret_file === "" && shellDir !== "") {
      gitlab.secret_file = resolve(shellDir, ".gitlab_shell_secret");
    }
    const hooks = { ...cfg.hooks };
    if (hooks.custom_hooks_dir === "" && shellDir !== "") hooks.custom_hooks_dir = resolve(shellDir, "hooks");
    return {
      ...cfg,
      bin_dir: cfg.bin_dir === "" ? "" : resolve(cfg.bin_dir),
      runtime_dir: cfg.runtime_dir === "" ? "" : resolve(cfg.runtime_dir),
      gitlab,
      hooks,
    };
  });

export type GitalyConfig = z.output<typeof gitalyConfigSchema>;
export type GitalyConfigInput = z.input<typeof gitalyConfigSchema>;
