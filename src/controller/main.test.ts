// The operator's command line: flags, their environment fallbacks, and the entry-point guard
// that lets tests (and other modules) import main.ts without starting an operator.
import { spawn } from "node:child_process";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot } from "../../test/harness/gitaly.js";
import { OPERATOR_VERSION, type OperatorFlags, parseBindAddress, parseOperatorFlags, UsageError } from "./main.js";

const operatorMain = join(repoRoot, "dist/controller/main.js");

function flags(argv: string[], env: NodeJS.ProcessEnv = {}): OperatorFlags {
  const parsed = parseOperatorFlags(argv, env);
  if (parsed === "help") throw new Error("unexpected help");
  return parsed;
}

function usageError(argv: string[], env: NodeJS.ProcessEnv = {}): UsageError {
  try {
    parseOperatorFlags(argv, env);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`no error for ${JSON.stringify(argv)} ${JSON.stringify(env)}`);
}

describe("parseOperatorFlags", () => {
  it("defaults: all namespaces, :8080, :8081, leader election on, cluster.local, the operator's image", () => {
    expect(flags([], {})).toEqual({
      namespaces: "all",
      metricsAddr: { host: "0.0.0.0", port: 8080 },
      healthAddr: { host: "0.0.0.0", port: 8081 },
      leaderElect: true,
      leaderElectionNamespace: undefined,
      leaderElectionId: "gitaly-operator",
      leaseDurationSeconds: 15,
      defaultImage: `gitaly-operator:${OPERATOR_VERSION}`,
      postgresImage: undefined,
      clusterDomain: "cluster.local",
      kubeconfig: undefined,
      concurrency: 4,
      logLevel: "info",
    } satisfies OperatorFlags);
  });

  it("environment fallbacks", () => {
    const f = flags([], {
      WATCH_NAMESPACES: "team-a, team-b",
      METRICS_BIND_ADDRESS: "127.0.0.1:9090",
      HEALTH_PROBE_BIND_ADDRESS: "[::1]:9091",
      LEADER_ELECT: "false",
      POD_NAMESPACE: "gitaly-system",
      GITALY_IMAGE: "registry.example.com/gitaly:17.0",
      POSTGRES_IMAGE: "postgres:16",
      CLUSTER_DOMAIN: "corp.internal",
      KUBECONFIG: "/etc/kube/config",
      LOG_LEVEL: "debug",
    });
    expect(f).toMatchObject({
      namespaces: ["team-a", "team-b"],
      metricsAddr: { host: "127.0.0.1", port: 9090 },
      healthAddr: { host: "::1", port: 9091 },
      leaderElect: false,
      leaderElectionNamespace: "gitaly-system",
      defaultImage: "registry.example.com/gitaly:17.0",
      postgresImage: "postgres:16",
      clusterDomain: "corp.internal",
      kubeconfig: "/etc/kube/config",
      logLevel: "debug",
    });
  });

  it("LEADER_ELECT: false, 0, no and off disable; other values enable", () => {
    for (const v of ["false", "FALSE", "0", "no", "off"])
      expect(flags([], { LEADER_ELECT: v }).leaderElect).toBe(false);
    for (const v of ["true", "1", "yes"]) expect(flags([], { LEADER_ELECT: v }).leaderElect).toBe(true);
  });

  it("flags override the environment", () => {
    const env = {
      WATCH_NAMESPACES: "team-a",
      METRICS_BIND_ADDRESS: ":9090",
      HEALTH_PROBE_BIND_ADDRESS: ":9091",
      LEADER_ELECT: "false",
      POD_NAMESPACE: "from-env",
      GITALY_IMAGE: "env-image",
      POSTGRES_IMAGE: "env-postgres",
      CLUSTER_DOMAIN: "env.domain",
      KUBECONFIG: "/env/kubeconfig",
      LOG_LEVEL: "error",
    };
    const f = flags(
      [
        "--namespaces",
        "team-b",
        "--metrics-bind-address",
        "127.0.0.1:7070",
        "--health-probe-bind-address=127.0.0.1:7071",
        "--leader-elect",
        "--leader-election-namespace",
        "from-flag",
        "--default-image",
        "flag-image",
        "--postgres-image",
        "flag-postgres",
        "--cluster-domain",
        "flag.domain",
        "--kubeconfig",
        "/flag/kubeconfig",
        "--log-level",
        "warn",
      ],
      env,
    );
    expect(f).toMatchObject({
      namespaces: ["team-b"],
      metricsAddr: { host: "127.0.0.1", port: 7070 },
      healthAddr: { host: "127.0.0.1", port: 7071 },
      leaderElect: true,
      leaderElectionNamespace: "from-flag",
      defaultImage: "flag-image",
      postgresImage: "flag-postgres",
      clusterDomain: "flag.domain",
      kubeconfig: "/flag/kubeconfig",
      logLevel: "warn",
    });
    // An empty flag still overrides the environment: it means all namespaces.
    expect(flags(["--namespaces", ""], env).namespaces).toBe("all");
  });

  it("--namespaces a,b is a list, trimmed, empty items ignored", () => {
    expect(flags(["--namespaces", "a,b"]).namespaces).toEqual(["a", "b"]);
    expect(flags(["--namespaces", " a , ,b ,"]).namespaces).toEqual(["a", "b"]);
  });

  it('"*", "" or only separators mean all namespaces', () => {
    for (const v of ["*", "", " , ", "a,*"]) expect(flags(["--namespaces", v]).namespaces).toBe("all");
    expect(flags([], { WATCH_NAMESPACES: "*" }).namespaces).toBe("all");
    expect(flags([], { WATCH_NAMESPACES: "" }).namespaces).toBe("all");
  });

  it("an invalid namespace name is a UsageError naming --namespaces and the name", () => {
    for (const bad of ["Team-A", "team_a", "-team", "team-", "a.b"]) {
      const err = usageError(["--namespaces", `ok,${bad}`]);
      expect(err.message).toContain("--namespaces");
      expect(err.message).toContain(JSON.stringify(bad));
    }
    expect(usageError([], { WATCH_NAMESPACES: "Bad" }).message).toContain("--namespaces");
  });

  // A namespace name is a DNS-1123 label: at most 63 characters.
  it("a namespace name longer than 63 characters is a UsageError", () => {
    expect(flags(["--namespaces", "a".repeat(63)]).namespaces).toEqual(["a".repeat(63)]);
    expect(usageError(["--namespaces", "a".repeat(64)]).message).toContain("--namespaces");
  });

  it('"0" disables an address', () => {
    const f = flags(["--metrics-bind-address", "0"], { HEALTH_PROBE_BIND_ADDRESS: "0" });
    expect(f.metricsAddr).toBeUndefined();
    expect(f.healthAddr).toBeUndefined();
  });

  it("a bad address is a UsageError naming its flag", () => {
    expect(usageError(["--metrics-bind-address", "8080"]).message).toContain("--metrics-bind-address");
    expect(usageError(["--health-probe-bind-address", ":99999"]).message).toContain("--health-probe-bind-address");
    expect(usageError([], { METRICS_BIND_ADDRESS: "localhost" }).message).toContain("--metrics-bind-address");
  });

  it("--no-leader-elect disables leader election, even against --leader-elect and LEADER_ELECT", () => {
    expect(flags(["--no-leader-elect"]).leaderElect).toBe(false);
    expect(flags(["--no-leader-elect"], { LEADER_ELECT: "true" }).leaderElect).toBe(false);
    expect(flags(["--leader-elect", "--no-leader-elect"]).leaderElect).toBe(false);
  });

  it("--concurrency and --lease-duration take whole numbers >= 1", () => {
    expect(flags(["--concurrency", "16", "--lease-duration", "30"])).toMatchObject({
      concurrency: 16,
      leaseDurationSeconds: 30,
    });
    for (const bad of ["0", "-1", "1.5", "many", ""]) {
      const err = usageError([`--concurrency=${bad}`]);
      expect(err.message).toContain("--concurrency");
      expect(err.message).toContain(JSON.stringify(bad));
    }
    // Without "=", parseArgs itself refuses a value that looks like an option; it still names the flag.
    expect(() => parseOperatorFlags(["--concurrency", "-1"], {})).toThrow(/--concurrency/);
    expect(usageError(["--lease-duration", "0"]).message).toContain("--lease-duration");
  });

  it("--log-level accepts debug, info, warn, error; anything else is a UsageError naming --log-level", () => {
    for (const level of ["debug", "info", "warn", "error"] as const) {
      expect(flags(["--log-level", level]).logLevel).toBe(level);
    }
    for (const bad of ["trace", "INFO", ""]) {
      expect(usageError(["--log-level", bad]).message).toContain("--log-level");
    }
    expect(usageError([], { LOG_LEVEL: "verbose" }).message).toContain("--log-level");
    // The flag wins over a bad environment value.
    expect(flags(["--log-level", "warn"], { LOG_LEVEL: "verbose" }).logLevel).toBe("warn");
  });

  it("--help and -h return help, before any validation", () => {
    expect(parseOperatorFlags(["--help"], {})).toBe("help");
    expect(parseOperatorFlags(["-h"], {})).toBe("help");
    expect(parseOperatorFlags(["--concurrency", "0", "--help"], { LOG_LEVEL: "bad" })).toBe("help");
  });

  it("unknown flags and positional arguments are rejected, naming them", () => {
    expect(() => parseOperatorFlags(["--bogus"], {})).toThrow(/--bogus/);
    expect(() => parseOperatorFlags(["serve"], {})).toThrow(/serve/);
  });
});

describe("parseBindAddress", () => {
  it("parses HOST:PORT, :PORT (all interfaces) and [IPv6]:PORT", () => {
    expect(parseBindAddress("f", "127.0.0.1:8080")).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(parseBindAddress("f", "localhost:1")).toEqual({ host: "localhost", port: 1 });
    expect(parseBindAddress("f", ":8080")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(parseBindAddress("f", "[::]:9090")).toEqual({ host: "::", port: 9090 });
    expect(parseBindAddress("f", "[::1]:65535")).toEqual({ host: "::1", port: 65535 });
    expect(parseBindAddress("f", "127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
  });

  it('"0" disables', () => {
    expect(parseBindAddress("f", "0")).toBeUndefined();
  });

  it("rejects what is not an address, naming the flag and the value", () => {
    for (const bad of ["", "8080", ":", "host:", ":65536", "::1:8080", "host:80:80", "host:http", ":123456"]) {
      expect(() => parseBindAddress("metrics-bind-address", bad)).toThrow(UsageError);
      expect(() => parseBindAddress("metrics-bind-address", bad)).toThrow(
        `--metrics-bind-address ${JSON.stringify(bad)}`,
      );
    }
  });
});

describe("entry point", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "operator-main-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function run(script: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
    const env = { ...process.env };
    for (const name of ["POD_NAMESPACE", "LEADER_ELECT", "WATCH_NAMESPACES", "LOG_LEVEL"]) delete env[name];
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        err += d.toString();
      });
      child.once("error", reject);
      child.once("close", (code) => resolve({ code, out, err }));
    });
  }

  it("importing main.ts in this process starts nothing", () => {
    // The static import above already ran the module: had it started the operator, it would
    // have bound its probe and metrics ports or exited this worker.
    expect(process.getActiveResourcesInfo()).not.toContain("TCPServerWrap");
    expect(process.listenerCount("SIGTERM")).toBe(0);
  });

  it("importing the built program from another script starts nothing", async () => {
    const importer = join(dir, "importer.mjs");
    await writeFile(
      importer,
      `const m = await import(${JSON.stringify(pathToFileURL(operatorMain).href)});\n` +
        `process.stdout.write(typeof m.parseOperatorFlags);\n`,
    );
    // --help would print the usage if the guard let the operator start.
    const r = await run(importer, ["--help"]);
    expect(r).toEqual({ code: 0, out: "function", err: "" });
  });

  it("run directly, or through a bin symlink, it is the operator", async () => {
    const direct = await run(operatorMain, ["--help"]);
    expect(direct.code).toBe(0);
    expect(direct.out).toContain("usage: gitaly-operator");

    const link = join(dir, "gitaly-operator");
    await symlink(operatorMain, link);
    const viaLink = await run(link, ["--help"]);
    expect(viaLink.code).toBe(0);
    expect(viaLink.out).toContain("usage: gitaly-operator");
  });

  it("a usage error exits 2 with the message and the usage on stderr", async () => {
    const r = await run(operatorMain, ["--concurrency", "0"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain('gitaly-operator: --concurrency "0": want a whole number >= 1');
    expect(r.err).toContain("usage: gitaly-operator");
  });

  it("leader election without a namespace exits 2 before touching Kubernetes", async () => {
    const r = await run(operatorMain, ["--kubeconfig", join(dir, "missing-kubeconfig")]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--leader-election-namespace");
    expect(r.err).toContain("--no-leader-elect");
  });
});
