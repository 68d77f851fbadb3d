// Secrets: generated tokens and database password, the operator CA and serving certificate,
// and the client Secret GitLab consumes. Values come in through BuildInput; nothing is
// generated here.
import type { V1Secret } from "@kubernetes/client-node";
import { PRAEFECT_PORTS } from "../../shared/render/names.js";
import { type BuildInput, tlsEnabled } from "./input.js";
import { ownedMeta } from "./metadata.js";
import { clusterObjectNames } from "./names.js";
import { CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY, TOKEN_FILE_NAME } from "./paths.js";

export const DATABASE_PASSWORD_KEY = "password";

function opaque(
  input: BuildInput,
  name: string,
  component: "auth" | "postgres" | "client",
  data: Record<string, string>,
): V1Secret {
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: ownedMeta(input, name, component),
    type: "Opaque",
    data: encodeData(data),
  };
}

/** Secret `data` (base64). Server-side apply tracks `data`; `stringData` is write-only and would not round-trip. */
export function encodeData(data: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]));
}

/** The decoded value of `key` in a Secret read from the API server. */
export function secretValue(secret: V1Secret | undefined, key: string): string | undefined {
  const raw = secret?.data?.[key];
  return raw === undefined ? undefined : Buffer.from(raw, "base64").toString("utf8");
}

function required(what: string, value: string | undefined): string {
  if (value === undefined || value === "")
    throw new Error(`${what} is missing: the reconciler must generate or read it first`);
  return value;
}

/**
 * Operator-generated secrets (only those the spec does not bring itself). They are created
 * once and never re-applied, so a stale cache can never overwrite a token in use.
 */
export function generatedSecrets(input: BuildInput): V1Secret[] {
  const names = clusterObjectNames(input.cluster.name);
  const out: V1Secret[] = [];
  if (!input.spec.auth.praefectTokenSecretRef) {
    out.push(
      opaque(input, names.praefectToken, "auth", {
        [TOKEN_FILE_NAME]: required("generated Praefect token", input.generated.praefectToken),
      }),
    );
  }
  if (!input.spec.auth.gitalyTokenSecretRef) {
    out.push(
      opaque(input, names.gitalyToken, "auth", {
        [TOKEN_FILE_NAME]: required("generated Gitaly token", input.generated.gitalyToken),
      }),
    );
  }
  if (input.spec.database.managed) {
    out.push(
      opaque(input, names.postgresSecret, "postgres", {
        [DATABASE_PASSWORD_KEY]: required("generated database password", input.generated.databasePassword),
      }),
    );
  }
  return out;
}

/** The Secret holding a token, and its key: the user's reference or the generated one. */
export function praefectTokenRef(input: BuildInput): { name: string; key: string } {
  return (
    input.spec.auth.praefectTokenSecretRef ?? {
      name: clusterObjectNames(input.cluster.name).praefectToken,
      key: TOKEN_FILE_NAME,
    }
  );
}

export function gitalyTokenRef(input: BuildInput): { name: string; key: string } {
  return (
    input.spec.auth.gitalyTokenSecretRef ?? {
      name: clusterObjectNames(input.cluster.name).gitalyToken,
      key: TOKEN_FILE_NAME,
    }
  );
}

export function databasePasswordRef(input: BuildInput): { name: string; key: string } {
  const external = input.spec.database.external;
  return external
    ? external.passwordSecretRef
    : { name: clusterObjectNames(input.cluster.name).postgresSecret, key: DATABASE_PASSWORD_KEY };
}

/** The Secret with the serving certificate, whatever the TLS mode; undefined when TLS is off. */
export function tlsSecretName(input: BuildInput): string | undefined {
  switch (input.spec.tls.mode) {
    case "Disabled":
      return undefined;
    case "Secret":
      return input.spec.tls.secretName;
    default:
      return clusterObjectNames(input.cluster.name).tls;
  }
}

/** The address GitLab dials: the Praefect Service, over TLS when TLS is on. */
export function clientAddress(input: BuildInput): string {
  const host = `${clusterObjectNames(input.cluster.name).praefect}.${input.cluster.namespace}.svc`;
  return tlsEnabled(input) ? `tls://${host}:${PRAEFECT_PORTS.tls}` : `tcp://${host}:${PRAEFECT_PORTS.grpc}`;
}

/** `<name>-gitaly-client`: everything GitLab needs to use the cluster. */
export function clientSecret(input: BuildInput): V1Secret {
  const names = clusterObjectNames(input.cluster.name);
  return opaque(input, names.client, "client", {
    address: clientAddress(input),
    storage: input.spec.virtualStorage.name,
    token: required("client token", input.clientToken),
    ...(tlsEnabled(input) && input.clientCa ? { [CA_CERT_KEY]: input.clientCa } : {}),
  });
}

/** The operator CA (SelfSigned mode). Created once; kept when the serving certificate renews. */
export function caSecret(input: BuildInput): V1Secret | undefined {
  if (input.spec.tls.mode !== "SelfSigned" || !input.tls) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: ownedMeta(input, clusterObjectNames(input.cluster.name).ca, "tls"),
    type: "kubernetes.io/tls",
    data: encodeData({ [TLS_CERT_KEY]: input.tls.caCertificate, [TLS_KEY_KEY]: input.tls.caPrivateKey }),
  };
}

/** The serving certificate every Gitaly and Praefect pod mounts (SelfSigned mode). */
export function servingTlsSecret(input: BuildInput): V1Secret | undefined {
  if (input.spec.tls.mode !== "SelfSigned" || !input.tls) return undefined;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: ownedMeta(input, clusterObjectNames(input.cluster.name).tls, "tls"),
    type: "kubernetes.io/tls",
    data: encodeData({
      [TLS_CERT_KEY]: input.tls.certificate,
      [TLS_KEY_KEY]: input.tls.privateKey,
      [CA_CERT_KEY]: input.tls.caCertificate,
    }),
  };
}
