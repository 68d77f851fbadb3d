// Which token value goes where, given the rotation's step. Pure: the values live in the
// operator's token Secrets (Kubernetes) or token files (local runner); this decides them.
import type { RotationState, StepResult, TokenKind } from "./machine.js";

export interface StoredToken {
  /** What servers and clients read now. */
  token: string;
  /** While a rotation is in progress: the tokens before and after it. */
  old?: string;
  new?: string;
}

export type StoredTokens = Record<TokenKind, StoredToken>;

/** Before a rotation starts: remember the tokens in force as `old`, the prepared ones as `new`. */
export function prepareTokens(current: StoredTokens, next: Record<TokenKind, string>): StoredTokens {
  return {
    internal: { token: current.internal.token, old: current.internal.token, new: next.internal },
    client: { token: current.client.token, old: current.client.token, new: next.client },
  };
}

/** The stored tokens after a step: what to deliver now, and what to remember. */
export function tokensAfterStep(before: StoredTokens, previous: RotationState, step: StepResult): StoredTokens {
  const one = (t: StoredToken): StoredToken => {
    if (step.state.phase === "Stable") {
      if (previous.phase === "Stable") return { token: t.token };
      // Just finished: the new tokens are in force, or the old ones after an abort.
      const kept = step.state.outcome === "Aborted" ? (t.old ?? t.token) : (t.new ?? t.token);
      return { token: kept };
    }
    const old = t.old ?? t.token;
    const next = t.new ?? t.token;
    return { token: step.delivery.tokens === "new" ? next : old, old, new: next };
  };
  return { internal: one(before.internal), client: one(before.client) };
}
