// gitaly.SSHService: git over SSH as GitLab Shell (and gitaly-ssh) drive it.
// Upload-pack data flows over a sidechannel; receive-pack and upload-archive over the
// bidi gRPC stream.
import type { SSHService } from "../../../gen/ssh_pb.js";
import { unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import { type TransportDeps, transportMetrics } from "./git-options.js";
import { sshReceivePack } from "./receive-pack.js";
import { bidi } from "./rpc-streams.js";
import { sshUploadArchive } from "./upload-archive.js";
import { sshUploadPackWithSidechannel } from "./upload-pack.js";

export function sshService(deps: TransportDeps): ServiceImplementation<(typeof SSHService)["method"]> {
  const metrics = transportMetrics(deps.registry);
  return {
    sSHUploadPackWithSidechannel: unary((req, call) => sshUploadPackWithSidechannel(deps, metrics, req, call)),
    sSHReceivePack: bidi((call) => sshReceivePack(deps, metrics, call)),
    sSHUploadArchive: bidi((call) => sshUploadArchive(deps, call)),
  };
}
