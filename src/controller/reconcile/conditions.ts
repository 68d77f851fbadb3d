// metav1.Condition bookkeeping: lastTransitionTime moves only when status flips, so
// `kubectl wait --for=condition=Ready` and alerting on transitions behave.
import type { Condition, ConditionType } from "../api/schema.js";

export interface DesiredCondition {
  type: ConditionType;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
}

/**
 * The conditions to publish: `desired`, in its order, each keeping its previous
 * lastTransitionTime when its status did not change. Conditions not in `desired` are dropped
 * unless listed in `keep` (owned by another writer, e.g. the rotation controller).
 */
export function mergeConditions(
  previous: readonly Condition[] | undefined,
  desired: readonly DesiredCondition[],
  observedGeneration: number,
  now: Date,
  keep: readonly string[] = [],
): Condition[] {
  const byType = new Map((previous ?? []).map((c) => [c.type, c]));
  const out: Condition[] = desired.map((d) => {
    const before = byType.get(d.type);
    return {
      type: d.type,
      status: d.status,
      observedGeneration,
      lastTransitionTime:
        before && before.status === d.status ? before.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
      reason: d.reason,
      message: d.message,
    };
  });
  for (const type of keep) {
    const c = byType.get(type);
    if (c && !desired.some((d) => d.type === type)) out.push(c);
  }
  return out;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === "True";
}
