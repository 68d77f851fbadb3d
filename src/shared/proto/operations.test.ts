import { describe, expect, it } from "vitest";
import { CreateRepositoryRequestSchema, RepositoryService } from "../../gen/repository_pb.js";
import { ServerService } from "../../gen/server_pb.js";
import { ObjectPoolSchema } from "../../gen/shared_pb.js";
import { methodRouting, storageFields, targetRepositoryFields } from "./operations.js";

describe("routing annotations read from descriptors at run time", () => {
  it("marks intercepted services", () => {
    const info = methodRouting(ServerService.method.serverInfo);
    expect(info).toEqual({
      path: "/gitaly.ServerService/ServerInfo",
      operation: "unknown",
      scope: "repository",
      intercepted: true,
    });
  });

  it("reads op_type of repository methods", () => {
    expect(methodRouting(RepositoryService.method.repositoryExists)).toMatchObject({
      path: "/gitaly.RepositoryService/RepositoryExists",
      operation: "accessor",
      scope: "repository",
      intercepted: false,
    });
    expect(methodRouting(RepositoryService.method.createRepository).operation).toBe("mutator");
  });

  it("finds the target repository field by its option", () => {
    const paths = targetRepositoryFields(CreateRepositoryRequestSchema);
    expect(paths.map((p) => p.map((f) => f.name).join("."))).toEqual(["repository"]);
    expect(paths[0]?.[0]?.number).toBe(1);
    expect(storageFields(CreateRepositoryRequestSchema)).toEqual([]);
  });

  it("does not treat ObjectPool's (repository) flag as a target", () => {
    expect(targetRepositoryFields(ObjectPoolSchema)).toEqual([]);
  });
});
