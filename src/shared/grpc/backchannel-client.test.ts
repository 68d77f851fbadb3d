import { once } from "node:events";
import { createServer, type Server } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueCertificate } from "../tls/certificates.js";
import { dialBackchannel, parseBackchannelAddress } from "./backchannel-client.js";

describe("backchannel addresses", () => {
  it("accepts the address forms Gitaly clients use", () => {
    expect(parseBackchannelAddress("tcp://gitaly.example:8075")).toEqual({
      kind: "tcp",
      host: "gitaly.example",
      port: 8075,
    });
    expect(parseBackchannelAddress("127.0.0.1:8075")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 8075 });
    expect(parseBackchannelAddress("tcp://[::1]:9999")).toEqual({ kind: "tcp", host: "::1", port: 9999 });
    expect(parseBackchannelAddress("tls://gitaly.example:9999")).toEqual({
      kind: "tls",
      host: "gitaly.example",
      port: 9999,
    });
    expect(parseBackchannelAddress("unix:/run/gitaly.socket")).toEqual({ kind: "unix", path: "/run/gitaly.socket" });
    expect(parseBackchannelAddress("unix:///run/gitaly.socket")).toEqual({ kind: "unix", path: "/run/gitaly.socket" });
  });

  it("rejects addresses without a usable port or path", () => {
    expect(() => parseBackchannelAddress("gitaly.example")).toThrow(/want host:port/);
    expect(() => parseBackchannelAddress("tcp://gitaly.example:0")).toThrow(/want host:port/);
    expect(() => parseBackchannelAddress("tls://:8075")).toThrow(/want host:port/);
    expect(() => parseBackchannelAddress("unix:")).toThrow(/empty socket path/);
  });
});

describe("dialling failures", () => {
  let tlsServer: Server;
  let tlsPort = 0;
  let silent: Server;
  let silentPort = 0;

  beforeAll(async () => {
    const ca = await createCertificateAuthority("dial test CA");
    const leaf = await issueCertificate(ca, { commonName: "gitaly", hosts: ["127.0.0.1"] });
    tlsServer = createTlsServer({ cert: leaf.certificate, key: leaf.privateKey, ALPNProtocols: ["h2"] }, (s) =>
      s.destroy(),
    );
    tlsServer.listen(0, "127.0.0.1");
    await once(tlsServer, "listening");
    tlsPort = (tlsServer.address() as { port: number }).port;
    // Reads and never answers: the client's HTTP/2 handshake cannot complete.
    silent = createServer((s) => {
      s.on("error", () => {});
      s.resume();
    });
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    silentPort = (silent.address() as { port: number }).port;
  });

  afterAll(async () => {
    await Promise.all([tlsServer, silent].map((s) => new Promise((r) => s?.close(r))));
  });

  it("rejects when nothing listens", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    await expect(dialBackchannel(`127.0.0.1:${port}`)).rejects.toMatchObject({ code: "ECONNREFUSED" });
  });

  it("rejects a TLS server whose certificate is not trusted", async () => {
    const other = await createCertificateAuthority("some other CA");
    await expect(dialBackchannel(`tls://127.0.0.1:${tlsPort}`, { ca: other.certificate })).rejects.toThrow();
  });

  it("resolves against a silent server (HTTP/2 queues until the peer answers) and closes cleanly", async () => {
    const conn = await dialBackchannel(`127.0.0.1:${silentPort}`);
    expect(conn.closed).toBe(false);
    await conn.close();
    expect(conn.closed).toBe(true);
  });
});
