// Which health consensus the per-repository election uses. With [failover] error thresholds
// configured, Praefect runs fast failure detection: the consensus counts each Praefect's latest
// check (see datastore/health.ts for why this keeps the safety of upstream's consensus); without
// them, upstream's healthy_storages (a node seen healthy in the last 10 s).
import type { ConsensusVote } from "../datastore/health.js";

/** The [failover] settings that decide the vote; all optional, as partial configs carry them. */
export interface FailoverVoteSettings {
  enabled?: boolean;
  error_threshold_window?: number;
  read_error_threshold_count?: number;
  write_error_threshold_count?: number;
}

export function electionVote(failover: FailoverVoteSettings | undefined): ConsensusVote {
  if (failover === undefined || failover.enabled === false) return "recent-sighting";
  const configured =
    (failover.error_threshold_window ?? 0) > 0 &&
    (failover.read_error_threshold_count ?? 0) > 0 &&
    (failover.write_error_threshold_count ?? 0) > 0;
  return configured ? "latest-check" : "recent-sighting";
}
