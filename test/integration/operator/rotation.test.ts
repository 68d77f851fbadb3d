// Token rotation driven by the operator on a real kube-apiserver: the test plays the kubelet
// (it writes the ConfigMaps and Secrets the operator renders to disk, and keeps them in sync)
// and runs real Gitaly and Praefect processes from them; the operator scrapes those processes.
// Editing spec.auth.rotation.generation walks status.auth through every phase; a client that
// keeps the old token holds the rotation in Verifying; once it switches, the rotation completes.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import * as grpcJs from "@grpc/grpc-js";
import type { CoreV1Event, KubeConfig, V1ConfigMap, V1Secret } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { GitalyCluster } from "../../../src/controller/api/resource.js";
import { GitalyClusterReconciler } from "../../../src/controller/reconcile/gitaly-cluster.js";
import { kubeRequest } from "../../../src/controller/reconcile/kube-http.js";
import { watchResource } from "../../../src/controller/reconcile/watch.js";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { authMetadata } from "../../../src/shared/auth/v2-token.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { createLogger } from "../../../src/shared/logging.js";
import { freePort, waitFor } from "../../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../../src/shared/process.js";
import { type Envtest, startEnvtest } from "../../harness/envtest.js";
import { repoRoot } from "../../harness/gitaly.js";
import {
  applyCluster,
  createNamespace,
  getCluster,
  installGitalyClusterCrd,
  waitForObject,
} from "../../harness/operator.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { runPraefect } from "../../harness/praefect.js";

const ns = "rotation";
const name = "rot";
const core = (kind: string, n?: string) => `/api/v1/namespaces/${ns}/${kind}${n ? `/${n}` : ""}`;
const decode = (s: V1Secret | undefined, key: string) =>
  s?.data?.[key] === undefined ? undefined : Buffer.from(s.data[key], "base64").toString();

interface Ports {
  gitaly: number;
  gitalyMetrics: number;
  praefect: number;
  praefectMetrics: number;
}

/**
 * What the kubelet and cluster DNS do for the pods, on loopback: config files from the
 * ConfigMaps with every absolute path under `root`, listeners on loopback ports, the node's
 * Service DNS name resolved to the local Gitaly; token files from the Secrets (mode 0600).
 */
async function syncPodFiles(kc: KubeConfig, root: string, ports: Ports): Promise<void> {
  const gitalyCm = await kubeRequest<V1ConfigMap>(kc, core("configmaps", `${name}-gitaly-config`));
  const praefectCm = await kubeRequest<V1ConfigMap>(kc, core("configmaps", `${name}-praefect-config`));
  const internal = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-token`)), "token") ?? "";
  const client = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-praefect-token`)), "token") ?? "";
  const localize = (toml: string, pod: "gitaly" | "praefect") =>
    toml
      .replace(/^listen_addr = ".*"$/m, `listen_addr = "127.0.0.1:${pod === "gitaly" ? ports.gitaly : ports.praefect}"`)
      .replace(
        /^prometheus_listen_addr = ".*"$/m,
        `prometheus_listen_addr = "127.0.0.1:${pod === "gitaly" ? ports.gitalyMetrics : ports.praefectMetrics}"`,
      )
      .replace(/tcp:\/\/[a-z0-9.-]+\.svc:8075/g, `tcp://127.0.0.1:${ports.gitaly}`)
      .replace(/^(\w+) = "(\/[^"]*)"$/gm, (_l, key: string, path: string) => `${key} = "${join(root, pod, path)}"`);
  const write = (path: string, text: string) => {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
    chmodSync(`${path}.tmp`, 0o600);
    // Atomic, like the kubelet's symlink swap.
    rmSync(path, { force: true });
    writeFileSync(path, text, { mode: 0o600 });
    rmSync(`${path}.tmp`, { force: true });
  };
  write(
    join(root, "gitaly/etc/gitaly/config/config.toml"),
    localize(gitalyCm.data?.[`${name}-gitaly-0.toml`] ?? "", "gitaly"),
  );
  write(
    join(root, "praefect/etc/praefect/config/config.toml"),
    localize(praefectCm.data?.["config.toml"] ?? "", "praefect"),
  );
  write(join(root, "gitaly/etc/gitaly/auth/token"), internal);
  write(join(root, "praefect/etc/praefect/gitaly-auth/token"), internal);
  write(join(root, "praefect/etc/praefect/auth/token"), client);
  mkdirSync(join(root, "gitaly/var/lib/gitaly/storage"), { recursive: true });
  mkdirSync(join(root, "gitaly/run/gitaly"), { recursive: true });
}

function condition(c: GitalyCluster | undefined, type: string) {
  return c?.status?.conditions?.find((x) => x.type === type);
}

describe("token rotation through the operator", () => {
  let env: Envtest;
  let kc: KubeConfig;
  let db: TestDatabase;
  let reconciler: GitalyClusterReconciler;
  const root = mkdtempSync(join(tmpdir(), "rotation-pods-"));
  const procs: ManagedProcess[] = [];
  let syncing: ReturnType<typeof setInterval> | undefined;
  let ports: Ports;

  beforeAll(async () => {
    env = await startEnvtest(inject("envtestBinDir"));
    kc = env.kubeConfig;
    db = await freshDatabase("rotation");
    await installGitalyClusterCrd(kc);
    await createNamespace(kc, ns);
    const pgUrl = new URL(db.url);
    await kubeRequest(kc, core("secrets"), {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "db" },
        stringData: { password: decodeURIComponent(pgUrl.password) },
      },
    });
    ports = {
      gitaly: await freePort(),
      gitalyMetrics: await freePort(),
      praefect: await freePort(),
      praefectMetrics: await freePort(),
    };
    reconciler = new GitalyClusterReconciler({
      kubeConfig: kc,
      namespaces: [ns],
      defaultImage: "gitaly-operator:test",
      logger: createLogger({ component: "gitaly-operator-test", level: "error" }),
      registry: new Registry(),
      resyncPeriodMs: 0,
      rotationQuietPeriodMs: 3_000,
      rotationIntervalMs: 300,
      scrapeTargets: async () => [
        { name: `${name}-gitaly-0`, role: "gitaly", url: `http://127.0.0.1:${ports.gitalyMetrics}/metrics` },
        { name: `${name}-praefect-0`, role: "praefect", url: `http://127.0.0.1:${ports.praefectMetrics}/metrics` },
      ],
    });
    await reconciler.start();
    await applyCluster(kc, ns, name, {
      gitaly: { replicas: 1, storage: { size: "1Gi" } },
      praefect: { replicas: 1 },
      tls: { mode: "Disabled" },
      database: {
        external: {
          host: pgUrl.hostname,
          port: Number(pgUrl.port),
          dbname: db.name,
          user: decodeURIComponent(pgUrl.username),
          passwordSecretRef: { name: "db" },
          sslMode: "disable",
        },
      },
    });
    await waitForObject(kc, core("configmaps", `${name}-praefect-config`));
    await waitForObject(kc, core("secrets", `${name}-praefect-token`));
    await syncPodFiles(kc, root, ports);
    // The kubelet refreshes mounted ConfigMaps and Secrets; here every 200 ms.
    syncing = setInterval(() => void syncPodFiles(kc, root, ports).catch(() => {}), 200);
    const pgEnv = { PGPASSWORD: decodeURIComponent(pgUrl.password) };
    const praefectConfig = join(root, "praefect/etc/praefect/config/config.toml");
    const migrated = await runPraefect(["-config", praefectConfig, "sql-migrate"], pgEnv);
    expect(migrated.code, migrated.err).toBe(0);
    procs.push(
      startProcess(
        process.execPath,
        [join(repoRoot, "dist/gitaly/main.js"), "serve", join(root, "gitaly/etc/gitaly/config/config.toml")],
        {
          logFile: join(root, "gitaly.log"),
        },
      ),
      startProcess(process.execPath, [join(repoRoot, "dist/praefect/main.js"), "-config", praefectConfig, "serve"], {
        logFile: join(root, "praefect.log"),
        env: { ...process.env, ...pgEnv },
      }),
    );
    await waitFor(
      "metrics of both servers",
      async () => {
        const [a, b] = await Promise.all([
          fetch(`http://127.0.0.1:${ports.gitalyMetrics}/metrics`).then((r) => r.ok),
          fetch(`http://127.0.0.1:${ports.praefectMetrics}/metrics`).then((r) => r.ok),
        ]);
        return a && b;
      },
      { timeoutMs: 30_000 },
    );
  }, 180_000);

  afterAll(async () => {
    if (syncing) clearInterval(syncing);
    await Promise.all(procs.map((p) => p.stop("SIGTERM", 5_000)));
    await reconciler?.stop();
    await env?.stop();
    await db?.drop();
    rmSync(root, { recursive: true, force: true });
  });

  it("walks status.auth through every phase; a client on the old token holds it in Verifying", async () => {
    const before = await getCluster(kc, ns, name);
    expect(before.status?.auth).toMatchObject({ phase: "Stable", generation: 0 });
    const clientSecret = await waitForObject<V1Secret>(kc, core("secrets", `${name}-gitaly-client`));
    const oldClientToken = decode(clientSecret, "token") ?? "";

    // GitLab: calls Praefect continuously with the token it holds (a stubborn one, at first).
    const channel = new grpcJs.Client(`127.0.0.1:${ports.praefect}`, grpcJs.credentials.createInsecure());
    const repository = createClient(RepositoryService, channel as grpc.Client);
    let clientToken = oldClientToken;
    let calls = 0;
    const failures: string[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        try {
          await repository.repositoryExists(
            { repository: { storageName: "default", relativePath: "@hashed/00/00/missing.git" } },
            { metadata: authMetadata(clientToken) },
          );
          calls++;
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    // Every status write, from a watch (polling could miss a short phase on a busy machine).
    const phases: string[] = [before.status?.auth?.phase ?? "?"];
    const watchPhases = watchResource<GitalyCluster>({
      kubeConfig: kc,
      path: `/apis/gitaly.dev/v1alpha1/namespaces/${ns}/gitalyclusters`,
      onEvent: (e) => {
        const p = e.object.status?.auth?.phase;
        if (p && phases.at(-1) !== p) phases.push(p);
      },
    });
    await watchPhases.waitForSync();
    try {
      await applyCluster(kc, ns, name, {
        ...(before.spec as object),
        auth: { rotation: { generation: 1 } },
      });
      const held = await waitFor(
        `Verifying held by the old client token (${JSON.stringify((await getCluster(kc, ns, name)).status?.auth)})`,
        async () => {
          const c = await getCluster(kc, ns, name);
          const cond = condition(c, "TokenRotation");
          return c.status?.auth?.phase === "Verifying" && cond?.reason === "VerifyingWaiting" ? c : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      ).catch(async (err: unknown) => {
        const c = await getCluster(kc, ns, name);
        throw new Error(
          `${(err as Error).message}; status.auth: ${JSON.stringify(c.status?.auth)}; condition: ${JSON.stringify(condition(c, "TokenRotation"))}`,
        );
      });
      expect(condition(held, "TokenRotation")?.message).toMatch(/client token: \d+ denied in the last \d+ s/);
      // Held for a while: the operator does not enforce while the old token is in use.
      await new Promise((r) => setTimeout(r, 4_000));
      expect((await getCluster(kc, ns, name)).status?.auth?.phase).toBe("Verifying");

      // The client reads the client Secret again, as GitLab would on its next reload.
      clientToken = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-client`)), "token") ?? "";
      expect(clientToken).not.toBe(oldClientToken);
      const done = await waitFor(
        "rotation completed",
        async () => {
          const c = await getCluster(kc, ns, name);
          return c.status?.auth?.phase === "Stable" && c.status.auth.generation === 1 ? c : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      expect(done.status?.auth?.outcome).toBe("Completed");
      expect(done.status?.auth?.targetGeneration).toBeUndefined();
      expect(condition(done, "TokenRotation")).toMatchObject({ status: "False", reason: "Stable" });
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      running = false;
      await watchPhases.stop();
      await load;
      channel.close();
    }
    expect(phases).toEqual(["Stable", "Transitioning", "RollingOut", "Verifying", "Enforcing", "Stable"]);
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(50);

    // No token value in the status, the Events or the logs.
    const internal = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-token`)), "token") ?? "";
    const events = await kubeRequest<{ items: CoreV1Event[] }>(kc, core("events"));
    const cluster = await getCluster(kc, ns, name);
    const { readFileSync } = await import("node:fs");
    const logs = readFileSync(join(root, "gitaly.log"), "utf8") + readFileSync(join(root, "praefect.log"), "utf8");
    for (const token of [oldClientToken, clientToken, internal]) {
      expect(JSON.stringify(cluster.status)).not.toContain(token);
      expect(JSON.stringify(events.items)).not.toContain(token);
      expect(logs).not.toContain(token);
    }
    expect(events.items.map((e) => e.reason)).toEqual(
      expect.arrayContaining(["TokenRotationStarted", "TokenRotationWaiting", "TokenRotationCompleted"]),
    );
  }, 180_000);

  it("pointing the client token reference at a new Secret rotates that token the same way", async () => {
    const before = await getCluster(kc, ns, name);
    expect(before.status?.auth).toMatchObject({ phase: "Stable", generation: 1 });
    const internalBefore = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-token`)), "token");
    await kubeRequest(kc, core("secrets"), {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "gitlab-token-2" },
        stringData: { token: "client-token-chosen-by-the-gitlab-admin" },
      },
    });
    // GitLab follows the client Secret, as in the previous rotation.
    const channel = new grpcJs.Client(`127.0.0.1:${ports.praefect}`, grpcJs.credentials.createInsecure());
    const repository = createClient(RepositoryService, channel as grpc.Client);
    const failures: string[] = [];
    let running = true;
    const load = (async () => {
      while (running) {
        const token = decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-client`)), "token") ?? "";
        try {
          await repository.repositoryExists(
            { repository: { storageName: "default", relativePath: "@hashed/00/00/missing.git" } },
            { metadata: authMetadata(token) },
          );
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    try {
      await applyCluster(kc, ns, name, {
        ...(before.spec as object),
        auth: { rotation: { generation: 1 }, praefectTokenSecretRef: { name: "gitlab-token-2" } },
      });
      const done = await waitFor(
        "rotation to generation 2 completed",
        async () => {
          const c = await getCluster(kc, ns, name);
          return c.status?.auth?.phase === "Stable" && c.status.auth.generation === 2 ? c : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 200 },
      );
      expect(done.status?.auth?.outcome).toBe("Completed");
    } finally {
      running = false;
      await load;
      channel.close();
    }
    expect(failures).toEqual([]);
    const client = await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-client`));
    expect(decode(client, "token")).toBe("client-token-chosen-by-the-gitlab-admin");
    // Only the client token changed.
    expect(decode(await kubeRequest<V1Secret>(kc, core("secrets", `${name}-gitaly-token`)), "token")).toBe(
      internalBefore,
    );
  }, 180_000);
});
