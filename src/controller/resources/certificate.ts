// spec.tls.mode CertManager: a cert-manager Certificate that writes the serving Secret
// (`<name>-tls`, with tls.crt, tls.key and ca.crt) the pods mount, for the same names the
// operator CA would cover.
import { isIP } from "node:net";
import type { KubernetesObject } from "@kubernetes/client-node";
import { servingCertificateHosts } from "../tls/hosts.js";
import type { BuildInput } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";

export const CERT_MANAGER_API_VERSION = "cert-manager.io/v1";

export interface CertManagerCertificate extends KubernetesObject {
  spec: {
    secretName: string;
    commonName: string;
    dnsNames: string[];
    ipAddresses?: string[];
    duration: string;
    renewBefore: string;
    issuerRef: { name: string; kind: string; group: string };
    usages: string[];
    privateKey: { algorithm: "ECDSA"; size: 256; rotationPolicy: "Always" };
    secretTemplate: { labels: Record<string, string> };
  };
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[]; notAfter?: string };
}

export function certManagerCertificate(input: BuildInput): CertManagerCertificate | undefined {
  const issuer = input.spec.tls.issuerRef;
  if (input.spec.tls.mode !== "CertManager" || !issuer) return undefined;
  const names = clusterObjectNames(input.cluster.name);
  const hosts = servingCertificateHosts({
    cluster: input.cluster.name,
    namespace: input.cluster.namespace,
    gitalyReplicas: input.gitalyReplicas,
    ...(input.clusterDomain ? { clusterDomain: input.clusterDomain } : {}),
  });
  const ips = hosts.filter((h) => isIP(h) !== 0);
  const meta = ownedMeta(input, names.tls, "tls");
  return {
    apiVersion: CERT_MANAGER_API_VERSION,
    kind: "Certificate",
    metadata: meta,
    spec: {
      secretName: names.tls,
      commonName: names.gitaly,
      dnsNames: hosts.filter((h) => isIP(h) === 0),
      ...(ips.length > 0 ? { ipAddresses: ips } : {}),
      duration: input.spec.tls.duration,
      renewBefore: input.spec.tls.renewBefore,
      issuerRef: { name: issuer.name, kind: issuer.kind, group: issuer.group },
      usages: ["server auth", "digital signature", "key encipherment"],
      privateKey: { algorithm: "ECDSA", size: 256, rotationPolicy: "Always" },
      // Lets the operator's informer (managed-by selector) see the Secret cert-manager writes.
      secretTemplate: { labels: { ...(meta.labels ?? {}) } },
    },
  };
}
