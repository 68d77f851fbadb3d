import { describe, expect, test } from "vitest";
import { initialRotationState, type RotationState, type StepResult } from "./machine.js";
import { prepareTokens, tokensAfterStep } from "./tokens.js";

function step(
  state: Partial<RotationState> & Pick<RotationState, "phase">,
  tokens: "current" | "old" | "new",
): StepResult {
  return {
    state: { generation: 1, ...state },
    delivery: { transitioning: state.phase !== "Stable" && state.phase !== "Enforcing", tokens },
    message: "",
    waiting: false,
    events: [],
  };
}

describe("token values through a rotation", () => {
  const current = { internal: { token: "i1" }, client: { token: "c1" } };
  const prepared = prepareTokens(current, { internal: "i2", client: "c2" });

  test("prepared tokens keep the old ones in force and remember both", () => {
    expect(prepared).toEqual({
      internal: { token: "i1", old: "i1", new: "i2" },
      client: { token: "c1", old: "c1", new: "c2" },
    });
  });

  test("Transitioning delivers the old tokens, RollingOut the new ones, completion keeps only the new", () => {
    const t1 = tokensAfterStep(prepared, initialRotationState(1), step({ phase: "Transitioning" }, "old"));
    expect(t1.internal).toEqual({ token: "i1", old: "i1", new: "i2" });
    const t2 = tokensAfterStep(t1, { phase: "Transitioning", generation: 1 }, step({ phase: "RollingOut" }, "new"));
    expect(t2.client).toEqual({ token: "c2", old: "c1", new: "c2" });
    const done = tokensAfterStep(
      t2,
      { phase: "Enforcing", generation: 1 },
      step({ phase: "Stable", outcome: "Completed" }, "current"),
    );
    expect(done).toEqual({ internal: { token: "i2" }, client: { token: "c2" } });
  });

  test("an abort ends with the old tokens only", () => {
    const rolling = tokensAfterStep(
      prepared,
      { phase: "Transitioning", generation: 1 },
      step({ phase: "RollingOut" }, "new"),
    );
    const back = tokensAfterStep(
      rolling,
      { phase: "RollingOut", generation: 1 },
      step({ phase: "RollingOut", aborting: true }, "old"),
    );
    expect(back.internal.token).toBe("i1");
    const done = tokensAfterStep(
      back,
      { phase: "Enforcing", generation: 1, aborting: true },
      step({ phase: "Stable", outcome: "Aborted" }, "current"),
    );
    expect(done).toEqual({ internal: { token: "i1" }, client: { token: "c1" } });
  });
});
