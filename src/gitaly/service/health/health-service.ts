// grpc.health.v1.Health. Served without authentication (the only exempt service),
// because Kubernetes probes and Praefect's health loop call it. NOT_SERVING while
// the server drains on shutdown, so Praefect stops routing here first.
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../../gen/grpc/health/v1/health_pb.js";
import { RpcError } from "../../../shared/grpc/errors.js";
import { unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";

export class HealthState {
  private serving = true;
  private readonly watchers = new Set<(s: HealthCheckResponse_ServingStatus) => void>();

  get status(): HealthCheckResponse_ServingStatus {
    return this.serving ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING;
  }

  setServing(serving: boolean): void {
    if (this.serving === serving) return;
    this.serving = serving;
    for (const w of this.watchers) w(this.status);
  }

  onChange(fn: (s: HealthCheckResponse_ServingStatus) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }
}

/** Services named in Check: "" (the whole server) and each registered service. */
export function healthService(
  state: HealthState,
  knownServices: ReadonlySet<string>,
): ServiceImplementation<(typeof Health)["method"]> {
  const check = (service: string) => {
    if (service !== "" && !knownServices.has(service)) {
      throw new RpcError(grpc.status.NOT_FOUND, "unknown service");
    }
    return create(HealthCheckResponseSchema, { status: state.status });
  };
  return {
    check: unary(async (req) => check(req.service)),
    list: unary(async () =>
      create(HealthListResponseSchema, {
        statuses: Object.fromEntries(["", ...knownServices].map((s) => [s, check(s)])),
      }),
    ),
    watch(call) {
      const send = () => call.write(create(HealthCheckResponseSchema, { status: state.status }));
      if (call.request.service !== "" && !knownServices.has(call.request.service)) {
        call.write(create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN }));
      } else {
        send();
      }
      const off = state.onChange(send);
      call.on("cancelled", off);
      call.on("close", off);
    },
  };
}
