import { KubeConfig } from "@kubernetes/client-node";

/** A copy of `kc` that reaches the API server through a loopback proxy port. */
export function kubeConfigVia(kc: KubeConfig, port: number): KubeConfig {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster || !user) throw new Error("kubeconfig without current cluster/user");
  const out = new KubeConfig();
  out.loadFromOptions({
    clusters: [{ ...cluster, name: "proxied", server: `https://127.0.0.1:${port}` }],
    users: [user],
    contexts: [{ name: "proxied", cluster: "proxied", user: user.name }],
    currentContext: "proxied",
  });
  return out;
}

export function serverPort(kc: KubeConfig): number {
  return Number(new URL(kc.getCurrentCluster()?.server ?? "").port);
}
