// The generated GitalyCluster CRD against the real kube-apiserver: it installs, the
// samples are accepted with the schema's defaults filled in by the server (the same
// defaults zod applies), and invalid specs are refused with the offending field named.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  API_VERSION,
  CRD_FILE,
  CRD_NAME,
  type GitalyCluster,
  GROUP,
  KIND,
  PLURAL,
  parseSpec,
  VERSION,
} from "../../../src/controller/api/index.js";
import { waitFor } from "../../../src/shared/net.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";

const repoRoot = resolve(import.meta.dirname, "../../..");
const namespace = "crd-test";
const samplesDir = join(repoRoot, "config/samples");

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: Record<string, unknown>;
}

function sample(file: string): Manifest {
  return load(readFileSync(join(samplesDir, file), "utf8")) as Manifest;
}

/** A valid spec to mutate in the negative cases. */
function validSpec(): Record<string, unknown> {
  return {
    gitaly: { replicas: 3, storage: { size: "10Gi" } },
    database: { managed: { storage: { size: "1Gi" } } },
  };
}

interface Cause {
  field: string;
  message: string;
}

/** Awaits an API call that must fail with 422 and returns the server's per-field causes. */
async function rejection(call: Promise<unknown>): Promise<Cause[]> {
  const err = await call.then(
    () => {
      throw new Error("the API server accepted an invalid object");
    },
    (e: unknown) => e as { code?: number; body?: unknown },
  );
  expect(err.code).toBe(422);
  const body = (typeof err.body === "string" ? JSON.parse(err.body) : err.body) as {
    details?: { causes?: Cause[] };
  };
  return body.details?.causes ?? [];
}

/** The rejection names `field` with a message matching `message`. */
async function expectRejected(call: Promise<unknown>, field: string, message: RegExp): Promise<void> {
  const causes = await rejection(call);
  expect(causes).toContainEqual({ field, message: expect.stringMatching(message), reason: expect.any(String) });
}

function manifest(name: string, spec: Record<string, unknown>): Manifest {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec };
}

describe("GitalyCluster CRD on a real kube-apiserver", () => {
  let env: Envtest;
  let custom: CustomObjectsApi;

  const apply = async (body: Manifest) =>
    (await custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL,
        name: body.metadata.name,
        body,
        fieldManager: "crd-test",
        force: true,
      },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    )) as GitalyCluster;
  const create = async (body: Manifest) =>
    (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      body,
    })) as GitalyCluster;
  const mergePatch = async (name: string, body: unknown) =>
    (await custom.patchNamespacedCustomObject(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name, body },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as GitalyCluster;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    custom = env.kubeConfig.makeApiClient(CustomObjectsApi);
    await env.kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
    const ext = env.kubeConfig.makeApiClient(ApiextensionsV1Api);
    // The committed file, exactly as `kubectl apply -f crds/` would install it.
    // Sent untyped: client-node's typed ApiextensionsV1Api serializes through its models,
    // which drop keys such as `default` and `x-kubernetes-validations` given in JSON form.
    const crd = load(readFileSync(join(repoRoot, CRD_FILE), "utf8")) as object;
    await custom.createClusterCustomObject({
      group: "apiextensions.k8s.io",
      version: "v1",
      plural: "customresourcedefinitions",
      body: crd,
    });
    await waitFor("CRD Established", async () => {
      const got = await ext.readCustomResourceDefinition({ name: CRD_NAME });
      return got.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
    });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("is installed as a structural schema with the short name and printer columns", async () => {
    const ext = env.kubeConfig.makeApiClient(ApiextensionsV1Api);
    const got = await ext.readCustomResourceDefinition({ name: CRD_NAME });
    expect(got.status?.conditions?.find((c) => c.type === "NonStructuralSchema")).toBeUndefined();
    expect(got.status?.acceptedNames?.shortNames).toEqual(["gtc"]);
    expect(got.spec.versions[0]?.additionalPrinterColumns?.map((c) => c.name)).toEqual(
      expect.arrayContaining(["Ready", "Gitaly", "Praefect", "Phase", "Age"]),
    );
  });

  const samples = readdirSync(samplesDir).filter((f) => f.endsWith(".yaml"));
  it("has the required samples", () => {
    expect(samples).toEqual(
      expect.arrayContaining([
        "minimal.yaml",
        "external-db.yaml",
        "tls-disabled.yaml",
        "cert-manager.yaml",
        "byo-token.yaml",
        "rotation.yaml",
      ]),
    );
  });

  it.each(samples)("accepts %s and fills in the same defaults as the zod schema", async (file) => {
    const body = sample(file);
    const stored = await apply(body);
    expect(stored.metadata.generation).toBe(1);
    // The server's defaulting and zod's defaulting agree on every field.
    expect(stored.spec).toEqual(parseSpec(body.spec));
    if (file !== "minimal.yaml") return;
    expect(stored.spec.imagePullPolicy).toBe("IfNotPresent");
    expect(stored.spec.tls.duration).toBe("2160h");
    expect(stored.spec.tls.renewBefore).toBe("168h");
    expect(stored.spec.praefect.failover.enabled).toBe(true);
    expect(stored.spec.auth.rotation.generation).toBe(0);
    expect(stored.spec.virtualStorage.name).toBe("default");
    expect(stored.spec.paused).toBe(false);
  });

  it("defaults the external database port, sslMode-free fields and Secret keys", async () => {
    const read = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name: "external-db",
    })) as GitalyCluster;
    expect(read.spec.database.external).toMatchObject({ port: 5432, passwordSecretRef: { key: "password" } });
    expect(read.spec.database.external?.caSecretRef?.key).toBe("ca.crt");
  });

  it("fills defaults of a spec that only says what is required", async () => {
    const stored = await create(manifest("bare", validSpec()));
    expect(stored.spec).toMatchObject({
      imagePullPolicy: "IfNotPresent",
      virtualStorage: { name: "default" },
      gitaly: { replicas: 3 },
      praefect: { replicas: 2, failover: { enabled: true } },
      tls: { mode: "SelfSigned", duration: "2160h", renewBefore: "168h" },
      auth: { rotation: { generation: 0 } },
      paused: false,
    });
    expect(stored.spec.praefect.replicationFactor).toBeUndefined();
  });

  const invalid: [string, (spec: Record<string, unknown>) => void, string, RegExp][] = [
    [
      "replicas 0",
      (s) => Object.assign(s.gitaly as object, { replicas: 0 }),
      "spec.gitaly.replicas",
      /greater than or equal to 1/,
    ],
    [
      "praefect replicas 0",
      (s) => Object.assign(s, { praefect: { replicas: 0 } }),
      "spec.praefect.replicas",
      /greater than or equal to 1/,
    ],
    [
      "an unknown TLS mode",
      (s) => Object.assign(s, { tls: { mode: "Magic" } }),
      "spec.tls.mode",
      /Unsupported value: "Magic"/,
    ],
    [
      "a replication factor above the Gitaly replicas",
      (s) => Object.assign(s, { praefect: { replicationFactor: 4 } }),
      "spec.praefect.replicationFactor",
      /must not exceed spec\.gitaly\.replicas/,
    ],
    [
      "CertManager without issuerRef",
      (s) => Object.assign(s, { tls: { mode: "CertManager" } }),
      "spec.tls.issuerRef",
      /required when mode is CertManager/,
    ],
    [
      "issuerRef with SelfSigned",
      (s) => Object.assign(s, { tls: { mode: "SelfSigned", issuerRef: { name: "ca" } } }),
      "spec.tls.issuerRef",
      /not allowed otherwise/,
    ],
    [
      "Secret without secretName",
      (s) => Object.assign(s, { tls: { mode: "Secret" } }),
      "spec.tls.secretName",
      /required when mode is Secret/,
    ],
    [
      "renewBefore not shorter than duration",
      (s) => Object.assign(s, { tls: { duration: "24h", renewBefore: "48h" } }),
      "spec.tls.renewBefore",
      /shorter than spec\.tls\.duration/,
    ],
    [
      "both database kinds",
      (s) =>
        Object.assign(s, {
          database: {
            managed: { storage: { size: "1Gi" } },
            external: { host: "db", dbname: "p", user: "p", passwordSecretRef: { name: "pw" } },
          },
        }),
      "spec.database",
      /exactly one of spec\.database\.managed and spec\.database\.external/,
    ],
    ["neither database kind", (s) => Object.assign(s, { database: {} }), "spec.database", /exactly one of/],
    [
      "an invalid storage size",
      (s) => Object.assign(s.gitaly as object, { storage: { size: "lots" } }),
      "spec.gitaly.storage.size",
      /should match/,
    ],
    [
      "a zero storage size",
      (s) => Object.assign(s.gitaly as object, { storage: { size: "0" } }),
      "spec.gitaly.storage.size",
      /greater than zero/,
    ],
    [
      "an unknown sslMode",
      (s) =>
        Object.assign(s, {
          database: {
            external: { host: "db", dbname: "p", user: "p", passwordSecretRef: { name: "pw" }, sslMode: "on" },
          },
        }),
      "spec.database.external.sslMode",
      /Unsupported value: "on"/,
    ],
  ];

  it.each(invalid)("rejects %s, naming the field", async (_name, mutate, field, message) => {
    const spec = validSpec();
    mutate(spec);
    await expectRejected(create(manifest("invalid", spec)), field, message);
    // The zod schema refuses the same spec at the same path.
    expect(() => parseSpec(spec)).toThrow(new RegExp(`${field.replaceAll(".", "\\.")}: `));
  });

  it("lets storage grow and refuses to shrink it", async () => {
    await create(manifest("resize", validSpec()));
    const grown = await mergePatch("resize", { spec: { gitaly: { storage: { size: "20Gi" } } } });
    expect(grown.spec.gitaly.storage.size).toBe("20Gi");
    // Same size, other spelling: not a shrink.
    await mergePatch("resize", { spec: { gitaly: { storage: { size: "20480Mi" } } } });
    await expectRejected(
      mergePatch("resize", { spec: { gitaly: { storage: { size: "19Gi" } } } }),
      "spec.gitaly.storage.size",
      /storage cannot shrink/,
    );
    await expectRejected(
      mergePatch("resize", { spec: { database: { managed: { storage: { size: "500Mi" } } } } }),
      "spec.database.managed.storage.size",
      /storage cannot shrink/,
    );
  });

  it("refuses changes to immutable fields and a decreasing rotation generation", async () => {
    await create(
      manifest("immutable", {
        ...validSpec(),
        gitaly: { replicas: 3, storage: { size: "10Gi", storageClassName: "fast" } },
        auth: { rotation: { generation: 2 } },
      }),
    );
    await expectRejected(
      mergePatch("immutable", { spec: { virtualStorage: { name: "other" } } }),
      "spec.virtualStorage.name",
      /cannot be changed/,
    );
    await expectRejected(
      mergePatch("immutable", { spec: { gitaly: { storage: { storageClassName: "slow" } } } }),
      "spec.gitaly.storage.storageClassName",
      /cannot be changed/,
    );
    await expectRejected(
      mergePatch("immutable", { spec: { gitaly: { storage: { storageClassName: null } } } }),
      "spec.gitaly.storage.storageClassName",
      /cannot be changed/,
    );
    await expectRejected(
      mergePatch("immutable", { spec: { auth: { rotation: { generation: 1 } } } }),
      "spec.auth.rotation.generation",
      /cannot decrease/,
    );
    const bumped = await mergePatch("immutable", { spec: { auth: { rotation: { generation: 3 } } } });
    expect(bumped.spec.auth.rotation.generation).toBe(3);
  });

  it("serves a status subresource with conditions and the printer columns", async () => {
    await create(manifest("with-status", validSpec()));
    const status = {
      observedGeneration: 1,
      phase: "Ready",
      message: "all pods ready",
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "AllReady",
          message: "",
          lastTransitionTime: "2025-01-01T00:00:00Z",
          observedGeneration: 1,
        },
      ],
      gitaly: { replicas: 3, readyReplicas: 3 },
      praefect: { replicas: 2, readyReplicas: 1 },
      certificates: { secretName: "with-status-tls", notAfter: "2025-04-01T00:00:00Z" },
      auth: { phase: "Stable", generation: 0, finishedAt: "2025-01-01T00:00:00Z" },
      migrations: { applied: 12, lastApplied: "20240101_add_thing" },
    };
    const updated = (await custom.patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace, plural: PLURAL, name: "with-status", body: { status } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as GitalyCluster;
    expect(updated.status).toEqual(status);

    // kubectl get: the server renders the printer columns as a Table.
    const cluster = env.kubeConfig.getCurrentCluster();
    const url = `${cluster?.server}/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}/with-status`;
    const opts = { headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io" } } as RequestInit;
    const table = await fetchJson(env, url, opts);
    const names = table.columnDefinitions.map((c: { name: string }) => c.name);
    const row = table.rows[0]?.cells as unknown[];
    const cell = (name: string) => row[names.indexOf(name)];
    expect([cell("Ready"), cell("Gitaly"), cell("Praefect"), cell("Phase")]).toEqual(["True", 3, 1, "Ready"]);

    await expectRejected(
      custom.patchNamespacedCustomObjectStatus(
        {
          group: GROUP,
          version: VERSION,
          namespace,
          plural: PLURAL,
          name: "with-status",
          body: { status: { phase: "Happy" } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
      "status.phase",
      /Unsupported value: "Happy"/,
    );
  });
});

interface Table {
  columnDefinitions: { name: string }[];
  rows: { cells: unknown[] }[];
}

/** A raw GET through the kubeconfig's TLS and token, for responses client-node does not model. */
async function fetchJson(env: Envtest, url: string, init: RequestInit): Promise<Table> {
  const { request } = await import("node:https");
  const opts = { headers: {} as Record<string, string> };
  await env.kubeConfig.applyToHTTPSOptions(opts);
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { ...opts, headers: { ...opts.headers, ...(init.headers as object) } }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        data += chunk;
      });
      res.on("end", () => {
        try {
          resolvePromise(JSON.parse(data) as Table);
        } catch (err) {
          reject(new Error(`not JSON from ${url}: ${data.slice(0, 200)}`, { cause: err }));
        }
      });
    });
    req.on("error", reject);
    req.end();
  });
}
