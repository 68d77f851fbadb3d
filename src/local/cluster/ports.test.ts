import { createServer, type Server } from "node:net";
import { afterAll, describe, expect, test } from "vitest";
import { freePort } from "../../shared/net.js";
import { assignPorts, isPortFree, PortInUseError, requireFreePort } from "./ports.js";

const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function busyPort(): Promise<number> {
  const srv = createServer();
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const addr = srv.address();
  if (typeof addr !== "object" || !addr) throw new Error("no address");
  return addr.port;
}

describe("ports", () => {
  test("a port in use is reported with the flag that chooses another", async () => {
    const busy = await busyPort();
    expect(await isPortFree(busy)).toBe(false);
    await expect(requireFreePort(busy, "--http-port")).rejects.toThrow(PortInUseError);
    await expect(requireFreePort(busy, "--http-port")).rejects.toThrow(
      new RegExp(`127\\.0\\.0\\.1:${busy} is already in use; pick another port with --http-port`),
    );
    await requireFreePort(0, "--http-port");
    await requireFreePort(await freePort(), "--http-port");
  });

  test("assignPorts: fixed ports as asked, remembered ones when free, distinct fresh ones otherwise", async () => {
    const busy = await busyPort();
    const fixed = await freePort();
    const remembered = await freePort();
    const reserved = await freePort();
    const names = ["a", "b", "c", "d", "e"];
    const ports = await assignPorts(names, {
      fixed: { a: { port: fixed, flag: "--a" }, e: { port: 0, flag: "--e" } },
      remembered: { b: remembered, c: busy, d: reserved },
      reserved: [reserved],
    });
    expect(ports.a).toBe(fixed);
    expect(ports.b).toBe(remembered);
    expect(ports.c).not.toBe(busy);
    expect(ports.d).not.toBe(reserved);
    expect(new Set(Object.values(ports)).size).toBe(names.length);
    await expect(assignPorts(["a"], { fixed: { a: { port: busy, flag: "--praefect-port" } } })).rejects.toThrow(
      /--praefect-port/,
    );
  });
});
