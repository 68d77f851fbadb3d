// A real Kubernetes control plane for the operator's tests: etcd plus kube-apiserver,
// built from Go modules by tools/envtest/build.sh and started here on free loopback
// ports with throwaway certificates and a static admin token. No controller-manager
// or scheduler runs, so Pods never start; objects, watches, server-side apply,
// status subresources and admission are all the real thing.
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { freePort, waitFor } from "../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../src/shared/process.js";
import { createCertificateAuthority, issueCertificate } from "../../src/shared/tls/certificates.js";

const repoRoot = resolve(import.meta.dirname, "../..");

/** Builds (or finds cached) kube-apiserver and etcd and returns their directory. */
export function envtestBinDir(): string {
  if (process.env.ENVTEST_BIN_DIR) return process.env.ENVTEST_BIN_DIR;
  const out = execFileSync("bash", [join(repoRoot, "tools/envtest/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.trim().split("\n").pop() ?? "";
}

export interface Envtest {
  readonly server: string;
  readonly kubeConfig: KubeConfig;
  /** A kubeconfig file, for kubectl or for a child process under test. */
  readonly kubeconfigPath: string;
  readonly token: string;
  readonly dir: string;
  stop(): Promise<void>;
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-30).join("\n");
  } catch {
    return "";
  }
}

function httpsStatus(url: string, ca: string, token: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { ca, headers: { authorization: `Bearer ${token}` }, timeout: 5_000 }, (res) => {
      res.resume();
      res.on("end", () => resolvePromise(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error("request timed out")));
    req.on("error", reject);
    req.end();
  });
}

export async function startEnvtest(binDir = envtestBinDir()): Promise<Envtest> {
  const dir = mkdtempSync(join(tmpdir(), "envtest-"));
  const started: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of started.reverse()) await p.stop("SIGTERM", 10_000);
  };
  try {
    // etcd, on loopback only.
    const etcdClient = await freePort();
    const etcdPeer = await freePort();
    const etcdLog = join(dir, "etcd.log");
    const etcd = startProcess(
      join(binDir, "etcd"),
      [
        "--name=envtest",
        `--data-dir=${join(dir, "etcd")}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=envtest=http://127.0.0.1:${etcdPeer}`,
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ],
      { logFile: etcdLog },
    );
    started.push(etcd);
    await waitFor(
      "etcd",
      async () => {
        if (etcd.child.exitCode !== null) throw new Error(`etcd exited:\n${tail(etcdLog)}`);
        const res = await fetch(`http://127.0.0.1:${etcdClient}/health`);
        return res.ok;
      },
      { timeoutMs: 30_000 },
    );

    // Throwaway PKI: a CA and a serving certificate for 127.0.0.1, a service-account
    // signing key, and a static token in system:masters.
    const ca = await createCertificateAuthority("envtest-ca");
    const serving = await issueCertificate(ca, {
      commonName: "kube-apiserver",
      hosts: ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
    });
    writeFileSync(join(dir, "ca.crt"), ca.certificate);
    writeFileSync(join(dir, "apiserver.crt"), serving.certificate);
    writeFileSync(join(dir, "apiserver.key"), serving.privateKey, { mode: 0o600 });
    const sa = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    writeFileSync(join(dir, "sa.key"), sa.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    writeFileSync(join(dir, "sa.pub"), sa.publicKey.export({ type: "spki", format: "pem" }));
    const token = randomBytes(24).toString("hex");
    writeFileSync(join(dir, "tokens.csv"), `${token},envtest-admin,envtest-admin,"system:masters"\n`, { mode: 0o600 });

    const port = await freePort();
    const apiLog = join(dir, "kube-apiserver.log");
    const apiserver = startProcess(
      join(binDir, "kube-apiserver"),
      [
        `--etcd-servers=http://127.0.0.1:${etcdClient}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${port}`,
        `--cert-dir=${dir}`,
        `--tls-cert-file=${join(dir, "apiserver.crt")}`,
        `--tls-private-key-file=${join(dir, "apiserver.key")}`,
        `--token-auth-file=${join(dir, "tokens.csv")}`,
        "--authorization-mode=RBAC",
        `--service-account-issuer=https://kubernetes.default.svc`,
        `--service-account-key-file=${join(dir, "sa.pub")}`,
        `--service-account-signing-key-file=${join(dir, "sa.key")}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        // No controller-manager mints service-account tokens here.
        "--disable-admission-plugins=ServiceAccount",
        "--v=1",
      ],
      { logFile: apiLog },
    );
    started.push(apiserver);

    const server = `https://127.0.0.1:${port}`;
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: "envtest", server, caData: Buffer.from(ca.certificate).toString("base64") }],
      users: [{ name: "envtest-admin", token }],
      contexts: [{ name: "envtest", cluster: "envtest", user: "envtest-admin" }],
      currentContext: "envtest",
    });
    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeConfig.exportConfig(), { mode: 0o600 });

    // /readyz turns OK only after the post-start hooks (RBAC bootstrap, CRD
    // controllers) have run; earlier requests can fail in confusing ways.
    await waitFor(
      "kube-apiserver /readyz",
      async () => {
        if (apiserver.child.exitCode !== null) throw new Error(`kube-apiserver exited:\n${tail(apiLog)}`);
        return (await httpsStatus(`${server}/readyz`, ca.certificate, token)) === 200;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );

    return {
      server,
      kubeConfig,
      kubeconfigPath,
      token,
      dir,
      async stop() {
        await stopAll();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    const logs = `\n--- etcd.log ---\n${tail(join(dir, "etcd.log"))}\n--- kube-apiserver.log ---\n${tail(join(dir, "kube-apiserver.log"))}`;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}${logs}`);
  }
}
