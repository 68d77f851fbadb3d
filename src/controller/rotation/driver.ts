// Runs the rotation state machine against an environment: observe every server, step, persist,
// deliver, repeat until the tokens are enforced again. The machine only ever names tokens by
// role ("current", "old", "new"); this loop owns the values behind those names, prepares the new
// ones when a rotation starts, and commits them as "current" when it completes. Tokens never
// leave it except through deliver(); what it reports carries generations only.
import { randomBytes } from "node:crypto";
import { tokenGeneration } from "../../gitaly/auth/authenticator.js";
import {
  type Delivery,
  type ProcessSample,
  type RotationState,
  rotationWanted,
  type StepResult,
  stepRotation,
  type TokenGenerations,
  type TokenKind,
} from "./machine.js";

/** One value per token kind: the internal token (Praefect → Gitaly) and the client token (GitLab → Praefect). */
export interface TokenPair {
  internal: string;
  client: string;
}

/** The token values behind the machine's names; `old` and `new` exist only during a rotation. */
export interface RotationTokens {
  current: TokenPair;
  old?: TokenPair;
  new?: TokenPair;
}

/** What must survive a restart of the driver so that a rotation resumes where it stood. */
export interface RotationRecord {
  state: RotationState;
  tokens: RotationTokens;
}

/** Persists the record; save() must be durable before it resolves (deliver() follows it). */
export interface RotationStore {
  load(): Promise<RotationRecord>;
  save(record: RotationRecord): Promise<void>;
}

/** Where the servers and clients live: how to read them and how to hand them settings. */
export interface RotationEnvironment {
  observe(): Promise<ProcessSample[]>;
  /** Puts `values` where servers and clients read their tokens, and `d.transitioning` in every server's [auth]. */
  deliver(d: Delivery, values: TokenPair): Promise<void>;
}

/** How a kind's new token is chosen when a rotation starts. */
export type TokenChoice = "keep" | "generate" | { value: string };

export interface RunRotationOptions {
  env: RotationEnvironment;
  store: RotationStore;
  /** Rotate when this is above the generation in force (see rotationWanted). */
  desiredGeneration: number;
  /** Which tokens change; default: both are generated. */
  rotate?: Partial<Record<TokenKind, TokenChoice>>;
  /** Asked before every step: true abandons the rotation and goes back to the old tokens (safely). */
  abort?: () => boolean;
  /** Stops the loop without touching the rotation; the persisted record lets a later run resume. */
  signal?: AbortSignal;
  /** Stops the loop (like `signal`) when the rotation has not settled after this long. */
  timeoutMs?: number;
  quietPeriodMs: number;
  /** Pause between two steps. */
  intervalMs: number;
  onStep?: (result: StepResult) => void;
  /** Replaceable in tests. */
  clock?: () => Date;
  /** Source of generated tokens; default 32 random bytes, base64url (what the operator's Secrets hold). */
  generateToken?: () => string;
}

export type RunOutcome =
  /** The rotation finished: the new tokens are enforced. */
  | "Completed"
  /** The rotation was abandoned: the old tokens are enforced again. */
  | "Aborted"
  /** Nothing to rotate (or an abort was asked before anything started). */
  | "Unchanged"
  /** Stopped by `timeoutMs` or `signal` while a rotation was under way; it resumes from the store. */
  | "TimedOut"
  | "Interrupted";

export interface RunRotationResult {
  outcome: RunOutcome;
  state: RotationState;
  steps: number;
}

export function generateToken(): string {
  return randomBytes(32).toString("base64url");
}

export function generationsOf(pair: TokenPair): TokenGenerations {
  return { internal: tokenGeneration(pair.internal), client: tokenGeneration(pair.client) };
}

function chooseToken(kind: TokenKind, choice: TokenChoice, current: string, generate: () => string): string {
  if (choice === "keep") return current;
  if (choice === "generate") return generate();
  const { value } = choice;
  // Readers trim token files, so a value with surrounding whitespace would not be the one served.
  if (value === "" || value.trim() !== value) {
    throw new Error(`the new ${kind} token is empty or has surrounding whitespace`);
  }
  return value;
}

/** The values the delivery names. */
export function tokensFor(delivery: Delivery, tokens: RotationTokens): TokenPair {
  switch (delivery.tokens) {
    case "current":
      return tokens.current;
    case "old":
      // Before any rotation the old tokens are the current ones.
      return tokens.old ?? tokens.current;
    case "new":
      if (!tokens.new) throw new Error("the rotation asks for the new tokens, but none were prepared or stored");
      return tokens.new;
  }
}

/** The tokens after a step: prepared at the start, committed or dropped at the end. */
function settleTokens(before: RotationState, after: RotationState, tokens: RotationTokens): RotationTokens {
  if (before.phase === "Stable" || after.phase !== "Stable") return tokens;
  if (after.outcome === "Completed") {
    if (!tokens.new) throw new Error("the rotation completed, but the new tokens are not in the store");
    return { current: tokens.new };
  }
  return { current: tokens.old ?? tokens.current };
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Steps the machine until the tokens in force are enforced and no rotation is wanted. Every step
 * observes, steps, saves the record, then delivers, so a crash never loses a token that may
 * already have been delivered. Errors of observe() are the environment's to report as
 * unreachable samples; errors of save() or deliver() end the run (the record is consistent).
 */
export async function runRotation(options: RunRotationOptions): Promise<RunRotationResult> {
  const { env, store, desiredGeneration, signal } = options;
  const clock = options.clock ?? (() => new Date());
  const generate = options.generateToken ?? generateToken;
  const rotate = { internal: options.rotate?.internal ?? "generate", client: options.rotate?.client ?? "generate" };
  const deadline = options.timeoutMs === undefined ? undefined : clock().getTime() + options.timeoutMs;

  let record = await store.load();
  // A rotation under way when the run started counts as one (for the outcome).
  let rotated = record.state.phase !== "Stable";
  let steps = 0;
  for (;;) {
    const abortRequested = options.abort?.() ?? false;
    const samples = await env.observe();
    const now = clock();
    let tokens: RotationTokens = record.tokens;
    let prepared: { from: TokenGenerations; to: TokenGenerations } | undefined;
    if (record.state.phase === "Stable") {
      // New tokens left in a Stable record were prepared but never delivered (the first delivery
      // of a rotation is the old tokens): drop them and prepare afresh.
      tokens = { current: record.tokens.current };
      if (!abortRequested && rotationWanted(record.state, desiredGeneration)) {
        const { current } = tokens;
        const next: TokenPair = {
          internal: chooseToken("internal", rotate.internal, current.internal, generate),
          client: chooseToken("client", rotate.client, current.client, generate),
        };
        tokens = { current, old: current, new: next };
        prepared = { from: generationsOf(current), to: generationsOf(next) };
      }
    }

    const result = stepRotation(record.state, {
      now,
      desiredGeneration,
      abortRequested,
      ...(prepared ? { prepared } : {}),
      samples,
      quietPeriodMs: options.quietPeriodMs,
    });
    steps++;
    if (result.state.phase !== "Stable") rotated = true;
    tokens = settleTokens(record.state, result.state, tokens);
    record = { state: result.state, tokens };
    await store.save(record);
    await env.deliver(result.delivery, tokensFor(result.delivery, tokens));
    options.onStep?.(result);

    const state = record.state;
    if (state.phase === "Stable" && (abortRequested || !rotationWanted(state, desiredGeneration))) {
      const outcome: RunOutcome = rotated ? (state.outcome ?? "Completed") : "Unchanged";
      return { outcome, state, steps };
    }
    if (signal?.aborted) return { outcome: "Interrupted", state, steps };
    if (deadline !== undefined && clock().getTime() >= deadline) return { outcome: "TimedOut", state, steps };
    await sleep(options.intervalMs, signal);
    if (signal?.aborted) return { outcome: "Interrupted", state, steps };
  }
}

/** A store in memory (tests, or a caller that persists the record itself). */
export function memoryRotationStore(initial: RotationRecord): RotationStore & { record: RotationRecord } {
  const store = {
    record: structuredClone(initial),
    async load() {
      return structuredClone(store.record);
    },
    async save(record: RotationRecord) {
      store.record = structuredClone(record);
    },
  };
  return store;
}
