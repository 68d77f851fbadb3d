// The rotation loop against a simulated fleet holding real token values: servers apply what was
// delivered one observation later, Praefect presents the internal token it was given, clients use
// the client token they were given, and every call is counted the way the servers count it.
import { describe, expect, test } from "vitest";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import {
  generationsOf,
  memoryRotationStore,
  type RotationEnvironment,
  type RotationRecord,
  runRotation,
  type TokenPair,
  tokensFor,
} from "./driver.js";
import { type Delivery, initialRotationState, type ProcessSample, type StepResult } from "./machine.js";

const OLD: TokenPair = { internal: "internal-token-old", client: "client-token-old" };

interface SimServer {
  name: string;
  role: "gitaly" | "praefect";
  token: string;
  transitioning: boolean;
  /** Praefect: the internal token it presents to the nodes. */
  presents?: string;
  counts: Record<string, number>;
}

class FakeFleet implements RotationEnvironment {
  servers: SimServer[] = [
    ...["gitaly-0", "gitaly-1", "gitaly-2"].map((name) => ({ name, role: "gitaly" as const, token: OLD.internal })),
    ...["praefect-0", "praefect-1"].map((name) => ({
      name,
      role: "praefect" as const,
      token: OLD.client,
      presents: OLD.internal,
    })),
  ].map((s) => ({ ...s, transitioning: false, counts: {} }));
  clientToken = OLD.client;
  /** A server that ignores every delivery (a broken file mount). */
  deaf = new Set<string>();
  pending: { d: Delivery; values: TokenPair } | undefined;
  deliveries: { d: Delivery; values: TokenPair }[] = [];

  async deliver(d: Delivery, values: TokenPair): Promise<void> {
    this.pending = { d, values };
    this.deliveries.push({ d, values });
  }

  async observe(): Promise<ProcessSample[]> {
    const p = this.pending;
    if (p) {
      for (const s of this.servers) {
        if (this.deaf.has(s.name)) continue;
        s.transitioning = p.d.transitioning;
        s.token = s.role === "gitaly" ? p.values.internal : p.values.client;
        if (s.role === "praefect") s.presents = p.values.internal;
      }
      this.clientToken = p.values.client;
    }
    const praefect = this.servers.find((s) => s.role === "praefect");
    for (const s of this.servers) {
      const presented = s.role === "praefect" ? this.clientToken : praefect?.presents;
      const ok = presented === s.token;
      const key = `${s.transitioning ? "false" : "true"}/${ok ? (s.transitioning ? "would be ok" : "ok") : "denied"}`;
      s.counts[key] = (s.counts[key] ?? 0) + 5;
    }
    return this.servers.map((s) => ({
      name: s.name,
      role: s.role,
      reachable: true,
      servedGeneration: tokenGeneration(s.token),
      transitioning: s.transitioning,
      ...(s.presents !== undefined ? { presentedGenerations: [tokenGeneration(s.presents)] } : {}),
      authCounts: { ...s.counts },
    }));
  }

  served(role: "gitaly" | "praefect"): string[] {
    return [...new Set(this.servers.filter((s) => s.role === role).map((s) => s.token))];
  }
}

/** A clock that moves one second per reading, so quiet periods pass without waiting. */
function steppingClock(start = Date.UTC(2026, 10, 22)): () => Date {
  let t = start;
  return () => {
    t += 1_000;
    return new Date(t);
  };
}

function stableRecord(generation = 1): RotationRecord {
  return { state: initialRotationState(generation), tokens: { current: { ...OLD } } };
}

const FAST = { quietPeriodMs: 3_000, intervalMs: 0 };

describe("runRotation", () => {
  test("rotates the internal token only: generated, delivered through the phases, committed as current", async () => {
    const fleet = new FakeFleet();
    const store = memoryRotationStore(stableRecord());
    const steps: StepResult[] = [];
    const result = await runRotation({
      env: fleet,
      store,
      desiredGeneration: 2,
      rotate: { internal: "generate", client: "keep" },
      clock: steppingClock(),
      onStep: (r) => steps.push(r),
      ...FAST,
    });

    expect(result.outcome).toBe("Completed");
    expect(result.state).toMatchObject({ phase: "Stable", generation: 2, outcome: "Completed" });
    const current = store.record.tokens.current;
    expect(current.client).toBe(OLD.client);
    expect(current.internal).not.toBe(OLD.internal);
    // 32 random bytes, base64url without padding.
    expect(current.internal).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(store.record.tokens.old).toBeUndefined();
    expect(store.record.tokens.new).toBeUndefined();
    expect(fleet.served("gitaly")).toEqual([current.internal]);
    expect(fleet.served("praefect")).toEqual([OLD.client]);
    expect(fleet.servers.every((s) => !s.transitioning && s.presents !== OLD.internal)).toBe(true);

    // The phases in order, and the delivery of each.
    const phases = steps.map((s) => s.state.phase).filter((p, i, all) => all[i - 1] !== p);
    expect(phases).toEqual(["Transitioning", "RollingOut", "Verifying", "Enforcing", "Stable"]);
    const shapes = fleet.deliveries
      .map(({ d, values }) => `${d.transitioning ? "T" : "E"}:${values.internal === OLD.internal ? "old" : "new"}`)
      .filter((x, i, all) => all[i - 1] !== x);
    expect(shapes).toEqual(["T:old", "T:new", "E:new"]);
    // Enforcement never met a wrong token, and the generations recorded are the tokens'.
    expect(fleet.servers.every((s) => (s.counts["true/denied"] ?? 0) === 0)).toBe(true);
    expect(steps[0]?.state.to).toEqual(generationsOf(current));
    expect(steps[0]?.state.from).toEqual(generationsOf(OLD));
  });

  test("uses a given value, rotates both kinds by default, and never reports a token", async () => {
    const fleet = new FakeFleet();
    const store = memoryRotationStore(stableRecord(4));
    const steps: StepResult[] = [];
    const result = await runRotation({
      env: fleet,
      store,
      desiredGeneration: 5,
      rotate: { client: { value: "client-token-given" } },
      clock: steppingClock(),
      onStep: (r) => steps.push(r),
      ...FAST,
    });
    expect(result.outcome).toBe("Completed");
    const current = store.record.tokens.current;
    expect(current.client).toBe("client-token-given");
    expect(current.internal).not.toBe(OLD.internal);
    expect(fleet.served("praefect")).toEqual(["client-token-given"]);
    const reported = JSON.stringify(steps);
    for (const token of [OLD.internal, OLD.client, current.internal, current.client]) {
      expect(reported).not.toContain(token);
    }
  });

  test("rejects a given value the servers would read differently", async () => {
    await expect(
      runRotation({
        env: new FakeFleet(),
        store: memoryRotationStore(stableRecord()),
        desiredGeneration: 2,
        rotate: { internal: { value: " padded " } },
        clock: steppingClock(),
        ...FAST,
      }),
    ).rejects.toThrow(/new internal token is empty or has surrounding whitespace/);
  });

  test("a run stopped mid-rotation resumes from the store with the same new tokens", async () => {
    const fleet = new FakeFleet();
    const store = memoryRotationStore(stableRecord());
    const controller = new AbortController();
    const first = await runRotation({
      env: fleet,
      store,
      desiredGeneration: 2,
      signal: controller.signal,
      clock: steppingClock(),
      onStep: (r) => {
        if (r.state.phase === "Verifying") controller.abort();
      },
      ...FAST,
    });
    expect(first.outcome).toBe("Interrupted");
    expect(store.record.state.phase).toBe("Verifying");
    const delivered = store.record.tokens.new;
    expect(delivered).toBeDefined();
    expect(fleet.served("gitaly")).toEqual([delivered?.internal]);

    // A new driver (a restarted runner) over the same store and fleet.
    const second = await runRotation({ env: fleet, store, desiredGeneration: 2, clock: steppingClock(), ...FAST });
    expect(second.outcome).toBe("Completed");
    expect(store.record.tokens.current).toEqual(delivered);
    expect(fleet.served("gitaly")).toEqual([delivered?.internal]);
    expect(fleet.served("praefect")).toEqual([delivered?.client]);
  });

  test("abort goes back to the old tokens and reports Aborted", async () => {
    const fleet = new FakeFleet();
    const store = memoryRotationStore(stableRecord());
    let steps = 0;
    const result = await runRotation({
      env: fleet,
      store,
      desiredGeneration: 2,
      abort: () => steps >= 3,
      onStep: () => {
        steps++;
      },
      clock: steppingClock(),
      ...FAST,
    });
    expect(result.outcome).toBe("Aborted");
    expect(result.state).toMatchObject({ phase: "Stable", generation: 1, abortedGeneration: 2 });
    expect(store.record.tokens).toEqual({ current: OLD });
    expect(fleet.served("gitaly")).toEqual([OLD.internal]);
    expect(fleet.served("praefect")).toEqual([OLD.client]);
    expect(fleet.servers.every((s) => !s.transitioning)).toBe(true);
  });

  test("nothing to rotate: one step that delivers the current tokens, enforced", async () => {
    const fleet = new FakeFleet();
    const store = memoryRotationStore(stableRecord(3));
    const result = await runRotation({ env: fleet, store, desiredGeneration: 3, clock: steppingClock(), ...FAST });
    expect(result).toMatchObject({ outcome: "Unchanged", steps: 1 });
    expect(fleet.deliveries).toEqual([{ d: { transitioning: false, tokens: "current" }, values: OLD }]);
  });

  test("new tokens left in a Stable record are never delivered", async () => {
    const fleet = new FakeFleet();
    const leftover = { internal: "prepared-before-a-crash", client: "prepared-before-a-crash-too" };
    const store = memoryRotationStore({ ...stableRecord(), tokens: { current: OLD, old: OLD, new: leftover } });
    await runRotation({ env: fleet, store, desiredGeneration: 2, clock: steppingClock(), ...FAST });
    const delivered = fleet.deliveries.flatMap(({ values }) => [values.internal, values.client]);
    expect(delivered).not.toContain(leftover.internal);
    expect(delivered).not.toContain(leftover.client);
    expect(store.record.tokens.current.internal).not.toBe(leftover.internal);
  });

  test("a server that never follows keeps the rotation waiting until the timeout, transitioning", async () => {
    const fleet = new FakeFleet();
    fleet.deaf.add("gitaly-1");
    const store = memoryRotationStore(stableRecord());
    const result = await runRotation({
      env: fleet,
      store,
      desiredGeneration: 2,
      timeoutMs: 60_000,
      clock: steppingClock(),
      ...FAST,
    });
    expect(result.outcome).toBe("TimedOut");
    expect(result.state.phase).toBe("Transitioning");
    expect(result.state.lastObservation).toMatch(/waiting for gitaly-1 to accept any token/);
    expect(fleet.deliveries.at(-1)?.d).toEqual({ transitioning: true, tokens: "old" });
  });
});

describe("tokensFor", () => {
  test("maps the machine's names to values", () => {
    const tokens = { current: OLD, old: OLD, new: { internal: "n-i", client: "n-c" } };
    expect(tokensFor({ transitioning: true, tokens: "new" }, tokens)).toEqual({ internal: "n-i", client: "n-c" });
    expect(tokensFor({ transitioning: true, tokens: "old" }, { current: OLD })).toEqual(OLD);
    expect(() => tokensFor({ transitioning: true, tokens: "new" }, { current: OLD })).toThrow(/none were prepared/);
  });
});
