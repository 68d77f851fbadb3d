import { describe, expect, it } from "vitest";
import { STALE_JOB_SWEEP_INTERVAL_ENV, STALE_JOB_THRESHOLD_ENV, staleJobIntervalsFromEnv } from "./stale-jobs.js";
import { DEFAULT_INTERVALS } from "./workers.js";

describe("staleJobIntervalsFromEnv", () => {
  it("overrides nothing without the variables, leaving upstream's values", () => {
    expect(staleJobIntervalsFromEnv({})).toEqual({});
    expect(staleJobIntervalsFromEnv({ [STALE_JOB_THRESHOLD_ENV]: "" })).toEqual({});
    expect(DEFAULT_INTERVALS).toMatchObject({ staleAfterMs: 60_000, staleSweepMs: 30_000, heartbeatMs: 5_000 });
  });

  it("reads Go durations, and keeps heartbeats well inside a short threshold", () => {
    expect(
      staleJobIntervalsFromEnv({ [STALE_JOB_THRESHOLD_ENV]: "2s", [STALE_JOB_SWEEP_INTERVAL_ENV]: "250ms" }),
    ).toEqual({ staleAfterMs: 2_000, staleSweepMs: 250, heartbeatMs: 500 });
    expect(staleJobIntervalsFromEnv({ [STALE_JOB_THRESHOLD_ENV]: "5m" })).toEqual({
      staleAfterMs: 300_000,
      heartbeatMs: 5_000,
    });
    expect(staleJobIntervalsFromEnv({ [STALE_JOB_SWEEP_INTERVAL_ENV]: "1s" })).toEqual({ staleSweepMs: 1_000 });
  });

  it("rejects values that are not positive durations, naming the variable", () => {
    expect(() => staleJobIntervalsFromEnv({ [STALE_JOB_THRESHOLD_ENV]: "10" })).toThrow(STALE_JOB_THRESHOLD_ENV);
    expect(() => staleJobIntervalsFromEnv({ [STALE_JOB_SWEEP_INTERVAL_ENV]: "0s" })).toThrow(
      `${STALE_JOB_SWEEP_INTERVAL_ENV}: must be a positive duration`,
    );
    expect(() => staleJobIntervalsFromEnv({ [STALE_JOB_THRESHOLD_ENV]: "-1s" })).toThrow(/positive/);
  });
});
