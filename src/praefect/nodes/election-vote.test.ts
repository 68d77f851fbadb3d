import { describe, expect, it } from "vitest";
import { electionVote } from "./election-vote.js";

describe("electionVote", () => {
  it("counts latest checks only with all error thresholds configured and failover enabled", () => {
    const thresholds = {
      error_threshold_window: 10_000,
      read_error_threshold_count: 5,
      write_error_threshold_count: 2,
    };
    expect(electionVote(thresholds)).toBe("latest-check");
    expect(electionVote({ ...thresholds, enabled: true })).toBe("latest-check");
    expect(electionVote({ ...thresholds, enabled: false })).toBe("recent-sighting");
    expect(electionVote({ ...thresholds, write_error_threshold_count: 0 })).toBe("recent-sighting");
    expect(electionVote({ ...thresholds, error_threshold_window: 0 })).toBe("recent-sighting");
    expect(electionVote({})).toBe("recent-sighting");
    expect(electionVote(undefined)).toBe("recent-sighting");
  });
});
