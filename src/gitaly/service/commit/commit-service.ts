// gitaly.CommitService (the read subset this node serves): each RPC's implementation
// wired to grpc-js. Cancelling a call stops the git processes it started.
import type { CommitService } from "../../../gen/commit_pb.js";
import { serverStream, unary } from "../../../shared/grpc/handlers.js";
import type { ServiceImplementation } from "../../../shared/grpc/service.js";
import type { NodeDeps } from "../deps.js";
import { commitIsAncestor, countCommits } from "./count-commits.js";
import { findCommit } from "./find-commit.js";
import { lastCommitForPath } from "./last-commit.js";
import { listCommits } from "./list-commits.js";
import { callSignal } from "./streaming.js";
import { getTreeEntries } from "./tree-entries.js";
import { treeEntry } from "./tree-entry.js";

export function commitService(deps: NodeDeps): ServiceImplementation<(typeof CommitService)["method"]> {
  return {
    findCommit: unary((req, call) => findCommit(deps, req, callSignal(call))),
    listCommits: serverStream((req, call) => listCommits(deps, req, callSignal(call))),
    commitIsAncestor: unary((req, call) => commitIsAncestor(deps, req, callSignal(call))),
    countCommits: unary((req, call) => countCommits(deps, req, callSignal(call))),
    treeEntry: serverStream((req, call) => treeEntry(deps, req, callSignal(call))),
    getTreeEntries: serverStream((req, call) => getTreeEntries(deps, req, callSignal(call))),
    lastCommitForPath: unary((req, call) => lastCommitForPath(deps, req, callSignal(call))),
  };
}
