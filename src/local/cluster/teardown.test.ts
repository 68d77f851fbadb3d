import { describe, expect, test } from "vitest";
import { Teardown } from "./teardown.js";

describe("Teardown", () => {
  test("stops stage by stage whatever the start order, goes on past a failing step, and runs once", async () => {
    const order: string[] = [];
    const failures: string[] = [];
    const t = new Teardown((what, err) => failures.push(`${what}: ${(err as Error).message}`));
    t.push("gitaly", "gitaly-0", async () => order.push("gitaly-0"));
    t.push("postgres", "postgres", async () => order.push("postgres"));
    t.push("gitaly", "gitaly-1", async () => {
      throw new Error("boom");
    });
    t.push("lock", "lock", async () => order.push("lock"));
    t.push("praefect", "praefect-0", async () => order.push("praefect-0"));
    t.push("gateway", "gateway", async () => order.push("gateway"));
    expect(t.started).toBe(false);
    await Promise.all([t.run(), t.run()]);
    expect(t.started).toBe(true);
    expect(order).toEqual(["gateway", "praefect-0", "gitaly-0", "postgres", "lock"]);
    expect(failures).toEqual(["gitaly-1: boom"]);
    await t.run();
    expect(order).toHaveLength(5);
  });

  test("a stage waits for all of its steps before the next begins", async () => {
    const order: string[] = [];
    const t = new Teardown(() => {});
    let release: () => void = () => {};
    t.push(
      "gitaly",
      "slow",
      () =>
        new Promise<void>((r) => {
          release = () => {
            order.push("slow");
            r();
          };
        }),
    );
    t.push("gitaly", "fast", async () => order.push("fast"));
    t.push("postgres", "postgres", async () => order.push("postgres"));
    const running = t.run();
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(["fast"]);
    release();
    await running;
    expect(order).toEqual(["fast", "slow", "postgres"]);
  });

  test("a step registered after the teardown began is run too, and run() waits for it", async () => {
    const order: string[] = [];
    const t = new Teardown(() => {});
    let release: () => void = () => {};
    t.push(
      "gitaly",
      "slow",
      () =>
        new Promise<void>((r) => {
          release = () => {
            order.push("slow");
            r();
          };
        }),
    );
    const running = t.run();
    t.push("praefect", "late", async () => order.push("late"));
    let done = false;
    const joined = t.run().then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    release();
    await Promise.all([running, joined]);
    expect(order).toEqual(["slow", "late"]);
  });
});
