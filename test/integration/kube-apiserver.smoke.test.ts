// Proves the real kube-apiserver (built from Go modules, see tools/envtest) runs and
// does what the operator depends on: CRDs with a status subresource, watches,
// server-side apply with a field manager, and status updates.
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { waitFor } from "../../src/shared/net.js";
import { type Envtest, startEnvtest } from "../harness/envtest.js";
import { widgetCrd as buildWidgetCrd } from "../harness/widget-crd.js";

const group = "smoke.gitaly.dev";
const version = "v1";
const plural = "widgets";
const namespace = "smoke";

const widgetCrd = buildWidgetCrd({
  group,
  spec: {
    type: "object",
    required: ["size"],
    properties: { size: { type: "integer", minimum: 1 }, color: { type: "string" } },
  },
  status: { phase: { type: "string" }, observedGeneration: { type: "integer" } },
});

interface Widget {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; generation?: number; managedFields?: { manager: string }[] };
  spec: { size: number; color?: string };
  status?: { phase?: string; observedGeneration?: number };
}

describe("kube-apiserver from tools/envtest", () => {
  let env: Envtest;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    custom = env.kubeConfig.makeApiClient(CustomObjectsApi);
    await env.kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("installs a CRD with a status subresource and serves it", async () => {
    const ext = env.kubeConfig.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: widgetCrd });
    await waitFor("CRD Established", async () => {
      const crd = await ext.readCustomResourceDefinition({ name: `${plural}.${group}` });
      return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
    });
    // The schema is enforced by the server, not by us.
    await expect(
      custom.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: { apiVersion: `${group}/${version}`, kind: "Widget", metadata: { name: "bad" }, spec: { size: 0 } },
      }),
    ).rejects.toThrow(/spec.size/);
  });

  it("creates, watches, server-side applies and updates status", async () => {
    const events: { phase: string; size: number; status?: string }[] = [];
    const watch = new Watch(env.kubeConfig);
    const controller = await watch.watch(
      `/apis/${group}/${version}/namespaces/${namespace}/${plural}`,
      {},
      (phase, obj: Widget) => events.push({ phase, size: obj.spec.size, status: obj.status?.phase }),
      () => {},
    );
    try {
      const created = (await custom.createNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        body: { apiVersion: `${group}/${version}`, kind: "Widget", metadata: { name: "one" }, spec: { size: 1 } },
      })) as Widget;
      expect(created.metadata.generation).toBe(1);

      // Server-side apply: a JSON body is valid YAML for application/apply-patch+yaml.
      const applied = (await custom.patchNamespacedCustomObject(
        {
          group,
          version,
          namespace,
          plural,
          name: "one",
          fieldManager: "gitaly-operator",
          force: true,
          body: {
            apiVersion: `${group}/${version}`,
            kind: "Widget",
            metadata: { name: "one" },
            spec: { size: 3, color: "blue" },
          },
        },
        setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
      )) as Widget;
      expect(applied.spec).toEqual({ size: 3, color: "blue" });
      expect(applied.metadata.generation).toBe(2);
      expect(applied.metadata.managedFields?.map((f) => f.manager)).toContain("gitaly-operator");

      // Status goes through the status subresource and does not bump the generation.
      const withStatus = (await custom.patchNamespacedCustomObjectStatus(
        {
          group,
          version,
          namespace,
          plural,
          name: "one",
          body: { status: { phase: "Ready", observedGeneration: 2 } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      )) as Widget;
      expect(withStatus.status).toEqual({ phase: "Ready", observedGeneration: 2 });
      expect(withStatus.metadata.generation).toBe(2);

      // A spec change through the main resource cannot touch status.
      const ignored = (await custom.patchNamespacedCustomObject(
        {
          group,
          version,
          namespace,
          plural,
          name: "one",
          body: { status: { phase: "Hacked" } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      )) as Widget;
      expect(ignored.status?.phase).toBe("Ready");

      await waitFor("watch events", async () => events.length >= 3);
      expect(events.slice(0, 3)).toEqual([
        { phase: "ADDED", size: 1, status: undefined },
        { phase: "MODIFIED", size: 3, status: undefined },
        { phase: "MODIFIED", size: 3, status: "Ready" },
      ]);
    } finally {
      controller.abort();
    }
  });
});
