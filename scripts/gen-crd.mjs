#!/usr/bin/env node
// Writes the files generated from the zod schemas in src/controller/api:
//   crds/gitalyclusters.gitaly.dev.yaml   the CustomResourceDefinition
//   charts/gitaly-operator/crds/...       the same CRD, in the Helm chart (Helm installs crds/)
//   docs/api-reference.md                 the configuration reference users read
// It imports the BUILT modules (dist/controller/api), so build first:
//   npm run gen:crd                                    build and regenerate
//   node scripts/gen-crd.mjs --check                   fail when a committed file is stale (CI)
// The vitest suites src/controller/api/{crd,reference}.test.ts make the same comparison from source.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const root = new URL("..", import.meta.url).pathname;
const check = process.argv.includes("--check");

async function importBuilt(relative) {
  const built = join(root, "dist/controller/api", relative);
  if (!existsSync(built)) {
    process.stderr.write(`gen-crd: ${built} is missing; run the build first (npm run build)\n`);
    process.exit(2);
  }
  return import(pathToFileURL(built).href);
}

const { CRD_FILE, renderCrdYaml } = await importBuilt("crd.js");
const { API_REFERENCE_FILE, readSampleFiles, renderGitalyClusterReference } = await importBuilt("reference.js");

const outputs = [
  { file: CRD_FILE, content: renderCrdYaml() },
  { file: join("charts/gitaly-operator", CRD_FILE), content: renderCrdYaml() },
  { file: API_REFERENCE_FILE, content: renderGitalyClusterReference(readSampleFiles(root)) },
];

if (!check) {
  for (const { file, content } of outputs) {
    const target = join(root, file);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
    process.stdout.write(`crd: wrote ${file}\n`);
  }
  process.exit(0);
}

let stale = 0;
for (const { file, content } of outputs) {
  const target = join(root, file);
  const have = existsSync(target) ? readFileSync(target, "utf8") : null;
  if (have === content) {
    process.stdout.write(`crd: ${file} is up to date\n`);
  } else {
    stale++;
    const why = have === null ? "is missing" : "is stale";
    process.stderr.write(`crd: ${file} ${why}; run \`npm run gen:crd\` and commit it\n`);
  }
}
process.exit(stale === 0 ? 0 : 1);
