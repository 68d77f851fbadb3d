// Time source for the work queue and leader election, so unit tests can drive timers
// deterministically instead of sleeping.

export type TimerHandle = { readonly id: number };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Wall-clock time backed by Node timers; timers are unref'd so they never keep a process alive. */
export const systemClock: Clock = (() => {
  const timers = new Map<number, NodeJS.Timeout>();
  let next = 0;
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const id = ++next;
      const t = setTimeout(() => {
        timers.delete(id);
        fn();
      }, ms);
      t.unref();
      timers.set(id, t);
      return { id };
    },
    clearTimeout(handle) {
      const t = timers.get(handle.id);
      if (t) clearTimeout(t);
      timers.delete(handle.id);
    },
  };
})();

/** A manually advanced clock: timers fire only inside `advance()`, in due order. */
export class FakeClock implements Clock {
  private current: number;
  private next = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.next;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle.id);
  }

  /** Delays of the pending timers relative to now, ascending. */
  pending(): number[] {
    return [...this.timers.values()].map((t) => t.at - this.current).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing due timers in order (timers they schedule fire too if due). */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      let dueId: number | undefined;
      let due: { at: number; fn: () => void } | undefined;
      for (const [id, t] of this.timers) {
        if (t.at <= target && (!due || t.at < due.at || (t.at === due.at && id < (dueId ?? 0)))) {
          due = t;
          dueId = id;
        }
      }
      if (!due || dueId === undefined) break;
      this.timers.delete(dueId);
      this.current = due.at;
      due.fn();
    }
    this.current = target;
  }
}
