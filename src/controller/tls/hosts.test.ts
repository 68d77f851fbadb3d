import { describe, expect, it } from "vitest";
import { gitalyPodDnsName } from "../../shared/render/names.js";
import { servingCertificateHosts } from "./hosts.js";

describe("servingCertificateHosts", () => {
  it("lists the Services, every Gitaly pod and loopback, in a fixed order", () => {
    expect(servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 2 })).toEqual([
      "demo-gitaly",
      "demo-gitaly.git",
      "demo-gitaly.git.svc",
      "demo-praefect",
      "demo-praefect.git",
      "demo-praefect.git.svc",
      "demo-gitaly-0.demo-gitaly.git.svc",
      "demo-gitaly-1.demo-gitaly.git.svc",
      "localhost",
      "127.0.0.1",
      "::1",
    ]);
  });

  it("adds the fully qualified form of every name when a cluster domain is given", () => {
    const hosts = servingCertificateHosts({
      cluster: "demo",
      namespace: "git",
      gitalyReplicas: 3,
      clusterDomain: "cluster.local",
    });
    for (let index = 0; index < 3; index++) {
      const pod = { cluster: "demo", index, namespace: "git", headlessService: "demo-gitaly" };
      expect(hosts).toContain(gitalyPodDnsName(pod));
      expect(hosts).toContain(gitalyPodDnsName({ ...pod, clusterDomain: "cluster.local" }));
    }
    expect(hosts).toContain("demo-gitaly.git.svc.cluster.local");
    expect(hosts).toContain("demo-praefect.git.svc.cluster.local");
    expect(hosts).toContain("demo-praefect.git.svc");
    expect(hosts).not.toContain("demo-gitaly-3.demo-gitaly.git.svc");
    expect(new Set(hosts).size).toBe(hosts.length);
    expect(hosts).toHaveLength(8 + 3 * 2 + 3);
  });

  it("is deterministic and grows with the replica count", () => {
    const three = servingCertificateHosts({ cluster: "c", namespace: "n", gitalyReplicas: 3 });
    const again = servingCertificateHosts({ cluster: "c", namespace: "n", gitalyReplicas: 3 });
    const five = servingCertificateHosts({ cluster: "c", namespace: "n", gitalyReplicas: 5 });
    expect(again).toEqual(three);
    expect(five.filter((h) => !three.includes(h))).toEqual(["c-gitaly-3.c-gitaly.n.svc", "c-gitaly-4.c-gitaly.n.svc"]);
  });

  it("uses given Service names and drops duplicates they cause", () => {
    const hosts = servingCertificateHosts({
      cluster: "c",
      namespace: "n",
      gitalyReplicas: 1,
      gitalyService: "shared",
      praefectService: "shared",
    });
    expect(hosts).toEqual([
      "shared",
      "shared.n",
      "shared.n.svc",
      "c-gitaly-0.shared.n.svc",
      "localhost",
      "127.0.0.1",
      "::1",
    ]);
  });

  it("treats an empty cluster domain as none", () => {
    const hosts = servingCertificateHosts({ cluster: "c", namespace: "n", gitalyReplicas: 1, clusterDomain: "" });
    expect(hosts).toEqual(servingCertificateHosts({ cluster: "c", namespace: "n", gitalyReplicas: 1 }));
  });

  it("refuses names that cannot be DNS names", () => {
    expect(() => servingCertificateHosts({ cluster: "Demo", namespace: "git", gitalyReplicas: 0 })).toThrow(
      /cluster name "Demo"/,
    );
    expect(() => servingCertificateHosts({ cluster: "demo", namespace: "a.b", gitalyReplicas: 1 })).toThrow(
      /namespace "a.b"/,
    );
    expect(() => servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 1.5 })).toThrow(
      /replicas 1.5/,
    );
    expect(() =>
      servingCertificateHosts({ cluster: "demo", namespace: "git", gitalyReplicas: 1, clusterDomain: "bad_domain" }),
    ).toThrow(/cluster domain/);
  });
});
