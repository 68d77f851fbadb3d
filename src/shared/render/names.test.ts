import { describe, expect, test } from "vitest";
import { parseNodeAddress } from "../../praefect/config/node-address.js";
import { GITALY_PORTS, gitalyNodeAddress, gitalyPodDnsName, storageName } from "./names.js";

describe("storageName", () => {
  test("is the StatefulSet pod name", () => {
    expect(storageName("demo", 0)).toBe("demo-gitaly-0");
    expect(storageName("demo", 4)).toBe("demo-gitaly-4");
  });

  test("refuses names Kubernetes would refuse", () => {
    expect(() => storageName("Demo", 0)).toThrow(/not a DNS label/);
    expect(() => storageName("demo", -1)).toThrow(/not a whole number/);
    expect(() => storageName("demo", 1.5)).toThrow(/not a whole number/);
    expect(() => storageName("a".repeat(60), 0)).toThrow(/at most 63/);
  });
});

describe("gitalyNodeAddress", () => {
  const pod = { cluster: "demo", index: 2, namespace: "git", headlessService: "demo-gitaly" };

  test("uses the per-pod DNS name of the headless Service and the contract ports", () => {
    expect(gitalyNodeAddress({ ...pod, tls: false })).toBe("tcp://demo-gitaly-2.demo-gitaly.git.svc:8075");
    expect(gitalyNodeAddress({ ...pod, tls: true })).toBe("tls://demo-gitaly-2.demo-gitaly.git.svc:8076");
    expect(gitalyNodeAddress({ ...pod, tls: false, port: 9999 })).toBe("tcp://demo-gitaly-2.demo-gitaly.git.svc:9999");
    expect(GITALY_PORTS).toEqual({ grpc: 8075, tls: 8076, metrics: 9236 });
  });

  test("appends the cluster domain when given, the same name a certificate SAN uses", () => {
    expect(gitalyPodDnsName({ ...pod, clusterDomain: "cluster.local" })).toBe(
      "demo-gitaly-2.demo-gitaly.git.svc.cluster.local",
    );
    expect(gitalyNodeAddress({ ...pod, tls: true, clusterDomain: "cluster.local" })).toBe(
      `tls://${gitalyPodDnsName({ ...pod, clusterDomain: "cluster.local" })}:8076`,
    );
  });

  test("produces addresses Praefect's node-address parser accepts", () => {
    expect(parseNodeAddress(gitalyNodeAddress({ ...pod, tls: true }))).toMatchObject({
      grpcTarget: "demo-gitaly-2.demo-gitaly.git.svc:8076",
      tls: true,
    });
    expect(parseNodeAddress(gitalyNodeAddress({ ...pod, tls: false }))).toMatchObject({ tls: false });
  });

  test("refuses a bad namespace, Service or port", () => {
    expect(() => gitalyNodeAddress({ ...pod, namespace: "Git", tls: false })).toThrow(/namespace "Git"/);
    expect(() => gitalyNodeAddress({ ...pod, headlessService: "a.b", tls: false })).toThrow(/headless Service/);
    expect(() => gitalyNodeAddress({ ...pod, tls: false, port: 70000 })).toThrow(/out of range/);
  });
});
