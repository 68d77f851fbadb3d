// Starts what every integration suite shares, once per test run, and stops it even
// when tests fail: one PostgreSQL server (each suite takes a fresh database from it),
// and the path of the cached kube-apiserver/etcd binaries.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { startPostgres } from "../../src/local/postgres.js";
import { envtestBinDir } from "./envtest.js";

declare module "vitest" {
  export interface ProvidedContext {
    postgres: { host: string; port: number; user: string; password: string };
    envtestBinDir: string;
  }
}

/**
 * Integration suites run the built programs (dist/), so build them first; tsc 7 takes
 * seconds. Type errors still emit JavaScript and are reported by the type-check step
 * of scripts/test, so they do not stop the run here.
 */
function buildPrograms(): void {
  const tsc = join(import.meta.dirname, "../../node_modules/.bin/tsc");
  try {
    execFileSync(tsc, ["-p", join(import.meta.dirname, "../../tsconfig.build.json")], { stdio: "pipe" });
  } catch (err) {
    const out = (err as { stdout?: Buffer }).stdout?.toString() ?? "";
    process.stderr.write(`warning: the build reported type errors (emitted anyway):\n${out.slice(0, 2000)}\n`);
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  buildPrograms();
  const pg = await startPostgres();
  project.provide("postgres", { host: pg.host, port: pg.port, user: pg.user, password: pg.password });
  project.provide("envtestBinDir", envtestBinDir());
  return async () => {
    await pg.stop();
  };
}
