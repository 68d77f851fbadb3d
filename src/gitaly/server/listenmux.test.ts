import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { createServer as createTlsServer, type Server as TlsServer } from "node:tls";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { dialBackchannel } from "../../shared/grpc/backchannel-client.js";
import { addService, createClient } from "../../shared/grpc/service.js";
import { createCertificateAuthority, issueCertificate } from "../../shared/tls/certificates.js";
import { type BackchannelSession, backchannelSessionCount, sessionForPeer } from "./backchannel.js";
import { createListenmux, type Listenmux } from "./listenmux.js";

const closed = (stream: Duplex) =>
  new Promise<void>((resolve) => {
    if (stream.destroyed) resolve();
    else stream.once("close", () => resolve());
  });

function listen(server: Server, ...args: [number, string] | [string]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(...(args as [number, string]), () => resolve());
  });
}

function port(server: Server): number {
  const a = server.address();
  if (!a || typeof a === "string") throw new Error("no TCP address");
  return a.port;
}

/** A raw client that sends `bytes`, then waits until the server hangs up. */
async function sendAndWaitForHangUp(address: { port: number }, bytes: Buffer, end = true): Promise<void> {
  const socket = connect(address.port, "127.0.0.1");
  socket.on("error", () => {});
  socket.resume();
  await once(socket, "connect");
  socket.write(bytes);
  if (end) socket.end();
  await closed(socket);
}

describe("listenmux", () => {
  let dir: string;
  let grpcServer: grpc.Server;
  let mux: Listenmux;
  const listeners: Server[] = [];
  let tcpPort: number;
  let unixPath: string;
  let tlsPort: number;
  let caPem: string;
  let lastPeer = "";
  const sessions: BackchannelSession[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "listenmux-"));
    grpcServer = new grpc.Server();
    addService(grpcServer, Health, {
      check(call, callback) {
        lastPeer = call.getPeer();
        callback(null, create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }));
      },
      list(call, callback) {
        // Opens a stream to the client that is not a sidechannel, as Praefect's
        // transaction gRPC would.
        const session = sessionForPeer(call.getPeer());
        if (!session) {
          callback({ code: grpc.status.FAILED_PRECONDITION, details: "not a backchannel call" });
          return;
        }
        session.openStream().end("PRI * HTTP/2.0 from the server");
        callback(null, create(HealthListResponseSchema, {}));
      },
      watch(call) {
        call.end();
      },
    });
    const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    mux = createListenmux({
      onGrpcConnection: (connection) => injector.injectConnection(connection),
      onBackchannel: (session) => sessions.push(session),
    });

    const tcp = createServer((s) => mux.accept(s));
    await listen(tcp, 0, "127.0.0.1");
    tcpPort = port(tcp);
    const unix = createServer((s) => mux.accept(s));
    unixPath = join(dir, "gitaly.socket");
    await listen(unix, unixPath);
    const ca = await createCertificateAuthority("listenmux test CA");
    const leaf = await issueCertificate(ca, { commonName: "gitaly", hosts: ["127.0.0.1"] });
    caPem = ca.certificate;
    const tls: TlsServer = createTlsServer(
      { cert: leaf.certificate, key: leaf.privateKey, ALPNProtocols: ["h2"] },
      (s) => mux.accept(s),
    );
    await listen(tls, 0, "127.0.0.1");
    tlsPort = port(tls);
    listeners.push(tcp, unix, tls);
  });

  afterAll(async () => {
    mux?.close();
    grpcServer?.forceShutdown();
    await Promise.all(listeners.map((l) => new Promise((r) => l.close(r))));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const plainTargets = () => [
    { name: "tcp", target: `127.0.0.1:${tcpPort}`, creds: grpc.credentials.createInsecure() },
    { name: "unix", target: `unix:${unixPath}`, creds: grpc.credentials.createInsecure() },
    { name: "tls", target: `127.0.0.1:${tlsPort}`, creds: grpc.credentials.createSsl(Buffer.from(caPem)) },
  ];

  const backchannelAddresses = () => [
    `tcp://127.0.0.1:${tcpPort}`,
    `127.0.0.1:${tcpPort}`,
    `unix:${unixPath}`,
    `unix://${unixPath}`,
    `tls://127.0.0.1:${tlsPort}`,
  ];

  async function checkPlain(target: string, creds: grpc.ChannelCredentials): Promise<string> {
    const channel = new grpc.Client(target, creds);
    try {
      const res = await createClient(Health, channel).check({ service: "" });
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      return lastPeer;
    } finally {
      channel.close();
    }
  }

  it("serves ordinary gRPC clients on TCP, unix sockets and TLS, replaying the peeked bytes", async () => {
    for (const { target, creds } of plainTargets()) {
      const peer = await checkPlain(target, creds);
      expect(sessionForPeer(peer)).toBeUndefined();
    }
    expect(lastPeer).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("serves backchannel clients, and a handler finds their session from call.getPeer()", async () => {
    const ids = new Set<bigint>();
    for (const address of backchannelAddresses()) {
      const conn = await dialBackchannel(address, { ca: caPem });
      try {
        const res = await conn.unary(Health.method.check, { service: "" });
        expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
        expect(lastPeer).toMatch(/^backchannel-\d+$/);
        const session = sessionForPeer(lastPeer);
        expect(session?.peer).toBe(lastPeer);
        if (session) ids.add(session.id);
        // The gRPC stream stays usable for further calls.
        await expect(conn.unary(Health.method.check, { service: "" })).resolves.toMatchObject({
          status: HealthCheckResponse_ServingStatus.SERVING,
        });
      } finally {
        await conn.close();
      }
    }
    expect(ids.size).toBe(backchannelAddresses().length);
  });

  it("forgets a backchannel session when its client disconnects", async () => {
    const conn = await dialBackchannel(`127.0.0.1:${tcpPort}`);
    await conn.unary(Health.method.check, { service: "" });
    const session = sessionForPeer(lastPeer);
    if (!session) throw new Error("no session for the backchannel call");
    const gone = once(session, "close");
    await conn.close();
    await gone;
    expect(session.closed).toBe(true);
    expect(sessionForPeer(session.peer)).toBeUndefined();
  });

  it("survives clients that send garbage, too few bytes, or a broken yamux session", async () => {
    const address = { port: tcpPort };
    const before = backchannelSessionCount();
    await sendAndWaitForHangUp(address, Buffer.from("back"));
    await sendAndWaitForHangUp(address, Buffer.from("this is not HTTP/2 at all, not even close\r\n\r\n"), false);
    // The magic, then a yamux header with an unknown protocol version.
    await sendAndWaitForHangUp(address, Buffer.concat([Buffer.from("backchannel"), Buffer.alloc(12, 9)]), false);
    expect(backchannelSessionCount()).toBe(before);

    expect(await checkPlain(`127.0.0.1:${tcpPort}`, grpc.credentials.createInsecure())).toMatch(/^127\.0\.0\.1:/);
    const conn = await dialBackchannel(`127.0.0.1:${tcpPort}`);
    try {
      await expect(conn.unary(Health.method.check, { service: "" })).resolves.toMatchObject({
        status: HealthCheckResponse_ServingStatus.SERVING,
      });
    } finally {
      await conn.close();
    }
  });

  it("refuses further client-opened streams on a backchannel session", async () => {
    const conn = await dialBackchannel(`127.0.0.1:${tcpPort}`);
    try {
      const extra = conn.session.open();
      extra.write("hello?");
      await closed(extra);
      expect((extra.errored as NodeJS.ErrnoException | null)?.code).toBe("ECONNRESET");
      await expect(conn.unary(Health.method.check, { service: "" })).resolves.toBeDefined();
    } finally {
      await conn.close();
    }
  });

  it("hands server-opened streams that are not sidechannels to onServerStream, bytes intact", async () => {
    let received: Promise<string> | undefined;
    const conn = await dialBackchannel(`127.0.0.1:${tcpPort}`, {
      onServerStream: (stream) => {
        received = new Promise((resolve) => {
          const chunks: Buffer[] = [];
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.once("end", () => resolve(Buffer.concat(chunks).toString()));
        });
      },
    });
    try {
      await conn.unary(Health.method.list, {});
      expect(received).toBeDefined();
      expect(await received).toBe("PRI * HTTP/2.0 from the server");
    } finally {
      await conn.close();
    }
  });

  it("drops connections that stay silent past the handshake timeout", async () => {
    const rejected: Error[] = [];
    const quick = createListenmux({
      onGrpcConnection: () => {
        throw new Error("nothing should get this far");
      },
      onRejected: (_socket, reason) => rejected.push(reason),
      handshakeTimeoutMs: 200,
    });
    const server = createServer((s) => quick.accept(s));
    await listen(server, 0, "127.0.0.1");
    try {
      await sendAndWaitForHangUp({ port: port(server) }, Buffer.from("back"), false);
      expect(rejected.map((e) => e.message)).toEqual(["listenmux: peek network stream: i/o deadline reached"]);
      // A backchannel client that never opens its gRPC stream is dropped as well.
      await sendAndWaitForHangUp({ port: port(server) }, Buffer.from("backchannel"), false);
    } finally {
      quick.close();
      await new Promise((r) => server.close(r));
    }
  });

  it("closes what it still owns on close()", async () => {
    const own = createListenmux({ onGrpcConnection: () => {} });
    const server = createServer((s) => own.accept(s));
    await listen(server, 0, "127.0.0.1");
    try {
      const socket: Socket = connect(port(server), "127.0.0.1");
      socket.on("error", () => {});
      socket.resume();
      await once(socket, "connect");
      socket.write("partial");
      // Let the server accept and start peeking before closing.
      await new Promise((r) => setTimeout(r, 50));
      own.close();
      await closed(socket);
      expect(socket.destroyed).toBe(true);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
