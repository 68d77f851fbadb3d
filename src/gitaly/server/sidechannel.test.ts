import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import * as http2 from "node:http2";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { createServer as createTlsServer } from "node:tls";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { type BackchannelConnection, dialBackchannel } from "../../shared/grpc/backchannel-client.js";
import { unary } from "../../shared/grpc/handlers.js";
import { unaryCall } from "../../shared/grpc/http2-client.js";
import { addService, createClient, methodPath } from "../../shared/grpc/service.js";
import { createCertificateAuthority, issueCertificate } from "../../shared/tls/certificates.js";
import { createListenmux, type Listenmux } from "./listenmux.js";
import {
  encodeSidechannelHandshake,
  parseSidechannelId,
  SIDECHANNEL_METADATA_KEY,
  sidechannelFromCall,
} from "./sidechannel.js";
import { YamuxSession } from "./yamux-session.js";

async function collect(readable: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of readable) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const reversed = (b: Buffer) => Buffer.from(b).reverse();
const SERVING = HealthCheckResponse_ServingStatus.SERVING;

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

describe("sidechannel", () => {
  let dir: string;
  let grpcServer: grpc.Server;
  let mux: Listenmux;
  const listeners: Server[] = [];
  let tcpPort: number;
  let unixPath: string;
  let tlsPort: number;
  let caPem: string;
  let conn: BackchannelConnection;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sidechannel-"));
    grpcServer = new grpc.Server();
    addService(grpcServer, Health, {
      // Reads the client's data from the sidechannel and sends it back reversed.
      check: unary(async (_request, call) => {
        const sidechannel = await sidechannelFromCall(call, { timeoutMs: 500 });
        try {
          const input = await collect(sidechannel.readable);
          sidechannel.writable.write(reversed(input));
          await sidechannel.close();
        } catch (err) {
          sidechannel.destroy();
          throw err;
        }
        return create(HealthCheckResponseSchema, { status: SERVING });
      }),
      // Never opens a sidechannel.
      list: unary(async () => create(HealthListResponseSchema, {})),
      watch(call) {
        call.end();
      },
    });
    const injector = grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    mux = createListenmux({ onGrpcConnection: (connection) => injector.injectConnection(connection) });
    const tcp = createServer((s) => mux.accept(s));
    await listen(tcp, 0, "127.0.0.1");
    tcpPort = port(tcp);
    const unix = createServer((s) => mux.accept(s));
    unixPath = join(dir, "gitaly.socket");
    await listen(unix, unixPath);
    const ca = await createCertificateAuthority("sidechannel test CA");
    const leaf = await issueCertificate(ca, { commonName: "gitaly", hosts: ["127.0.0.1"] });
    caPem = ca.certificate;
    const tls = createTlsServer({ cert: leaf.certificate, key: leaf.privateKey, ALPNProtocols: ["h2"] }, (s) =>
      mux.accept(s),
    );
    await listen(tls, 0, "127.0.0.1");
    tlsPort = port(tls);
    listeners.push(tcp, unix, tls);
    conn = await dialBackchannel(`127.0.0.1:${tcpPort}`);
  });

  afterAll(async () => {
    await conn?.close();
    mux?.close();
    grpcServer?.forceShutdown();
    await Promise.all(listeners.map((l) => new Promise((r) => l.close(r))));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Sends `payload` over a sidechannel of a Check call and returns what came back. */
  function roundTrip(c: BackchannelConnection, payload: Buffer) {
    return c.withSidechannel(
      async (sidechannel) => {
        const reply = sidechannel.readAll();
        await sidechannel.write(payload);
        await sidechannel.closeWrite();
        return reply;
      },
      (metadata) => c.unary(Health.method.check, { service: "" }, { metadata }),
    );
  }

  it("round-trips more than 1 MiB split into many pkt-lines, on TCP, unix sockets and TLS", async () => {
    const payload = randomBytes(1536 * 1024 + 3);
    for (const address of [`tcp://127.0.0.1:${tcpPort}`, `unix://${unixPath}`, `tls://127.0.0.1:${tlsPort}`]) {
      const c = await dialBackchannel(address, { ca: caPem });
      try {
        const { response, sidechannel } = await roundTrip(c, payload);
        expect(response.status).toBe(SERVING);
        expect(sidechannel.length).toBe(payload.length);
        expect(sidechannel.equals(reversed(payload))).toBe(true);
      } finally {
        await c.close();
      }
    }
  });

  it("keeps concurrent sidechannels of one connection apart", async () => {
    const payloads = [1, 2, 3, 4, 5].map((n) => Buffer.from(`payload number ${n} `.repeat(n * 1000)));
    const results = await Promise.all(payloads.map((p) => roundTrip(conn, p)));
    results.forEach(({ sidechannel }, i) => {
      expect(sidechannel.equals(reversed(payloads[i] as Buffer))).toBe(true);
    });
  });

  it("fails on a plain connection, which has no backchannel to open it on", async () => {
    const channel = new grpc.Client(`127.0.0.1:${tcpPort}`, grpc.credentials.createInsecure());
    try {
      const metadata = new grpc.Metadata();
      metadata.set(SIDECHANNEL_METADATA_KEY, "1");
      await expect(createClient(Health, channel).check({ service: "" }, { metadata })).rejects.toMatchObject({
        code: grpc.status.INTERNAL,
        details: "open sidechannel: sidechannel: fail to extract mux session: non-multiplexed connection",
      });
    } finally {
      channel.close();
    }
  });

  it("fails when the id is missing or not an int64", async () => {
    await expect(conn.unary(Health.method.check, { service: "" })).rejects.toMatchObject({
      code: grpc.status.INTERNAL,
      details: "open sidechannel: sidechannel: sidechannel-id not found in incoming metadata",
    });
    await expect(
      conn.unary(Health.method.check, { service: "" }, { metadata: { [SIDECHANNEL_METADATA_KEY]: "abc" } }),
    ).rejects.toMatchObject({
      code: grpc.status.INTERNAL,
      details: 'open sidechannel: sidechannel: invalid sidechannel-id "abc"',
    });
  });

  it("is Unavailable (retryable) when the client does not know the id", async () => {
    await expect(
      conn.unary(Health.method.check, { service: "" }, { metadata: { [SIDECHANNEL_METADATA_KEY]: "424242" } }),
    ).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
      details: "open sidechannel: sidechannel: receive confirmation: EOF",
    });
  });

  it("is Unavailable when the client never confirms with ok", async () => {
    // A client that opens the backchannel but ignores every stream the server opens.
    const socket = connect(tcpPort, "127.0.0.1");
    socket.on("error", () => {});
    await once(socket, "connect");
    socket.write("backchannel");
    const session = new YamuxSession(socket, { role: "client", onStream: () => {} });
    const grpcStream = session.open();
    const h2 = http2.connect("http://localhost", { createConnection: () => grpcStream });
    h2.on("error", () => {});
    try {
      const request = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {}));
      await expect(
        unaryCall(h2, methodPath(Health.method.check), request, { [SIDECHANNEL_METADATA_KEY]: "7" }),
      ).rejects.toMatchObject({
        code: grpc.status.UNAVAILABLE,
        details: "open sidechannel: sidechannel: receive confirmation: i/o deadline reached",
      });
    } finally {
      h2.destroy();
      session.destroy();
    }
  });

  it("rejects the special packets 0001-0003 in client data", async () => {
    await expect(
      conn.withSidechannel(
        async (sidechannel) => {
          const reply = sidechannel.readAll().catch(() => Buffer.alloc(0));
          await sidechannel.write("some data");
          sidechannel.rawWritable.write("0001");
          return reply;
        },
        (metadata) => conn.unary(Health.method.check, { service: "" }, { metadata }),
      ),
    ).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: "sidechannel: invalid header 1" });
  });

  it("rejects client data that ends without the flush packet", async () => {
    await expect(
      conn.withSidechannel(
        async (sidechannel) => {
          const reply = sidechannel.readAll().catch(() => Buffer.alloc(0));
          await sidechannel.write("truncated");
          sidechannel.rawWritable.end();
          return reply;
        },
        (metadata) => conn.unary(Health.method.check, { service: "" }, { metadata }),
      ),
    ).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: "sidechannel: unexpected EOF" });
  });

  it("tells the client when the server never opened the sidechannel", async () => {
    await expect(
      conn.withSidechannel(
        async () => "ran",
        (metadata) => conn.unary(Health.method.list, {}, { metadata }),
      ),
    ).rejects.toThrow("sidechannel: callback de-registered without having run");
  });

  it("parses ids and encodes the handshake as upstream does", () => {
    expect(parseSidechannelId("42")).toBe(42n);
    expect(parseSidechannelId("-9223372036854775808")).toBe(-(2n ** 63n));
    expect(parseSidechannelId("9223372036854775808")).toBeUndefined();
    expect(parseSidechannelId("1e3")).toBeUndefined();
    expect(encodeSidechannelHandshake(258n).toString("hex")).toBe(
      `${Buffer.from("sidechannel").toString("hex")}0000000000000102`,
    );
  });
});
