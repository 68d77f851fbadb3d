import { resolve } from "node:path";
import { describe, expect, test } from "vitest";
import { defaultSamplePath, parseUpArgs, UsageError } from "./cli.js";

describe("parseUpArgs", () => {
  test("defaults: the minimal sample, fixed user-facing ports, its state dir", () => {
    const parsed = parseUpArgs([], { HOME: "/home/u" });
    expect(parsed).toEqual({
      help: false,
      options: {
        sample: defaultSamplePath(),
        stateDir: "/home/u/.local/state/gitaly-cluster/minimal",
        reset: false,
        httpPort: 8181,
        praefectPort: 2305,
        praefectTlsPort: 3305,
        logLevel: "info",
      },
    });
    expect(defaultSamplePath()).toBe(resolve(import.meta.dirname, "../../../config/samples/minimal.yaml"));
  });

  test("takes every flag; the state dir follows the sample's name", () => {
    const sample = resolve(import.meta.dirname, "../../../config/samples/tls-disabled.yaml");
    const parsed = parseUpArgs(
      [
        "--sample",
        sample,
        "--reset",
        "--http-port",
        "0",
        "--praefect-port",
        "2400",
        "--praefect-tls-port",
        "0",
        "--log-level",
        "debug",
      ],
      { XDG_STATE_HOME: "/xdg" },
    );
    expect(parsed).toMatchObject({
      help: false,
      options: {
        sample,
        stateDir: "/xdg/gitaly-cluster/tls-disabled",
        reset: true,
        httpPort: 0,
        praefectPort: 2400,
        praefectTlsPort: 0,
        logLevel: "debug",
      },
    });
    expect(parseUpArgs(["--state-dir", "rel/dir"], {})).toMatchObject({ options: { stateDir: resolve("rel/dir") } });
    expect(parseUpArgs(["-h"])).toEqual({ help: true });
  });

  test("refuses bad ports, levels and unknown flags", () => {
    expect(() => parseUpArgs(["--http-port", "65536"])).toThrow(UsageError);
    expect(() => parseUpArgs(["--http-port", "80a"])).toThrow(/--http-port "80a"/);
    expect(() => parseUpArgs(["--log-level", "trace"])).toThrow(/--log-level/);
    expect(() => parseUpArgs(["--bogus"])).toThrow(UsageError);
  });
});
