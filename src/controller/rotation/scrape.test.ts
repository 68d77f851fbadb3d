import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freePort } from "../../shared/net.js";
import { parsePrometheusText, sampleFromMetrics, scrapeTargets } from "./scrape.js";

const GITALY = `# HELP gitaly_auth_token_info The authentication token generation
# TYPE gitaly_auth_token_info gauge
gitaly_auth_token_info{generation="0a1b2c3d4e5f",transitioning="true"} 1
# TYPE gitaly_authentications_total counter
gitaly_authentications_total{enforced="true",status="ok"} 120
gitaly_authentications_total{enforced="false",status="would be ok"} 42
gitaly_authentications_total{enforced="false",status="denied"} 3
`;

const PRAEFECT = `gitaly_auth_token_info{generation="ffeeddccbbaa",transitioning="false"} 1
gitaly_praefect_node_token_info{virtual_storage="default",storage="g-0",generation="0a1b2c3d4e5f"} 1
gitaly_praefect_node_token_info{virtual_storage="default",storage="g-1",generation="999999999999"} 1
`;

describe("parsePrometheusText", () => {
  test("reads names, labels with escapes and values; skips comments", () => {
    expect(parsePrometheusText('a_total{x="q\\"uote",y="b"} 3\n# c\nb 1.5e3\nbad line here\n')).toEqual([
      { name: "a_total", labels: { x: 'q"uote', y: "b" }, value: 3 },
      { name: "b", labels: {}, value: 1500 },
    ]);
  });
});

describe("sampleFromMetrics", () => {
  test("a Gitaly node: generation, transitioning and counters by enforced/status", () => {
    expect(sampleFromMetrics("g-0", "gitaly", GITALY)).toEqual({
      name: "g-0",
      role: "gitaly",
      reachable: true,
      servedGeneration: "0a1b2c3d4e5f",
      transitioning: true,
      authCounts: { "true/ok": 120, "false/would be ok": 42, "false/denied": 3 },
    });
  });

  test("a Praefect: also the internal token generations it presents to each node", () => {
    const s = sampleFromMetrics("p-0", "praefect", PRAEFECT);
    expect(s.servedGeneration).toBe("ffeeddccbbaa");
    expect(s.transitioning).toBe(false);
    expect(s.presentedGenerations).toEqual(["0a1b2c3d4e5f", "999999999999"]);
  });
});

describe("scrapeTargets", () => {
  const server = createServer((req, res) => {
    if (req.url === "/metrics") res.end(GITALY);
    else res.writeHead(500).end();
  });
  let port = 0;
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  test("reads a live endpoint and reports broken ones without throwing", async () => {
    const [ok, bad, down] = await scrapeTargets([
      { name: "g-0", role: "gitaly", url: `http://127.0.0.1:${port}/metrics` },
      { name: "g-1", role: "gitaly", url: `http://127.0.0.1:${port}/oops` },
      { name: "g-2", role: "gitaly", url: `http://127.0.0.1:${await freePort()}/metrics` },
    ]);
    expect(ok?.servedGeneration).toBe("0a1b2c3d4e5f");
    expect(bad).toMatchObject({ reachable: false, error: "HTTP 500" });
    expect(down).toMatchObject({ reachable: false, error: "ECONNREFUSED" });
  });
});
