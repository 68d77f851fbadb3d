// Prometheus metrics: one registry per process, served over HTTP on the
// prometheus_listen_addr. Names follow upstream Gitaly/Praefect so existing
// dashboards and alerts keep working.
import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

export function createRegistry({ defaultMetrics = true }: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (defaultMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves `/metrics` for the registry on host:port (port 0 picks a free one). */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.url !== "/metrics" && !req.url?.startsWith("/metrics?")) {
      res.writeHead(404).end("not found\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500).end(`${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const addr = server.address();
      resolve({
        port: typeof addr === "object" && addr ? addr.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

/** gRPC status code names as go-grpc-prometheus reports them in grpc_code. */
export const grpcCodeNames = [
  "OK",
  "Canceled",
  "Unknown",
  "InvalidArgument",
  "DeadlineExceeded",
  "NotFound",
  "AlreadyExists",
  "PermissionDenied",
  "ResourceExhausted",
  "FailedPrecondition",
  "Aborted",
  "OutOfRange",
  "Unimplemented",
  "Internal",
  "Unavailable",
  "DataLoss",
  "Unauthenticated",
] as const;

export function grpcCodeName(code: number): string {
  return grpcCodeNames[code] ?? `Code(${code})`;
}

export interface GrpcServerMetrics {
  started: Counter<"grpc_type" | "grpc_service" | "grpc_method">;
  handled: Counter<"grpc_type" | "grpc_service" | "grpc_method" | "grpc_code">;
  handlingSeconds: Histogram<"grpc_type" | "grpc_service" | "grpc_method">;
}

/** The go-grpc-prometheus server metrics, which upstream Gitaly and Praefect export. */
export function grpcServerMetrics(registry: Registry, buckets?: number[]): GrpcServerMetrics {
  const labelNames = ["grpc_type", "grpc_service", "grpc_method"] as const;
  return {
    started: new Counter({
      name: "grpc_server_started_total",
      help: "Total number of RPCs started on the server.",
      labelNames,
      registers: [registry],
    }),
    handled: new Counter({
      name: "grpc_server_handled_total",
      help: "Total number of RPCs completed on the server, regardless of success or failure.",
      labelNames: [...labelNames, "grpc_code"],
      registers: [registry],
    }),
    handlingSeconds: new Histogram({
      name: "grpc_server_handling_seconds",
      help: "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
      labelNames,
      buckets:
        buckets && buckets.length > 0 ? buckets : [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
  };
}
