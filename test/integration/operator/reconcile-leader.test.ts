// Lease-based leader election between two electors in one process, against the real
// coordination.k8s.io/v1 Lease: one leader at a time, a graceful hand-over, and a
// take-over after a leader loses its connection and its lease expires.
import { CoordinationV1Api, CoreV1Api } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { LeaderElector, type LeaderElectorOptions } from "../../../src/controller/reconcile/leader.js";
import { ControllerMetrics } from "../../../src/controller/reconcile/metrics.js";
import { waitFor } from "../../../src/shared/net.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import { kubeConfigVia, serverPort } from "./reconcile-kubeconfig.js";
import { startTcpProxy } from "./reconcile-tcp-proxy.js";

const namespace = "leader";

describe("LeaderElector against kube-apiserver", () => {
  let env: Envtest;
  let leases: CoordinationV1Api;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    leases = env.kubeConfig.makeApiClient(CoordinationV1Api);
    await env.kubeConfig.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await env?.stop();
  });

  /** Two electors sharing a log of leadership transitions and a count of concurrent leaders. */
  function pair(lease: string, overrides: Partial<Record<"a" | "b", Partial<LeaderElectorOptions>>> = {}) {
    const log: string[] = [];
    let leaders = 0;
    let maxLeaders = 0;
    const make = (id: "a" | "b") =>
      new LeaderElector({
        kubeConfig: env.kubeConfig,
        namespace,
        name: lease,
        identity: id,
        leaseDurationSeconds: 3,
        renewDeadlineMs: 2000,
        retryPeriodMs: 200,
        onStartedLeading: () => {
          leaders++;
          maxLeaders = Math.max(maxLeaders, leaders);
          log.push(`${id}:start`);
        },
        onStoppedLeading: (reason) => {
          leaders--;
          log.push(`${id}:stop:${reason}`);
        },
        ...overrides[id],
      });
    return { a: make("a"), b: make("b"), log, maxLeaders: () => maxLeaders };
  }

  it("elects one leader and hands over on graceful stop", async () => {
    const registry = new Registry();
    const metrics = ControllerMetrics.forRegistry(registry);
    const { a, b, log, maxLeaders } = pair("handover", { a: { metrics } });
    a.start();
    await waitFor("a leads", async () => a.isLeader());
    b.start();
    // b keeps campaigning against a live lease without ever leading.
    await waitFor("b saw a as holder", async () => b.leader === "a");
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 200));
      expect(b.isLeader()).toBe(false);
    }
    expect((await leases.readNamespacedLease({ name: "handover", namespace })).spec?.holderIdentity).toBe("a");
    expect(await registry.metrics()).toContain('leader_election_master_status{name="handover"} 1');

    await a.stop();
    expect(a.state).toBe("stopped");
    expect(await registry.metrics()).toContain('leader_election_master_status{name="handover"} 0');
    await waitFor("b takes over", async () => b.isLeader());
    const lease = await leases.readNamespacedLease({ name: "handover", namespace });
    expect(lease.spec?.holderIdentity).toBe("b");
    expect(lease.spec?.leaseTransitions).toBe(1);
    await b.stop();
    expect(log).toEqual(["a:start", "a:stop:released", "b:start", "b:stop:released"]);
    expect(maxLeaders()).toBe(1);
    // Released: no holder, and a 1 s lease so a successor does not wait.
    const released = await leases.readNamespacedLease({ name: "handover", namespace });
    expect(released.spec?.holderIdentity ?? "").toBe("");
    expect(released.spec?.leaseDurationSeconds).toBe(1);
  });

  it("a leader that cannot renew steps down and the other takes over after expiry", async () => {
    const proxy = await startTcpProxy(serverPort(env.kubeConfig));
    let signal: AbortSignal | undefined;
    const { a, b, log, maxLeaders } = pair("takeover", {
      a: {
        kubeConfig: kubeConfigVia(env.kubeConfig, proxy.port),
        onStartedLeading: (s) => {
          signal = s;
          log.push("a:start");
        },
        onStoppedLeading: (reason) => {
          log.push(`a:stop:${reason}`);
        },
      },
    });
    try {
      a.start();
      await waitFor("a leads", async () => a.isLeader());
      b.start();
      await waitFor("b saw a as holder", async () => b.leader === "a");
      proxy.cut();
      await waitFor("b takes over", async () => b.isLeader(), { timeoutMs: 30_000 });
      // a gave up (and aborted its work) before b could acquire the expired lease.
      expect(log).toEqual(["a:start", "a:stop:lost", "b:start"]);
      expect(signal?.aborted).toBe(true);
      expect(a.state).toBe("stopped");
      expect(maxLeaders()).toBe(1);
      const lease = await leases.readNamespacedLease({ name: "takeover", namespace });
      expect(lease.spec?.holderIdentity).toBe("b");
    } finally {
      await a.stop();
      await b.stop();
      await proxy.close();
    }
  });
});
