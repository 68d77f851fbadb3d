import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { formatIssue } from "../../shared/config/issues.js";
import { ConfigError, loadGitalyConfig, loadGitalyConfigFile } from "./load.js";

const STORAGE = `[[storage]]\nname = "default"\npath = "/srv/git/default"\n`;

/** A valid minimal config with `top` (top-level keys) and `tables` appended in the right places. */
function config(top = "", tables = ""): string {
  return `listen_addr = "127.0.0.1:8075"\n${top}\n${STORAGE}\n${tables}\n`;
}

function errorsOf(text: string): string[] {
  try {
    loadGitalyConfig(text);
  } catch (error) {
    if (error instanceof ConfigError) return error.errors.map(formatIssue);
    throw error;
  }
  throw new Error("expected the configuration to be rejected");
}

describe("loadGitalyConfig", () => {
  test("applies upstream's defaults to a minimal configuration", () => {
    const { config: cfg, warnings } = loadGitalyConfig(config());
    expect(warnings).toEqual([]);
    expect(cfg).toMatchObject({
      listen_addr: "127.0.0.1:8075",
      socket_path: "",
      tls_listen_addr: "",
      graceful_restart_timeout: 60_000,
      auth: { token: "", token_file: "", transitioning: false },
      tls: { certificate_path: "", key_path: "", key: "", min_version: "TLS 1.2" },
      storage: [{ name: "default", path: "/srv/git/default" }],
      logging: { format: "text", level: "info", dir: "" },
      prometheus: {
        grpc_latency_buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 10.0, 30.0, 60.0, 300.0, 1500.0],
        scrape_timeout: 10_000,
      },
      git: { catfile_cache_size: 100, config: [] },
      gitlab: { url: "", secret: "", secret_file: "", "http-settings": { read_timeout: 0, user: "", password: "" } },
      "gitlab-shell": { dir: "" },
      hooks: { custom_hooks_dir: "" },
      concurrency: [],
      pack_objects_limiting: { max_concurrency: 200, max_queue_size: 200, max_queue_wait: 0, unauthenticated: null },
      timeout: { upload_pack_negotiation: 600_000, upload_archive_negotiation: 60_000 },
    });
  });

  test("reads every supported key of a full configuration", () => {
    const text = `
socket_path = "/run/gitaly/gitaly.socket"
listen_addr = "0.0.0.0:8075"
tls_listen_addr = "[::]:9999"
prometheus_listen_addr = ":9236"
bin_dir = "/opt/gitaly/bin"
runtime_dir = "/run/gitaly"
graceful_restart_timeout = "1m30s"

[auth]
token = "secret-token"
transitioning = true

[tls]
certificate_path = "/etc/gitaly/cert.pem"
key_path = "/etc/gitaly/key.pem"
min_version = "TLS 1.3"

[[storage]]
name = "default"
path = "/srv/git/default/"

[[storage]]
name = "other"
path = "/srv/git/other"

[logging]
format = "json"
level = "debug"
dir = "/var/log/gitaly"

[prometheus]
grpc_latency_buckets = [0.1, 1, 10]
scrape_timeout = "5s"

[git]
catfile_cache_size = 50

[[git.config]]
key = "core.fsync"
value = "objects,derived-metadata,reference"

[[git.config]]
key = "http.http://example.com.proxy"
value = "http://proxy"

[gitlab]
url = "http+unix://%2Frun%2Fgitlab%2Fworkhorse.socket"
relative_url_root = "/gitlab"
secret_file = "/etc/gitlab/.gitlab_shell_secret"

[gitlab.http-settings]
read_timeout = 30
user = "u"
password = "p"
ca_file = "/etc/ssl/ca.pem"
ca_path = "/etc/ssl/certs"
self_signed_cert = true

[gitlab-shell]
dir = "/opt/gitlab-shell"

[hooks]
custom_hooks_dir = "/etc/gitaly/hooks"

[[concurrency]]
rpc = "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel"
max_concurrency = 20
max_queue_size = 100
max_queue_wait = "1m"

[concurrency.unauthenticated]
max_concurrency = 2

[[concurrency]]
rpc = "/gitaly.SSHService/SSHUploadPackWithSidechannel"
adaptive = true
min_limit = 1
initial_limit = 5
max_limit = 10

[pack_objects_limiting]
max_concurrency = 10
max_queue_length = 20
max_queue_wait = "10s"

[timeout]
upload_pack_negotiation = "2m"

[daily_maintenance]
start_hour = 23
storages = ["default"]
`;
    const { config: cfg, warnings } = loadGitalyConfig(text);
    expect(cfg).toEqual({
      socket_path: "/run/gitaly/gitaly.socket",
      listen_addr: "0.0.0.0:8075",
      tls_listen_addr: "[::]:9999",
      prometheus_listen_addr: ":9236",
      bin_dir: "/opt/gitaly/bin",
      runtime_dir: "/run/gitaly",
      config_command: "",
      graceful_restart_timeout: 90_000,
      auth: { token: "secret-token", token_file: "", transitioning: true },
      tls: {
        certificate_path: "/etc/gitaly/cert.pem",
        key_path: "/etc/gitaly/key.pem",
        key: "",
        min_version: "TLS 1.3",
      },
      storage: [
        { name: "default", path: "/srv/git/default" },
        { name: "other", path: "/srv/git/other" },
      ],
      logging: { format: "json", level: "debug", dir: "/var/log/gitaly", sentry_dsn: "", sentry_environment: "" },
      prometheus: { grpc_latency_buckets: [0.1, 1, 10], scrape_timeout: 5_000 },
      git: {
        catfile_cache_size: 50,
        config: [
          { key: "core.fsync", value: "objects,derived-metadata,reference" },
          { key: "http.http://example.com.proxy", value: "http://proxy" },
        ],
        signing_key: "",
        rotated_signing_keys: [],
        committer_email: "",
        committer_name: "",
      },
      gitlab: {
        url: "http+unix://%2Frun%2Fgitlab%2Fworkhorse.socket",
        relative_url_root: "/gitlab",
        secret: "",
        secret_file: "/etc/gitlab/.gitlab_shell_secret",
        "http-settings": {
          read_timeout: 30,
          user: "u",
          password: "p",
          ca_file: "/etc/ssl/ca.pem",
          ca_path: "/etc/ssl/certs",
          self_signed_cert: true,
        },
      },
      "gitlab-shell": { dir: "/opt/gitlab-shell" },
      hooks: { custom_hooks_dir: "/etc/gitaly/hooks", packobjects_hook_max_proc: 0 },
      concurrency: [
        {
          rpc: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel",
          max_concurrency: 20,
          max_queue_size: 100,
          max_queue_wait: 60_000,
          adaptive: false,
          initial_limit: 0,
          min_limit: 0,
          max_limit: 0,
          unauthenticated: {
            max_concurrency: 2,
            max_queue_size: 500,
            max_queue_wait: 0,
            adaptive: false,
            initial_limit: 0,
            min_limit: 0,
            max_limit: 0,
          },
        },
        {
          rpc: "/gitaly.SSHService/SSHUploadPackWithSidechannel",
          max_concurrency: 0,
          max_queue_size: 500,
          max_queue_wait: 0,
          adaptive: true,
          initial_limit: 5,
          min_limit: 1,
          max_limit: 10,
          unauthenticated: null,
        },
      ],
      pack_objects_limiting: {
        max_concurrency: 10,
        max_queue_size: 20,
        max_queue_wait: 10_000,
        adaptive: false,
        initial_limit: 0,
        min_limit: 0,
        max_limit: 0,
        unauthenticated: null,
      },
      timeout: { upload_pack_negotiation: 120_000, upload_archive_negotiation: 60_000 },
      use_libp2p_yamux: false,
      daily_maintenance: { start_hour: 23, storages: ["default"] },
    });
    expect(warnings.map(formatIssue)).toEqual([
      "pack_objects_limiting.max_queue_length: deprecated, use max_queue_size instead",
    ]);
  });

  test("treats zero durations and sizes as upstream's defaults", () => {
    const { config: cfg } = loadGitalyConfig(
      config(
        'graceful_restart_timeout = "0s"',
        '[git]\ncatfile_cache_size = 0\n[timeout]\nupload_pack_negotiation = "0"',
      ),
    );
    expect(cfg.graceful_restart_timeout).toBe(60_000);
    expect(cfg.git.catfile_cache_size).toBe(100);
    expect(cfg.timeout.upload_pack_negotiation).toBe(600_000);
  });

  test("derives the GitLab secret file and custom hooks dir from gitlab-shell.dir", () => {
    const { config: cfg } = loadGitalyConfig(config("", '[gitlab-shell]\ndir = "/opt/gitlab-shell"'));
    expect(cfg.gitlab.secret_file).toBe("/opt/gitlab-shell/.gitlab_shell_secret");
    expect(cfg.hooks.custom_hooks_dir).toBe("/opt/gitlab-shell/hooks");

    const explicit = loadGitalyConfig(config("", '[gitlab]\nsecret = "s"\n[gitlab-shell]\ndir = "/opt/gitlab-shell"'));
    expect(explicit.config.gitlab.secret_file).toBe("");
  });

  test("resolves relative bin_dir and runtime_dir against the working directory", () => {
    const { config: cfg } = loadGitalyConfig(config('bin_dir = "bin"\nruntime_dir = "./run"'));
    expect(cfg.bin_dir).toBe(resolve("bin"));
    expect(cfg.runtime_dir).toBe(resolve("run"));
  });

  test("accepts a socket-only and a TLS-only server", () => {
    expect(() => loadGitalyConfig(`socket_path = "/tmp/g.sock"\n${STORAGE}`)).not.toThrow();
    const tlsOnly = `tls_listen_addr = "127.0.0.1:9999"\n${STORAGE}\n[tls]\ncertificate_path = "/c.pem"\nkey_path = "/k.pem"\n`;
    expect(loadGitalyConfig(tlsOnly).config.tls_listen_addr).toBe("127.0.0.1:9999");
  });

  test.each([
    ["no listener at all", `${STORAGE}`, ['none of "socket_path", "listen_addr" or "tls_listen_addr" is set']],
    ["no storage", 'listen_addr = ":8075"', ["storage: not set"]],
    ["empty storage list", 'listen_addr = ":8075"\nstorage = []', ["storage: not set"]],
    [
      "bad listen_addr",
      config('socket_path = "/s"').replace("127.0.0.1:8075", "127.0.0.1"),
      ["listen_addr: address 127.0.0.1: missing port in address"],
    ],
    [
      "bad prometheus_listen_addr",
      config('prometheus_listen_addr = "localhost:99999"'),
      ["prometheus_listen_addr: address localhost:99999: port 99999 out of range 0-65535"],
    ],
    [
      "listen_addr of the wrong type",
      `listen_addr = 8075\n${STORAGE}`,
      ["listen_addr: expected a string, got an integer (8075)"],
    ],
    [
      "bad duration",
      config('graceful_restart_timeout = "bad value"'),
      ['graceful_restart_timeout: time: invalid duration "bad value"'],
    ],
    [
      "negative duration",
      config('graceful_restart_timeout = "-1s"'),
      ["graceful_restart_timeout: not in range: -1s is not greater than or equal to 0s"],
    ],
    [
      "duration as a number",
      config("graceful_restart_timeout = 60"),
      ['graceful_restart_timeout: expected a duration string such as "30s", "1m" or "1h30m"'],
    ],
    [
      "token and token_file",
      config("", '[auth]\ntoken = "a"\ntoken_file = "/etc/gitaly/token"'),
      ["auth.token_file: token and token_file are mutually exclusive"],
    ],
    [
      "transitioning not a boolean",
      config("", '[auth]\ntransitioning = "yes"'),
      ["auth.transitioning: expected a boolean, got a string"],
    ],
    [
      "tls_listen_addr without [tls]",
      config('tls_listen_addr = ":9999"'),
      [
        "tls.certificate_path: not set (required by tls_listen_addr)",
        "tls.key_path: not set (required by tls_listen_addr)",
      ],
    ],
    [
      "certificate without key",
      config("", '[tls]\ncertificate_path = "/c.pem"'),
      ["tls.key_path: not set (certificate_path needs a key)"],
    ],
    [
      "key and key_path",
      config("", '[tls]\ncertificate_path = "/c.pem"\nkey_path = "/k.pem"\nkey = "PEM"'),
      ["tls.key: key_path and key cannot both be set"],
    ],
    [
      "unsupported TLS version",
      config("", '[tls]\nmin_version = "TLS 1.1"'),
      ['tls.min_version: unsupported TLS version: "TLS 1.1"'],
    ],
    ["storage without a name", `listen_addr = ":1"\n[[storage]]\npath = "/a"`, ["storage[0].name: not set"]],
    [
      "storage with an empty path",
      `listen_addr = ":1"\n[[storage]]\nname = "a"\npath = ""`,
      ["storage[0].path: not set"],
    ],
    [
      "storage with a relative path",
      `listen_addr = ":1"\n[[storage]]\nname = "a"\npath = "repos"`,
      ['storage[0].path: not an absolute path: "repos"'],
    ],
    [
      "duplicate storage name",
      config("", '[[storage]]\nname = "default"\npath = "/srv/git/other"'),
      ['storage[1].name: not unique: "default"'],
    ],
    [
      "duplicate storage path",
      config("", '[[storage]]\nname = "b"\npath = "/srv/git/default/"'),
      ['storage[1].path: not unique: "/srv/git/default"'],
    ],
    [
      "nested storage paths",
      config("", '[[storage]]\nname = "b"\npath = "/srv/git"'),
      ['storage[1].path: can\'t nest: "/srv/git" and "/srv/git/default"'],
    ],
    ["unknown log format", config("", '[logging]\nformat = "xml"'), ['logging.format: invalid logger format "xml"']],
    [
      "unknown log level",
      config("", '[logging]\nlevel = "loud"'),
      [
        'logging.level: not a valid logrus Level: "loud", expected one of trace, debug, info, warn, warning, error, fatal, panic',
      ],
    ],
    [
      "descending latency buckets",
      config("", "[prometheus]\ngrpc_latency_buckets = [1, 0.5]"),
      ["prometheus.grpc_latency_buckets: bad order: expected asc: [1 0.5]"],
    ],
    [
      "latency bucket not a number",
      config("", '[prometheus]\ngrpc_latency_buckets = [1, "2"]'),
      ["prometheus.grpc_latency_buckets[1]: expected a number, got a string"],
    ],
    ["concurrency without rpc", config("", "[[concurrency]]\nmax_concurrency = 1"), ["concurrency[0].rpc: not set"]],
    [
      "concurrency rpc not a method",
      config("", '[[concurrency]]\nrpc = "PostUploadPack"'),
      [
        'concurrency[0].rpc: not a full gRPC method name like "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel": "PostUploadPack"',
      ],
    ],
    [
      "negative max_concurrency",
      config("", '[[concurrency]]\nrpc = "/gitaly.A/B"\nmax_concurrency = -1'),
      ["concurrency[0].max_concurrency: not in range: -1 is not greater than or equal to 0"],
    ],
    [
      "fractional max_queue_size",
      config("", '[[concurrency]]\nrpc = "/gitaly.A/B"\nmax_queue_size = 1.5'),
      ["concurrency[0].max_queue_size: expected an integer, got a float (1.5)"],
    ],
    [
      "bad max_queue_wait",
      config("", '[[concurrency]]\nrpc = "/gitaly.A/B"\nmax_queue_wait = "forever"'),
      ['concurrency[0].max_queue_wait: time: invalid duration "forever"'],
    ],
    [
      "adaptive limits out of order",
      config(
        "",
        '[[concurrency]]\nrpc = "/gitaly.A/B"\nadaptive = true\nmin_limit = 0\ninitial_limit = 5\nmax_limit = 3',
      ),
      [
        "concurrency[0].min_limit: not in range: 0 is not greater than 0",
        "concurrency[0].max_limit: not in range: 3 is not greater than or equal to 5",
      ],
    ],
    [
      "bad unauthenticated limits",
      config("", '[[concurrency]]\nrpc = "/gitaly.A/B"\n[concurrency.unauthenticated]\nmax_concurrency = -2'),
      ["concurrency[0].unauthenticated.max_concurrency: not in range: -2 is not greater than or equal to 0"],
    ],
    [
      "git config key without a section",
      config("", '[[git.config]]\nkey = "bad"'),
      ['git.config[0].key: key "bad" must contain at least one section'],
    ],
    [
      "git config key with =",
      config("", '[[git.config]]\nkey = "core.a=b"'),
      ['git.config[0].key: key "core.a=b" cannot contain "="'],
    ],
    [
      "git config key ending in a dot",
      config("", '[[git.config]]\nkey = "core."'),
      ['git.config[0].key: key "core." must not start or end with a dot'],
    ],
    [
      "git config key with bad characters",
      config("", '[[git.config]]\nkey = "core.a b"'),
      ['git.config[0].key: key "core.a b" failed regexp validation'],
    ],
    ["git config key missing", config("", '[[git.config]]\nvalue = "x"'), ["git.config[0].key: not set"]],
    [
      "catfile_cache_size not an integer",
      config("", '[git]\ncatfile_cache_size = "many"'),
      ["git.catfile_cache_size: expected a number, got a string"],
    ],
    ["gitlab url unparsable", config("", '[gitlab]\nurl = "not a url"'), ['gitlab.url: invalid URL: "not a url"']],
    [
      "gitlab url scheme",
      config("", '[gitlab]\nurl = "ftp://gitlab"'),
      ['gitlab.url: unsupported URL scheme "ftp", expected http, https or http+unix'],
    ],
    [
      "gitlab secret and secret_file",
      config("", '[gitlab]\nsecret = "a"\nsecret_file = "/b"'),
      ["gitlab.secret_file: ambiguous secret configuration: secret and secret_file are mutually exclusive"],
    ],
    [
      "gitlab user without password",
      config("", '[gitlab.http-settings]\nuser = "u"'),
      ["gitlab.http-settings.password: blank or empty"],
    ],
    [
      "gitlab negative read_timeout",
      config("", "[gitlab.http-settings]\nread_timeout = -1"),
      ["gitlab.http-settings.read_timeout: not in range: -1 is not greater than or equal to 0"],
    ],
    [
      "bad upload_pack_negotiation",
      config("", '[timeout]\nupload_pack_negotiation = "10"'),
      ['timeout.upload_pack_negotiation: time: missing unit in duration "10"'],
    ],
  ])("rejects %s", (_name, text, expected) => {
    expect(errorsOf(text)).toEqual(expected);
  });

  test("reports every problem at once", () => {
    const errors = errorsOf(
      config('graceful_restart_timeout = "x"', '[logging]\nformat = "xml"\n[[git.config]]\nkey = "bad"'),
    );
    expect(errors).toEqual([
      'graceful_restart_timeout: time: invalid duration "x"',
      'logging.format: invalid logger format "xml"',
      'git.config[0].key: key "bad" must contain at least one section',
    ]);
  });

  test("warns about unknown keys with dotted paths and still loads", () => {
    const text = config(
      'listen_adress = ":1"\ninternal_socket_dir = "/tmp/sock"',
      '[[storage]]\nname = "b"\npathh = "/srv/b"\npath = "/srv/b"\n[auth]\ntokn = "x"\n[gitlab.http-settings]\nusr = "u"\n[git]\nbin_path = "/usr/bin/git"',
    );
    const { config: cfg, warnings } = loadGitalyConfig(text);
    expect(cfg.storage.map((s) => s.name)).toEqual(["default", "b"]);
    expect(warnings.map(formatIssue)).toEqual([
      "listen_adress: unknown key, ignored",
      "internal_socket_dir: internal_socket_dir was replaced by runtime_dir; ignored",
      "storage[1].pathh: unknown key, ignored",
      "auth.tokn: unknown key, ignored",
      "gitlab.http-settings.usr: unknown key, ignored",
      "git.bin_path: git.bin_path was removed upstream (the git on PATH is used); ignored",
    ]);
  });

  test("folds deprecated limiter aliases and warns about them", () => {
    const { config: cfg, warnings } = loadGitalyConfig(
      config(
        "",
        '[[concurrency]]\nrpc = "/gitaly.A/B"\nmax_per_repo = 7\nmax_queue_length = 9\n[concurrency.unauthenticated]\nmax_per_repo = 1',
      ),
    );
    expect(cfg.concurrency[0]).toMatchObject({
      max_concurrency: 7,
      max_queue_size: 9,
      unauthenticated: { max_concurrency: 1 },
    });
    expect(warnings.map(formatIssue)).toEqual([
      "concurrency[0].max_per_repo: deprecated, use max_concurrency instead",
      "concurrency[0].max_queue_length: deprecated, use max_queue_size instead",
      "concurrency[0].unauthenticated.max_per_repo: deprecated, use max_concurrency instead",
    ]);
  });

  test("prefers max_concurrency over the deprecated max_per_repo", () => {
    const { config: cfg } = loadGitalyConfig(
      config("", '[[concurrency]]\nrpc = "/gitaly.A/B"\nmax_concurrency = 3\nmax_per_repo = 7'),
    );
    expect(cfg.concurrency[0]?.max_concurrency).toBe(3);
  });

  test("warns that config_command is not run", () => {
    const { warnings } = loadGitalyConfig(config('config_command = "/usr/bin/gen-config"'));
    expect(warnings.map(formatIssue)).toEqual(["config_command: not supported by this implementation, ignored"]);
  });

  test("reports TOML syntax errors with their position", () => {
    expect(errorsOf('listen_addr = "unterminated\n')).toEqual([expect.stringMatching(/^line 1 column \d+: toml: /)]);
  });
});

describe("loadGitalyConfigFile", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gitaly-config-load-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("loads a file and names it in errors", async () => {
    const good = join(dir, "good.toml");
    await writeFile(good, config());
    expect((await loadGitalyConfigFile(good)).config.storage[0]?.name).toBe("default");

    const bad = join(dir, "bad.toml");
    await writeFile(bad, STORAGE);
    const error = await loadGitalyConfigFile(bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).source).toBe(bad);
    expect((error as ConfigError).message).toContain(bad);
  });

  test("says which file it could not read", async () => {
    const missing = join(dir, "missing.toml");
    await expect(loadGitalyConfigFile(missing)).rejects.toThrow(`reading configuration "${missing}": ENOENT`);
  });
});
