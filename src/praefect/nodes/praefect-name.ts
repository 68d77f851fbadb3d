// The name a Praefect records its health checks under in node_status. Upstream derives it from the
// host name and the listen address, else the socket path, so it is stable across restarts and
// distinct for several Praefects on one host.
import { hostname as osHostname } from "node:os";
import type { PraefectConfig } from "../config/schema.js";
import { praefectName } from "../datastore/health.js";

export function praefectNameFor(
  config: Pick<PraefectConfig, "listen_addr" | "socket_path">,
  hostname: string = osHostname(),
): string {
  return praefectName(hostname, config.listen_addr !== "" ? config.listen_addr : config.socket_path);
}
