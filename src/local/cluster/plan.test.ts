import { resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { loadGitalyConfig } from "../../gitaly/config/load.js";
import { loadPraefectConfig } from "../../praefect/config/load.js";
import {
  clusterPorts,
  concurrencyParams,
  failoverParams,
  gitalyRuntimeDir,
  listenerNames,
  type PlanInput,
  planCluster,
} from "./plan.js";
import { loadSample, parseSample } from "./sample.js";
import { stateLayout } from "./state.js";
import type { LocalTls } from "./tls.js";

const samples = resolve(import.meta.dirname, "../../../config/samples");
const minimal = loadSample(`${samples}/minimal.yaml`);
const layout = stateLayout("/state/minimal");
const TLS: LocalTls = {
  caFile: "/state/minimal/tls/ca.crt",
  trustBundleFile: "/state/minimal/tls/trust-bundle.pem",
  gitaly: { certificatePath: "/state/minimal/tls/gitaly.crt", keyPath: "/state/minimal/tls/gitaly.key" },
  praefect: { certificatePath: "/state/minimal/tls/praefect.crt", keyPath: "/state/minimal/tls/praefect.key" },
};

/** Ports 20000, 20001, … in listenerNames() order. */
function sequentialPorts(spec: PlanInput["spec"]): Record<string, number> {
  return Object.fromEntries(listenerNames(spec).map((name, i) => [name, 20_000 + i]));
}

function plan(sample = minimal, overrides: Partial<PlanInput> = {}) {
  return planCluster({
    name: sample.name,
    spec: sample.spec,
    layout,
    ports: clusterPorts(sample.spec, 5432, sequentialPorts(sample.spec)),
    tls: TLS,
    logLevel: "info",
    shortRuntimeBase: "/tmp",
    ...overrides,
  });
}

describe("planCluster for config/samples/minimal.yaml", () => {
  const p = plan();

  test("runs 3 Gitaly nodes named like the StatefulSet's pods and 2 Praefects", () => {
    expect(p.gitaly.map((g) => g.storage)).toEqual(["minimal-gitaly-0", "minimal-gitaly-1", "minimal-gitaly-2"]);
    expect(p.praefect.map((r) => r.name)).toEqual(["praefect-0", "praefect-1"]);
    expect(p.replicationFactor).toBe(3);
    expect(p.virtualStorage).toBe("default");
    expect(p.tls).toBe(true);
  });

  test("gives every listener its own loopback port", () => {
    const addresses = [...p.gitaly, ...p.praefect].flatMap((n) => [n.address, n.tlsAddress, n.metricsUrl]);
    expect(addresses.every((a) => a?.includes("127.0.0.1:"))).toBe(true);
    const ports = addresses.map((a) => /:(\d+)/.exec(a ?? "")?.[1]);
    expect(new Set(ports).size).toBe(ports.length);
    expect(p.clientAddress).toBe(p.praefect[0]?.tlsAddress);
  });

  test.each([0, 1, 2])(
    "Gitaly node %i's config loads cleanly and serves its storage over TLS with the internal token",
    (i) => {
      const node = p.gitaly[i];
      if (!node) throw new Error("missing node");
      const { config, warnings } = loadGitalyConfig(node.config);
      expect(warnings).toEqual([]);
      expect(`tcp://${config.listen_addr}`).toBe(node.address);
      expect(`tls://${config.tls_listen_addr}`).toBe(node.tlsAddress);
      expect(config.tls).toMatchObject({ certificate_path: TLS.gitaly.certificatePath, key_path: TLS.gitaly.keyPath });
      expect(config.storage).toEqual([
        { name: node.storage, path: `/state/minimal/gitaly/${node.storage}/repositories` },
      ]);
      expect(config.auth).toMatchObject({ token: "", token_file: layout.gitalyTokenFile });
      expect(config.runtime_dir).toBe(node.runtimeDir);
      expect(node.configPath).toBe(`/state/minimal/gitaly/${node.storage}/config.toml`);
      expect(node.logFile).toBe(`/state/minimal/logs/${node.storage}.log`);
    },
  );

  test("each Praefect's config loads cleanly, names every node over tls:// with the token file, and holds no secret", () => {
    for (const r of p.praefect) {
      const { config, warnings } = loadPraefectConfig(r.config);
      expect(warnings).toEqual([]);
      expect(`tcp://${config.listen_addr}`).toBe(r.address);
      expect(`tls://${config.tls_listen_addr}`).toBe(r.tlsAddress);
      expect(config.auth).toMatchObject({ token: "", token_file: layout.praefectTokenFile });
      const [vs] = config.virtual_storage;
      expect(vs?.default_replication_factor).toBe(3);
      expect(vs?.node.map((n) => [n.storage, n.address, n.token_file])).toEqual(
        p.gitaly.map((g) => [g.storage, g.tlsAddress, layout.gitalyTokenFile]),
      );
      expect(config.database).toMatchObject({
        host: "127.0.0.1",
        port: 5432,
        user: "postgres",
        dbname: "praefect",
        sslmode: "disable",
        password: "",
      });
      expect(config.failover.enabled).toBe(true);
    }
  });
});

describe("planCluster for other specs", () => {
  test("tls.mode Disabled: plaintext listeners only, and Praefect dials tcp://", () => {
    const sample = loadSample(`${samples}/tls-disabled.yaml`);
    const p = plan(sample, { tls: undefined });
    expect(p.tls).toBe(false);
    expect(p.clientAddress).toBe(p.praefect[0]?.address);
    expect(p.gitaly.map((g) => g.tlsAddress)).toEqual([undefined]);
    const { config } = loadPraefectConfig(p.praefect[0]?.config ?? "");
    expect(config.tls_listen_addr).toBe("");
    expect(config.virtual_storage[0]?.node.map((n) => n.address)).toEqual([p.gitaly[0]?.address]);
    expect(loadGitalyConfig(p.gitaly[0]?.config ?? "").config.tls_listen_addr).toBe("");
  });

  test("a TLS spec without certificates is refused", () => {
    expect(() => plan(minimal, { tls: undefined })).toThrow(/asks for TLS/);
  });

  test("concurrency limits and the replication factor of the spec reach the configs", () => {
    const sample = loadSample(`${samples}/external-db.yaml`);
    const p = plan(sample);
    const { config } = loadGitalyConfig(p.gitaly[0]?.config ?? "");
    expect(config.concurrency).toEqual([
      expect.objectContaining({
        rpc: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel",
        max_concurrency: 20,
        max_queue_size: 100,
        max_queue_wait: 1_000,
      }),
    ]);
    expect(loadPraefectConfig(p.praefect[0]?.config ?? "").config.virtual_storage[0]?.default_replication_factor).toBe(
      2,
    );
  });
});

describe("spec to render parameters", () => {
  test("concurrencyParams maps maxPerRepo to Gitaly's max_concurrency and durations to ms", () => {
    expect(concurrencyParams(undefined)).toEqual([]);
    expect(concurrencyParams([{ rpc: "/gitaly.X/Y", maxPerRepo: 3, maxQueueWait: "1m30s" }])).toEqual([
      { rpc: "/gitaly.X/Y", maxConcurrency: 3, maxQueueWaitMs: 90_000 },
    ]);
  });

  test("failoverParams carries the thresholds only when set", () => {
    expect(failoverParams({ enabled: false })).toEqual({ enabled: false });
    expect(
      failoverParams({
        enabled: true,
        errorThresholdWindow: "20s",
        writeErrorThresholdCount: 10,
        readErrorThresholdCount: 5,
      }),
    ).toEqual({
      enabled: true,
      errorThresholdWindowMs: 20_000,
      writeErrorThresholdCount: 10,
      readErrorThresholdCount: 5,
    });
  });

  test("listenerNames has a TLS listener per process only when the spec runs TLS", () => {
    const plain = parseSample(
      "apiVersion: gitaly.dev/v1alpha1\nkind: GitalyCluster\nmetadata: {name: a}\nspec: {gitaly: {replicas: 1, storage: {size: 1Gi}}, praefect: {replicas: 1}, database: {managed: {storage: {size: 1Gi}}}, tls: {mode: Disabled}}\n",
      "inline",
    );
    expect(listenerNames(plain.spec)).toEqual([
      "gitaly-0.grpc",
      "gitaly-0.metrics",
      "praefect-0.grpc",
      "praefect-0.metrics",
    ]);
    expect(listenerNames(minimal.spec).filter((n) => n.endsWith(".tls"))).toHaveLength(5);
    expect(() => clusterPorts(plain.spec, 1, { "gitaly-0.grpc": 1 })).toThrow(/gitaly-0.metrics/);
  });

  test("gitalyRuntimeDir stays in the state dir unless Gitaly's socket path would be too long there", () => {
    expect(gitalyRuntimeDir(layout, "minimal-gitaly-0", 0, "/tmp")).toBe("/state/minimal/gitaly/minimal-gitaly-0/run");
    const deep = stateLayout(`/home/${"x".repeat(80)}/state`);
    const short = gitalyRuntimeDir(deep, "minimal-gitaly-1", 1, "/tmp");
    expect(short).toMatch(/^\/tmp\/gitaly-cluster-[0-9a-f]{10}\/1$/);
    expect(gitalyRuntimeDir(deep, "minimal-gitaly-1", 1, "/tmp")).toBe(short);
    expect(gitalyRuntimeDir(stateLayout("/home/other"), "minimal-gitaly-1", 1, "/tmp")).toBe(
      "/home/other/gitaly/minimal-gitaly-1/run",
    );
  });
});
