import { describe, expect, test } from "vitest";
import { z } from "zod";
import { DurationError, durationField, formatDuration, parseDuration, parseDurationNanos } from "./duration.js";

describe("parseDuration", () => {
  test.each([
    ["0", 0],
    ["+0", 0],
    ["-0", 0],
    ["0s", 0],
    ["1m", 60_000],
    ["30s", 30_000],
    ["1h30m", 5_400_000],
    ["500ms", 500],
    ["1.5h", 5_400_000],
    [".5s", 500],
    ["1.s", 1_000],
    ["-1m", -60_000],
    ["1h1m1s1ms", 3_661_001],
    ["2us", 0.002],
    ["2\u00b5s", 0.002],
    ["2\u03bcs", 0.002],
    ["1500ns", 0.0015],
    ["168h", 604_800_000],
  ])("%s → %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each([
    ["", 'time: invalid duration ""'],
    ["bad value", 'time: invalid duration "bad value"'],
    ["1", 'time: missing unit in duration "1"'],
    ["10", 'time: missing unit in duration "10"'],
    ["1x", 'time: unknown unit "x" in duration "1x"'],
    ["1 m", 'time: unknown unit " m" in duration "1 m"'],
    ["1m ", 'time: unknown unit "m " in duration "1m "'],
    [".s", 'time: invalid duration ".s"'],
    ["-", 'time: invalid duration "-"'],
    ["s", 'time: invalid duration "s"'],
    ["3000000h", 'time: invalid duration "3000000h"'],
  ])("%j is rejected: %s", (text, message) => {
    expect(() => parseDuration(text)).toThrow(DurationError);
    expect(() => parseDuration(text)).toThrow(message);
  });

  test("is exact to the nanosecond and truncates beyond it like Go", () => {
    expect(parseDurationNanos("1.0000000019s")).toBe(1_000_000_001n);
    expect(parseDurationNanos("2562047h47m16.854775807s")).toBe(2n ** 63n - 1n);
    expect(parseDurationNanos("-2562047h47m16.854775808s")).toBe(-(2n ** 63n));
  });
});

describe("formatDuration", () => {
  test.each([
    [0, "0s"],
    [60_000, "1m0s"],
    [5_400_000, "1h30m0s"],
    [500, "500ms"],
    [1_500, "1.5s"],
    [0.0015, "1.5\u00b5s"],
    [0.000_001, "1ns"],
    [-1_000, "-1s"],
    [604_800_000, "168h0m0s"],
  ])("%d ms → %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  test("round-trips through parseDuration", () => {
    for (const text of ["1h30m0s", "500ms", "1.5s", "2m3.25s"]) expect(formatDuration(parseDuration(text))).toBe(text);
  });
});

describe("durationField", () => {
  const schema = z.object({ wait: durationField().default(60_000) });

  test("parses strings and applies the default in milliseconds", () => {
    expect(schema.parse({ wait: "90s" })).toEqual({ wait: 90_000 });
    expect(schema.parse({})).toEqual({ wait: 60_000 });
  });

  test("reports Go's message, negative values and non-strings", () => {
    const messages = (input: unknown) => schema.safeParse({ wait: input }).error?.issues.map((i) => i.message);
    expect(messages("soon")).toEqual(['time: invalid duration "soon"']);
    expect(messages("-1s")).toEqual(["not in range: -1s is not greater than or equal to 0s"]);
    expect(messages(60)).toEqual(['expected a duration string such as "30s", "1m" or "1h30m"']);
  });

  test("allows negative values when asked", () => {
    expect(durationField({ nonNegative: false }).parse("-1s")).toBe(-1_000);
  });
});
