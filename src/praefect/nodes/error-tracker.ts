// Error-based failure detection ([failover] error_threshold_window, read_error_threshold_count,
// write_error_threshold_count): the router reports failed calls per node, and a node with at least
// the threshold of read (or write) errors inside the window counts as unhealthy until enough of
// them have aged out of the window. Upstream's tracker does the same per storage.

export type ErrorKind = "read" | "write";

export interface ErrorThresholds {
  windowMs: number;
  read: number;
  write: number;
}

export class ErrorTracker {
  private readonly errors = new Map<string, { read: number[]; write: number[] }>();

  constructor(
    private readonly thresholds: ErrorThresholds,
    private readonly now: () => number = Date.now,
  ) {
    if (!(thresholds.windowMs > 0)) throw new Error("error threshold window must be positive");
    if (!(thresholds.read > 0)) throw new Error("read error threshold must be positive");
    if (!(thresholds.write > 0)) throw new Error("write error threshold must be positive");
  }

  private prune(times: number[], now: number): void {
    const oldestKept = now - this.thresholds.windowMs;
    let drop = 0;
    while (drop < times.length && (times[drop] as number) <= oldestKept) drop++;
    if (drop > 0) times.splice(0, drop);
  }

  /** Records one failed call to `node`. */
  record(node: string, kind: ErrorKind): void {
    let entry = this.errors.get(node);
    if (!entry) {
      entry = { read: [], write: [] };
      this.errors.set(node, entry);
    }
    const now = this.now();
    const times = entry[kind];
    times.push(now);
    this.prune(times, now);
    // Only the newest `threshold` errors matter; older ones cannot change the verdict.
    const keep = this.thresholds[kind];
    if (times.length > keep) times.splice(0, times.length - keep);
  }

  /** Whether `node` has reached the read or the write threshold within the window. */
  thresholdReached(node: string): ErrorKind | null {
    const entry = this.errors.get(node);
    if (!entry) return null;
    const now = this.now();
    for (const kind of ["read", "write"] as const) {
      this.prune(entry[kind], now);
      if (entry[kind].length >= this.thresholds[kind]) return kind;
    }
    if (entry.read.length === 0 && entry.write.length === 0) this.errors.delete(node);
    return null;
  }

  /** Whether any node has errors recorded (a cheap check for the routing fast path). */
  get empty(): boolean {
    return this.errors.size === 0;
  }
}
