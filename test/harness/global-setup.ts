// Starts what every integration suite shares, once per test run, and stops it even
// when tests fail: one PostgreSQL server (each suite takes a fresh database from it),
// and the path of the cached kube-apiserver/etcd binaries.
import type { TestProject } from "vitest/node";
import { startPostgres } from "../../src/local/postgres.js";
import { envtestBinDir } from "./envtest.js";

declare module "vitest" {
  export interface ProvidedContext {
    postgres: { host: string; port: number; user: string; password: string };
    envtestBinDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const pg = await startPostgres();
  project.provide("postgres", { host: pg.host, port: pg.port, user: pg.user, password: pg.password });
  project.provide("envtestBinDir", envtestBinDir());
  return async () => {
    await pg.stop();
  };
}
