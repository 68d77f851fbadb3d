// gitaly.RefService (the subset this node serves): each RPC's implementation wired to
// grpc-js. Cancelling a call stops the git processes it started.
import type { RefService } from "../../../gen/ref_pb.js";
import { clientStream, serverStream, unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import type { TransactionManager } from "../../transaction/voting.js";
import { callSignal } from "../commit/streaming.js";
import type { NodeDeps } from "../deps.js";
import { findAllBranches, findBranch, findDefaultBranchName, findLocalBranches, refExists } from "./branches.js";
import { listRefs } from "./list-refs.js";
import { deleteRefs, updateReferences } from "./ref-updates.js";
import { findAllTags, findTag } from "./tags.js";

/**
 * `transactions`, when given, is the node's TransactionManager: DeleteRefs then votes in
 * the Praefect transaction named by the call's metadata (the hook does not see it).
 */
export function refService(
  deps: NodeDeps & { transactions?: TransactionManager },
): ServiceImplementation<(typeof RefService)["method"]> {
  return {
    findDefaultBranchName: unary((req, call) => findDefaultBranchName(deps, req, callSignal(call))),
    refExists: unary((req, call) => refExists(deps, req, callSignal(call))),
    findBranch: unary((req, call) => findBranch(deps, req, callSignal(call))),
    findLocalBranches: serverStream((req, call) => findLocalBranches(deps, req, callSignal(call))),
    findAllBranches: serverStream((req, call) => findAllBranches(deps, req, callSignal(call))),
    findTag: unary((req, call) => findTag(deps, req, callSignal(call))),
    findAllTags: serverStream((req, call) => findAllTags(deps, req, callSignal(call))),
    listRefs: serverStream((req, call) => listRefs(deps, req, callSignal(call))),
    deleteRefs: unary((req, call) => deleteRefs(deps, req, call, callSignal(call))),
    updateReferences: clientStream((reqs, call) => updateReferences(deps, reqs, call, callSignal(call))),
  };
}
