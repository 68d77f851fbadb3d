// GetSnapshot: a tar of what another node needs to recreate the repository: HEAD,
// refs, objects (only real object and pack files), shallow, and the parts of the
// config that define the repository format. Replication builds new replicas from it.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { type GetSnapshotRequest, GetSnapshotResponseSchema } from "../../../gen/repository_pb.js";
import { collectEntries, packEntries, type TarEntrySource } from "../../archive/tar.js";
import type { RepositoryServiceDeps } from "./deps.js";

const OBJECT_FILES = [
  /^objects\/[0-9a-f]{2}\/[0-9a-f]{38}$/,
  /^objects\/[0-9a-f]{2}\/[0-9a-f]{62}$/,
  /^objects\/pack\/pack-[0-9a-f]{40}\.(pack|idx)$/,
  /^objects\/pack\/pack-[0-9a-f]{64}\.(pack|idx)$/,
];

/** Keeps [core] repositoryformatversion and all of [extensions] (e.g. objectformat). */
export function filterGitConfig(config: string): string {
  const out: string[] = [];
  let section = "";
  for (const line of config.split("\n")) {
    const trimmed = line.trim();
    if (trimmed.startsWith("[")) {
      const end = trimmed.indexOf("]");
      if (end !== -1) section = trimmed.slice(1, end).split(" ")[0]?.toLowerCase() ?? "";
    }
    if (section === "core") {
      if (trimmed.startsWith("[") || trimmed.toLowerCase().includes("repositoryformatversion")) out.push(line);
    } else if (section === "extensions") {
      out.push(line);
    }
  }
  return out.length === 0 ? "" : `${out.join("\n")}\n`;
}

export async function* getSnapshot(deps: RepositoryServiceDeps, req: GetSnapshotRequest) {
  const repoPath = deps.locator.repositoryPath(req.repository);
  const entries: TarEntrySource[] = [];
  for (const top of ["HEAD", "packed-refs", "shallow"]) {
    entries.push(...(await collectEntries(repoPath, { filter: (p) => p === top })));
  }
  for (const dir of ["refs", "branches"]) {
    entries.push(...(await collectEntries(repoPath, { filter: (p) => p === dir || p.startsWith(`${dir}/`) })));
  }
  entries.push(
    ...(await collectEntries(repoPath, {
      filter: (p, isDir) =>
        isDir ? p === "objects" || p.startsWith("objects/") : OBJECT_FILES.some((re) => re.test(p)),
    })),
  );
  const extra: { name: string; data: Buffer }[] = [];
  try {
    const filtered = filterGitConfig(await readFile(join(repoPath, "config"), "utf8"));
    if (filtered) extra.push({ name: "config", data: Buffer.from(filtered) });
  } catch {
    // A repository without config is still a snapshot of its refs and objects.
  }
  for await (const chunk of packEntries(entries, extra)) {
    yield create(GetSnapshotResponseSchema, { data: chunk as Buffer });
  }
}
