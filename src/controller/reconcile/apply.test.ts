import { describe, expect, test } from "vitest";
import { coversDesired, knownResourcePath } from "./apply.js";

describe("coversDesired", () => {
  const desired = {
    metadata: { name: "x", labels: { a: "1" } },
    spec: { replicas: 3, template: { spec: { containers: [{ name: "c", env: [{ name: "A", value: "1" }] }] } } },
  };

  test("an object with server defaults and status added covers what we asked for", () => {
    const actual = structuredClone(desired) as Record<string, unknown> & typeof desired;
    Object.assign(actual.metadata, { uid: "u", resourceVersion: "7", labels: { a: "1", other: "kept" } });
    Object.assign(actual.spec.template.spec.containers[0] as object, { imagePullPolicy: "IfNotPresent" });
    Object.assign(actual, { status: { readyReplicas: 3 } });
    expect(coversDesired(desired, actual)).toBe(true);
  });

  test("a changed value, a removed array element or a hand edit does not", () => {
    const edited = structuredClone(desired);
    edited.spec.replicas = 1;
    expect(coversDesired(desired, edited)).toBe(false);
    const longer = structuredClone(desired);
    longer.spec.template.spec.containers[0]?.env.push({ name: "B", value: "2" });
    expect(coversDesired(desired, longer)).toBe(false);
  });

  test("Secret and ConfigMap data must match exactly: a key we dropped is a change", () => {
    expect(coversDesired({ data: { token: "dA==" } }, { data: { token: "dA==", old: "bw==" } })).toBe(false);
    expect(coversDesired({ data: { token: "dA==" } }, { data: { token: "dA==" } })).toBe(true);
  });
});

describe("knownResourcePath", () => {
  test("core and grouped kinds, namespaced", () => {
    expect(knownResourcePath({ apiVersion: "v1", kind: "Secret", metadata: { name: "s", namespace: "n" } })).toBe(
      "/api/v1/namespaces/n/secrets/s",
    );
    expect(
      knownResourcePath({ apiVersion: "apps/v1", kind: "StatefulSet", metadata: { name: "g", namespace: "n" } }),
    ).toBe("/apis/apps/v1/namespaces/n/statefulsets/g");
    expect(
      knownResourcePath({ apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w", namespace: "n" } }),
    ).toBeUndefined();
  });
});
