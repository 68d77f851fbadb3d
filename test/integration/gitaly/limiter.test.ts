// [[concurrency]] limits against a running Gitaly process: with max_concurrency 1 and
// max_queue_size 1 on one repository, a third concurrent call is refused at once with
// ResourceExhausted and a LimitError detail, and the limiter's metrics show the state.
//
// The limited RPC is SetCustomHooks, a client stream: the limiter admits it on its
// first message (which names the repository) and the call then holds its slot until
// the client sends the rest, so the test decides exactly when each call ends.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { create, fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LimitErrorSchema } from "../../../src/gen/errors_pb.js";
import { StatusSchema } from "../../../src/gen/google/rpc/status_pb.js";
import { RepositoryService, SetCustomHooksRequestSchema } from "../../../src/gen/repository_pb.js";
import { grpcMethodDefinition } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { createEmptyRepository } from "../../harness/git-fixtures.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";

const RPC = "/gitaly.RepositoryService/SetCustomHooks";
const LABELS = { grpc_service: "gitaly.RepositoryService", grpc_method: "SetCustomHooks" };
const HOOK = "#!/bin/sh\nexit 0\n";

async function hooksTar(): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name: "custom_hooks/", type: "directory", mode: 0o755 });
  pack.entry({ name: "custom_hooks/pre-receive", mode: 0o755 }, HOOK);
  pack.finalize();
  return buffer(pack);
}

interface OpenCall {
  /** Settles with the call's outcome; never rejects (a rejection is the `error`). */
  readonly outcome: Promise<{ error?: grpc.ServiceError }>;
  /** Sends the archive and half-closes: the server installs the hooks and answers. */
  finish(archive: Buffer): void;
}

/** Starts SetCustomHooks on `relativePath` and sends only the first message. */
function openSetCustomHooks(channel: grpc.Client, relativePath: string): OpenCall {
  const def = grpcMethodDefinition(RepositoryService.method.setCustomHooks);
  let settle: (r: { error?: grpc.ServiceError }) => void = () => {};
  const outcome = new Promise<{ error?: grpc.ServiceError }>((resolve) => {
    settle = resolve;
  });
  const call = channel.makeClientStreamRequest(
    def.path,
    def.requestSerialize,
    def.responseDeserialize,
    new grpc.Metadata(),
    {},
    (error) => settle(error ? { error } : {}),
  );
  call.write(create(SetCustomHooksRequestSchema, { repository: { storageName: "default", relativePath } }));
  return {
    outcome,
    finish(archive) {
      call.write(create(SetCustomHooksRequestSchema, { data: archive }));
      call.end();
    },
  };
}

describe("Gitaly concurrency limiting", () => {
  let gitaly: GitalyProcess;
  let storage: string;
  let archive: Buffer;

  beforeAll(async () => {
    archive = await hooksTar();
    gitaly = await startGitaly({
      extraToml: [
        "[[concurrency]]",
        `rpc = "${RPC}"`,
        "max_concurrency = 1",
        "max_queue_size = 1",
        // Generous: the queued call must never time out while the test looks at it.
        `max_queue_wait = "5m"`,
      ].join("\n"),
    });
    storage = gitaly.storages[0]?.path ?? "";
    for (const name of ["limited.git", "other.git"]) createEmptyRepository(join(storage, name));
  });
  afterAll(async () => {
    await gitaly?.stop();
  });

  const gauges = async () => {
    const m = await gitaly.metrics();
    return {
      inProgress: metricValue(m, "gitaly_concurrency_limiting_in_progress", LABELS),
      queued: metricValue(m, "gitaly_concurrency_limiting_queued", LABELS),
    };
  };
  const waitForGauges = (want: { inProgress: number; queued: number }) =>
    waitFor(
      `limiter gauges ${JSON.stringify(want)}`,
      async () => {
        const got = await gauges();
        return got.inProgress === want.inProgress && got.queued === want.queued;
      },
      { intervalMs: 10 },
    );

  it("runs one call per repository, queues one, and refuses the next with a LimitError", async () => {
    const channel = gitaly.channel();
    expect(await gauges()).toEqual({ inProgress: 0, queued: 0 });

    const first = openSetCustomHooks(channel, "limited.git");
    await waitForGauges({ inProgress: 1, queued: 0 });

    // The limit is per repository: another one is not held up by the first.
    const elsewhere = openSetCustomHooks(channel, "other.git");
    elsewhere.finish(archive);
    expect(await elsewhere.outcome).toEqual({});
    await waitForGauges({ inProgress: 1, queued: 0 });

    const second = openSetCustomHooks(channel, "limited.git");
    await waitForGauges({ inProgress: 1, queued: 1 });

    const third = openSetCustomHooks(channel, "limited.git");
    third.finish(archive);
    const { error } = await third.outcome;
    expect(error).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: "maximum queue size reached" });
    const statusBin = error?.metadata.get("grpc-status-details-bin")[0];
    expect(Buffer.isBuffer(statusBin)).toBe(true);
    const status = fromBinary(StatusSchema, statusBin as Buffer);
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.message).toBe("maximum queue size reached");
    expect(status.details).toHaveLength(1);
    const limitError = status.details[0] && anyUnpack(status.details[0], LimitErrorSchema);
    expect(limitError?.errorMessage).toBe("maximum queue size reached");
    expect(limitError?.retryAfter).toMatchObject({ seconds: 0n, nanos: 0 });

    // Refusing the third changed nothing for the other two.
    expect(await gauges()).toEqual({ inProgress: 1, queued: 1 });
    expect(existsSync(join(storage, "limited.git", "custom_hooks"))).toBe(false);

    first.finish(archive);
    expect(await first.outcome).toEqual({});
    // The queued call moves up into the free slot.
    await waitForGauges({ inProgress: 1, queued: 0 });
    second.finish(archive);
    expect(await second.outcome).toEqual({});
    await waitForGauges({ inProgress: 0, queued: 0 });
    expect(readFileSync(join(storage, "limited.git", "custom_hooks", "pre-receive"), "utf8")).toBe(HOOK);

    const m = await gitaly.metrics();
    expect(metricValue(m, "gitaly_requests_dropped_total", { ...LABELS, reason: "max_size" })).toBe(1);
    expect(metricValue(m, "gitaly_requests_dropped_total", LABELS)).toBe(1);
    // Three calls were admitted: two on limited.git, one on other.git.
    expect(metricValue(m, "gitaly_concurrency_limiting_acquiring_seconds_count", LABELS)).toBe(3);
    expect(metricValue(m, "grpc_server_handled_total", { ...LABELS, grpc_code: "ResourceExhausted" })).toBe(1);
    expect(metricValue(m, "grpc_server_handled_total", { ...LABELS, grpc_code: "OK" })).toBe(3);
  });
});
