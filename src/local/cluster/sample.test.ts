import { describe, expect, test } from "vitest";
import { defaultStateDir, localDeviations, localTlsEnabled, parseSample } from "./sample.js";

const manifest = (spec: string, name = "demo", kind = "GitalyCluster") =>
  `apiVersion: gitaly.dev/v1alpha1\nkind: ${kind}\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
const BASE = "  gitaly:\n    storage: {size: 1Gi}\n  database:\n    managed: {storage: {size: 1Gi}}\n";

describe("parseSample", () => {
  test("applies the operator's defaults", () => {
    const { name, spec } = parseSample(manifest(BASE), "x.yaml");
    expect(name).toBe("demo");
    expect(spec.gitaly.replicas).toBe(3);
    expect(spec.praefect.replicas).toBe(2);
    expect(spec.praefect.replicationFactor).toBe(3);
    expect(spec.virtualStorage.name).toBe("default");
    expect(spec.tls.mode).toBe("SelfSigned");
    expect(localTlsEnabled(spec)).toBe(true);
  });

  test("names the file and the field when the manifest is wrong", () => {
    expect(() => parseSample(manifest(BASE, "demo", "Widget"), "x.yaml")).toThrow(/x\.yaml: expected apiVersion/);
    expect(() => parseSample(manifest(BASE, "Demo"), "x.yaml")).toThrow(/x\.yaml: metadata.name "Demo"/);
    expect(() => parseSample("a: [", "x.yaml")).toThrow(/x\.yaml: not valid YAML/);
    expect(() => parseSample(manifest(`${BASE}  praefect: {replicationFactor: 5}\n`), "x.yaml")).toThrow(
      /x\.yaml: spec\.praefect\.replicationFactor/,
    );
  });

  test("says what a local run does instead of what it cannot do", () => {
    const external = parseSample(
      manifest(
        "  gitaly:\n    storage: {size: 1Gi}\n  database:\n    external: {host: db.example.com, dbname: p, user: p, passwordSecretRef: {name: s}}\n  tls: {mode: Secret, secretName: t}\n",
      ),
      "x.yaml",
    );
    const notes = localDeviations(external.spec).join("\n");
    expect(notes).toMatch(/tls\.mode Secret: .*local self-signed CA/);
    expect(notes).toMatch(/database\.external \(db\.example\.com\): .*embedded PostgreSQL/);
    expect(localTlsEnabled(external.spec)).toBe(true);
    expect(localDeviations(parseSample(manifest(BASE), "x.yaml").spec)).toEqual([]);
  });
});

describe("defaultStateDir", () => {
  test("follows XDG_STATE_HOME, else ~/.local/state", () => {
    expect(defaultStateDir("demo", { XDG_STATE_HOME: "/xdg", HOME: "/home/u" })).toBe("/xdg/gitaly-cluster/demo");
    expect(defaultStateDir("demo", { HOME: "/home/u" })).toBe("/home/u/.local/state/gitaly-cluster/demo");
    // A relative XDG_STATE_HOME is invalid by the spec and ignored.
    expect(defaultStateDir("demo", { XDG_STATE_HOME: "rel", HOME: "/home/u" })).toBe(
      "/home/u/.local/state/gitaly-cluster/demo",
    );
  });
});
