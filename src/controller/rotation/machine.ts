// The token-rotation state machine: GitLab's six-step "auth transitioning" procedure as a
// pure function from (state, what was observed) to (next state, what to deliver). The same
// code drives the operator (Secrets and ConfigMaps in Kubernetes) and the local runner
// (files on disk); they differ only in how they deliver and how they observe.
//
//   Stable → Transitioning → RollingOut → Verifying → Enforcing → Stable
//
// Every transition is gated on observations of every server: the token generation it serves
// (gitaly_auth_token_info), the internal token Praefect presents to the nodes, and the
// authentication counters (gitaly_authentications_total). Enforcement is never turned back on
// while a failure count grows or a process still serves another generation; a step that cannot
// proceed waits, and says what it waits on.

export const ROTATION_PHASES = ["Stable", "Transitioning", "RollingOut", "Verifying", "Enforcing"] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];

/** Gitaly nodes check the internal token (Praefect → Gitaly); Praefect checks the client token (GitLab → Praefect). */
export type ServerRole = "gitaly" | "praefect";
export type TokenKind = "internal" | "client";

export function tokenKindOf(role: ServerRole): TokenKind {
  return role === "gitaly" ? "internal" : "client";
}

/** Authentication statuses that mean a caller presented no, a wrong or a malformed token. */
export const FAILURE_STATUSES = ["denied", "unauthenticated", "invalid"] as const;

/** What one server process reported (its /metrics). */
export interface ProcessSample {
  /** Pod or process name, used in messages. */
  name: string;
  role: ServerRole;
  reachable: boolean;
  /** Why it was unreachable. */
  error?: string;
  /** gitaly_auth_token_info{generation}: the token generation it accepts. */
  servedGeneration?: string;
  /** gitaly_auth_token_info{transitioning}. */
  transitioning?: boolean;
  /** Praefect only: generations of the internal token it presents to the Gitaly nodes. */
  presentedGenerations?: string[];
  /** gitaly_authentications_total keyed "<enforced>/<status>", e.g. "false/denied". */
  authCounts: Record<string, number>;
}

export interface TokenGenerations {
  /** Generation (sha256 prefix, never the token) of the internal and client tokens. */
  internal: string;
  client: string;
}

export interface RotationState {
  phase: RotationPhase;
  /** spec.auth.rotation.generation of the tokens in force. */
  generation: number;
  /** The generation being rotated to. */
  targetGeneration?: number;
  /** Going back to the old tokens (abort requested). */
  aborting?: boolean;
  /** Generations of the tokens before and after. */
  from?: TokenGenerations;
  to?: TokenGenerations;
  startedAt?: string;
  finishedAt?: string;
  /** Verifying: when the current quiet period began, and the failure counts then. */
  quietSince?: string;
  baseline?: Record<string, number>;
  /** A rotation that was aborted is not restarted until the generation is bumped past it. */
  abortedGeneration?: number;
  outcome?: "Completed" | "Aborted";
  /** The last message: what happened, or what the step waits on. */
  lastObservation?: string;
}

/** What the servers and clients must be given now. */
export interface Delivery {
  /** Servers accept any token (and count) instead of enforcing. */
  transitioning: boolean;
  /** Which tokens are written where servers and clients read them. */
  tokens: "current" | "old" | "new";
}

export interface RotationEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export interface StepInput {
  now: Date;
  /** spec.auth.rotation.generation (or a bumped value when a token Secret reference changed). */
  desiredGeneration: number;
  /** The rotation to this generation should be abandoned. */
  abortRequested: boolean;
  /**
   * Present when a rotation could start now: the generations of the tokens in force and of
   * the new ones the driver prepared (stored, not yet delivered).
   */
  prepared?: { from: TokenGenerations; to: TokenGenerations };
  samples: readonly ProcessSample[];
  /** Failures must stay at zero this long before enforcement is re-enabled. */
  quietPeriodMs: number;
}

export interface StepResult {
  state: RotationState;
  delivery: Delivery;
  /** Human sentence for the TokenRotation condition. */
  message: string;
  /** True while the rotation waits on something it does not control (a server, a client). */
  waiting: boolean;
  events: RotationEvent[];
}

export function initialRotationState(generation: number): RotationState {
  return { phase: "Stable", generation };
}

/** Whether a rotation to `desired` should start from `state`. */
export function rotationWanted(state: RotationState, desired: number): boolean {
  return state.phase === "Stable" && desired > Math.max(state.generation, state.abortedGeneration ?? -1);
}

/** Milliseconds kept: quietSince is compared to `now`, and rounding it down would end a quiet period early. */
function iso(d: Date): string {
  return d.toISOString();
}

/** What servers and clients must be given in `state` (e.g. to restart processes mid-rotation). */
export function deliveryFor(state: Pick<RotationState, "phase" | "aborting">): Delivery {
  switch (state.phase) {
    case "Stable":
      return { transitioning: false, tokens: "current" };
    case "Transitioning":
      return { transitioning: true, tokens: "old" };
    case "RollingOut":
    case "Verifying":
      return { transitioning: true, tokens: state.aborting ? "old" : "new" };
    case "Enforcing":
      return { transitioning: false, tokens: state.aborting ? "old" : "new" };
  }
}

/** The generations every server should end up with in this rotation's direction. */
function expected(state: RotationState): TokenGenerations | undefined {
  return state.aborting ? state.from : state.to;
}

function failureBreakdown(s: ProcessSample, baseline: Record<string, number> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const status of FAILURE_STATUSES) {
    const n = (s.authCounts[`false/${status}`] ?? 0) + (s.authCounts[`true/${status}`] ?? 0);
    const base = baseline?.[`${s.name}/${status}`] ?? 0;
    // A counter that went down means the process restarted: count from zero.
    const delta = n >= base ? n - base : n;
    if (delta > 0) out[status] = delta;
  }
  return out;
}

function totalCount(s: ProcessSample): number {
  return Object.values(s.authCounts).reduce((a, b) => a + b, 0);
}

function baselineOf(samples: readonly ProcessSample[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples) {
    out[`${s.name}/total`] = totalCount(s);
    for (const status of FAILURE_STATUSES) {
      out[`${s.name}/${status}`] = (s.authCounts[`false/${status}`] ?? 0) + (s.authCounts[`true/${status}`] ?? 0);
    }
  }
  return out;
}

/** Problems that block every step: no servers, or servers we cannot read. */
function reachability(samples: readonly ProcessSample[]): string | undefined {
  if (samples.length === 0) return "no Gitaly or Praefect server found to observe";
  const down = samples.filter((s) => !s.reachable);
  if (down.length === 0) return undefined;
  return `cannot read the metrics of ${down.map((s) => `${s.name}${s.error ? ` (${s.error})` : ""}`).join(", ")}`;
}

function lagging(samples: readonly ProcessSample[], want: TokenGenerations, transitioning: boolean): string[] {
  const out: string[] = [];
  for (const s of samples) {
    const kind = tokenKindOf(s.role);
    if (s.servedGeneration !== want[kind]) {
      out.push(`${s.name} serves ${kind} token generation ${s.servedGeneration ?? "unknown"}, not ${want[kind]}`);
    }
    if (s.transitioning !== transitioning) {
      out.push(`${s.name} has transitioning ${s.transitioning === undefined ? "unknown" : String(s.transitioning)}`);
    }
    if (s.role === "praefect") {
      const presented = s.presentedGenerations ?? [];
      const stale = presented.filter((g) => g !== want.internal);
      if (presented.length === 0 || stale.length > 0) {
        out.push(
          `${s.name} presents internal token generation ${[...new Set(presented)].join(",") || "unknown"}, not ${want.internal}`,
        );
      }
    }
  }
  return out;
}

function result(state: RotationState, message: string, waiting: boolean, events: RotationEvent[] = []): StepResult {
  return { state: { ...state, lastObservation: message }, delivery: deliveryFor(state), message, waiting, events };
}

function formatSeconds(ms: number): string {
  return `${Math.max(0, Math.round(ms / 1000))} s`;
}

/** One step: called on every observation; idempotent when nothing changed. */
export function stepRotation(state: RotationState, input: StepInput): StepResult {
  const { now, samples } = input;
  const target = state.targetGeneration;

  if (state.phase === "Stable") {
    if (!rotationWanted(state, input.desiredGeneration) || !input.prepared) {
      const message =
        state.outcome === "Aborted"
          ? `rotation to generation ${state.abortedGeneration} was aborted; tokens of generation ${state.generation} are in force`
          : `tokens of generation ${state.generation} are in force and enforced`;
      return result(state, message, false);
    }
    const next: RotationState = {
      phase: "Transitioning",
      generation: state.generation,
      targetGeneration: input.desiredGeneration,
      from: input.prepared.from,
      to: input.prepared.to,
      startedAt: iso(now),
      ...(state.abortedGeneration !== undefined ? { abortedGeneration: state.abortedGeneration } : {}),
    };
    const message = `rotation to generation ${input.desiredGeneration} started: servers accept any token while the new ones are delivered`;
    return result(next, message, false, [{ type: "Normal", reason: "TokenRotationStarted", message }]);
  }

  // Abort: from any phase before enforcement of the new tokens, go back to the old ones by the
  // same safe path (deliver, wait until served, stay quiet, enforce).
  if (input.abortRequested && !state.aborting && state.phase !== "Enforcing") {
    const next: RotationState = { ...state, phase: "RollingOut", aborting: true };
    delete next.quietSince;
    delete next.baseline;
    const message = `rotation to generation ${target} aborted: delivering the old tokens again`;
    return result(next, message, false, [{ type: "Warning", reason: "TokenRotationAborted", message }]);
  }

  const down = reachability(samples);
  if (down) return result(state, `${state.phase}: waiting: ${down}`, true);
  const want = expected(state);
  if (!want) return result(state, `${state.phase}: no token generations recorded; waiting`, true);

  switch (state.phase) {
    case "Transitioning": {
      const notYet = samples.filter((s) => s.transitioning !== true).map((s) => s.name);
      if (notYet.length > 0) {
        return result(
          state,
          `Transitioning: waiting for ${notYet.join(", ")} to accept any token (transitioning)`,
          true,
        );
      }
      const next: RotationState = { ...state, phase: "RollingOut" };
      return result(next, "every server accepts any token; delivering the new tokens to servers and clients", false);
    }
    case "RollingOut": {
      const behind = lagging(samples, want, true);
      if (behind.length > 0) return result(state, `RollingOut: waiting: ${behind.join("; ")}`, true);
      const next: RotationState = { ...state, phase: "Verifying", quietSince: iso(now), baseline: baselineOf(samples) };
      return result(
        next,
        `every server serves the ${state.aborting ? "old" : "new"} tokens; verifying that no client fails for ${formatSeconds(input.quietPeriodMs)}`,
        false,
      );
    }
    case "Verifying": {
      const behind = lagging(samples, want, true);
      if (behind.length > 0) {
        // A server fell back (e.g. a restarted pod that has not read the new files yet).
        const next: RotationState = { ...state, phase: "RollingOut" };
        delete next.quietSince;
        delete next.baseline;
        return result(next, `Verifying: back to RollingOut: ${behind.join("; ")}`, true);
      }
      // A server whose counters went down restarted: failures before the restart are gone from
      // its counters, so the quiet period cannot vouch for it. Start the period again.
      const restarted = samples.filter((s) => totalCount(s) < (state.baseline?.[`${s.name}/total`] ?? 0));
      if (restarted.length > 0) {
        const next: RotationState = { ...state, quietSince: iso(now), baseline: baselineOf(samples) };
        return result(
          next,
          `Verifying: ${restarted.map((s) => s.name).join(", ")} restarted; the quiet period starts again`,
          false,
        );
      }
      const since = state.quietSince ? new Date(state.quietSince) : now;
      const failures: string[] = [];
      const byKind: Record<TokenKind, Record<string, number>> = { internal: {}, client: {} };
      for (const s of samples) {
        const b = failureBreakdown(s, state.baseline);
        if (Object.keys(b).length === 0) continue;
        failures.push(
          `${s.name}: ${Object.entries(b)
            .map(([k, v]) => `${v} ${k}`)
            .join(", ")}`,
        );
        for (const [k, v] of Object.entries(b)) {
          const kind = byKind[tokenKindOf(s.role)];
          kind[k] = (kind[k] ?? 0) + v;
        }
      }
      if (failures.length > 0) {
        const parts = (["client", "internal"] as const)
          .filter((k) => Object.keys(byKind[k]).length > 0)
          .map(
            (k) =>
              `${k} token: ${Object.entries(byKind[k])
                .map(([s, n]) => `${n} ${s}`)
                .join(", ")}`,
          );
        const message = `Verifying: ${parts.join("; ")} in the last ${formatSeconds(now.getTime() - since.getTime())} (${failures.join("; ")}); waiting for every client to use the ${state.aborting ? "old" : "new"} token`;
        // Restart the quiet period from now: enforcement needs a full period without failures.
        const next: RotationState = { ...state, quietSince: iso(now), baseline: baselineOf(samples) };
        return result(next, message, true);
      }
      const quietFor = now.getTime() - since.getTime();
      if (quietFor < input.quietPeriodMs) {
        return result(
          state,
          `Verifying: no authentication failure for ${formatSeconds(quietFor)} of ${formatSeconds(input.quietPeriodMs)}`,
          false,
        );
      }
      const next: RotationState = { ...state, phase: "Enforcing" };
      delete next.quietSince;
      delete next.baseline;
      return result(
        next,
        `no authentication failure for ${formatSeconds(quietFor)}: enforcing authentication again`,
        false,
      );
    }
    case "Enforcing": {
      const behind = lagging(samples, want, false);
      if (behind.length > 0) return result(state, `Enforcing: waiting: ${behind.join("; ")}`, true);
      const done: RotationState = state.aborting
        ? {
            phase: "Stable",
            generation: state.generation,
            abortedGeneration: target ?? state.generation,
            finishedAt: iso(now),
            ...(state.startedAt ? { startedAt: state.startedAt } : {}),
            outcome: "Aborted",
          }
        : {
            phase: "Stable",
            generation: target ?? state.generation,
            finishedAt: iso(now),
            ...(state.startedAt ? { startedAt: state.startedAt } : {}),
            ...(state.abortedGeneration !== undefined ? { abortedGeneration: state.abortedGeneration } : {}),
            outcome: "Completed",
          };
      const message = state.aborting
        ? `rotation to generation ${target} aborted; the old tokens are enforced again`
        : `rotation to generation ${target} completed; the new tokens are enforced`;
      return result(done, message, false, [
        {
          type: state.aborting ? "Warning" : "Normal",
          reason: state.aborting ? "TokenRotationAborted" : "TokenRotationCompleted",
          message,
        },
      ]);
    }
  }
}
