import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RepositorySchema } from "../../gen/shared_pb.js";
import {
  ALL_HOOKS,
  decodeHooksPayload,
  encodeHooksPayload,
  HOOKS_PAYLOAD_ENV,
  Hook,
  type HooksPayload,
  hooksPayloadFromEnv,
  isHookRequested,
  parseTransactionMetadata,
  RECEIVE_PACK_HOOKS,
  serializeTransactionMetadata,
} from "./payload.js";

const repository = create(RepositorySchema, {
  storageName: "default",
  relativePath: "@hashed/ab/cd/abcd.git",
  gitObjectDirectory: "objects/incoming-x",
  gitAlternateObjectDirectories: ["objects"],
  glRepository: "project-1",
  glProjectPath: "group/project",
});

const payload: HooksPayload = {
  requestedHooks: RECEIVE_PACK_HOOKS,
  objectFormat: "sha1",
  runtimeDir: "/run/gitaly",
  internalSocket: "/run/gitaly/sock.d/intern",
  internalSocketToken: "secret",
  transaction: { backchannelId: 3n, id: 18446744073709551615n, node: "gitaly-1", primary: true },
  userDetails: { username: "jane", userId: "user-42", protocol: "http", remoteIp: "10.0.0.1" },
  repository,
};

describe("hooks payload", () => {
  it("uses upstream's JSON field names, with the repository as a protojson string", () => {
    const json = JSON.parse(Buffer.from(encodeHooksPayload(payload), "base64").toString("utf8"));
    expect(Object.keys(json)).toEqual([
      "requested_hooks",
      "object_format",
      "runtime_dir",
      "internal_socket",
      "internal_socket_token",
      "transaction",
      "user_details",
      "repository",
    ]);
    expect(json.requested_hooks).toBe(15);
    expect(json.user_details).toEqual({ username: "jane", userid: "user-42", protocol: "http", remote_ip: "10.0.0.1" });
    expect(json.transaction.node).toBe("gitaly-1");
    expect(JSON.parse(json.repository)).toEqual({
      storageName: "default",
      relativePath: "@hashed/ab/cd/abcd.git",
      gitObjectDirectory: "objects/incoming-x",
      gitAlternateObjectDirectories: ["objects"],
      glRepository: "project-1",
      glProjectPath: "group/project",
    });
  });

  it("keeps uint64 transaction ids exact through JSON", () => {
    const text = Buffer.from(encodeHooksPayload(payload), "base64").toString("utf8");
    expect(text).toContain('"transaction":{"backchannel_id":3,"id":18446744073709551615,');
    expect(decodeHooksPayload(encodeHooksPayload(payload))).toEqual(payload);
  });

  it("decodes what upstream writes: no transaction, no user, extra fields, no requested_hooks", () => {
    const json = JSON.stringify({
      object_format: "sha256",
      runtime_dir: "/r",
      internal_socket: "/r/sock.d/intern",
      internal_socket_token: "t",
      transaction: null,
      user_details: null,
      transaction_id: 0,
      LogFields: { correlation_id: "abc" },
      repository: '{"storageName":"default","relativePath":"a.git"}',
    });
    const decoded = decodeHooksPayload(Buffer.from(json).toString("base64"));
    expect(decoded.requestedHooks).toBe(ALL_HOOKS);
    expect(decoded.transaction).toBeUndefined();
    expect(decoded.userDetails).toBeUndefined();
    expect(decoded.objectFormat).toBe("sha256");
    expect(decoded.repository.relativePath).toBe("a.git");
  });

  it("finds the payload in a KEY=value environment", () => {
    const env = ["PATH=/bin", `${HOOKS_PAYLOAD_ENV}=${encodeHooksPayload(payload)}`];
    expect(hooksPayloadFromEnv(env).internalSocket).toBe("/run/gitaly/sock.d/intern");
    expect(() => hooksPayloadFromEnv(["PATH=/bin"])).toThrow("no hooks payload found in environment");
    expect(() => hooksPayloadFromEnv([`${HOOKS_PAYLOAD_ENV}=not base64!`])).toThrow("illegal base64 data");
  });

  it("tells which hooks were requested", () => {
    const refOnly = { ...payload, requestedHooks: Hook.ReferenceTransaction };
    expect(isHookRequested(refOnly, Hook.ReferenceTransaction)).toBe(true);
    expect(isHookRequested(refOnly, Hook.PreReceive)).toBe(false);
    expect(isHookRequested(payload, Hook.PostReceive)).toBe(true);
  });
});

describe("gitaly-reference-transaction metadata", () => {
  it("parses std-base64 JSON as Praefect sends it", () => {
    const value = Buffer.from('{"id":42,"node":"gitaly-2","primary":false}').toString("base64");
    expect(parseTransactionMetadata(value)).toEqual({ id: 42n, node: "gitaly-2", primary: false });
    expect(parseTransactionMetadata(serializeTransactionMetadata({ id: 9n, node: "n", primary: true }))).toEqual({
      id: 9n,
      node: "n",
      primary: true,
    });
  });

  it("rejects malformed values", () => {
    expect(() => parseTransactionMetadata("%%%")).toThrow("illegal base64 data");
    expect(() => parseTransactionMetadata(Buffer.from("[1]").toString("base64"))).toThrow("not an object");
    expect(() => parseTransactionMetadata(Buffer.from('{"id":-1}').toString("base64"))).toThrow("uint64");
    expect(() => parseTransactionMetadata(Buffer.from('{"id":"1"}').toString("base64"))).toThrow("uint64");
  });
});
