// gitaly.SmartHTTPService: what Workhorse (or our HTTP gateway) calls to serve git's
// smart HTTP protocol. Fetch bodies travel over a sidechannel; push bodies over the
// bidi gRPC stream.
import type { SmartHTTPService } from "../../../gen/smarthttp_pb.js";
import { serverStream, unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import { type TransportDeps, transportMetrics } from "../ssh/git-options.js";
import { bidi } from "../ssh/rpc-streams.js";
import { infoRefs } from "./info-refs.js";
import { postReceivePack } from "./receive-pack.js";
import { postUploadPackWithSidechannel } from "./upload-pack.js";

export function smartHttpService(deps: TransportDeps): ServiceImplementation<(typeof SmartHTTPService)["method"]> {
  const metrics = transportMetrics(deps.registry);
  return {
    infoRefsUploadPack: serverStream((req, call) => infoRefs(deps, metrics, "upload-pack", req, call)),
    infoRefsReceivePack: serverStream((req, call) => infoRefs(deps, metrics, "receive-pack", req, call)),
    postUploadPackWithSidechannel: unary((req, call) => postUploadPackWithSidechannel(deps, metrics, req, call)),
    postReceivePack: bidi((call) => postReceivePack(deps, metrics, call)),
  };
}
