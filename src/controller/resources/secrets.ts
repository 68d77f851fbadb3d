// Secrets: generated tokens and database password, the operator CA and serving certificate,
// and the client Secret GitLab consumes. Values come in through BuildInput; nothing is
// generated here.
import type { V1Secret } from "@kubernetes/client-node";
import { PRAEFECT_PORTS } from "../../shared/render/names.js";
import { type BuildInput, type TokenValues, tlsEnabled } from "./input.js";
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

/** The managed database's password Secret: created once, never re-applied. */
export function generatedSecrets(input: BuildInput): V1Secret[] {
  if (!input.spec.database.managed) return [];
  const names = clusterObjectNames(input.cluster.name);
  return [
    opaque(input, names.postgresSecret, "postgres", {
      [DATABASE_PASSWORD_KEY]: required("generated database password", input.databasePassword),
    }),
  ];
}

/**
 * The two token Secrets every pod mounts. They always belong to the operator, even when the
 * user brings a token (its value is copied in): a pod's volumes name a Secret, so rotating
 * means changing what a Secret holds, never which Secret is mounted (that would restart pods).
 */
export function tokenSecrets(input: BuildInput): V1Secret[] {
  const names = clusterObjectNames(input.cluster.name);
  const secret = (name: string, what: string, v: TokenValues) =>
    opaque(input, name, "auth", {
      [TOKEN_FILE_NAME]: required(what, v.token),
      ...(v.old !== undefined ? { [OLD_TOKEN_KEY]: v.old } : {}),
      ...(v.new !== undefined ? { [NEW_TOKEN_KEY]: v.new } : {}),
    });
  return [
    secret(names.gitalyToken, "internal token", input.tokens.internal),
    secret(names.praefectToken, "client token", input.tokens.client),
  ];
}

/** Keys of a token Secret that hold the tokens before and after a rotation in progress. */
export const OLD_TOKEN_KEY = "old";
export const NEW_TOKEN_KEY = "new";

/** The Secret and key the pods read the client token (Praefect's [auth]) from. */
export function praefectTokenRef(input: BuildInput): { name: string; key: string } {
  return { name: clusterObjectNames(input.cluster.name).praefectToken, key: TOKEN_FILE_NAME };
}

/** The Secret and key the pods read the internal token (Gitaly's [auth], Praefect's nodes) from. */
export function gitalyTokenRef(input: BuildInput): { name: string; key: string } {
  return { name: clusterObjectNames(input.cluster.name).gitalyToken, key: TOKEN_FILE_NAME };
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
    token: required("client token", input.tokens.client.token),
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
