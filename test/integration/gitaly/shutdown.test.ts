// SIGTERM drains: a call in flight when the signal arrives completes successfully,
// new connections are refused, and the process exits 0 afterwards.
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import tar from "tar-stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RepositoryService, SetCustomHooksRequestSchema } from "../../../src/gen/repository_pb.js";
import { createClient, grpcMethodDefinition } from "../../../src/shared/grpc/service.js";
import { waitFor } from "../../../src/shared/net.js";
import { type GitalyProcess, metricValue, startGitaly } from "../../harness/gitaly.js";

const TOKEN = "drain-token";

describe("graceful shutdown", () => {
  let gitaly: GitalyProcess;

  beforeAll(async () => {
    gitaly = await startGitaly({ token: TOKEN });
  });
  afterAll(async () => {
    await gitaly?.stop();
  });

  it("finishes the call in flight, refuses new connections, exits 0", async () => {
    const channel = gitaly.channel(TOKEN);
    await createClient(RepositoryService, channel).createRepository({
      repository: { storageName: "default", relativePath: "drain.git" },
    });
    const def = grpcMethodDefinition(RepositoryService.method.setCustomHooks);
    const outcome = new Promise<grpc.ServiceError | null>((resolve) => {
      const call = channel.makeClientStreamRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        new grpc.Metadata(),
        {},
        (err) => resolve(err),
      );
      call.write(
        create(SetCustomHooksRequestSchema, { repository: { storageName: "default", relativePath: "drain.git" } }),
      );
      (async () => {
        // Hold the call open until the server is draining, then finish it.
        await waitFor("shutdown to start", async () => readFileSync(gitaly.logFile, "utf8").includes("shutting down"));
        const pack = tar.pack();
        pack.entry({ name: "custom_hooks/pre-receive", mode: 0o755 }, "#!/bin/sh\nexit 0\n");
        pack.finalize();
        call.write(create(SetCustomHooksRequestSchema, { data: await buffer(pack) }));
        call.end();
      })().catch(() => call.cancel());
    });
    await waitFor("the call to start", async () => {
      const m = await gitaly.metrics();
      return metricValue(m, "grpc_server_started_total", { grpc_method: "SetCustomHooks" }) === 1;
    });
    const port = Number(gitaly.address.split(":")[1]);
    gitaly.proc.child.kill("SIGTERM");

    expect(await outcome).toBeNull();
    expect(existsSync(join(gitaly.storages[0]?.path ?? "", "drain.git", "custom_hooks", "pre-receive"))).toBe(true);
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(false);
      });
      s.once("error", () => resolve(true));
    });
    expect(refused).toBe(true);
    expect(await gitaly.proc.exited).toBe(0);
  });
});
