// A GitalyCluster manifest (config/samples/*.yaml) read for the local runner: the same
// validation and defaults the operator applies (resolveSpec), plus what a local run does
// differently from a Kubernetes one, said up front instead of silently.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { load } from "js-yaml";
import { API_VERSION, KIND, type ResolvedGitalyClusterSpec, resolveSpec } from "../../controller/api/index.js";

export interface ClusterSample {
  /** metadata.name: the cluster's name, the prefix of every storage name. */
  name: string;
  spec: ResolvedGitalyClusterSpec;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Parses a GitalyCluster manifest; errors name `source` and the offending field. */
export function parseSample(text: string, source: string): ClusterSample {
  let doc: unknown;
  try {
    doc = load(text);
  } catch (err) {
    throw new Error(`${source}: not valid YAML: ${(err as Error).message}`);
  }
  if (!isRecord(doc)) throw new Error(`${source}: expected a GitalyCluster manifest (a YAML mapping)`);
  if (doc.kind !== KIND || doc.apiVersion !== API_VERSION) {
    throw new Error(
      `${source}: expected apiVersion ${API_VERSION} and kind ${KIND}, got ${JSON.stringify(doc.apiVersion)} ${JSON.stringify(doc.kind)}`,
    );
  }
  const name = isRecord(doc.metadata) ? doc.metadata.name : undefined;
  if (typeof name !== "string" || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name) || name.length > 50) {
    throw new Error(`${source}: metadata.name ${JSON.stringify(name)} is not a short DNS label`);
  }
  try {
    return { name, spec: resolveSpec(doc.spec) };
  } catch (err) {
    throw new Error(`${source}: ${(err as Error).message}`);
  }
}

export function loadSample(file: string): ClusterSample {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`reading sample ${file}: ${(err as Error).message}`);
  }
  return parseSample(text, file);
}

/** `${XDG_STATE_HOME:-$HOME/.local/state}/gitaly-cluster/<name>`. */
export function defaultStateDir(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_STATE_HOME?.startsWith("/") ? env.XDG_STATE_HOME : join(env.HOME || homedir(), ".local/state");
  return join(base, "gitaly-cluster", name);
}

/** TLS as the local run does it: SelfSigned for any mode that asks for TLS (there is no cert-manager or Secret here). */
export function localTlsEnabled(spec: ResolvedGitalyClusterSpec): boolean {
  return spec.tls.mode !== "Disabled";
}

/** The parts of a spec a local run cannot honour, and what it does instead. */
export function localDeviations(spec: ResolvedGitalyClusterSpec): string[] {
  const notes: string[] = [];
  if (spec.tls.mode === "CertManager" || spec.tls.mode === "Secret") {
    notes.push(
      `tls.mode ${spec.tls.mode}: no cert-manager or Secrets here; a local self-signed CA issues the certificates`,
    );
  }
  if (spec.database.external) {
    notes.push(
      `database.external (${spec.database.external.host}): the local run uses its embedded PostgreSQL instead`,
    );
  }
  if (spec.auth.praefectTokenSecretRef || spec.auth.gitalyTokenSecretRef) {
    notes.push("auth token Secrets: the local run generates its own tokens into its state directory");
  }
  return notes;
}
