import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { CRD_FILE, gitalyClusterCrd, gitalyClusterOpenApiSchema, renderCrdYaml } from "./index.js";

const repoRoot = resolve(import.meta.dirname, "../../..");

type Node = { [key: string]: unknown };

function walk(node: Node, path: string, visit: (node: Node, path: string) => void): void {
  visit(node, path);
  for (const [key, child] of Object.entries((node.properties as Record<string, Node>) ?? {})) {
    walk(child, `${path}.${key}`, visit);
  }
  if (node.items) walk(node.items as Node, `${path}[]`, visit);
  if (typeof node.additionalProperties === "object") walk(node.additionalProperties as Node, `${path}.*`, visit);
}

describe("generated CRD", () => {
  it("equals the committed crds/ file (regenerate: npm run build && node scripts/gen-crd.mjs)", () => {
    expect(readFileSync(join(repoRoot, CRD_FILE), "utf8")).toBe(renderCrdYaml());
  });

  it("is structural: every node has a type or is int-or-string, and no $ref", () => {
    const untyped: string[] = [];
    walk(gitalyClusterOpenApiSchema(), "", (node, path) => {
      if (node.type === undefined && node["x-kubernetes-int-or-string"] !== true) untyped.push(path);
      expect(node.$ref).toBeUndefined();
    });
    expect(untyped).toEqual([]);
  });

  it("carries the CEL rules where the issue asks for them", () => {
    const spec = (gitalyClusterOpenApiSchema().properties as Record<string, Node>).spec as Node;
    const rulesAt = (...path: string[]) => {
      let node = spec;
      for (const p of path) node = (node.properties as Record<string, Node>)[p] as Node;
      return ((node["x-kubernetes-validations"] as { rule: string }[]) ?? []).map((r) => r.rule);
    };
    expect(rulesAt("gitaly", "storage", "size").join(" ")).toMatch(
      /quantity\(self\)\.compareTo\(quantity\(oldSelf\)\) >= 0/,
    );
    expect(rulesAt()).toContain(
      "!has(self.praefect) || !has(self.praefect.replicationFactor) || self.praefect.replicationFactor <= self.gitaly.replicas",
    );
    expect(rulesAt("tls").join(" ")).toMatch(/CertManager.*issuerRef.*Secret.*secretName/);
    expect(rulesAt("database")).toEqual(["has(self.managed) != has(self.external)"]);
  });

  it("names, scope, status subresource and printer columns", () => {
    const crd = gitalyClusterCrd();
    expect(crd.metadata.name).toBe("gitalyclusters.gitaly.dev");
    expect(crd.spec.scope).toBe("Namespaced");
    expect(crd.spec.names.shortNames).toEqual(["gtc"]);
    const [v] = crd.spec.versions;
    expect(v?.subresources).toEqual({ status: {} });
    expect(v?.additionalPrinterColumns.filter((c) => !("priority" in c)).map((c) => c.name)).toEqual([
      "Ready",
      "Gitaly",
      "Praefect",
      "Phase",
      "Age",
    ]);
  });
});
