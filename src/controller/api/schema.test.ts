import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { load } from "js-yaml";
import { describe, expect, it } from "vitest";
import {
  defaultReplicationFactor,
  type GitalyClusterSpec,
  gitalyClusterStatusSchema,
  parseDuration,
  parseQuantity,
  parseSpec,
  resolveSpec,
  SpecError,
  validateSpecUpdate,
} from "./index.js";

const samplesDir = resolve(import.meta.dirname, "../../../config/samples");
const samples = readdirSync(samplesDir).filter((f) => f.endsWith(".yaml"));

function sampleSpec(file: string): unknown {
  return (load(readFileSync(join(samplesDir, file), "utf8")) as { spec: unknown }).spec;
}

const base = () => ({
  gitaly: { replicas: 3, storage: { size: "10Gi" } },
  database: { managed: { storage: { size: "1Gi" } } },
});

describe("GitalyCluster spec schema", () => {
  it.each(samples)("parses config/samples/%s", (file) => {
    expect(() => parseSpec(sampleSpec(file))).not.toThrow();
  });

  it("applies every static default to a minimal spec", () => {
    expect(parseSpec(base())).toEqual({
      imagePullPolicy: "IfNotPresent",
      virtualStorage: { name: "default" },
      gitaly: { replicas: 3, storage: { size: "10Gi" } },
      praefect: { replicas: 2, failover: { enabled: true }, yamux: { maximumStreamWindowSizeBytes: 4 * 1024 * 1024 } },
      database: { managed: { storage: { size: "1Gi" } } },
      tls: { mode: "SelfSigned", duration: "2160h", renewBefore: "168h" },
      auth: { rotation: { generation: 0 } },
      paused: false,
    });
  });

  it("defaults gitaly.replicas to 3 and external database fields", () => {
    const spec = parseSpec({
      gitaly: { storage: { size: "1Gi" } },
      database: { external: { host: "db", dbname: "p", user: "u", passwordSecretRef: { name: "pw" } } },
      tls: { mode: "CertManager", issuerRef: { name: "ca" } },
    });
    expect(spec.gitaly.replicas).toBe(3);
    expect(spec.database.external).toEqual({
      host: "db",
      port: 5432,
      dbname: "p",
      user: "u",
      passwordSecretRef: { name: "pw", key: "password" },
      sslMode: "prefer",
    });
    expect(spec.tls.issuerRef).toEqual({ name: "ca", kind: "Issuer", group: "cert-manager.io" });
  });

  it("resolves the replication factor to min(3, gitaly.replicas) unless given", () => {
    const withReplicas = (replicas: number, replicationFactor?: number) =>
      resolveSpec({ ...base(), gitaly: { replicas, storage: { size: "1Gi" } }, praefect: { replicationFactor } })
        .praefect.replicationFactor;
    expect([1, 2, 3, 5].map((n) => withReplicas(n))).toEqual([1, 2, 3, 3]);
    expect(withReplicas(5, 5)).toBe(5);
    expect(defaultReplicationFactor(7)).toBe(3);
  });

  const invalid: [string, unknown, string][] = [
    ["replicas 0", { ...base(), gitaly: { replicas: 0, storage: { size: "1Gi" } } }, "spec.gitaly.replicas"],
    ["unknown TLS mode", { ...base(), tls: { mode: "Magic" } }, "spec.tls.mode"],
    [
      "replication factor above replicas",
      { ...base(), praefect: { replicationFactor: 4 } },
      "spec.praefect.replicationFactor",
    ],
    ["CertManager without issuerRef", { ...base(), tls: { mode: "CertManager" } }, "spec.tls.issuerRef"],
    ["secretName without mode Secret", { ...base(), tls: { secretName: "x" } }, "spec.tls.secretName"],
    ["renewBefore >= duration", { ...base(), tls: { duration: "1h", renewBefore: "60m" } }, "spec.tls.renewBefore"],
    ["no database", { ...base(), database: {} }, "spec.database"],
    ["missing storage size", { ...base(), gitaly: { storage: {} } }, "spec.gitaly.storage.size"],
    ["bad quantity", { ...base(), gitaly: { storage: { size: "ten gigs" } } }, "spec.gitaly.storage.size"],
    [
      "bad RPC name",
      { ...base(), gitaly: { storage: { size: "1Gi" }, concurrency: [{ rpc: "x", maxPerRepo: 1 }] } },
      "spec.gitaly.concurrency.0.rpc",
    ],
  ];
  it.each(invalid)("rejects %s with the field in the error", (_name, spec, path) => {
    let caught: unknown;
    try {
      parseSpec(spec);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(SpecError);
    expect((caught as SpecError).issues.map((i) => i.path)).toContain(path);
  });
});

describe("validateSpecUpdate (the transition rules)", () => {
  const spec = (
    patch: (s: ReturnType<typeof base> & Record<string, unknown>) => void = () => {},
  ): GitalyClusterSpec => {
    const s = base() as ReturnType<typeof base> & Record<string, unknown>;
    patch(s);
    return parseSpec(s);
  };

  it("allows growth and an equal size spelled differently", () => {
    const grown = spec((s) => {
      s.gitaly.storage.size = "10240Mi";
      s.database.managed.storage.size = "2Gi";
    });
    expect(validateSpecUpdate(spec(), grown)).toEqual([]);
  });

  it("refuses shrinking storage, naming the field", () => {
    const shrunk = spec((s) => {
      s.gitaly.storage.size = "9Gi";
      s.database.managed.storage.size = "100Mi";
    });
    expect(validateSpecUpdate(spec(), shrunk)).toEqual([
      { path: "spec.gitaly.storage.size", message: "storage cannot shrink" },
      { path: "spec.database.managed.storage.size", message: "storage cannot shrink" },
    ]);
  });

  it("refuses renaming the virtual storage, changing the storage class and lowering the rotation generation", () => {
    const before = spec((s) => {
      s.gitaly.storage = { size: "1Gi", storageClassName: "fast" } as typeof s.gitaly.storage;
      s.auth = { rotation: { generation: 2 } };
    });
    const after = spec((s) => {
      s.virtualStorage = { name: "other" };
      s.auth = { rotation: { generation: 1 } };
    });
    expect(validateSpecUpdate(before, after).map((v) => v.path)).toEqual([
      "spec.virtualStorage.name",
      "spec.gitaly.storage.storageClassName",
      "spec.auth.rotation.generation",
    ]);
  });
});

describe("status schema", () => {
  it("accepts metav1.Condition-shaped conditions and refuses unknown phases", () => {
    const condition = {
      type: "Ready",
      status: "True",
      reason: "AllReady",
      message: "",
      lastTransitionTime: "2025-01-01T00:00:00Z",
    };
    expect(gitalyClusterStatusSchema.parse({ phase: "Ready", conditions: [condition] }).conditions).toEqual([
      condition,
    ]);
    expect(gitalyClusterStatusSchema.safeParse({ phase: "Happy" }).success).toBe(false);
    expect(gitalyClusterStatusSchema.safeParse({ conditions: [{ ...condition, status: "Yes" }] }).success).toBe(false);
  });
});

describe("units", () => {
  it("parses quantities like the API server", () => {
    expect(parseQuantity("10Gi")).toBe(10 * 2 ** 30);
    expect(parseQuantity("10240Mi")).toBe(parseQuantity("10Gi"));
    expect(parseQuantity("1G")).toBe(1e9);
    expect(parseQuantity("500m")).toBe(0.5);
    expect(parseQuantity("1e3")).toBe(1000);
    expect(() => parseQuantity("10 GB")).toThrow(/invalid quantity/);
  });

  it("parses Go durations", () => {
    expect(parseDuration("2160h")).toBe(2160 * 3600e3);
    expect(parseDuration("1h30m")).toBe(5400e3);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(() => parseDuration("1d")).toThrow(/invalid duration/);
  });
});
