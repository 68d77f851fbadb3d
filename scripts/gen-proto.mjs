#!/usr/bin/env node
// Regenerates the TypeScript for proto/ (protobuf-es, via buf). With --check it
// generates into a temporary directory and fails if src/gen differs, so a change to a
// .proto file cannot land without the code that matches it.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const check = process.argv.includes("--check");

function generate(outDir) {
  const template = readFileSync(join(root, "buf.gen.yaml"), "utf8").replace("out: src/gen", `out: ${outDir}`);
  execFileSync("buf", ["generate", "--template", template], { cwd: root, stdio: "inherit" });
}

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

if (!check) {
  generate("src/gen");
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), "gen-proto-"));
try {
  generate(tmp);
  const want = listFiles(tmp);
  let have = [];
  try {
    have = listFiles(join(root, "src/gen"));
  } catch {
    // No generated code yet: every file is missing.
  }
  const stale = [];
  for (const f of new Set([...want, ...have])) {
    const a = want.includes(f) ? readFileSync(join(tmp, f), "utf8") : null;
    const b = have.includes(f) ? readFileSync(join(root, "src/gen", f), "utf8") : null;
    if (a !== b) stale.push(f);
  }
  if (stale.length > 0) {
    process.stderr.write(`generated code is stale; run \`npm run gen\` and commit:\n  ${stale.join("\n  ")}\n`);
    process.exit(1);
  }
  process.stdout.write(`proto: src/gen is up to date (${want.length} files)\n`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
