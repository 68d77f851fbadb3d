// Renewing Praefect's serving certificate without a restart, on a real Praefect process: its
// [tls] files live in a directory laid out as the kubelet lays out a mounted Secret (the files are
// symlinks through ..data, and a new version is swapped in by renaming ..data), the operator
// writes a renewed certificate from the same CA, and new TLS connections get it while a
// connection opened before keeps its own and keeps answering. A key that does not belong to the
// certificate is refused: new connections keep getting the last good pair, and the log says why
// (naming the files, not their contents).
//
// The harness's startPraefect appends extra TOML after the [[virtual_storage]] tables, where a
// top-level tls_listen_addr cannot go, so this suite writes its own configuration.
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { type ClientHttp2Session, connect as http2Connect } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "../../../src/gen/grpc/health/v1/health_pb.js";
import { freePort, waitFor } from "../../../src/shared/net.js";
import { type ManagedProcess, startProcess } from "../../../src/shared/process.js";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  type IssuedCertificate,
  issueCertificate,
} from "../../../src/shared/tls/certificates.js";
import { freshDatabase, type TestDatabase } from "../../harness/postgres.js";
import { praefectMain } from "../../harness/praefect.js";

const q = (s: string) => JSON.stringify(s);
/** Serials compared as integers: OpenSSL prints them in upper case, the issuer in lower case. */
const serial = (hex: string) => BigInt(`0x${hex}`);

type LogLine = { msg?: string; err?: string; [k: string]: unknown };

/**
 * A directory as the kubelet projects a Secret into a pod: `<key>` -> `..data/<key>`, `..data` ->
 * a timestamped directory holding this version. `project` swaps in a new version atomically.
 */
function secretVolume(dir: string) {
  let version = 0;
  mkdirSync(dir, { recursive: true });
  return {
    path: (key: string) => join(dir, key),
    project(files: Record<string, string>): void {
      const versionDir = `..v${++version}`;
      mkdirSync(join(dir, versionDir));
      for (const [key, content] of Object.entries(files)) {
        writeFileSync(join(dir, versionDir, key), content, { mode: 0o600 });
      }
      symlinkSync(versionDir, join(dir, "..data_tmp"));
      renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
      if (version === 1) for (const key of Object.keys(files)) symlinkSync(join("..data", key), join(dir, key));
    },
  };
}

/** One TLS connection carrying one HTTP/2 session, as a gRPC client opens it. */
interface TlsConnection {
  socket: TLSSocket;
  session: ClientHttp2Session;
  /** The serial number of the certificate the server presented in this connection's handshake. */
  serial(): bigint;
  /** grpc.health.v1.Health/Check over this connection: the serving status. */
  health(): Promise<HealthCheckResponse_ServingStatus>;
}

describe("Praefect reloading its TLS certificate live", () => {
  const work = mkdtempSync(join(tmpdir(), "praefect-tls-reload-"));
  const secret = secretVolume(join(work, "tls"));
  const logFile = join(work, "praefect.log");
  const connections: TlsConnection[] = [];
  let ca: CertificateAuthority;
  let certA: IssuedCertificate;
  let certB: IssuedCertificate;
  let stranger: IssuedCertificate;
  let db: TestDatabase;
  let proc: ManagedProcess | undefined;
  let tlsPort = 0;

  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const logLines = (): LogLine[] =>
    log()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as LogLine);
  const reloadFailures = () => logLines().filter((l) => l.msg?.startsWith("TLS certificate reload failed"));

  const connectTls = async (): Promise<TlsConnection> => {
    const socket = tlsConnect({ host: "127.0.0.1", port: tlsPort, ca: ca.certificate, ALPNProtocols: ["h2"] });
    await once(socket, "secureConnect");
    const session = http2Connect(`https://127.0.0.1:${tlsPort}`, { createConnection: () => socket });
    session.on("error", () => undefined);
    const connection: TlsConnection = {
      socket,
      session,
      serial: () => serial(socket.getPeerCertificate().serialNumber),
      async health() {
        const request = session.request({
          ":method": "POST",
          ":path": "/grpc.health.v1.Health/Check",
          "content-type": "application/grpc",
          te: "trailers",
        });
        const message = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service: "" }));
        const frame = Buffer.alloc(5 + message.length);
        frame.writeUInt32BE(message.length, 1);
        Buffer.from(message).copy(frame, 5);
        request.end(frame);
        const chunks: Buffer[] = [];
        request.on("data", (chunk: Buffer) => chunks.push(chunk));
        const [trailers] = (await once(request, "trailers")) as [Record<string, string>];
        await once(request, "close");
        if (trailers["grpc-status"] !== "0") {
          throw new Error(`Health/Check: grpc-status ${trailers["grpc-status"]}: ${trailers["grpc-message"]}`);
        }
        const body = Buffer.concat(chunks);
        return fromBinary(HealthCheckResponseSchema, body.subarray(5, 5 + body.readUInt32BE(1))).status;
      },
    };
    connections.push(connection);
    return connection;
  };

  beforeAll(async () => {
    ca = await createCertificateAuthority("praefect-tls-reload-ca");
    const leaf = () => issueCertificate(ca, { commonName: "praefect", hosts: ["127.0.0.1"] });
    [certA, certB, stranger] = await Promise.all([leaf(), leaf(), leaf()]);
    secret.project({ "tls.crt": certA.certificate, "tls.key": certA.privateKey });

    db = await freshDatabase("praefect_tls_reload");
    const pg = inject("postgres");
    const [port, metricsPort, nodePort] = await Promise.all([freePort(), freePort(), freePort()]);
    tlsPort = await freePort();
    const configPath = join(work, "config.toml");
    writeFileSync(
      configPath,
      [
        `listen_addr = ${q(`127.0.0.1:${port}`)}`,
        `tls_listen_addr = ${q(`tls://127.0.0.1:${tlsPort}`)}`,
        `prometheus_listen_addr = ${q(`127.0.0.1:${metricsPort}`)}`,
        `graceful_stop_timeout = "5s"`,
        "",
        "[tls]",
        `certificate_path = ${q(secret.path("tls.crt"))}`,
        `key_path = ${q(secret.path("tls.key"))}`,
        "",
        "[auth]",
        `token = "praefect-tls-reload-token"`,
        "",
        "[logging]",
        `format = "json"`,
        `level = "info"`,
        "",
        "[database]",
        `host = ${q(pg.host)}`,
        `port = ${pg.port}`,
        `user = ${q(pg.user)}`,
        `password = ${q(pg.password)}`,
        `dbname = ${q(db.name)}`,
        `sslmode = "disable"`,
        "",
        "[[virtual_storage]]",
        `name = "default"`,
        "",
        // No Gitaly answers there: this suite talks only to Praefect's own health service.
        "[[virtual_storage.node]]",
        `storage = "gitaly-1"`,
        `address = ${q(`tcp://127.0.0.1:${nodePort}`)}`,
        `token = "node-token"`,
        "",
      ].join("\n"),
    );
    proc = startProcess(process.execPath, [praefectMain, "-config", configPath, "serve"], {
      logFile,
      env: { ...process.env, PRAEFECT_AUTO_MIGRATE: "1" },
    });
    const started = proc;
    await waitFor(
      "praefect to serve over TLS",
      async () => {
        if (started.child.exitCode !== null) {
          throw new Error(`praefect exited with ${started.child.exitCode}:\n${log().slice(-3000)}`);
        }
        const probe = await connectTls();
        try {
          return (await probe.health()) === HealthCheckResponse_ServingStatus.SERVING;
        } finally {
          probe.session.close();
        }
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  });

  afterAll(async () => {
    for (const c of connections) {
      c.session.destroy();
      c.socket.destroy();
    }
    await proc?.stop("SIGTERM", 15_000);
    await db?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it("serves a renewed certificate to new connections, keeps live ones, and refuses a mismatched key", async () => {
    const before = await connectTls();
    expect(before.serial()).toBe(serial(certA.serialNumber));
    expect(await before.health()).toBe(HealthCheckResponse_ServingStatus.SERVING);

    // The renewed certificate, from the same CA, swapped in the way the kubelet does it.
    secret.project({ "tls.crt": certB.certificate, "tls.key": certB.privateKey });
    const renewed = await waitFor(
      "a new TLS connection to get certificate B",
      async () => {
        const c = await connectTls();
        if (c.serial() === serial(certB.serialNumber)) return c;
        c.session.close();
        return false;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(await renewed.health()).toBe(HealthCheckResponse_ServingStatus.SERVING);

    // The connection opened before the swap is the same one, with its handshake's certificate, and answers.
    expect(before.socket.destroyed).toBe(false);
    expect(before.serial()).toBe(serial(certA.serialNumber));
    expect(await before.health()).toBe(HealthCheckResponse_ServingStatus.SERVING);

    const reloaded = logLines().find((l) => l.msg?.startsWith("reloaded TLS certificate"));
    expect(reloaded).toMatchObject({
      certificate_path: secret.path("tls.crt"),
      not_after: certB.notAfter.toISOString(),
      previous_not_after: certA.notAfter.toISOString(),
    });
    expect(serial(String(reloaded?.serial))).toBe(serial(certB.serialNumber));
    expect(serial(String(reloaded?.previous_serial))).toBe(serial(certA.serialNumber));

    // A half-done swap: certificate B with a key that is not B's.
    const failuresBefore = reloadFailures().length;
    secret.project({ "tls.crt": certB.certificate, "tls.key": stranger.privateKey });
    const failure = await waitFor(
      "Praefect to log the refused key pair",
      async () => reloadFailures()[failuresBefore],
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(failure).toMatchObject({
      certificate_path: secret.path("tls.crt"),
      key_path: secret.path("tls.key"),
      err: `TLS key ${secret.path("tls.key")} does not belong to the certificate ${secret.path("tls.crt")}`,
    });
    expect(serial(String(failure.serial))).toBe(serial(certB.serialNumber));

    const afterRefusal = await connectTls();
    expect(afterRefusal.serial()).toBe(serial(certB.serialNumber));
    expect(await afterRefusal.health()).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(await before.health()).toBe(HealthCheckResponse_ServingStatus.SERVING);

    // No key material reaches the log, from any of the three keys.
    const keyBodies = [certA, certB, stranger].map((c) => c.privateKey.split("\n")[1] ?? "");
    const text = log();
    expect(text).not.toContain("PRIVATE KEY");
    for (const body of keyBodies) expect(text).not.toContain(body.slice(0, 24));
    expect(proc?.child.exitCode).toBeNull();
  });
});
