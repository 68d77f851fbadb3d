// The router's Prometheus metrics, under upstream Praefect's names and labels so existing
// dashboards keep working. Registered once per registry: a second router on the same registry
// (tests, restarts in-process) shares them.
import * as grpc from "@grpc/grpc-js";
import { Counter, type Registry } from "prom-client";
import { type GrpcServerMetrics, grpcServerMetrics } from "../../shared/metrics.js";
import type { ProxiedMethod } from "../router/method-table.js";

function registered<M>(registry: Registry, name: string, make: () => M): M {
  return (registry.getSingleMetric(name) as M | undefined) ?? make();
}

/** The go-grpc-prometheus server metrics, created once per registry. */
export function sharedGrpcServerMetrics(registry: Registry, buckets?: number[]): GrpcServerMetrics {
  const started = registry.getSingleMetric("grpc_server_started_total");
  const handled = registry.getSingleMetric("grpc_server_handled_total");
  const handlingSeconds = registry.getSingleMetric("grpc_server_handling_seconds");
  if (started && handled && handlingSeconds) {
    return { started, handled, handlingSeconds } as unknown as GrpcServerMetrics;
  }
  return grpcServerMetrics(registry, buckets);
}

export interface RouterMetrics {
  readDistribution: Counter<"virtual_storage" | "storage">;
  methodTypes: Counter<"method_type">;
  connections: Counter<"type">;
}

export function routerMetrics(registry: Registry): RouterMetrics {
  return {
    readDistribution: registered(
      registry,
      "gitaly_praefect_read_distribution",
      () =>
        new Counter({
          name: "gitaly_praefect_read_distribution",
          help: "Counts read operations directed to the storages",
          labelNames: ["virtual_storage", "storage"] as const,
          registers: [registry],
        }),
    ),
    methodTypes: registered(
      registry,
      "gitaly_praefect_method_types",
      () =>
        new Counter({
          name: "gitaly_praefect_method_types",
          help: "Counts the number of different method types that Praefect proxies",
          labelNames: ["method_type"] as const,
          registers: [registry],
        }),
    ),
    connections: registered(
      registry,
      "gitaly_praefect_connections_total",
      () =>
        new Counter({
          name: "gitaly_praefect_connections_total",
          help: "Total number of connections to Praefect",
          labelNames: ["type"] as const,
          registers: [registry],
        }),
    ),
  };
}

/**
 * Counts every call of a routed method by its operation type, whether or not it gets through
 * authentication, as upstream's interceptor does. Intercepted services are not counted.
 */
export function methodTypeInterceptor(
  methods: ReadonlyMap<string, Pick<ProxiedMethod, "routing">>,
  counter: RouterMetrics["methodTypes"],
): grpc.ServerInterceptor {
  return (def, call) => {
    const operation = methods.get(def.path)?.routing.operation;
    if (operation && operation !== "unknown") counter.inc({ method_type: operation });
    return new grpc.ServerInterceptingCall(call);
  };
}
