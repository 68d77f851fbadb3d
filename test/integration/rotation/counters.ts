// Records every server's auth counters during the run, independently of the driver, and reads
// them back per window: which gitaly_authentications_total{enforced,status} series grew between
// two snapshots.
import type { ProcessSample } from "../../../src/controller/rotation/machine.js";
import { type ScrapeTarget, scrapeTargets } from "../../../src/controller/rotation/scrape.js";

export interface Snapshot {
  /** When the scrape began and when every answer was in (ms since the epoch). */
  startedAt: number;
  endedAt: number;
  samples: ProcessSample[];
}

export interface Recorder {
  snapshots: Snapshot[];
  /** The first snapshot begun after `t`, waiting for it when there is none yet. */
  after(t: number): Promise<Snapshot>;
  stop(): Promise<void>;
}

export function startRecorder(targets: ScrapeTarget[], intervalMs: number): Recorder {
  const snapshots: Snapshot[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const startedAt = Date.now();
      const samples = await scrapeTargets(targets, 2_000);
      // An unreachable server would make a window look quiet: keep only complete snapshots.
      if (samples.every((s) => s.reachable)) snapshots.push({ startedAt, endedAt: Date.now(), samples });
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    snapshots,
    async after(t) {
      for (;;) {
        const s = snapshots.find((x) => x.startedAt > t);
        if (s) return s;
        if (!running) throw new Error("the recorder stopped");
        await new Promise((r) => setTimeout(r, intervalMs));
      }
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** The last snapshot complete before `t`. */
export function snapshotBefore(snapshots: readonly Snapshot[], t: number): Snapshot {
  const s = snapshots.filter((x) => x.endedAt < t).at(-1);
  if (!s) throw new Error(`no snapshot completed before ${new Date(t).toISOString()}`);
  return s;
}

export function snapshotAfter(snapshots: readonly Snapshot[], t: number): Snapshot {
  const s = snapshots.find((x) => x.startedAt > t);
  if (!s) throw new Error(`no snapshot begun after ${new Date(t).toISOString()}`);
  return s;
}

/** "<enforced>/<status>" series of `server` that grew from `a` to `b`, sorted. */
export function grew(a: Snapshot, b: Snapshot, server: string): string[] {
  const from = a.samples.find((s) => s.name === server)?.authCounts ?? {};
  const to = b.samples.find((s) => s.name === server)?.authCounts ?? {};
  return Object.keys(to)
    .filter((k) => (to[k] ?? 0) > (from[k] ?? 0))
    .sort();
}

/** Every enforced failure any snapshot shows, as "<server> <series> <count>". */
export function enforcedFailures(snapshots: readonly Snapshot[]): string[] {
  const out = new Set<string>();
  for (const snap of snapshots) {
    for (const s of snap.samples) {
      for (const [k, v] of Object.entries(s.authCounts)) {
        if (k.startsWith("true/") && k !== "true/ok" && v > 0) out.add(`${s.name} ${k} ${v}`);
      }
    }
  }
  return [...out];
}
