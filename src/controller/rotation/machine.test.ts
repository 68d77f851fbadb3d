// The rotation state machine against a simulated fleet: servers apply what is delivered one
// observation later, clients switch tokens when told (or refuse to), and the machine must walk
// the documented phases without ever enforcing while failures grow.
import { describe, expect, test } from "vitest";
import {
  type Delivery,
  initialRotationState,
  type ProcessSample,
  type RotationPhase,
  type RotationState,
  rotationWanted,
  stepRotation,
  type TokenGenerations,
} from "./machine.js";

const OLD: TokenGenerations = { internal: "int-old", client: "cli-old" };
const NEW: TokenGenerations = { internal: "int-new", client: "cli-new" };
const QUIET_MS = 60_000;

/** Three Gitaly nodes and two Praefects whose settings follow the delivery with one step of lag. */
class Fleet {
  samples: ProcessSample[] = [
    ...["gitaly-0", "gitaly-1", "gitaly-2"].map((name) => ({ name, role: "gitaly" as const })),
    ...["praefect-0", "praefect-1"].map((name) => ({ name, role: "praefect" as const })),
  ].map((p) => ({
    ...p,
    reachable: true,
    servedGeneration: p.role === "gitaly" ? OLD.internal : OLD.client,
    transitioning: false,
    ...(p.role === "praefect" ? { presentedGenerations: [OLD.internal, OLD.internal, OLD.internal] } : {}),
    authCounts: { "true/ok": 100 },
  }));
  /** The token GitLab (the client of Praefect) uses. */
  clientUses: "old" | "new" = "old";
  /** A client that ignores the client Secret and keeps the old token. */
  stubbornClient = false;
  pending: Delivery | undefined;

  /** Servers and clients catch up with what was delivered at the previous step, then traffic flows. */
  tick(): void {
    const d = this.pending;
    if (d) {
      const gens = d.tokens === "new" ? NEW : OLD;
      for (const s of this.samples) {
        s.transitioning = d.transitioning;
        if (d.tokens !== "current") s.servedGeneration = s.role === "gitaly" ? gens.internal : gens.client;
        if (s.role === "praefect" && d.tokens !== "current")
          s.presentedGenerations = [gens.internal, gens.internal, gens.internal];
      }
      if (d.tokens !== "current" && !this.stubbornClient) this.clientUses = d.tokens;
    }
    // Traffic: every Praefect serves 10 client calls, every Gitaly 10 internal calls.
    for (const s of this.samples) {
      const presented =
        s.role === "praefect"
          ? this.clientUses === "new"
            ? NEW.client
            : OLD.client
          : this.samples.find((p) => p.role === "praefect")?.presentedGenerations?.[0];
      const good = presented === s.servedGeneration;
      const enforced = s.transitioning ? "false" : "true";
      const status = good ? (s.transitioning ? "would be ok" : "ok") : "denied";
      const key = `${enforced}/${status}`;
      s.authCounts[key] = (s.authCounts[key] ?? 0) + 10;
    }
  }
}

function run(fleet: Fleet, opts: { steps: number; abortAt?: number; startMs?: number; stepMs?: number }) {
  let state: RotationState = initialRotationState(1);
  const phases: RotationPhase[] = [];
  const deliveries: Delivery[] = [];
  const messages: string[] = [];
  let now = opts.startMs ?? Date.UTC(2026, 10, 22);
  for (let i = 0; i < opts.steps; i++) {
    fleet.tick();
    const r = stepRotation(state, {
      now: new Date(now),
      desiredGeneration: 2,
      abortRequested: opts.abortAt !== undefined && i >= opts.abortAt,
      ...(rotationWanted(state, 2) ? { prepared: { from: OLD, to: NEW } } : {}),
      samples: fleet.samples.map((s) => structuredClone(s)),
      quietPeriodMs: QUIET_MS,
    });
    state = r.state;
    fleet.pending = r.delivery;
    if (phases.at(-1) !== state.phase) phases.push(state.phase);
    deliveries.push(r.delivery);
    messages.push(r.message);
    now += opts.stepMs ?? 15_000;
  }
  return { state, phases, deliveries, messages };
}

describe("stepRotation", () => {
  test("walks Stable → Transitioning → RollingOut → Verifying → Enforcing → Stable", () => {
    const fleet = new Fleet();
    const { state, phases, messages } = run(fleet, { steps: 20 });
    expect(phases).toEqual(["Transitioning", "RollingOut", "Verifying", "Enforcing", "Stable"]);
    expect(state).toMatchObject({ phase: "Stable", generation: 2, outcome: "Completed" });
    expect(state.startedAt).toBeDefined();
    expect(state.finishedAt).toBeDefined();
    expect(messages.at(-1)).toMatch(/tokens of generation 2 are in force/);
    // The counters show the documented sequence: ok, then would be ok, then ok enforced again.
    for (const s of fleet.samples) {
      expect(s.authCounts["false/would be ok"]).toBeGreaterThan(0);
      expect(s.authCounts["true/ok"]).toBeGreaterThan(100);
      expect(s.authCounts["true/denied"] ?? 0).toBe(0);
    }
    expect(fleet.samples.every((s) => s.transitioning === false)).toBe(true);
  });

  test("never enforces while failures grow, and says which token and how many", () => {
    const fleet = new Fleet();
    fleet.stubbornClient = true;
    const { state, deliveries, messages } = run(fleet, { steps: 30 });
    expect(state.phase).toBe("Verifying");
    expect(messages.at(-1)).toMatch(
      /^Verifying: client token: \d+ denied in the last 15 s \(praefect-0: \d+ denied; praefect-1: \d+ denied\)/,
    );
    // Once servers transition, enforcement stays off for as long as the client is wrong.
    const firstTransitioning = deliveries.findIndex((d) => d.transitioning);
    expect(deliveries.slice(firstTransitioning).every((d) => d.transitioning)).toBe(true);
    expect(fleet.samples.flatMap((s) => Object.keys(s.authCounts)).filter((k) => k === "true/denied")).toEqual([]);

    // The client switches: the rotation completes after a full quiet period.
    fleet.stubbornClient = false;
    fleet.clientUses = "new";
    let s = state;
    let now = Date.UTC(2026, 10, 23);
    for (let i = 0; i < 10 && s.phase !== "Stable"; i++) {
      fleet.tick();
      const r = stepRotation(s, {
        now: new Date(now),
        desiredGeneration: 2,
        abortRequested: false,
        samples: fleet.samples.map((x) => structuredClone(x)),
        quietPeriodMs: QUIET_MS,
      });
      s = r.state;
      fleet.pending = r.delivery;
      now += 30_000;
    }
    expect(s).toMatchObject({ phase: "Stable", generation: 2, outcome: "Completed" });
  });

  test("abort goes back to the old tokens by the same safe path and is not restarted", () => {
    const fleet = new Fleet();
    const { state, phases, deliveries } = run(fleet, { steps: 20, abortAt: 3 });
    expect(state).toMatchObject({ phase: "Stable", generation: 1, abortedGeneration: 2, outcome: "Aborted" });
    expect(phases[0]).toBe("Transitioning");
    expect(phases.at(-1)).toBe("Stable");
    expect(deliveries.at(-1)).toEqual({ transitioning: false, tokens: "current" });
    expect(fleet.samples.every((s) => s.servedGeneration === (s.role === "gitaly" ? OLD.internal : OLD.client))).toBe(
      true,
    );
    expect(rotationWanted(state, 2)).toBe(false);
    expect(rotationWanted(state, 3)).toBe(true);
  });

  test("waits, naming the process, when a server's metrics cannot be read", () => {
    const fleet = new Fleet();
    const first = stepRotation(initialRotationState(1), {
      now: new Date(),
      desiredGeneration: 2,
      abortRequested: false,
      prepared: { from: OLD, to: NEW },
      samples: fleet.samples,
      quietPeriodMs: QUIET_MS,
    });
    const down = fleet.samples.map((s, i) => (i === 1 ? { ...s, reachable: false, error: "ECONNREFUSED" } : s));
    const r = stepRotation(first.state, {
      now: new Date(),
      desiredGeneration: 2,
      abortRequested: false,
      samples: down,
      quietPeriodMs: QUIET_MS,
    });
    expect(r.state.phase).toBe("Transitioning");
    expect(r.waiting).toBe(true);
    expect(r.message).toContain("gitaly-1 (ECONNREFUSED)");
    expect(r.delivery).toEqual({ transitioning: true, tokens: "old" });
  });

  test("a server that restarts on the old settings sends Verifying back to RollingOut", () => {
    const fleet = new Fleet();
    const { state } = run(fleet, { steps: 4 });
    expect(state.phase).toBe("Verifying");
    const restarted = fleet.samples.map((s) =>
      s.name === "gitaly-2" ? { ...s, servedGeneration: OLD.internal, authCounts: {} } : s,
    );
    const r = stepRotation(state, {
      now: new Date(),
      desiredGeneration: 2,
      abortRequested: false,
      samples: restarted,
      quietPeriodMs: QUIET_MS,
    });
    expect(r.state.phase).toBe("RollingOut");
    expect(r.message).toMatch(/gitaly-2 serves internal token generation int-old, not int-new/);
  });

  test("stays Stable without a newer generation and reports the generation in force", () => {
    const r = stepRotation(initialRotationState(4), {
      now: new Date(),
      desiredGeneration: 4,
      abortRequested: false,
      samples: [],
      quietPeriodMs: QUIET_MS,
    });
    expect(r.state.phase).toBe("Stable");
    expect(r.delivery).toEqual({ transitioning: false, tokens: "current" });
    expect(r.message).toBe("tokens of generation 4 are in force and enforced");
  });
});

describe("restarts during Verifying", () => {
  test("a server whose counters went down restarted: the quiet period starts again", () => {
    const fleet = new Fleet();
    const { state } = run(fleet, { steps: 4 });
    expect(state.phase).toBe("Verifying");
    const restarted = fleet.samples.map((s) =>
      s.name === "praefect-1" ? { ...s, authCounts: { "false/would be ok": 1 } } : s,
    );
    const later = new Date(Date.UTC(2026, 10, 24));
    const r = stepRotation(state, {
      now: later,
      desiredGeneration: 2,
      abortRequested: false,
      samples: restarted,
      quietPeriodMs: QUIET_MS,
    });
    expect(r.state.phase).toBe("Verifying");
    expect(r.state.quietSince).toBe(later.toISOString());
    expect(r.message).toMatch(/praefect-1 restarted; the quiet period starts again/);
  });
});
