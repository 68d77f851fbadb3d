// Live reload of a running Gitaly process: the token file, [auth] transitioning and the
// TLS key pair change under it (written the way a kubelet or config tool writes them:
// a temp file renamed into place) and it applies them without restarting, while a
// client keeps calling. Also: SIGHUP reloads and does not kill it.
import { X509Certificate } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RepositoryService } from "../../../src/gen/repository_pb.js";
import { ServerService } from "../../../src/gen/server_pb.js";
import { tokenGeneration } from "../../../src/gitaly/auth/authenticator.js";
import { authMetadata, v2AuthInterceptor } from "../../../src/shared/auth/v2-token.js";
import { createClient } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import {
  type CertificateAuthority,
  createCertificateAuthority,
  issueCertificate,
} from "../../../src/shared/tls/certificates.js";
import { createEmptyRepository } from "../../harness/git-fixtures.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";

const TOKEN_A = "token-generation-a";
const TOKEN_B = "token-generation-b";
const REPO = { storageName: "default", relativePath: "reload.git" };

/** Replaces a file the way a kubelet updates a mounted Secret: the new content appears at once. */
function replaceFile(path: string, content: string): void {
  writeFileSync(`${path}.incoming`, content, { mode: 0o600 });
  renameSync(`${path}.incoming`, path);
}

/** Waits until the server reports serving `token` with the given transitioning flag. */
async function waitForTokenInfo(gitaly: GitalyProcess, token: string, transitioning: boolean): Promise<void> {
  const labels = { generation: tokenGeneration(token), transitioning: String(transitioning) };
  await waitFor(
    `gitaly_auth_token_info${JSON.stringify(labels)}`,
    async () => metricValue(await gitaly.metrics(), "gitaly_auth_token_info", labels) === 1,
    { timeoutMs: 20_000, intervalMs: 20 },
  );
}

/** The `msg` of every JSON log line the process wrote so far. */
function logMessages(gitaly: GitalyProcess): string[] {
  return readFileSync(gitaly.logFile, "utf8")
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => String((JSON.parse(line) as { msg?: unknown }).msg ?? ""));
}

/** Evidence the process never restarted: alive, same start time, started exactly once. */
async function expectNotRestarted(gitaly: GitalyProcess, startTime: number): Promise<void> {
  expect(gitaly.proc.child.exitCode).toBeNull();
  expect(gitaly.proc.child.signalCode).toBeNull();
  expect(() => process.kill(gitaly.proc.pid, 0)).not.toThrow();
  expect(metricValue(await gitaly.metrics(), "process_start_time_seconds")).toBe(startTime);
  expect(logMessages(gitaly).filter((m) => m === "gitaly started")).toHaveLength(1);
}

/**
 * Releases a client's calls in steps: at most `quota` calls may start in one step, so
 * the client cannot run ahead of the reconfiguration it is meant to overlap with, and
 * no call ever waits on a timer.
 */
class Pacer {
  step = 0;
  readonly completed: number[] = [0];
  #startedInStep = 0;
  #open: () => void = () => {};
  #gate = new Promise<void>((resolve) => {
    this.#open = resolve;
  });

  constructor(private quota: number) {}

  /** Resolves with the step the call starts in, once the step has room for it. */
  async admit(): Promise<number> {
    while (this.#startedInStep >= this.quota) await this.#gate;
    this.#startedInStep++;
    return this.step;
  }

  finished(step: number): void {
    this.completed[step] = (this.completed[step] ?? 0) + 1;
  }

  advance(quota = this.quota): void {
    this.step++;
    this.completed[this.step] = 0;
    this.#startedInStep = 0;
    this.quota = quota;
    const open = this.#open;
    this.#gate = new Promise<void>((resolve) => {
      this.#open = resolve;
    });
    open();
  }

  async waitCompleted(count: number): Promise<void> {
    const step = this.step;
    await waitFor(`${count} calls to complete in step ${step}`, async () => (this.completed[step] ?? 0) >= count, {
      timeoutMs: 30_000,
      intervalMs: 5,
    });
  }
}

interface Failure {
  step: number;
  error: unknown;
}

/** Runs `total` calls, `concurrency` at a time, each admitted by the pacer; collects failures. */
async function drive(
  total: number,
  concurrency: number,
  pacer: Pacer,
  call: () => Promise<void>,
): Promise<{ failures: Failure[]; perStep: number[] }> {
  let issued = 0;
  const failures: Failure[] = [];
  const perStep: number[] = [];
  const worker = async () => {
    while (issued < total) {
      issued++;
      const step = await pacer.admit();
      perStep[step] = (perStep[step] ?? 0) + 1;
      try {
        await call();
      } catch (error) {
        failures.push({ step, error });
      } finally {
        pacer.finished(step);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { failures, perStep };
}

describe("Gitaly token rotation under load", () => {
  let gitaly: GitalyProcess;

  afterEach(async () => {
    await gitaly?.stop();
  });

  async function start(): Promise<{
    repository: ReturnType<typeof createClient<(typeof RepositoryService)["method"]>>;
    startTime: number;
  }> {
    gitaly = await startGitaly({ token: TOKEN_A });
    createEmptyRepository(join(gitaly.storages[0]?.path ?? "", REPO.relativePath));
    const repository = createClient(RepositoryService, gitaly.channel(""));
    return { repository, startTime: metricValue(await gitaly.metrics(), "process_start_time_seconds") };
  }

  it("swaps the token file while a client makes 1,000 authenticated calls, and none fails", async () => {
    const { repository, startTime } = await start();
    expect(startTime).toBeGreaterThan(0);
    const pid = gitaly.proc.pid;
    let clientToken = TOKEN_A;
    const exists = async (token: string) => {
      const res = await repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(token) });
      if (!res.exists) throw new Error("repository reported missing");
    };

    // Steps 0-2 may start at most 250 calls each, so every step sees calls and the
    // last step (all remaining, at least 250) runs entirely on the new settings.
    const pacer = new Pacer(250);
    const load = drive(1000, 10, pacer, () => exists(clientToken));

    // Step 0: token A enforced. Then (a) switch on transitioning.
    await pacer.waitCompleted(100);
    gitaly.writeConfig({ transitioning: true });
    await waitForTokenInfo(gitaly, TOKEN_A, true);
    pacer.advance();

    // Step 1: token A, transitioning. Then (b) the kubelet swaps in token B.
    await pacer.waitCompleted(100);
    replaceFile(gitaly.tokenFile, `${TOKEN_B}\n`);
    await waitForTokenInfo(gitaly, TOKEN_B, true);
    // Clients that have not switched yet keep working while transitioning.
    await exists(TOKEN_A);
    clientToken = TOKEN_B;
    pacer.advance();

    // Step 2: token B, transitioning. Then (c) enforce again.
    await pacer.waitCompleted(100);
    gitaly.writeConfig({ transitioning: false });
    await waitForTokenInfo(gitaly, TOKEN_B, false);
    pacer.advance(Number.POSITIVE_INFINITY);

    const { failures, perStep } = await load;
    expect(failures).toEqual([]);
    expect(perStep.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(perStep).toHaveLength(4);
    for (const n of perStep) expect(n).toBeGreaterThanOrEqual(100);

    // Afterwards only token B opens the door.
    await exists(TOKEN_B);
    await expect(exists(TOKEN_A)).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: wrong hmac signature",
    });

    expect(gitaly.proc.pid).toBe(pid);
    await expectNotRestarted(gitaly, startTime);

    const m = await gitaly.metrics();
    const count = (enforced: string, status: string) =>
      metricValue(m, "gitaly_authentications_total", { enforced, status });
    // Enforced and accepted: steps 0 and 3 (and the final token B call).
    expect(count("true", "ok")).toBeGreaterThanOrEqual(1 + 100 + 250);
    // Transitioning with the right token: at least steps 1 and 2.
    expect(count("false", "would be ok")).toBeGreaterThanOrEqual(200);
    // Transitioning with the old token after the swap: at least the explicit call.
    expect(count("false", "denied")).toBeGreaterThanOrEqual(1);
    // Enforced and rejected: only the final token A call.
    expect(count("true", "denied")).toBe(1);
    expect(metricValue(m, "gitaly_authentications_total", { status: "unauthenticated" })).toBe(0);
    // Every call was counted exactly once: 1,000 + the explicit old-token call + the final two.
    expect(metricValue(m, "gitaly_authentications_total")).toBe(1003);
  });

  it("accepts the new token as soon as its generation is reported, without transitioning", async () => {
    const { repository, startTime } = await start();
    await repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(TOKEN_A) });

    replaceFile(gitaly.tokenFile, TOKEN_B);
    await waitForTokenInfo(gitaly, TOKEN_B, false);

    const res = await repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(TOKEN_B) });
    expect(res.exists).toBe(true);
    await expect(
      repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(TOKEN_A) }),
    ).rejects.toMatchObject({
      code: grpc.status.PERMISSION_DENIED,
      details: "permission denied: wrong hmac signature",
    });
    await expectNotRestarted(gitaly, startTime);
  });

  it("reloads on SIGHUP and keeps running", async () => {
    const { repository, startTime } = await start();
    const requested = () => logMessages(gitaly).filter((m) => m === "reload requested").length;
    expect(requested()).toBe(0);

    // Nothing changed: a reload is harmless.
    gitaly.proc.child.kill("SIGHUP");
    await waitFor("the SIGHUP reload", async () => requested() === 1, { intervalMs: 20 });
    await waitForTokenInfo(gitaly, TOKEN_A, false);
    await repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(TOKEN_A) });

    replaceFile(gitaly.tokenFile, TOKEN_B);
    gitaly.proc.child.kill("SIGHUP");
    await waitFor("the second SIGHUP reload", async () => requested() === 2, { intervalMs: 20 });
    await waitForTokenInfo(gitaly, TOKEN_B, false);
    const res = await repository.repositoryExists({ repository: REPO }, { metadata: authMetadata(TOKEN_B) });
    expect(res.exists).toBe(true);
    await expectNotRestarted(gitaly, startTime);
  });
});

/** Opens a bare TLS connection (as a gRPC client would: ALPN h2) and reports what the server presented. */
function handshake(address: string): Promise<{ fingerprint256: string; alpn: string | false }> {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port: Number(port), ALPNProtocols: ["h2"], rejectUnauthorized: false }, () => {
      const result = { fingerprint256: socket.getPeerCertificate().fingerprint256, alpn: socket.alpnProtocol ?? false };
      socket.destroy();
      resolve(result);
    });
    socket.once("error", reject);
  });
}

describe("Gitaly TLS certificate rotation", () => {
  const TOKEN = "tls-token";
  let caA: CertificateAuthority;
  let gitaly: GitalyProcess;
  const clients: grpc.Client[] = [];

  const tlsClient = (ca: CertificateAuthority) => {
    const c = new grpc.Client(gitaly.tlsAddress ?? "", grpc.credentials.createSsl(Buffer.from(ca.certificate)), {
      interceptors: [v2AuthInterceptor(TOKEN)],
    });
    clients.push(c);
    return createClient(ServerService, c);
  };

  beforeAll(async () => {
    caA = await createCertificateAuthority("gitaly test CA A");
    gitaly = await startGitaly({ token: TOKEN, tlsCa: caA });
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await gitaly?.stop();
  });

  it("serves new handshakes with the new key pair while established connections keep working", async () => {
    const certFile = gitaly.tlsCertFile ?? "";
    const keyFile = gitaly.tlsKeyFile ?? "";
    const startTime = metricValue(await gitaly.metrics(), "process_start_time_seconds");
    const fingerprintA = new X509Certificate(readFileSync(certFile)).fingerprint256;

    const established = tlsClient(caA);
    expect((await established.serverInfo({})).storageStatuses).toHaveLength(1);
    expect(await handshake(gitaly.tlsAddress ?? "")).toEqual({ fingerprint256: fingerprintA, alpn: "h2" });

    const caB = await createCertificateAuthority("gitaly test CA B");
    const leafB = await issueCertificate(caB, { commonName: "gitaly", hosts: ["127.0.0.1", "localhost"] });
    const fingerprintB = new X509Certificate(leafB.certificate).fingerprint256;
    expect(fingerprintB).not.toBe(fingerprintA);

    // Half a swap (the new key, the old certificate) is refused; handshakes keep the old pair.
    replaceFile(keyFile, leafB.privateKey);
    await waitFor("the mismatched key pair to be refused", async () =>
      logMessages(gitaly).some((m) => m.startsWith("reload failed")),
    );
    expect(await handshake(gitaly.tlsAddress ?? "")).toEqual({ fingerprint256: fingerprintA, alpn: "h2" });

    replaceFile(certFile, leafB.certificate);

    await waitFor(
      "new handshakes to present the new certificate",
      async () => (await handshake(gitaly.tlsAddress ?? "")).fingerprint256 === fingerprintB,
      { timeoutMs: 20_000, intervalMs: 20 },
    );
    // ALPN survives the swap, or no gRPC client could connect.
    expect((await handshake(gitaly.tlsAddress ?? "")).alpn).toBe("h2");

    // The established connection (which trusts only CA A) still carries calls: no new
    // connection is made, since a new one would be refused.
    const connections = async () => metricValue(await gitaly.metrics(), "gitaly_connections_total", { type: "tls" });
    const before = await connections();
    expect((await established.serverInfo({})).storageStatuses).toHaveLength(1);
    expect(await connections()).toBe(before);

    await expect(tlsClient(caA).serverInfo({}, { deadline: Date.now() + 10_000 })).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
    expect((await tlsClient(caB).serverInfo({})).storageStatuses).toHaveLength(1);
    await expectNotRestarted(gitaly, startTime);
  });
});
