// The `gitaly-servers` metadata: how a node learns where other storages live when it
// must talk to them itself (ReplicateRepository, forks). Base64 of JSON
// {"<storage>": {"address": "...", "token": "..."}}. Praefect sets it; tests too.
import type * as grpc from "@grpc/grpc-js";

export const GITALY_SERVERS_KEY = "gitaly-servers";

export interface GitalyServerInfo {
  address: string;
  token: string;
}

export function encodeGitalyServers(servers: Record<string, GitalyServerInfo>): string {
  return Buffer.from(JSON.stringify(servers)).toString("base64");
}

/** The server for `storage` from the call metadata; throws an Error with upstream's wording. */
export function gitalyServerFromMetadata(metadata: grpc.Metadata, storage: string): GitalyServerInfo {
  const raw = metadata.get(GITALY_SERVERS_KEY)[0];
  if (raw === undefined || raw === "") throw new Error("empty gitaly-servers metadata");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(String(raw), "base64").toString("utf8"));
  } catch (err) {
    throw new Error(`failed unmarshalling json: ${(err as Error).message}`);
  }
  const info = (parsed as Record<string, Partial<GitalyServerInfo>> | null)?.[storage];
  if (!info || typeof info.address !== "string") throw new Error("storage name not found");
  return { address: info.address, token: typeof info.token === "string" ? info.token : "" };
}

/** A grpc-js target and credentials choice for a Gitaly address (tcp://, tls://, unix:). */
export function grpcTarget(address: string): { target: string; tls: boolean } {
  if (address.startsWith("tcp://")) return { target: address.slice("tcp://".length), tls: false };
  if (address.startsWith("tls://")) return { target: address.slice("tls://".length), tls: true };
  if (address.startsWith("unix://")) return { target: `unix:${address.slice("unix://".length)}`, tls: false };
  return { target: address, tls: false };
}
