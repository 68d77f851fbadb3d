import { describe, expect, test } from "vitest";
import { z } from "zod";
import { ConfigError, configIssue, formatIssue, formatKey, validationOutput } from "./issues.js";
import { findUnknownKeys, parseToml, parseTomlConfig, unknownKeyWarnings, zodIssuesToConfigIssues } from "./toml.js";

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("parseToml", () => {
  test("reports syntax errors with line and column", () => {
    const error = configError(() => parseToml('a = 1\nb = "x\nc = 2\n', "/etc/gitaly/config.toml"));
    expect(error.errors).toEqual([
      {
        key: "",
        path: [],
        message: "line 2 column 7: toml: control characters are not allowed in strings",
        line: 2,
        column: 7,
      },
    ]);
    expect(error.source).toBe("/etc/gitaly/config.toml");
    expect(error.message).toContain('in "/etc/gitaly/config.toml"');
  });

  test("reports redefined keys", () => {
    const error = configError(() => parseToml("a = 1\na = 2\n"));
    expect(error.errors[0]?.message).toMatch(/^line 2 column 1: toml: /);
  });

  test("refuses prototype-polluting keys", () => {
    expect(() => parseToml("[__proto__]\npolluted = true\n")).toThrow(ConfigError);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("findUnknownKeys", () => {
  const schema = z
    .object({
      listen_addr: z.string().optional(),
      auth: z.object({ token: z.string().default("") }).prefault({}),
      storage: z.array(z.object({ name: z.string(), path: z.string() })).default([]),
      loose: z.record(z.string(), z.unknown()).optional(),
      open: z.looseObject({ a: z.number().optional() }).optional(),
      piped: z
        .object({ x: z.number() })
        .transform((v) => v.x)
        .optional(),
      either: z.union([z.object({ a: z.number() }), z.object({ b: z.number() })]).optional(),
    })
    .transform((v) => v);

  test("lists unknown keys as paths through tables and arrays of tables", () => {
    const raw = parseToml(`
listen_adr = "x"
[auth]
tokn = "t"
[[storage]]
name = "a"
path = "/a"
[[storage]]
name = "b"
pathh = "/b"
[loose]
anything = { goes = true }
[open]
b = 1
[piped]
x = 1
y = 2
[either]
b = 1
c = 2
`);
    expect(findUnknownKeys(schema, raw).map(formatKey)).toEqual([
      "listen_adr",
      "auth.tokn",
      "storage[1].pathh",
      "piped.y",
      "either.c",
    ]);
  });

  test("makes warnings, with hints for retired keys", () => {
    const raw = parseToml('internal_socket_dir = "/x"\n["quoted.key"]\na = 1\n');
    expect(unknownKeyWarnings(schema, raw, { internal_socket_dir: "replaced by runtime_dir" })).toEqual([
      { key: "internal_socket_dir", path: ["internal_socket_dir"], message: "replaced by runtime_dir; ignored" },
      { key: '"quoted.key"', path: ["quoted.key"], message: "unknown key, ignored" },
    ]);
  });
});

describe("zodIssuesToConfigIssues", () => {
  const schema = z.object({
    name: z.string(),
    count: z.number().int().gte(0),
    ratio: z.number().gt(0),
    format: z.enum(["text", "json"]),
    items: z.array(z.object({ path: z.string().min(1) })).min(1),
    flag: z.boolean(),
    custom: z.string().refine((s) => s.startsWith("/"), "must start with a slash"),
  });

  test.each([
    [{}, "name", "not set"],
    [{ name: 5 }, "name", "expected a string, got an integer (5)"],
    [{ count: 1.5 }, "count", "expected an integer, got a float (1.5)"],
    [{ count: -1 }, "count", "not in range: -1 is not greater than or equal to 0"],
    [{ ratio: 0 }, "ratio", "not in range: 0 is not greater than 0"],
    [{ format: "xml" }, "format", 'not supported: "xml", expected one of "text", "json"'],
    [{ items: [] }, "items", "not set"],
    [{ items: [{ path: "" }] }, "items[0].path", "not set"],
    [{ items: "x" }, "items", "expected an array, got a string"],
    [{ flag: "yes" }, "flag", "expected a boolean, got a string"],
    [{ custom: "x" }, "custom", "must start with a slash"],
  ])("%j reports %s: %s", (input, key, message) => {
    const result = schema.safeParse(input);
    const issues = zodIssuesToConfigIssues(result.error?.issues ?? [], input);
    expect(issues).toContainEqual(expect.objectContaining({ key, message }));
  });
});

describe("parseTomlConfig", () => {
  const schema = z.object({ port: z.number().int().default(1), name: z.string().default("x") });

  test("returns the value, the raw document and warnings", () => {
    const parsed = parseTomlConfig(schema, "port = 2\nextra = true\n");
    expect(parsed.value).toEqual({ port: 2, name: "x" });
    expect(parsed.raw).toEqual({ port: 2, extra: true });
    expect(parsed.warnings.map(formatIssue)).toEqual(["extra: unknown key, ignored"]);
  });

  test("throws every invalid value with its key", () => {
    const error = configError(() => parseTomlConfig(schema, 'port = "a"\nname = 1\n', { source: "c.toml" }));
    expect(error.errors.map(formatIssue)).toEqual([
      "port: expected a number, got a string",
      "name: expected a string, got an integer (1)",
    ]);
  });
});

describe("validationOutput", () => {
  test("prints upstream's JSON shape, escaping like Go", () => {
    const output = validationOutput([
      configIssue(["storage", 0, "name"], "not set"),
      { key: "", path: [], message: "line 1 column 2: toml: <bad> & worse" },
    ]);
    expect(output).toBe(`{
  "errors": [
    {
      "key": [
        "storage",
        "[0]",
        "name"
      ],
      "message": "not set"
    },
    {
      "message": "line 1 column 2: toml: \\u003cbad\\u003e \\u0026 worse"
    }
  ]
}
`);
  });
});
