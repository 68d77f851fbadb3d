// The generic reconcile plumbing against a real kube-apiserver: server-side apply and
// field ownership, owner references, status through the subresource, Events, informers
// that survive a broken connection, and a controller that re-creates a deleted child.
import {
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesObject,
  PatchStrategy,
  setHeaderOptions,
  type V1ConfigMap,
} from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyObject, setOwnerReference, updateStatus } from "../../../src/controller/reconcile/apply.js";
import { Controller } from "../../../src/controller/reconcile/controller.js";
import { emitEvent } from "../../../src/controller/reconcile/events.js";
import { type ResourceEvent, watchResource } from "../../../src/controller/reconcile/watch.js";
import { waitFor } from "../../../src/shared/net.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import { widgetCrd as buildWidgetCrd } from "../../harness/widget-crd.js";
import { kubeConfigVia, serverPort } from "./reconcile-kubeconfig.js";
import { startTcpProxy, type TcpProxy } from "./reconcile-tcp-proxy.js";

const namespace = "reconcile";
const group = "reconcile.gitaly.dev";
const version = "v1";
const plural = "widgets";

const widgetCrd = buildWidgetCrd({
  group,
  spec: { type: "object", properties: { color: { type: "string" } } },
  status: {
    phase: { type: "string" },
    message: { type: "string" },
    observedGeneration: { type: "integer" },
  },
});

interface Widget extends KubernetesObject {
  spec?: { color?: string };
  status?: { phase?: string; message?: string; observedGeneration?: number };
}

function configMap(name: string, data: Record<string, string>, labels?: Record<string, string>): V1ConfigMap {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data };
}

describe("reconcile plumbing against kube-apiserver", () => {
  let env: Envtest;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    core = env.kubeConfig.makeApiClient(CoreV1Api);
    custom = env.kubeConfig.makeApiClient(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: namespace } } });
    const ext = env.kubeConfig.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: widgetCrd });
    await waitFor("CRD Established", async () => {
      const crd = await ext.readCustomResourceDefinition({ name: `${plural}.${group}` });
      return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
    });
  });
  afterAll(async () => {
    await env?.stop();
  });

  it("server-side apply is idempotent, keeps other managers' fields and corrects drift", async () => {
    const desired = configMap("ssa", { owned: "1" });
    const first = await applyObject(env.kubeConfig, desired);
    const second = await applyObject(env.kubeConfig, desired);
    expect(second.metadata?.resourceVersion).toBe(first.metadata?.resourceVersion);

    // Another manager adds a field of its own.
    await core.patchNamespacedConfigMap(
      {
        name: "ssa",
        namespace,
        fieldManager: "someone-else",
        body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ssa", namespace }, data: { theirs: "x" } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply),
    );
    // A hand edit of our field.
    await core.patchNamespacedConfigMap(
      { name: "ssa", namespace, fieldManager: "kubectl-edit", body: { data: { owned: "edited" } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    const drifted = await core.readNamespacedConfigMap({ name: "ssa", namespace });
    expect(drifted.data).toEqual({ owned: "edited", theirs: "x" });

    const corrected = await applyObject(env.kubeConfig, desired);
    expect(corrected.data).toEqual({ owned: "1", theirs: "x" });
    const managers = corrected.metadata?.managedFields?.map((f) => f.manager) ?? [];
    expect(managers).toContain("gitaly-operator");
    expect(managers).toContain("someone-else");
  });

  it("applies custom resources too and reports API errors with the object", async () => {
    const widget = await applyObject<Widget>(env.kubeConfig, {
      apiVersion: `${group}/${version}`,
      kind: "Widget",
      metadata: { name: "applied", namespace },
      spec: { color: "red" },
    });
    expect(widget.spec?.color).toBe("red");
    await expect(applyObject(env.kubeConfig, configMap("Bad_Name", { a: "b" }))).rejects.toThrow(
      /apply ConfigMap reconcile\/Bad_Name/,
    );
  });

  it("sets a controlling owner reference the API server accepts", async () => {
    const owner = await applyObject(env.kubeConfig, configMap("owner", { role: "owner" }));
    const child = await applyObject(env.kubeConfig, setOwnerReference(configMap("child", { a: "b" }), owner));
    expect(child.metadata?.ownerReferences).toEqual([
      {
        apiVersion: "v1",
        kind: "ConfigMap",
        name: "owner",
        uid: owner.metadata?.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    // Re-setting the same owner replaces the reference instead of duplicating it.
    expect(setOwnerReference(child, owner).metadata?.ownerReferences).toHaveLength(1);
    expect(() =>
      setOwnerReference(configMap("x", {}), { ...owner, metadata: { ...owner.metadata, uid: undefined } }),
    ).toThrow(/uid/);
  });

  it("updates status through the subresource declaratively", async () => {
    const created = (await custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: "Widget", metadata: { name: "st" }, spec: { color: "blue" } },
    })) as Widget;
    const target = { group, version, plural, kind: "Widget", namespace, name: "st" };
    const one = await updateStatus<Widget>(env.kubeConfig, target, {
      phase: "Progressing",
      message: "working",
      observedGeneration: 1,
    });
    expect(one.status).toEqual({ phase: "Progressing", message: "working", observedGeneration: 1 });
    expect(one.metadata?.generation).toBe(created.metadata?.generation);
    // A field we no longer report disappears.
    const two = await updateStatus<Widget>(env.kubeConfig, target, { phase: "Ready", observedGeneration: 1 });
    expect(two.status).toEqual({ phase: "Ready", observedGeneration: 1 });
    expect(two.spec).toEqual({ color: "blue" });
    // A stale resourceVersion is refused.
    await expect(
      updateStatus(env.kubeConfig, target, { phase: "Stale" }, { resourceVersion: created.metadata?.resourceVersion }),
    ).rejects.toThrow(/update status of Widget reconcile\/st/);
  });

  it("creates Events and counts repeats on the same Event", async () => {
    const owner = await core.readNamespacedConfigMap({ name: "owner", namespace });
    const involved = { ...owner, apiVersion: "v1", kind: "ConfigMap" };
    const a = await emitEvent(env.kubeConfig, involved, { type: "Normal", reason: "Applied", message: "applied it" });
    const b = await emitEvent(env.kubeConfig, involved, { type: "Normal", reason: "Applied", message: "applied it" });
    const c = await emitEvent(env.kubeConfig, involved, { type: "Warning", reason: "Failed", message: "oops" });
    expect(b.name).toBe(a.name);
    expect(b.count).toBe(2);
    expect(c.name).not.toBe(a.name);
    const events = await core.listNamespacedEvent({
      namespace,
      fieldSelector: `involvedObject.name=owner,involvedObject.uid=${owner.metadata?.uid}`,
    });
    const summary = events.items
      .map((e) => ({ reason: e.reason, type: e.type, count: e.count, kind: e.involvedObject.kind }))
      .sort((x, y) => String(x.reason).localeCompare(String(y.reason)));
    expect(summary).toEqual([
      { reason: "Applied", type: "Normal", count: 2, kind: "ConfigMap" },
      { reason: "Failed", type: "Warning", count: 1, kind: "ConfigMap" },
    ]);
  });

  describe("watchResource", () => {
    let proxy: TcpProxy;
    beforeAll(async () => {
      proxy = await startTcpProxy(serverPort(env.kubeConfig));
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it("sees add/update/delete and recovers after the connection is broken", async () => {
      const seen: string[] = [];
      const errors: unknown[] = [];
      const w = watchResource<V1ConfigMap>({
        kubeConfig: kubeConfigVia(env.kubeConfig, proxy.port),
        path: "/api/v1/configmaps",
        namespaces: [namespace],
        labelSelector: "test=watch",
        minRestartDelayMs: 50,
        maxRestartDelayMs: 500,
        onEvent: (e: ResourceEvent<V1ConfigMap>) =>
          seen.push(`${e.type}:${e.object.metadata?.name}:${e.object.data?.v}`),
        onError: (err) => errors.push(err),
      });
      try {
        await applyObject(env.kubeConfig, configMap("w-pre", { v: "0" }, { test: "watch" }));
        await applyObject(env.kubeConfig, configMap("w-unlabelled", { v: "0" }));
        await w.waitForSync();
        await waitFor("pre-existing object in cache", async () => w.get("w-pre", namespace));

        await applyObject(env.kubeConfig, configMap("w1", { v: "1" }, { test: "watch" }));
        await applyObject(env.kubeConfig, configMap("w1", { v: "2" }, { test: "watch" }));
        await core.deleteNamespacedConfigMap({ name: "w-pre", namespace });
        await waitFor("add/update/delete events", async () => seen.includes("delete:w-pre:0"));
        expect(seen).toEqual(["add:w-pre:0", "add:w1:1", "update:w1:2", "delete:w-pre:0"]);
        expect(w.list().map((o) => o.metadata?.name)).toEqual(["w1"]);

        // Break the link: the informer errors out (and would stay stopped without a restart).
        proxy.cut();
        await waitFor("watch error reported", async () => errors.length > 0);
        // Changes made while disconnected.
        await applyObject(env.kubeConfig, configMap("w2", { v: "3" }, { test: "watch" }));
        await core.deleteNamespacedConfigMap({ name: "w1", namespace });
        expect(w.get("w2", namespace)).toBeUndefined();
        proxy.heal();

        await waitFor("changes made during the outage", async () => w.get("w2", namespace) && !w.get("w1", namespace), {
          timeoutMs: 60_000,
        });
        expect(w.restarts).toBeGreaterThan(0);
        expect(seen).toContain("add:w2:3");
        expect(seen).toContain("delete:w1:2");
        expect(w.list(namespace).map((o) => o.metadata?.name)).toEqual(["w2"]);

        // And it keeps watching afterwards.
        await applyObject(env.kubeConfig, configMap("w2", { v: "4" }, { test: "watch" }));
        await waitFor("update after recovery", async () => seen.includes("update:w2:4"));
      } finally {
        await w.stop();
      }
    });
  });

  it("Controller maps owned-object events to the owner and re-creates a deleted child", async () => {
    const registry = new Registry();
    const reconciled: string[] = [];
    const controller = new Controller<Widget>({
      name: "widget",
      kubeConfig: env.kubeConfig,
      primary: { path: `/apis/${group}/${version}/${plural}`, apiVersion: `${group}/${version}`, kind: "Widget" },
      owned: [{ path: "/api/v1/configmaps", labelSelector: "app=widget" }],
      namespaces: [namespace],
      registry,
      reconcile: async ({ key, object }) => {
        reconciled.push(key);
        if (!object) return undefined;
        const child = setOwnerReference(
          {
            apiVersion: "v1",
            kind: "ConfigMap",
            metadata: { name: `${object.metadata?.name}-child`, namespace, labels: { app: "widget" } },
            data: { color: object.spec?.color ?? "" },
          },
          object,
        );
        await applyObject(env.kubeConfig, child);
        return undefined;
      },
    });
    await custom.createNamespacedCustomObject({
      group,
      version,
      namespace,
      plural,
      body: { apiVersion: `${group}/${version}`, kind: "Widget", metadata: { name: "ctl" }, spec: { color: "green" } },
    });
    await controller.start();
    try {
      await waitFor("child created", async () =>
        (await core.readNamespacedConfigMap({ name: "ctl-child", namespace })).data?.color === "green"
          ? true
          : undefined,
      );
      const before = reconciled.filter((k) => k === `${namespace}/ctl`).length;
      await core.deleteNamespacedConfigMap({ name: "ctl-child", namespace });
      await waitFor("child re-created after deletion", async () => {
        const cm = await core.readNamespacedConfigMap({ name: "ctl-child", namespace });
        return cm.metadata?.ownerReferences?.[0]?.name === "ctl";
      });
      expect(reconciled.filter((k) => k === `${namespace}/ctl`).length).toBeGreaterThan(before);
      await controller.whenIdle();
      const text = await registry.metrics();
      expect(text).toMatch(/controller_runtime_reconcile_total\{controller="widget",result="success"\} [1-9]/);
      expect(text).toContain('controller_runtime_reconcile_errors_total{controller="widget"} 0');
      expect(text).toMatch(/controller_runtime_reconcile_time_seconds_count\{controller="widget"\} [1-9]/);
      expect(text).toMatch(/workqueue_adds_total\{name="widget"\} [1-9]/);
    } finally {
      await controller.stop();
    }
  });
});
