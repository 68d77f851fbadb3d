import { describe, expect, test } from "vitest";
import { ListenAddressError, listenAddressField, parseListenAddress } from "./listen-address.js";

describe("parseListenAddress", () => {
  test.each([
    ["127.0.0.1:8075", "127.0.0.1", 8075],
    ["[::1]:8075", "::1", 8075],
    [":8075", "", 8075],
    ["0.0.0.0:8075", "0.0.0.0", 8075],
    ["[::]:9236", "::", 9236],
    ["gitaly-0.gitaly.default.svc:8075", "gitaly-0.gitaly.default.svc", 8075],
    ["localhost:0", "localhost", 0],
    ["127.0.0.1:65535", "127.0.0.1", 65535],
  ])("%s → host %j port %d", (addr, host, port) => {
    expect(parseListenAddress(addr)).toEqual({ host, port });
  });

  test.each([
    ["127.0.0.1", "address 127.0.0.1: missing port in address"],
    ["", "address : missing port in address"],
    ["::1:8075", "address ::1:8075: too many colons in address"],
    ["[::1]", "address [::1]: missing port in address"],
    ["[::1:8075", "address [::1:8075: missing ']' in address"],
    ["[::1]8075", "address [::1]8075: missing port in address"],
    ["127.0.0.1:", "address 127.0.0.1:: missing port number"],
    ["127.0.0.1:http", 'address 127.0.0.1:http: invalid port "http"'],
    ["127.0.0.1:-1", 'address 127.0.0.1:-1: invalid port "-1"'],
    ["127.0.0.1:70000", "address 127.0.0.1:70000: port 70000 out of range 0-65535"],
    ["tcp://127.0.0.1:8075", "address tcp://127.0.0.1:8075: too many colons in address"],
    ["bad host:8075", 'address bad host:8075: invalid host "bad host"'],
    ["[gitaly]:8075", 'address [gitaly]:8075: invalid IPv6 address "gitaly"'],
  ])("%j is rejected: %s", (addr, message) => {
    expect(() => parseListenAddress(addr)).toThrow(ListenAddressError);
    expect(() => parseListenAddress(addr)).toThrow(message);
  });
});

describe("listenAddressField", () => {
  test("accepts an empty (unconfigured) address and reports a bad one", () => {
    expect(listenAddressField().parse("")).toBe("");
    expect(listenAddressField().safeParse("8075").error?.issues[0]?.message).toBe(
      "address 8075: missing port in address",
    );
  });
});
