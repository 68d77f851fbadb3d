import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { CreateRepositoryRequestSchema, WriteRefRequestSchema } from "../../gen/repository_pb.js";
import {
  additionalRepository,
  RepositoryFieldNotFoundError,
  requestFieldsOf,
  StorageFieldNotFoundError,
  storageField,
  targetRepository,
} from "./request-fields.js";

describe("request fields", () => {
  const writeRef = requestFieldsOf(WriteRefRequestSchema);

  it("finds the target repository and lets it be rewritten in place", () => {
    const req = create(WriteRefRequestSchema, {
      repository: { storageName: "default", relativePath: "group/project.git", glRepository: "project-1" },
      ref: Buffer.from("refs/heads/main"),
      revision: Buffer.from("abc"),
    });
    const repo = targetRepository(writeRef, req);
    expect(repo.storageName).toBe("default");
    repo.storageName = "gitaly-2";
    repo.relativePath = "@cluster/repositories/6b/86/1";
    const decoded = fromBinary(WriteRefRequestSchema, toBinary(WriteRefRequestSchema, req));
    expect(decoded.repository).toMatchObject({
      storageName: "gitaly-2",
      relativePath: "@cluster/repositories/6b/86/1",
      glRepository: "project-1",
    });
    expect(Buffer.from(decoded.ref).toString()).toBe("refs/heads/main");
  });

  it("reports an unset repository as not found, but a set empty one as found", () => {
    expect(() => targetRepository(writeRef, create(WriteRefRequestSchema, {}))).toThrow(RepositoryFieldNotFoundError);
    const empty = targetRepository(writeRef, create(WriteRefRequestSchema, { repository: {} }));
    expect(empty).toMatchObject({ storageName: "", relativePath: "" });
  });

  it("keeps fields it does not know across decode, rewrite and encode", () => {
    const known = toBinary(
      CreateRepositoryRequestSchema,
      create(CreateRepositoryRequestSchema, { repository: { storageName: "vs", relativePath: "a.git" } }),
    );
    // Field 99 (varint 7) from a newer client: Praefect must pass it on untouched.
    const unknown = new BinaryWriter().tag(99, WireType.Varint).uint32(7).finish();
    const bytes = Buffer.concat([Buffer.from(known), Buffer.from(unknown)]);
    const fields = requestFieldsOf(CreateRepositoryRequestSchema);
    const req = fromBinary(CreateRepositoryRequestSchema, bytes);
    targetRepository(fields, req).storageName = "node-1";
    const out = Buffer.from(toBinary(CreateRepositoryRequestSchema, req));
    expect(out.subarray(out.length - unknown.length)).toEqual(Buffer.from(unknown));
    expect(fromBinary(CreateRepositoryRequestSchema, out).repository?.storageName).toBe("node-1");
  });

  it("has no additional repository or storage field where none is annotated", () => {
    const req = create(WriteRefRequestSchema, { repository: { storageName: "vs", relativePath: "a.git" } });
    expect(additionalRepository(writeRef, req)).toBeUndefined();
    expect(() => storageField(writeRef, req)).toThrow(StorageFieldNotFoundError);
  });
});
