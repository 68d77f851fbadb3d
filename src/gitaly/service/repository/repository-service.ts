// gitaly.RepositoryService: wires each RPC's implementation to grpc-js. Cancellation
// of a call aborts the git processes it spawned.
import type { RepositoryService } from "../../../gen/repository_pb.js";
import { clientStream, serverStream, unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import { createBundle, fetchBundle } from "./bundle.js";
import { getCustomHooks, setCustomHooks } from "./custom-hooks.js";
import type { RepositoryServiceDeps } from "./deps.js";
import { optimizeRepository } from "./housekeeping.js";
import {
  calculateChecksum,
  getConfig,
  hasLocalBranches,
  objectFormat,
  repositoryInfo,
  repositorySize,
} from "./info.js";
import { createRepository, removeRepository, repositoryExists } from "./lifecycle.js";
import { replicateRepository } from "./replicate.js";
import { getSnapshot } from "./snapshot.js";
import { writeRef } from "./write-ref.js";

/** An AbortSignal that fires when the client cancels the call or its deadline passes. */
export function callSignal(call: { once(event: "cancelled", listener: () => void): unknown }): AbortSignal {
  const controller = new AbortController();
  call.once("cancelled", () => controller.abort(new Error("call cancelled")));
  return controller.signal;
}

export function repositoryService(
  deps: RepositoryServiceDeps,
): ServiceImplementation<(typeof RepositoryService)["method"]> {
  return {
    repositoryExists: unary((req) => repositoryExists(deps, req)),
    createRepository: unary((req, call) => createRepository(deps, req, callSignal(call))),
    removeRepository: unary((req) => removeRepository(deps, req)),
    repositorySize: unary((req) => repositorySize(deps, req)),
    repositoryInfo: unary((req) => repositoryInfo(deps, req)),
    objectFormat: unary((req) => objectFormat(deps, req)),
    hasLocalBranches: unary((req) => hasLocalBranches(deps, req)),
    writeRef: unary((req) => writeRef(deps, req)),
    calculateChecksum: unary((req) => calculateChecksum(deps, req)),
    getConfig: serverStream((req) => getConfig(deps, req)),
    getSnapshot: serverStream((req) => getSnapshot(deps, req)),
    getCustomHooks: serverStream((req) => getCustomHooks(deps, req)),
    setCustomHooks: clientStream((reqs) => setCustomHooks(deps, reqs)),
    optimizeRepository: unary((req, call) => optimizeRepository(deps, req, callSignal(call))),
    createBundle: serverStream((req, call) => createBundle(deps, req, callSignal(call))),
    fetchBundle: clientStream((reqs, call) => fetchBundle(deps, reqs, callSignal(call))),
    replicateRepository: unary((req, call) => replicateRepository(deps, req, call.metadata, callSignal(call))),
  };
}
