// The rotation's environment when Gitaly and Praefect run from files on this machine (the local
// runner's layout): each server's config.toml, whose [auth] transitioning it reloads live; the
// token files the servers and clients re-read when they change; and each server's /metrics.
//
// Every write is atomic (a temporary file in the same directory, synced, renamed over), so a
// server that reloads in the middle never reads half a token or half a config. Files whose
// content would not change are not written at all, so a step that changes nothing reloads nothing.
import { randomBytes } from "node:crypto";
import { chmod, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { parse, stringify } from "smol-toml";
import { z } from "zod";
import type { RotationEnvironment, RotationRecord, RotationStore, TokenPair } from "./driver.js";
import { initialRotationState, ROTATION_PHASES, type RotationState, type ServerRole } from "./machine.js";
import { scrapeTargets } from "./scrape.js";

export interface ServerFiles {
  /** Process name, as the machine reports it. */
  name: string;
  role: ServerRole;
  configPath: string;
  /** http://host:port/metrics */
  metricsUrl: string;
  /**
   * Renders this server's whole config with [auth] transitioning set (from the parameters it was
   * rendered from in the first place). Without it, only that key is edited in the file.
   */
  renderConfig?: (transitioning: boolean) => string;
}

export interface RotationFiles {
  servers: ServerFiles[];
  /** Files holding the internal token: Gitaly's [auth] token_file, Praefect's node token_file. */
  internalTokenFiles: string[];
  /** Files holding the client token: Praefect's [auth] token_file, and the clients' (e.g. the gateway's --token-file). */
  clientTokenFiles: string[];
  scrapeTimeoutMs?: number;
}

/** Writes `text` to `path` through a synced temporary file renamed over it. */
export async function writeFileAtomic(path: string, text: string, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      await fh.writeFile(text);
      // The umask may have narrowed `mode`; a token file must be exactly 0600 (servers check).
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new Error(`writing ${path}: ${(err as Error).message}`);
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`reading ${path}: ${(err as Error).message}`);
  }
}

async function readToken(path: string): Promise<string> {
  const text = await readIfExists(path);
  if (text === undefined) throw new Error(`token file ${path} does not exist`);
  return text.trim();
}

/** Writes a token file (0600) unless it already holds `token`. */
async function putToken(path: string, token: string): Promise<void> {
  const existing = await readIfExists(path);
  if (existing !== undefined && existing.trim() === token) {
    if (((await stat(path)).mode & 0o777) !== 0o600) await chmod(path, 0o600);
    return;
  }
  await writeFileAtomic(path, `${token}\n`, 0o600);
}

type TomlDoc = Record<string, unknown>;

function withTransitioning(doc: TomlDoc, transitioning: boolean): TomlDoc {
  const auth = doc.auth;
  const table = typeof auth === "object" && auth !== null && !Array.isArray(auth) ? (auth as TomlDoc) : {};
  return { ...doc, auth: { ...table, transitioning } };
}

const TABLE_HEADER = /^\s*\[/;
const AUTH_HEADER = /^\s*\[\s*auth\s*\]\s*(#.*)?$/;
const TRANSITIONING_KEY = /^(\s*transitioning\s*=\s*)(true|false)(\s*(#.*)?)$/;
const KEY_LINE = /^\s*[A-Za-z0-9_"'-]/;

/** The line edit: replaces or adds `transitioning` in the [auth] table; undefined when there is no such table. */
function editAuthLine(toml: string, transitioning: boolean): string | undefined {
  const lines = toml.split("\n");
  const start = lines.findIndex((l) => AUTH_HEADER.test(l));
  if (start < 0) return undefined;
  let end = lines.length;
  for (let i = start + 1; i < lines.length; i++) {
    if (TABLE_HEADER.test(lines[i] as string)) {
      end = i;
      break;
    }
  }
  for (let i = start + 1; i < end; i++) {
    const m = TRANSITIONING_KEY.exec(lines[i] as string);
    if (m) {
      lines[i] = `${m[1]}${transitioning}${m[3]}`;
      return lines.join("\n");
    }
  }
  let last = start;
  for (let i = start + 1; i < end; i++) if (KEY_LINE.test(lines[i] as string)) last = i;
  lines.splice(last + 1, 0, `transitioning = ${transitioning}`);
  return lines.join("\n");
}

/**
 * `toml` with [auth] transitioning set. The key's line is edited so that comments and layout
 * stay; the result is parsed and must equal the original document with only that key changed,
 * otherwise (an inline or dotted [auth], a multi-line value) the document is rewritten from its
 * parse, which keeps every setting but not the comments.
 */
export function setAuthTransitioning(toml: string, transitioning: boolean): string {
  const want = withTransitioning(parse(toml) as TomlDoc, transitioning);
  const edited = editAuthLine(toml, transitioning);
  if (edited !== undefined) {
    try {
      const got = parse(edited) as TomlDoc;
      // Both sides through withTransitioning: the parser's tables have their own prototype,
      // which a strict comparison would tell from the plain objects withTransitioning makes.
      const set = (got.auth as TomlDoc | undefined)?.transitioning === transitioning;
      if (set && isDeepStrictEqual(withTransitioning(got, transitioning), want)) return edited;
    } catch {
      // Fall through to the rewrite.
    }
  }
  return `${stringify(want).trimEnd()}\n`;
}

async function putConfig(server: ServerFiles, transitioning: boolean): Promise<void> {
  const existing = await readIfExists(server.configPath);
  if (existing === undefined && !server.renderConfig) {
    throw new Error(`config file ${server.configPath} of ${server.name} does not exist`);
  }
  let next: string;
  try {
    next = server.renderConfig
      ? server.renderConfig(transitioning)
      : setAuthTransitioning(existing as string, transitioning);
  } catch (err) {
    throw new Error(
      `setting [auth] transitioning in ${server.configPath} of ${server.name}: ${(err as Error).message}`,
    );
  }
  if (next === existing) return;
  // A config holds no secret: it keeps whatever mode it was given.
  const mode = existing === undefined ? 0o600 : (await stat(server.configPath)).mode & 0o777;
  await writeFileAtomic(server.configPath, next, mode);
}

/** The rotation environment over config files, token files and metrics endpoints. */
export function fileRotationEnvironment(files: RotationFiles): RotationEnvironment {
  const targets = files.servers.map((s) => ({ name: s.name, role: s.role, url: s.metricsUrl }));
  const putTokens = async (values: TokenPair) => {
    for (const path of files.internalTokenFiles) await putToken(path, values.internal);
    for (const path of files.clientTokenFiles) await putToken(path, values.client);
  };
  const putConfigs = (transitioning: boolean) =>
    Promise.all(files.servers.map((s) => putConfig(s, transitioning))).then(() => {});
  return {
    observe: () => scrapeTargets(targets, files.scrapeTimeoutMs),
    async deliver(d, values) {
      // Tokens change only while every server accepts any token, and enforcement comes back only
      // once the tokens are in place: switch transitioning on before, and off after, the tokens.
      if (d.transitioning) {
        await putConfigs(true);
        await putTokens(values);
      } else {
        await putTokens(values);
        await putConfigs(false);
      }
    },
  };
}

function tokenFileOf(doc: TomlDoc, where: string): string {
  const auth = doc.auth as TomlDoc | undefined;
  const file = auth?.token_file;
  if (typeof file === "string" && file !== "") return file;
  throw new Error(`${where} has no [auth] token_file: a token written inline cannot be rotated from files`);
}

/**
 * The token files the servers' configs name: Gitaly's and Praefect's node token_file (internal),
 * Praefect's [auth] token_file (client). Clients' own token files are not in any config: add them.
 */
export async function tokenFilesOfConfigs(
  servers: readonly Pick<ServerFiles, "name" | "role" | "configPath">[],
): Promise<{ internal: string[]; client: string[] }> {
  const internal = new Set<string>();
  const client = new Set<string>();
  for (const s of servers) {
    const text = await readIfExists(s.configPath);
    if (text === undefined) throw new Error(`config file ${s.configPath} of ${s.name} does not exist`);
    const doc = parse(text) as TomlDoc;
    const where = `${s.configPath} (${s.name})`;
    if (s.role === "gitaly") {
      internal.add(tokenFileOf(doc, where));
      continue;
    }
    client.add(tokenFileOf(doc, where));
    const storages = Array.isArray(doc.virtual_storage) ? (doc.virtual_storage as TomlDoc[]) : [];
    for (const vs of storages) {
      for (const node of Array.isArray(vs.node) ? (vs.node as TomlDoc[]) : []) {
        if (typeof node.token_file !== "string" || node.token_file === "") {
          throw new Error(
            `${where}: node ${JSON.stringify(node.storage)} has no token_file: a token written inline cannot be rotated from files`,
          );
        }
        internal.add(node.token_file);
      }
    }
  }
  return { internal: [...internal], client: [...client] };
}

const tokenPairSchema = z.object({ internal: z.string(), client: z.string() });
const recordSchema = z.object({
  state: z.looseObject({ phase: z.enum(ROTATION_PHASES), generation: z.number().int() }),
  tokens: z
    .object({ current: tokenPairSchema.optional(), old: tokenPairSchema.optional(), new: tokenPairSchema.optional() })
    .optional(),
});

/**
 * The rotation record in a JSON file (0600: during a rotation it holds the old and new tokens).
 * Outside a rotation it holds the state only: the tokens in force are the token files' contents
 * (the first internal and the first client file), so a token replaced by hand is the one a
 * later rotation starts from.
 */
export function fileRotationStore(
  path: string,
  tokenFiles: Pick<RotationFiles, "internalTokenFiles" | "clientTokenFiles">,
  initialGeneration = 1,
): RotationStore {
  const [internalFile] = tokenFiles.internalTokenFiles;
  const [clientFile] = tokenFiles.clientTokenFiles;
  if (internalFile === undefined || clientFile === undefined) {
    throw new Error("the rotation store needs at least one internal and one client token file");
  }
  return {
    async load(): Promise<RotationRecord> {
      const text = await readIfExists(path);
      let state: RotationState = initialRotationState(initialGeneration);
      let stored: z.infer<typeof recordSchema>["tokens"];
      if (text !== undefined) {
        let parsed: z.infer<typeof recordSchema>;
        try {
          const result = recordSchema.safeParse(JSON.parse(text));
          if (!result.success) {
            // Paths only: the values may be tokens.
            throw new Error(`unexpected ${result.error.issues.map((i) => i.path.join(".") || "(root)").join(", ")}`);
          }
          parsed = result.data;
        } catch (err) {
          throw new Error(`reading the rotation record ${path}: ${(err as Error).message}`);
        }
        state = parsed.state as RotationState;
        stored = parsed.tokens;
      }
      if (state.phase === "Stable") {
        return {
          state,
          tokens: { current: { internal: await readToken(internalFile), client: await readToken(clientFile) } },
        };
      }
      if (!stored?.current || !stored.old || !stored.new) {
        throw new Error(`the rotation record ${path} is in phase ${state.phase} but lacks the old or new tokens`);
      }
      return { state, tokens: { current: stored.current, old: stored.old, new: stored.new } };
    },
    async save(record: RotationRecord): Promise<void> {
      const out = record.state.phase === "Stable" ? { state: record.state } : record;
      await writeFileAtomic(path, `${JSON.stringify(out, null, 2)}\n`, 0o600);
    },
  };
}
