import { describe, expect, it } from "vitest";
import { type Condition, conditionSchema } from "../api/schema.js";
import { type DesiredCondition, findCondition, isTrue, mergeConditions } from "./conditions.js";

const T0 = new Date("2025-01-02T03:04:05.678Z");
const T1 = new Date("2025-01-02T04:00:00.000Z");

function desired(type: DesiredCondition["type"], status: DesiredCondition["status"], reason = "R"): DesiredCondition {
  return { type, status, reason, message: `${type} is ${status}` };
}

describe("mergeConditions", () => {
  it("stamps every desired condition with now (RFC 3339 without milliseconds) and the generation", () => {
    const out = mergeConditions(undefined, [desired("Ready", "False"), desired("Degraded", "False")], 7, T0);
    expect(out).toEqual([
      {
        type: "Ready",
        status: "False",
        observedGeneration: 7,
        lastTransitionTime: "2025-01-02T03:04:05Z",
        reason: "R",
        message: "Ready is False",
      },
      {
        type: "Degraded",
        status: "False",
        observedGeneration: 7,
        lastTransitionTime: "2025-01-02T03:04:05Z",
        reason: "R",
        message: "Degraded is False",
      },
    ]);
  });

  it("formats whole seconds without a fractional part too", () => {
    const [c] = mergeConditions(undefined, [desired("Ready", "True")], 1, T1);
    expect(c?.lastTransitionTime).toBe("2025-01-02T04:00:00Z");
    expect(c?.lastTransitionTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(conditionSchema.safeParse(c).success).toBe(true);
  });

  it("keeps lastTransitionTime when the status did not change, even if reason and message did", () => {
    const before = mergeConditions(undefined, [desired("Ready", "False", "NotReady")], 1, T0);
    const after = mergeConditions(before, [{ ...desired("Ready", "False", "SecretNotFound"), message: "new" }], 2, T1);
    expect(after).toEqual([
      {
        type: "Ready",
        status: "False",
        observedGeneration: 2,
        lastTransitionTime: "2025-01-02T03:04:05Z",
        reason: "SecretNotFound",
        message: "new",
      },
    ]);
  });

  it("moves lastTransitionTime when the status flips", () => {
    const before = mergeConditions(undefined, [desired("Ready", "False")], 1, T0);
    const after = mergeConditions(before, [desired("Ready", "True")], 1, T1);
    expect(after[0]?.lastTransitionTime).toBe("2025-01-02T04:00:00Z");
    expect(after[0]?.status).toBe("True");
    const unknown = mergeConditions(after, [desired("Ready", "Unknown")], 1, T0);
    expect(unknown[0]?.lastTransitionTime).toBe("2025-01-02T03:04:05Z");
  });

  it("a condition new to the list is stamped now", () => {
    const before = mergeConditions(undefined, [desired("Ready", "True")], 1, T0);
    const after = mergeConditions(before, [desired("Ready", "True"), desired("TLSReady", "True")], 1, T1);
    expect(after.map((c) => [c.type, c.lastTransitionTime])).toEqual([
      ["Ready", "2025-01-02T03:04:05Z"],
      ["TLSReady", "2025-01-02T04:00:00Z"],
    ]);
  });

  it("follows the desired order, not the previous one", () => {
    const before = mergeConditions(undefined, [desired("Degraded", "False"), desired("Ready", "True")], 1, T0);
    const after = mergeConditions(before, [desired("Ready", "True"), desired("Degraded", "False")], 1, T1);
    expect(after.map((c) => c.type)).toEqual(["Ready", "Degraded"]);
  });

  it("drops previous conditions that are not desired", () => {
    const before = mergeConditions(
      undefined,
      [desired("Ready", "True"), desired("ReconciliationPaused", "True"), desired("TokenRotation", "True")],
      1,
      T0,
    );
    const after = mergeConditions(before, [desired("Ready", "True")], 2, T1);
    expect(after.map((c) => c.type)).toEqual(["Ready"]);
  });

  it("keeps a condition owned by another writer untouched when listed in keep", () => {
    const rotation: Condition = {
      type: "TokenRotation",
      status: "True",
      observedGeneration: 3,
      lastTransitionTime: "2024-12-31T23:59:59Z",
      reason: "RotatingToken",
      message: "step 2 of 3",
    };
    const before = [...mergeConditions(undefined, [desired("Ready", "True")], 3, T0), rotation];
    const after = mergeConditions(before, [desired("Ready", "True")], 5, T1, ["TokenRotation"]);
    expect(after).toEqual([
      {
        type: "Ready",
        status: "True",
        observedGeneration: 5,
        lastTransitionTime: "2025-01-02T03:04:05Z",
        reason: "R",
        message: "Ready is True",
      },
      rotation,
    ]);
  });

  it("a kept type that is also desired appears once, as desired", () => {
    const before = mergeConditions(undefined, [desired("TokenRotation", "True")], 1, T0);
    const after = mergeConditions(before, [desired("TokenRotation", "False")], 2, T1, ["TokenRotation"]);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({
      status: "False",
      observedGeneration: 2,
      lastTransitionTime: "2025-01-02T04:00:00Z",
    });
  });

  it("a kept type absent from previous adds nothing", () => {
    const after = mergeConditions(undefined, [desired("Ready", "True")], 1, T0, ["TokenRotation"]);
    expect(after.map((c) => c.type)).toEqual(["Ready"]);
  });

  it("does not modify the previous list", () => {
    const before = mergeConditions(undefined, [desired("Ready", "False")], 1, T0);
    const snapshot = structuredClone(before);
    mergeConditions(before, [desired("Ready", "True")], 2, T1);
    expect(before).toEqual(snapshot);
  });
});

describe("findCondition / isTrue", () => {
  const conditions = mergeConditions(
    undefined,
    [desired("Ready", "True"), desired("Degraded", "False"), desired("DatabaseReady", "Unknown")],
    1,
    T0,
  );

  it("finds a condition by type", () => {
    expect(findCondition(conditions, "Degraded")?.status).toBe("False");
    expect(findCondition(conditions, "TLSReady")).toBeUndefined();
    expect(findCondition(undefined, "Ready")).toBeUndefined();
  });

  it("isTrue only for status True", () => {
    expect(isTrue(conditions, "Ready")).toBe(true);
    expect(isTrue(conditions, "Degraded")).toBe(false);
    expect(isTrue(conditions, "DatabaseReady")).toBe(false);
    expect(isTrue(conditions, "TLSReady")).toBe(false);
    expect(isTrue(undefined, "Ready")).toBe(false);
  });
});
