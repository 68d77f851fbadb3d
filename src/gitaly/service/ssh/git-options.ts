// What the transport RPCs (SmartHTTPService, SSHService) take from a request before
// running git: `git_config_options` as per-call configuration, `git_protocol` as
// GIT_PROTOCOL, and the metrics upstream keeps about both.
import { Counter, Histogram, Registry } from "prom-client";
import { invalidArgument } from "../../../shared/grpc/errors.js";
import type { Logger } from "../../../shared/logging.js";
import type { ConfigPair } from "../../git/command.js";
import type { NodeDeps } from "../deps.js";

/**
 * What the transport services need beyond NodeDeps: the process's metrics registry.
 * Without one the metrics are kept in a private registry nobody scrapes.
 */
export type TransportDeps = NodeDeps & { registry?: Registry };

/**
 * "key=value" options from the client, like upstream's ConvertConfigOptions: only the
 * value may contain '='. The key itself is checked by the command factory.
 */
export function parseGitConfigOptions(options: readonly string[]): ConfigPair[] {
  return options.map((option) => {
    const eq = option.indexOf("=");
    if (eq === -1) throw invalidArgument(`cannot convert invalid config key: ${JSON.stringify(option)}`);
    return { key: option.slice(0, eq), value: option.slice(eq + 1) };
  });
}

export type GitProtocolLabel = "v0" | "v1" | "v2" | "invalid";

/**
 * GIT_PROTOCOL for a request's `git_protocol`. Like upstream, an unknown value is
 * logged and ignored (git then speaks v0), because clients relay whatever header
 * they got; values that could only be an attempt at injection (an option, control
 * characters) are refused.
 */
export function gitProtocolEnv(protocol: string): { env: Record<string, string>; label: GitProtocolLabel } {
  switch (protocol) {
    case "":
      return { env: {}, label: "v0" };
    case "version=1":
      return { env: { GIT_PROTOCOL: protocol }, label: "v1" };
    case "version=2":
      return { env: { GIT_PROTOCOL: protocol }, label: "v2" };
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (protocol.startsWith("-") || /[\u0000-\u001f\u007f]/.test(protocol)) {
    throw invalidArgument(`invalid git protocol: ${JSON.stringify(protocol)}`);
  }
  return { env: {}, label: "invalid" };
}

/** Metrics of the transport services; one set per registry, shared by both services. */
export interface TransportMetrics {
  gitProtocolRequests: Counter<"grpc_service" | "grpc_method" | "git_protocol">;
  negotiation: Record<"smarthttp" | "ssh", { features: Counter<"git_negotiation_feature">; deepen: Histogram }>;
}

const metricsByRegistry = new WeakMap<Registry, TransportMetrics>();

function exponentialBucketsRange(min: number, max: number, count: number): number[] {
  const factor = (max / min) ** (1 / (count - 1));
  return Array.from({ length: count }, (_, i) => min * factor ** i);
}

/** Upstream's buckets: the extremes (1 and INFINITE_DEPTH) and a few ranges in between. */
const DEEPEN_BUCKETS = [1, 2, 5, 10, ...exponentialBucketsRange(20, 0x7ffffffe, 4), 0x7fffffff];

function getOrCreate<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

export function transportMetrics(registry: Registry = new Registry()): TransportMetrics {
  const known = metricsByRegistry.get(registry);
  if (known) return known;
  const negotiation = (subsystem: "smarthttp" | "ssh") => ({
    features: getOrCreate(
      registry,
      `gitaly_${subsystem}_packfile_negotiation_requests_total`,
      () =>
        new Counter({
          name: `gitaly_${subsystem}_packfile_negotiation_requests_total`,
          help: "Total number of features used for packfile negotiations",
          labelNames: ["git_negotiation_feature"] as const,
          registers: [registry],
        }),
    ),
    deepen: getOrCreate(
      registry,
      `gitaly_${subsystem}_packfile_negotiation_deepen`,
      () =>
        new Histogram({
          name: `gitaly_${subsystem}_packfile_negotiation_deepen`,
          help: "Distribution of deepen values requested during packfile negotiation",
          buckets: DEEPEN_BUCKETS,
          registers: [registry],
        }),
    ),
  });
  const metrics: TransportMetrics = {
    gitProtocolRequests: getOrCreate(
      registry,
      "gitaly_git_protocol_requests_total",
      () =>
        new Counter({
          name: "gitaly_git_protocol_requests_total",
          help: "Counter of Git protocol requests",
          labelNames: ["grpc_service", "grpc_method", "git_protocol"] as const,
          registers: [registry],
        }),
    ),
    negotiation: { smarthttp: negotiation("smarthttp"), ssh: negotiation("ssh") },
  };
  metricsByRegistry.set(registry, metrics);
  return metrics;
}

/** GIT_PROTOCOL for one call, counted under its service and method. */
export function protocolEnvForCall(
  metrics: TransportMetrics,
  logger: Logger,
  rpc: { service: string; method: string },
  protocol: string,
): Record<string, string> {
  const { env, label } = gitProtocolEnv(protocol);
  if (label === "invalid") logger.warn({ git_protocol: protocol, ...rpc }, "invalid git protocol requested");
  metrics.gitProtocolRequests.inc({ grpc_service: rpc.service, grpc_method: rpc.method, git_protocol: label });
  return env;
}
