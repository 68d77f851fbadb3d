import { spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CRD_FILE, gitalyClusterCrd, gitalyClusterOpenApiSchema, printerColumns } from "./index.js";
import {
  API_REFERENCE_FILE,
  type CrdDocument,
  readSampleFiles,
  renderApiReference,
  renderGitalyClusterReference,
  sampleSummary,
} from "./reference.js";

const repoRoot = resolve(import.meta.dirname, "../../..");
const samples = readSampleFiles(repoRoot);
const doc = renderGitalyClusterReference(samples);

type Node = { [key: string]: unknown };

/** Every schema node with its field path as the reference spells it (spec.gitaly.concurrency[].rpc). */
function nodes(): { path: string; node: Node }[] {
  const out: { path: string; node: Node }[] = [];
  const visit = (node: Node, path: string) => {
    out.push({ path, node });
    for (const [key, child] of Object.entries((node.properties as Record<string, Node>) ?? {})) {
      visit(child, path === "" ? key : `${path}.${key}`);
    }
    if (node.items) visit(node.items as Node, `${path}[]`);
    if (typeof node.additionalProperties === "object") visit(node.additionalProperties as Node, `${path}.*`);
  };
  visit(gitalyClusterOpenApiSchema(), "");
  return out;
}

const hasProperties = (node: Node | undefined) => node?.properties !== undefined;

/** A field is a leaf when neither it nor its items or values have fields of their own. */
function leafPaths(): string[] {
  return nodes()
    .filter(({ path }) => path !== "" && !path.endsWith("[]") && !path.endsWith(".*"))
    .filter(
      ({ node }) =>
        !hasProperties(node) &&
        !hasProperties(node.items as Node | undefined) &&
        !hasProperties(node.additionalProperties as Node | undefined),
    )
    .map(({ path }) => path);
}

/** Table cells, trimmed, honouring `\|` escapes. */
function cells(line: string): string[] {
  return line
    .split(/(?<!\\)\|/)
    .slice(1, -1)
    .map((c) => c.trim());
}

/** The cells of the table row whose first cell is `key` (a field path in backticks), or []. */
function rowIn(markdown: string, key: string): string[] {
  for (const line of markdown.split("\n")) {
    if (line.startsWith("|") && cells(line)[0] === key) return cells(line);
  }
  return [];
}

const rowOf = (path: string) => rowIn(doc, `\`${path}\``);

describe("API reference (docs/api-reference.md)", () => {
  it("equals the committed file (regenerate: npm run gen:crd)", () => {
    expect(readFileSync(join(repoRoot, API_REFERENCE_FILE), "utf8")).toBe(doc);
  });

  it("has a row for every leaf field of the schema", () => {
    const leaves = leafPaths();
    // Guard the walk itself: these are leaves of quite different shapes.
    expect(leaves).toEqual(
      expect.arrayContaining([
        "spec.gitaly.storage.size",
        "spec.gitaly.concurrency[].rpc",
        "spec.gitaly.affinity",
        "spec.gitaly.tolerations",
        "spec.gitaly.resources.limits",
        "status.conditions[].lastTransitionTime",
        "status.auth.baseline",
        "metadata",
      ]),
    );
    expect(leaves.filter((p) => rowOf(p).length === 0)).toEqual([]);
  });

  it("has a section for every object and a row for every field, whatever its shape", () => {
    const all = nodes().filter(({ path }) => path !== "");
    const objects = all.filter(({ node }) => hasProperties(node)).map(({ path }) => path);
    expect(objects.filter((p) => !doc.includes(`\n## \`${p}\`\n`))).toEqual([]);
    const fields = all.filter(({ path }) => !path.endsWith("[]") && !path.endsWith(".*")).map(({ path }) => path);
    expect(fields.filter((p) => rowOf(p).length === 0)).toEqual([]);
  });

  it("marks required fields", () => {
    expect(rowOf("spec.gitaly.storage.size")[3]).toBe("yes");
    expect(rowOf("spec.gitaly.storage.storageClassName")[3]).toBe("no");
    expect(rowOf("spec")[3]).toBe("yes");
  });

  it("shows every default and every enum value on its field's row", () => {
    const withDefault = nodes().filter(({ node }) => node.default !== undefined);
    expect(withDefault.length).toBeGreaterThan(10);
    for (const { path, node } of withDefault) {
      const expected = typeof node.default === "string" ? `\`${node.default}\`` : `\`${JSON.stringify(node.default)}\``;
      expect(rowOf(path)[2], path).toBe(expected);
    }
    const withEnum = nodes().filter(({ node }) => Array.isArray(node.enum));
    expect(withEnum.map(({ path }) => path)).toContain("spec.database.external.sslMode");
    for (const { path, node } of withEnum) {
      const type = rowOf(path)[1] ?? "";
      for (const value of node.enum as string[]) expect(type, path).toContain(`\`${value}\``);
    }
  });

  it("describes types: formats, int-or-string, embedded core/v1 types, lists and named patterns", () => {
    const type = (path: string) => rowOf(path)[1];
    expect(type("spec.gitaly.replicas")).toBe("integer, 1 to 64");
    expect(type("status.auth.startedAt")).toBe("string (date-time)");
    expect(type("spec.gitaly.resources.requests")).toBe("map of string to int-or-string");
    expect(type("spec.gitaly.affinity")).toBe("core/v1 Affinity");
    expect(type("spec.praefect.tolerations")).toBe("array of core/v1 Toleration");
    expect(type("spec.gitaly.concurrency")).toBe("array of [object](#specgitalyconcurrency), keyed by `rpc`");
    expect(type("spec.gitaly.storage.size")).toContain("Kubernetes quantity");
    expect(type("spec.tls.duration")).toContain("duration such as `90m`");
    expect(type("spec.virtualStorage.name")).toContain("pattern `^[A-Za-z0-9][A-Za-z0-9._-]*$`");
  });

  it("states every CEL rule by its message, on update rules marked", () => {
    const rules = nodes().flatMap(({ path, node }) =>
      ((node["x-kubernetes-validations"] as { rule: string; message: string }[] | undefined) ?? []).map((r) => ({
        path,
        ...r,
      })),
    );
    expect(rules.length).toBeGreaterThanOrEqual(9);
    for (const r of rules) {
      const line = doc.split("\n").find((l) => l.includes(r.message));
      expect(line, r.message).toBeDefined();
      expect(line?.includes(`${r.message} (on update`), r.message).toBe(r.rule.includes("oldSelf"));
    }
    // A leaf's rules sit on its row; an object's rules under its table, with the field they report on.
    expect(rowOf("spec.gitaly.storage.size")[4]).toContain(
      "Rules: storage size must be greater than zero; storage cannot shrink (on update).",
    );
    expect(doc).toContain(
      "- spec.tls.renewBefore must be shorter than spec.tls.duration (reported on `spec.tls.renewBefore`)",
    );
    expect(doc).toContain(
      "- storageClassName cannot be changed (on update; reported on `spec.gitaly.storage.storageClassName`)",
    );
  });

  it("lists the printer columns and the short name at the top", () => {
    const contents = doc.indexOf("## Contents");
    for (const c of printerColumns) {
      const row = rowIn(doc.slice(0, contents), `\`${c.name}\``);
      expect(row.slice(0, 4), c.name).toEqual([
        `\`${c.name}\``,
        c.type,
        `\`${c.jsonPath}\``,
        "priority" in c ? "wide" : "always",
      ]);
    }
    expect(rowIn(doc.slice(0, contents), "Short names")[1]).toBe("`gtc` (`kubectl get gtc`)");
  });

  it("points at every example manifest", () => {
    const files = readdirSync(join(repoRoot, "config/samples")).filter((f) => f.endsWith(".yaml"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(doc).toContain(`- [\`config/samples/${f}\`](../config/samples/${f})`);
    }
    expect(doc).toContain("[`config/samples/minimal.yaml`](../config/samples/minimal.yaml): The smallest useful");
  });

  it("keeps tables aligned: every row has the header's cells and length", () => {
    let header: string | undefined;
    for (const line of doc.split("\n")) {
      if (!line.startsWith("|")) {
        header = undefined;
        continue;
      }
      header ??= line;
      expect(cells(line).length, line).toBe(cells(header).length);
      expect([...line].length, line).toBe([...header].length);
    }
  });

  it("is deterministic: same output on every call and whatever the order of the samples", () => {
    expect(renderGitalyClusterReference(samples)).toBe(doc);
    expect(renderGitalyClusterReference([...samples].reverse())).toBe(doc);
    expect(renderApiReference(gitalyClusterCrd(), samples)).toBe(doc);
  });
});

describe("renderApiReference on other schemas", () => {
  const crd = (schema: Node, versions = 1): CrdDocument => ({
    spec: {
      group: "example.dev",
      scope: "Cluster",
      names: { kind: "Widget", plural: "widgets" },
      versions: Array.from({ length: versions }, (_, i) => ({
        name: `v${i + 1}`,
        schema: { openAPIV3Schema: schema },
      })),
    },
  });

  it("escapes pipes, prints unknown patterns, handles maps of objects and exclusive bounds", () => {
    const out = renderApiReference(
      crd({
        type: "object",
        properties: {
          spec: {
            type: "object",
            description: "a | b <script>",
            properties: {
              choice: { type: "string", pattern: "^(a|b)$", description: "x|y" },
              ratio: { type: "number", minimum: 0, exclusiveMinimum: true },
              port: { anyOf: [{ type: "integer" }, { type: "string" }], "x-kubernetes-int-or-string": true },
              byName: {
                type: "object",
                additionalProperties: { type: "object", properties: { weight: { type: "integer" } } },
              },
              blob: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
            },
          },
        },
      }),
      [],
    );
    const type = (path: string) => rowIn(out, `\`${path}\``)[1];
    expect(rowIn(out, "`spec.choice`")).toEqual(["`spec.choice`", "string, pattern `^(a\\|b)$`", "", "no", "x\\|y"]);
    expect(out).toContain("a \\| b &lt;script>");
    expect(type("spec.ratio")).toBe("number, > 0");
    expect(type("spec.port")).toBe("int-or-string");
    expect(type("spec.byName")).toBe("map of string to [object](#specbyname)");
    expect(out).toContain("## `spec.byName.*`\n\nEach value of `spec.byName`.");
    expect(type("spec.byName.*.weight")).toBe("integer");
    expect(type("spec.blob")).toBe("object (free-form)");
    expect(out).toContain("No example manifests.");
    expect(out).not.toContain("Printer columns");
  });

  it("refuses a CRD with several versions rather than mixing them", () => {
    expect(() => renderApiReference(crd({ type: "object" }, 2), [])).toThrow(/exactly one version.*has 2/);
  });
});

describe("sampleSummary", () => {
  it("takes the first sentence of the leading comment", () => {
    expect(sampleSummary("# First one: with a colon.\n# Second. Third.\napiVersion: v1\n")).toBe(
      "First one: with a colon.",
    );
  });

  it("does not stop at abbreviations and stops before indented command lines", () => {
    expect(sampleSummary("# Plain, e.g. behind a mesh\n# that encrypts. More.\n")).toBe(
      "Plain, e.g. behind a mesh that encrypts.",
    );
    expect(sampleSummary("# Rotate the tokens:\n#   kubectl patch gtc x\n# Later prose.\n")).toBe("Rotate the tokens.");
  });

  it("is undefined without a leading comment", () => {
    expect(sampleSummary("apiVersion: v1\n# late comment\n")).toBeUndefined();
  });
});

describe("scripts/gen-crd.mjs", () => {
  const root = mkdtempSync(join(tmpdir(), "gen-crd-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  // A copy of the repository's layout: the script finds everything relative to itself.
  mkdirSync(join(root, "scripts"));
  cpSync(join(repoRoot, "scripts/gen-crd.mjs"), join(root, "scripts/gen-crd.mjs"));
  cpSync(join(repoRoot, "config/samples"), join(root, "config/samples"), { recursive: true });
  symlinkSync(join(repoRoot, "dist"), join(root, "dist"));

  const run = (...args: string[]) => {
    const r = spawnSync(process.execPath, [join(root, "scripts/gen-crd.mjs"), ...args], { encoding: "utf8" });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  it("writes the CRD and the reference, then --check passes", () => {
    const wrote = run();
    expect(wrote.status, wrote.stderr).toBe(0);
    expect(wrote.stdout).toContain(`wrote ${API_REFERENCE_FILE}`);
    expect(readFileSync(join(root, API_REFERENCE_FILE), "utf8")).toMatch(/^# GitalyCluster API reference\n/);
    const checked = run("--check");
    expect(checked.status, checked.stderr).toBe(0);
    expect(checked.stdout).toContain(`${API_REFERENCE_FILE} is up to date`);
    expect(checked.stdout).toContain(`${CRD_FILE} is up to date`);
  });

  it("--check fails naming the reference when it is stale or missing", () => {
    run();
    const file = join(root, API_REFERENCE_FILE);
    writeFileSync(file, `${readFileSync(file, "utf8")}\nhand edit\n`);
    const stale = run("--check");
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain(`${API_REFERENCE_FILE} is stale; run \`npm run gen:crd\``);
    expect(stale.stderr).not.toContain(CRD_FILE);

    rmSync(file);
    const missing = run("--check");
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`${API_REFERENCE_FILE} is missing`);
  });

  it("--check fails when a new example manifest is not listed yet", () => {
    run();
    writeFileSync(join(root, "config/samples/zz-new.yaml"), "# A new example.\napiVersion: gitaly.dev/v1alpha1\n");
    const stale = run("--check");
    rmSync(join(root, "config/samples/zz-new.yaml"));
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain(`${API_REFERENCE_FILE} is stale`);
  });
});
