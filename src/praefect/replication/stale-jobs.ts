// How long a replication job may sit in progress without a heartbeat before another Praefect (or
// this one after a restart) takes it back. Upstream hard-codes these (a sweep every 30 s releasing
// job locks older than 1 min, heartbeats every 5 s) and has no configuration key for them; we keep
// those values and allow an override through the environment only, so tests (and an operator in a
// hurry) can watch a killed Praefect's jobs come back without waiting minutes.
import { parseDuration } from "../../shared/config/duration.js";
import type { ReplicationIntervals } from "./workers.js";

/** Go duration: job locks without a heartbeat for longer than this are released (upstream: 1m). */
export const STALE_JOB_THRESHOLD_ENV = "PRAEFECT_STALE_REPLICATION_JOB_THRESHOLD";
/** Go duration: how often the sweep of stale job locks runs (upstream: 30s). */
export const STALE_JOB_SWEEP_INTERVAL_ENV = "PRAEFECT_STALE_REPLICATION_JOB_SWEEP_INTERVAL";

/** Upstream's heartbeat period; a shorter stale threshold brings it down with it. */
const DEFAULT_HEARTBEAT_MS = 5_000;
/** Heartbeats per threshold: a live worker must refresh its locks a few times before they count as stale. */
const HEARTBEATS_PER_THRESHOLD = 4;

function positiveDuration(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const text = env[name];
  if (text === undefined || text === "") return undefined;
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (err) {
    throw new Error(`${name}: invalid duration ${JSON.stringify(text)}: ${(err as Error).message}`);
  }
  if (!(ms > 0)) throw new Error(`${name}: must be a positive duration, got ${JSON.stringify(text)}`);
  return ms;
}

/**
 * The stale-job overrides found in `env`, as replication intervals; empty when none is set.
 * With a threshold shorter than upstream's, heartbeats come at least 4 times per threshold so
 * the jobs of a Praefect that is alive are never mistaken for abandoned ones.
 */
export function staleJobIntervalsFromEnv(env: NodeJS.ProcessEnv): Partial<ReplicationIntervals> {
  const staleAfterMs = positiveDuration(env, STALE_JOB_THRESHOLD_ENV);
  const staleSweepMs = positiveDuration(env, STALE_JOB_SWEEP_INTERVAL_ENV);
  const intervals: Partial<ReplicationIntervals> = {};
  if (staleSweepMs !== undefined) intervals.staleSweepMs = staleSweepMs;
  if (staleAfterMs !== undefined) {
    intervals.staleAfterMs = staleAfterMs;
    intervals.heartbeatMs = Math.min(DEFAULT_HEARTBEAT_MS, staleAfterMs / HEARTBEATS_PER_THRESHOLD);
  }
  return intervals;
}
