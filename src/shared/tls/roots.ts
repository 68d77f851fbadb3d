// Trusted roots for outgoing tls:// gRPC connections between cluster members (Praefect to
// Gitaly, Gitaly to Gitaly during replication, gitaly-ssh): Node's bundle plus the file named
// by SSL_CERT_FILE, the variable Go (and so upstream Gitaly) reads. The operator points it at
// the cluster CA; without it, only public roots are trusted.
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";

export function clusterRootCertificates(env: NodeJS.ProcessEnv = process.env): Buffer | null {
  const file = env.SSL_CERT_FILE;
  if (!file) return null;
  return Buffer.concat([Buffer.from(`${rootCertificates.join("\n")}\n`), readFileSync(file)]);
}
