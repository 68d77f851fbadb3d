// Metadata for the calls Praefect makes to nodes on its own behalf while answering a client
// (ServerInfo, checksums, removals): the client's correlation id, so one request can be
// followed across the cluster, and nothing else (never the client's credentials).
import * as grpc from "@grpc/grpc-js";
import { CORRELATION_ID_KEY } from "../../shared/logging.js";

export function forwardedMetadata(incoming: grpc.Metadata | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  const correlationId = incoming?.get(CORRELATION_ID_KEY)[0];
  if (typeof correlationId === "string" && correlationId !== "") md.set(CORRELATION_ID_KEY, correlationId);
  return md;
}
