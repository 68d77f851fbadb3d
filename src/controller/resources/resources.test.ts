// Golden files for every sample, plus the properties the rest of the system relies on: the
// rendered configs load cleanly, no secret lands in a ConfigMap, every Gitaly pod finds its
// config, and scaling up adds nodes without rolling the existing ones.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Container } from "@kubernetes/client-node";
import { dump, load } from "js-yaml";
import { describe, expect, test } from "vitest";
import { loadGitalyConfig } from "../../gitaly/config/load.js";
import { loadPraefectConfig } from "../../praefect/config/load.js";
import { resolveSpec } from "../api/resource.js";
import { applyOrder, type BuildInput, buildClusterObjects, gitalyConfigChecksum, migrationJobName } from "./index.js";

const repoRoot = join(import.meta.dirname, "../../..");
const SAMPLES = ["minimal", "external-db", "tls-disabled"] as const;
const SENTINELS = {
  praefectToken: "SENTINEL-client-token-0c1f",
  gitalyToken: "SENTINEL-internal-token-7a2e",
  databasePassword: "SENTINEL-db-password-55b9",
};
const FAKE_PEM = (what: string) => `-----BEGIN ${what}-----\nZmFrZQ==\n-----END ${what}-----\n`;

function sample(name: string): { metadata: { name: string }; spec: unknown } {
  return load(readFileSync(join(repoRoot, "config/samples", `${name}.yaml`), "utf8")) as {
    metadata: { name: string };
    spec: unknown;
  };
}

function inputFor(
  name: string,
  overrides: Partial<BuildInput> = {},
  specPatch?: (s: Record<string, unknown>) => void,
): BuildInput {
  const doc = sample(name);
  const raw = structuredClone(doc.spec) as Record<string, unknown>;
  specPatch?.(raw);
  const spec = resolveSpec(raw);
  const tls =
    spec.tls.mode === "SelfSigned"
      ? {
          caCertificate: FAKE_PEM("CERTIFICATE"),
          caPrivateKey: FAKE_PEM("PRIVATE KEY"),
          certificate: FAKE_PEM("CERTIFICATE"),
          privateKey: FAKE_PEM("PRIVATE KEY"),
        }
      : undefined;
  return {
    cluster: { name: doc.metadata.name, namespace: "git", uid: "00000000-0000-4000-8000-000000000001" },
    spec,
    defaultImage: "gitaly-operator:test",
    defaultPostgresImage: "postgres:test",
    gitalyReplicas: spec.gitaly.replicas,
    ...(spec.database.managed ? { databasePassword: SENTINELS.databasePassword } : {}),
    tokens: { internal: { token: SENTINELS.gitalyToken }, client: { token: SENTINELS.praefectToken } },
    ...(tls ? { tls, clientCa: tls.caCertificate } : {}),
    ...overrides,
  };
}

function container(obj: { spec?: { template?: { spec?: { containers?: V1Container[] } } } }): V1Container {
  const c = obj.spec?.template?.spec?.containers?.[0];
  if (!c) throw new Error("no container");
  return c;
}

describe.each(SAMPLES)("sample %s", (name) => {
  const input = inputFor(name);
  const objects = buildClusterObjects(input);

  test("matches its golden file", async () => {
    const text = applyOrder(objects)
      .map((o) => dump(o, { noRefs: true, lineWidth: 120, sortKeys: false }))
      .join("---\n");
    await expect(text).toMatchFileSnapshot(join(import.meta.dirname, "testdata", `${name}.yaml`));
  });

  test("every Gitaly node's config loads with no warning and names the pod as its storage", () => {
    const data = objects.gitalyConfig.data ?? {};
    expect(Object.keys(data)).toEqual(
      Array.from({ length: input.gitalyReplicas }, (_, i) => `${input.cluster.name}-gitaly-${i}.toml`),
    );
    for (const [key, text] of Object.entries(data)) {
      const { config, warnings } = loadGitalyConfig(text);
      expect(warnings).toEqual([]);
      expect(config.storage.map((s) => s.name)).toEqual([key.replace(/\.toml$/, "")]);
      expect(config.auth.token_file).toBe("/etc/gitaly/auth/token");
    }
  });

  test("the pod reads its own config, $(POD_NAME).toml, from the ConfigMap mounted as a directory", () => {
    const c = container(objects.gitaly);
    expect(c.args).toEqual(["gitaly", "serve", "/etc/gitaly/config/$(POD_NAME).toml"]);
    // A directory mount (no subPath): ConfigMap updates, such as [auth] transitioning, reach the pod.
    const mount = c.volumeMounts?.find((m) => m.name === "config");
    expect(mount).toEqual({ name: "config", mountPath: "/etc/gitaly/config", readOnly: true });
    expect(c.env?.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");
    const praefect = container(objects.praefect);
    expect(praefect.args).toEqual(["praefect", "-config", "/etc/praefect/config/config.toml", "serve"]);
    expect(praefect.volumeMounts?.find((m) => m.name === "config")?.subPath).toBeUndefined();
  });

  test("Praefect's config loads with no warning and lists every Gitaly pod", () => {
    const { config, warnings } = loadPraefectConfig(objects.praefectConfig.data?.["config.toml"] ?? "");
    expect(warnings).toEqual([]);
    const nodes = config.virtual_storage[0]?.node ?? [];
    expect(nodes.map((n) => n.storage)).toEqual(
      Array.from({ length: input.gitalyReplicas }, (_, i) => `${input.cluster.name}-gitaly-${i}`),
    );
    const scheme = input.spec.tls.mode === "Disabled" ? "tcp" : "tls";
    for (const n of nodes) {
      expect(n.address).toBe(
        `${scheme}://${n.storage}.${input.cluster.name}-gitaly.git.svc:${scheme === "tls" ? 8076 : 8075}`,
      );
    }
    expect(config.virtual_storage[0]?.default_replication_factor).toBe(input.spec.praefect.replicationFactor);
  });

  test("no secret value appears outside a Secret", () => {
    for (const obj of applyOrder(objects)) {
      if (obj.kind === "Secret") continue;
      const text = JSON.stringify(obj);
      for (const s of Object.values(SENTINELS)) expect(text, `${obj.kind} ${obj.metadata?.name}`).not.toContain(s);
    }
  });

  test("every object is owned by the cluster and lives in its namespace", () => {
    for (const obj of applyOrder(objects)) {
      expect(obj.metadata?.namespace).toBe("git");
      expect(obj.metadata?.ownerReferences).toEqual([
        expect.objectContaining({ kind: "GitalyCluster", uid: input.cluster.uid, controller: true }),
      ]);
    }
  });

  test("pods run as non-root with a read-only root filesystem", () => {
    for (const obj of [objects.gitaly, objects.praefect, objects.migrationJob]) {
      const pod = (obj as { spec?: { template?: { spec?: { securityContext?: object; containers?: V1Container[] } } } })
        .spec?.template?.spec;
      expect(pod?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
      for (const c of pod?.containers ?? []) {
        expect(c.securityContext).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        });
      }
    }
  });

  test("the client Secret carries the address, the token and (with TLS) the CA", () => {
    const data = objects.clientSecret.data ?? {};
    const decoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]));
    expect(objects.clientSecret.metadata?.name).toBe(`${input.cluster.name}-gitaly-client`);
    expect(decoded.token).toBe(SENTINELS.praefectToken);
    expect(decoded.address).toBe(
      input.spec.tls.mode === "Disabled"
        ? `tcp://${input.cluster.name}-praefect.git.svc:2305`
        : `tls://${input.cluster.name}-praefect.git.svc:3305`,
    );
    expect("ca.crt" in decoded).toBe(input.spec.tls.mode !== "Disabled");
  });
});

describe("scaling and changes", () => {
  test("Gitaly 3 → 5 adds two node configs and Praefect nodes without rolling the existing Gitaly pods", () => {
    const three = buildClusterObjects(inputFor("minimal"));
    const five = buildClusterObjects(
      inputFor("minimal", { gitalyReplicas: 5 }, (s) => {
        (s.gitaly as Record<string, unknown>).replicas = 5;
      }),
    );
    expect(five.gitaly.spec?.replicas).toBe(5);
    expect(Object.keys(five.gitalyConfig.data ?? {})).toHaveLength(5);
    for (const [key, text] of Object.entries(three.gitalyConfig.data ?? {})) {
      expect(five.gitalyConfig.data?.[key]).toBe(text);
    }
    expect(five.gitaly.spec?.template.metadata?.annotations).toEqual(three.gitaly.spec?.template.metadata?.annotations);
    const nodes = loadPraefectConfig(five.praefectConfig.data?.["config.toml"] ?? "").config.virtual_storage[0]?.node;
    expect(nodes?.map((n) => n.storage)).toContain("minimal-gitaly-4");
    // Praefect must learn the new nodes: its pods roll.
    expect(five.praefect.spec?.template.metadata?.annotations).not.toEqual(
      three.praefect.spec?.template.metadata?.annotations,
    );
  });

  test("a config change rolls the Gitaly pods (checksum follows the common config)", () => {
    const before = gitalyConfigChecksum(inputFor("minimal"));
    const after = gitalyConfigChecksum(
      inputFor("minimal", {}, (s) => {
        (s.gitaly as Record<string, unknown>).concurrency = [
          { rpc: "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel", maxPerRepo: 5 },
        ];
      }),
    );
    expect(after).not.toBe(before);
  });

  test("a refused scale-down keeps the deployed node count everywhere", () => {
    const objects = buildClusterObjects(
      inputFor("minimal", { gitalyReplicas: 5 }, (s) => {
        (s.gitaly as Record<string, unknown>).replicas = 3;
      }),
    );
    expect(objects.gitaly.spec?.replicas).toBe(5);
    expect(Object.keys(objects.gitalyConfig.data ?? {})).toHaveLength(5);
  });

  test("the volume claim template keeps the deployed size (templates are immutable)", () => {
    const objects = buildClusterObjects(
      inputFor("minimal", { deployedClaimSizes: { gitaly: "10Gi" } }, (s) => {
        ((s.gitaly as Record<string, unknown>).storage as Record<string, unknown>).size = "20Gi";
      }),
    );
    expect(objects.gitaly.spec?.volumeClaimTemplates?.[0]?.spec?.resources?.requests?.storage).toBe("10Gi");
  });

  test("a new image gets a new migration Job; a replica change does not", () => {
    const base = migrationJobName(inputFor("minimal"));
    expect(
      migrationJobName(
        inputFor("minimal", {}, (s) => {
          s.image = "gitaly-operator:next";
        }),
      ),
    ).not.toBe(base);
    expect(
      migrationJobName(
        inputFor("minimal", {}, (s) => {
          (s.praefect as Record<string, unknown>).replicas = 4;
        }),
      ),
    ).toBe(base);
  });

  test("the pods always mount the operator's token Secrets, even with user-supplied tokens", () => {
    const input = inputFor("minimal", {}, (s) => {
      s.auth = {
        praefectTokenSecretRef: { name: "gitlab-praefect" },
        gitalyTokenSecretRef: { name: "internal", key: "t" },
      };
    });
    const objects = buildClusterObjects(input);
    // Rotating means changing what our Secrets hold, never which Secret a pod mounts.
    expect(objects.tokenSecrets.map((s) => s.metadata?.name)).toEqual([
      "minimal-gitaly-token",
      "minimal-praefect-token",
    ]);
    const volumes = objects.praefect.spec?.template.spec?.volumes ?? [];
    expect(volumes.find((v) => v.name === "auth")?.secret).toMatchObject({
      secretName: "minimal-praefect-token",
      items: [{ key: "token", path: "token" }],
    });
    expect(volumes.find((v) => v.name === "gitaly-auth")?.secret).toMatchObject({
      secretName: "minimal-gitaly-token",
      items: [{ key: "token", path: "token" }],
    });
  });

  test("a rotation in progress keeps old and new tokens in the Secret and flips transitioning without rolling pods", () => {
    const stable = buildClusterObjects(inputFor("minimal"));
    const rotating = buildClusterObjects(
      inputFor("minimal", {
        transitioning: true,
        tokens: {
          internal: { token: "new-internal", old: SENTINELS.gitalyToken, new: "new-internal" },
          client: { token: SENTINELS.praefectToken, old: SENTINELS.praefectToken, new: "new-client" },
        },
      }),
    );
    const internal = rotating.tokenSecrets[0]?.data ?? {};
    const decoded = Object.fromEntries(
      Object.entries(internal).map(([k, v]) => [k, Buffer.from(v, "base64").toString()]),
    );
    expect(decoded).toEqual({ token: "new-internal", old: SENTINELS.gitalyToken, new: "new-internal" });
    const gitalyConfig = loadGitalyConfig(Object.values(rotating.gitalyConfig.data ?? {})[0] ?? "").config;
    expect(gitalyConfig.auth.transitioning).toBe(true);
    expect(loadPraefectConfig(rotating.praefectConfig.data?.["config.toml"] ?? "").config.auth.transitioning).toBe(
      true,
    );
    expect(rotating.gitaly.spec?.template.metadata?.annotations).toEqual(
      stable.gitaly.spec?.template.metadata?.annotations,
    );
    expect(rotating.praefect.spec?.template.metadata?.annotations).toEqual(
      stable.praefect.spec?.template.metadata?.annotations,
    );
  });

  test("building without a token fails loudly", () => {
    expect(() =>
      buildClusterObjects(inputFor("minimal", { tokens: { internal: { token: "" }, client: { token: "x" } } })),
    ).toThrow(/internal token is missing/);
  });
});
