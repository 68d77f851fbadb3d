#!/usr/bin/env node
// Writes crds/gitalyclusters.gitaly.dev.yaml from the zod schemas in src/controller/api.
// It imports the BUILT module (dist/controller/api), so build first:
//   npm run build && node scripts/gen-crd.mjs          regenerate
//   node scripts/gen-crd.mjs --check                   fail when the committed CRD is stale (CI)
// The vitest suite src/controller/api/crd.test.ts makes the same comparison from source.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;
const check = process.argv.includes("--check");
const built = join(root, "dist/controller/api/crd.js");
if (!existsSync(built)) {
  process.stderr.write(`gen-crd: ${built} is missing; run the build first (npm run build)\n`);
  process.exit(2);
}
const { CRD_FILE, renderCrdYaml } = await import(pathToFileURL(built).href);
const target = join(root, CRD_FILE);
const want = renderCrdYaml();

if (!check) {
  writeFileSync(target, want);
  process.stdout.write(`crd: wrote ${CRD_FILE}\n`);
  process.exit(0);
}
const have = existsSync(target) ? readFileSync(target, "utf8") : null;
if (have !== want) {
  process.stderr.write(`crd: ${CRD_FILE} is stale; run \`npm run build && node scripts/gen-crd.mjs\` and commit it\n`);
  process.exit(1);
}
process.stdout.write(`crd: ${CRD_FILE} is up to date\n`);
