// Dialling and checking every configured Gitaly node (`dial-nodes`, and the connectivity check of
// `check`): health check, then ServerInfo to confirm each storage the configuration expects on
// that node is served, readable and writeable. Nodes are checked concurrently; each node's lines
// are printed together, in configuration order.
import type * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerService } from "../../gen/server_pb.js";
import { createClient } from "../../shared/grpc/service.js";
import type { PraefectConfig } from "../config/schema.js";
import { createNodeChannel } from "../nodes/channel.js";
import { describeError } from "./context.js";

interface PingTarget {
  address: string;
  token: string;
  /** Physical storage → the virtual storages it serves, in configuration order. */
  storages: Map<string, string[]>;
}

/** Nodes by address: one address serving storages of several virtual storages is dialled once. */
function pingTargets(config: Pick<PraefectConfig, "virtual_storage">): PingTarget[] {
  const byAddress = new Map<string, PingTarget>();
  for (const vs of config.virtual_storage) {
    for (const node of vs.node) {
      let target = byAddress.get(node.address);
      if (!target) {
        target = { address: node.address, token: node.token, storages: new Map() };
        byAddress.set(node.address, target);
      }
      target.token = node.token;
      target.storages.set(node.storage, [...(target.storages.get(node.storage) ?? []), vs.name]);
    }
  }
  return [...byAddress.values()];
}

function goStringSlice(values: readonly string[]): string {
  return `[${values.join(" ")}]`;
}

async function checkNode(target: PingTarget, deadline: number, log: (msg: string) => void): Promise<boolean> {
  log("dialing...");
  let channel: grpc.Client;
  try {
    channel = createNodeChannel(target.address, target.token);
  } catch (err) {
    log(`ERROR: dialing failed: ${describeError(err)}`);
    return false;
  }
  try {
    log("dialed successfully!");
    log("checking health...");
    let status: HealthCheckResponse_ServingStatus;
    try {
      status = (await createClient(Health, channel).check({ service: "" }, { deadline })).status;
    } catch (err) {
      log(`ERROR: unable to request health check: ${describeError(err)}`);
      return false;
    }
    if (status !== HealthCheckResponse_ServingStatus.SERVING) {
      log(
        `ERROR: health check did not report serving, instead reported: ${HealthCheckResponse_ServingStatus[status] ?? status}`,
      );
      return false;
    }
    log("SUCCESS: node is healthy!");
    log("checking consistency...");
    if (!(await isConsistent(target, channel, deadline, log))) {
      log("ERROR: consistency check failed");
      return false;
    }
    log("SUCCESS: node configuration is consistent!");
    return true;
  } finally {
    channel.close();
  }
}

async function isConsistent(
  target: PingTarget,
  channel: grpc.Client,
  deadline: number,
  log: (msg: string) => void,
): Promise<boolean> {
  if (target.storages.size === 0) {
    log("ERROR: current configuration has no storages");
    return false;
  }
  let statuses: { storageName: string; readable: boolean; writeable: boolean }[];
  try {
    statuses = (await createClient(ServerService, channel).serverInfo({}, { deadline })).storageStatuses;
  } catch (err) {
    log(`ERROR: failed to receive state from the remote: ${describeError(err)}`);
    return false;
  }
  if (statuses.length === 0) {
    log("ERROR: remote has no configured storages");
    return false;
  }
  const seen = new Set<string>();
  const unconfirmed = new Set(target.storages.keys());
  let consistent = true;
  for (const status of statuses) {
    const virtualStorages = target.storages.get(status.storageName);
    if (!virtualStorages) continue;
    if (seen.has(status.storageName)) {
      log(`ERROR: remote has duplicated storage: ${JSON.stringify(status.storageName)}`);
      consistent = false;
      continue;
    }
    seen.add(status.storageName);
    if (status.readable && status.writeable) {
      log(
        `SUCCESS: confirmed Gitaly storage ${JSON.stringify(status.storageName)} in virtual storages ${goStringSlice(virtualStorages)} is served`,
      );
      unconfirmed.delete(status.storageName);
    } else {
      log(`ERROR: storage ${JSON.stringify(status.storageName)} is not readable or writable`);
      consistent = false;
    }
  }
  for (const storage of unconfirmed) {
    log(`ERROR: configured storage was not reported by remote: ${JSON.stringify(storage)}`);
    consistent = false;
  }
  return consistent;
}

/**
 * Checks every node; prints `[<address>]: <message>` lines (none when quiet). Resolves with the
 * addresses of unhealthy nodes (empty when all are fine).
 */
export async function pingAll(
  config: Pick<PraefectConfig, "virtual_storage">,
  print: (text: string) => Promise<void>,
  options: { timeoutMs: number; quiet?: boolean },
): Promise<string[]> {
  const deadline = Date.now() + options.timeoutMs;
  const targets = pingTargets(config);
  const outcomes = await Promise.all(
    targets.map(async (target) => {
      const lines: string[] = [];
      const healthy = await checkNode(target, deadline, (msg) => {
        if (!options.quiet) lines.push(`[${target.address}]: ${msg}\n`);
      });
      return { target, healthy, lines };
    }),
  );
  for (const outcome of outcomes) if (outcome.lines.length > 0) await print(outcome.lines.join(""));
  return outcomes.filter((o) => !o.healthy).map((o) => o.target.address);
}

/** Upstream's PingError text. */
export function pingErrorMessage(unhealthy: readonly string[]): string {
  return `the following nodes are not healthy: ${unhealthy.join(", ")}`;
}
