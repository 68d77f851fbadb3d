import { describe, expect, it } from "vitest";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { HookService } from "../../gen/hook_pb.js";
import { PraefectInfoService } from "../../gen/praefect_pb.js";
import { ServerService } from "../../gen/server_pb.js";
import { buildMethodTable } from "./method-table.js";

describe("routing table", () => {
  const table = buildMethodTable();

  it("takes operation types from the proto annotations", () => {
    expect(table.get("/gitaly.RepositoryService/WriteRef")?.routing.operation).toBe("mutator");
    expect(table.get("/gitaly.RepositoryService/OptimizeRepository")?.routing.operation).toBe("maintenance");
    expect(table.get("/gitaly.SmartHTTPService/PostUploadPackWithSidechannel")?.routing.operation).toBe("accessor");
    expect(table.get("/gitaly.SmartHTTPService/PostReceivePack")?.routing.operation).toBe("mutator");
    expect(table.get("/gitaly.RefService/FindAllBranches")?.routing).toMatchObject({
      operation: "accessor",
      scope: "repository",
    });
  });

  it("marks creations, upserts and primary-only reads", () => {
    expect(table.get("/gitaly.RepositoryService/CreateRepository")).toMatchObject({ creation: true, upsert: false });
    expect(table.get("/gitaly.RepositoryService/ReplicateRepository")).toMatchObject({ creation: true, upsert: true });
    expect(table.get("/gitaly.RepositoryService/WriteRef")).toMatchObject({ creation: false });
    expect(table.get("/gitaly.RepositoryService/RepositorySize")?.forcePrimary).toBe(true);
    expect(table.get("/gitaly.RepositoryService/RepositoryInfo")?.forcePrimary).toBe(false);
  });

  it("leaves out what Praefect answers itself and the hooks", () => {
    expect(table.has("/gitaly.RepositoryService/RepositoryExists")).toBe(false);
    expect(table.has("/gitaly.RepositoryService/RemoveRepository")).toBe(false);
    expect([...table.keys()].some((p) => p.startsWith("/gitaly.HookService/"))).toBe(false);
    expect(buildMethodTable([ServerService, PraefectInfoService]).size).toBe(0);
    expect(buildMethodTable([HookService]).size).toBe(HookService.methods.length);
  });

  it("refuses a service it could not route", () => {
    expect(() => buildMethodTable([Health])).toThrow(/no op_type annotation/);
  });

  it("knows the target repository field of every repository-scoped method", () => {
    for (const entry of table.values()) {
      if (entry.routing.scope === "repository") expect(entry.fields.target.length, entry.path).toBeGreaterThan(0);
    }
  });
});
