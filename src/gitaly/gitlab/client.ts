// Client of GitLab's internal API for the receive hooks: /allowed (access check),
// /pre_receive and /post_receive (reference counter, post-push messages). Request
// bodies and every error text follow upstream Gitaly (internal/gitlab), because the
// pre-receive hook shows them to the pushing user as "GitLab: <message>".
import { readGitlabSecret } from "../config/environment.js";
import type { GitalyConfig } from "../config/schema.js";
import { type GitlabTransportConfig, type InternalApiResponse, internalApiRequest } from "./http-transport.js";

export interface AllowedParams {
  /** Absolute path of the repository; sent (without quotes) as `project`. */
  repoPath: string;
  relativePath: string;
  /** Quarantine object directory, relative to the repository. */
  gitObjectDirectory: string;
  gitAlternateObjectDirectories: string[];
  glRepository: string;
  /** `user-<n>`, `key-<n>` or `username-<name>`. */
  glId: string;
  /** "http", "ssh" or "web". */
  protocol: string;
  /** The pre-receive hook's stdin: `<old> <new> <ref>` lines. */
  changes: string;
  pushOptions: string[];
}

/** One message GitLab wants printed after a push. */
export interface PostReceiveMessage {
  message: string;
  /** "basic" or "alert". */
  type: string;
}

export interface GitlabCallContext {
  /** The pushing client's address (gRPC metadata `remote_ip`), sent as X-Forwarded-For. */
  remoteIp?: string;
}

export interface GitlabClient {
  /** Asks GitLab whether the push may proceed; API failures throw GitlabApiError. */
  allowed(params: AllowedParams, context?: GitlabCallContext): Promise<{ allowed: boolean; message: string }>;
  /** Increases the repository's reference counter; resolves whether it was increased. */
  preReceive(glRepository: string, context?: GitlabCallContext): Promise<boolean>;
  /** Decreases the reference counter; resolves whether it was decreased, and messages to print. */
  postReceive(
    params: { glRepository: string; glId: string; changes: string; pushOptions: string[] },
    context?: GitlabCallContext,
  ): Promise<{ decreased: boolean; messages: PostReceiveMessage[] }>;
}

/** GitLab answered with an error, or could not be reached; the message is meant for the user. */
export class GitlabApiError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GitlabApiError";
  }
}

/** GitLab answered 429; the RPC fails with ResourceExhausted rather than a hook message. */
export class GitlabRateLimitedError extends Error {
  constructor() {
    super("rate limited");
    this.name = "GitlabRateLimitedError";
  }
}

const GL_ID_NUMBER = /^[0-9]+$/;

/** Go's %q for the few strings that appear in these messages. */
function quote(text: string): string {
  return JSON.stringify(text);
}

/** username/key_id/user_id of the /allowed body, from the gl_id prefix. */
export function glIdFields(glId: string): { username?: string; key_id?: string; user_id?: string } {
  if (glId.startsWith("username-")) return { username: glId.slice("username-".length) };
  let fields: { key_id?: string; user_id?: string } = {};
  let value = "";
  if (glId.startsWith("key-")) {
    value = glId.slice("key-".length);
    fields = { key_id: value };
  } else if (glId.startsWith("user-")) {
    value = glId.slice("user-".length);
    fields = { user_id: value };
  }
  if (!GL_ID_NUMBER.test(value)) throw new Error(`setting gl_id: gl_id=${quote(glId)} is invalid`);
  return fields;
}

/** The `env` field of /allowed: a JSON string, keys sorted as Go's encoder sorts them. */
export function objectDirectoriesEnv(objectDirectory: string, alternates: string[]): string {
  return JSON.stringify({
    GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE: alternates.length > 0 ? alternates : null,
    GIT_OBJECT_DIRECTORY_RELATIVE: objectDirectory,
  });
}

/** The /allowed request body; empty fields are left out like Go's omitempty. */
export function allowedRequestBody(params: AllowedParams): Record<string, unknown> {
  const body: Record<string, unknown> = {
    action: "git-receive-pack",
    gl_repository: params.glRepository,
    project: params.repoPath.replaceAll("'", ""),
    changes: params.changes,
    protocol: params.protocol,
    relative_path: params.relativePath,
    env: objectDirectoriesEnv(params.gitObjectDirectory, params.gitAlternateObjectDirectories),
    ...glIdFields(params.glId),
    push_options: params.pushOptions,
  };
  for (const [key, value] of Object.entries(body)) {
    if (value === "" || (Array.isArray(value) && value.length === 0)) delete body[key];
  }
  return body;
}

/** gitlab-shell's parseError: statuses 200–399 pass; others carry GitLab's `message`. */
function apiError(response: InternalApiResponse): Error | null {
  if (response.status >= 200 && response.status <= 399) return null;
  if (response.status === 429) return new GitlabRateLimitedError();
  try {
    const parsed: unknown = JSON.parse(response.body);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      const message = (parsed as Record<string, unknown>).message;
      return new GitlabApiError(typeof message === "string" ? message : "");
    }
  } catch {
    // Falls through to the generic text, as upstream does for an undecodable body.
  }
  return new GitlabApiError(`Internal API error (${response.status})`);
}

function mediaTypeProblem(response: InternalApiResponse): string | null {
  if (response.mediaType === "") return "mime: no media type";
  if (response.mediaType !== "application/json") return response.mediaType;
  return null;
}

export interface GitlabClientOptions {
  /** The shared secret, already read and trimmed (see readGitlabSecret). */
  secret: string;
  userAgent?: string;
}

export class GitlabHttpClient implements GitlabClient {
  readonly #config: GitlabTransportConfig;
  readonly #options: GitlabClientOptions;

  constructor(config: GitlabTransportConfig, options: GitlabClientOptions) {
    this.#config = config;
    this.#options = options;
  }

  /** POST with gitlab-shell's error handling: unreachable and error statuses throw. */
  async #post(endpoint: string, body: unknown, context: GitlabCallContext): Promise<InternalApiResponse> {
    let response: InternalApiResponse;
    try {
      response = await internalApiRequest(this.#config, {
        method: "POST",
        endpoint,
        body,
        secret: this.#options.secret,
        ...(this.#options.userAgent === undefined ? {} : { userAgent: this.#options.userAgent }),
        ...(context.remoteIp ? { remoteIp: context.remoteIp } : {}),
      });
    } catch (error) {
      throw new GitlabApiError("Internal API unreachable", { cause: error });
    }
    const error = apiError(response);
    if (error) throw error;
    return response;
  }

  async allowed(
    params: AllowedParams,
    context: GitlabCallContext = {},
  ): Promise<{ allowed: boolean; message: string }> {
    const body = allowedRequestBody(params);
    const response = await this.#post("/allowed", body, context);
    if (response.status !== 200 && response.status !== 300) {
      throw new GitlabApiError(`gitlab api is not accessible: ${response.status}`);
    }
    const problem = mediaTypeProblem(response);
    if (problem) throw new GitlabApiError(`/allowed endpoint respond with unsupported content type: ${problem}`);
    let decoded: Record<string, unknown>;
    try {
      decoded = JSON.parse(response.body) as Record<string, unknown>;
    } catch (error) {
      throw new GitlabApiError(`decoding response from /allowed endpoint: ${(error as Error).message}`);
    }
    return {
      allowed: decoded?.status === true,
      message: typeof decoded?.message === "string" ? decoded.message : "",
    };
  }

  async preReceive(glRepository: string, context: GitlabCallContext = {}): Promise<boolean> {
    let response: InternalApiResponse;
    try {
      response = await this.#post("/pre_receive", { gl_repository: glRepository }, context);
    } catch (error) {
      if (error instanceof GitlabRateLimitedError) throw error;
      throw new Error(`http post to gitlab api /pre_receive endpoint: ${(error as Error).message}`, { cause: error });
    }
    if (response.status !== 200) throw new Error(`pre-receive call failed with status: ${response.status}`);
    const problem = mediaTypeProblem(response);
    if (problem) throw new Error(`/pre_receive endpoint respond with unsupported content type: ${problem}`);
    try {
      const decoded = JSON.parse(response.body) as Record<string, unknown> | null;
      return decoded?.reference_counter_increased === true;
    } catch (error) {
      throw new Error(`decoding response from /pre_receive endpoint: ${(error as Error).message}`);
    }
  }

  async postReceive(
    params: { glRepository: string; glId: string; changes: string; pushOptions: string[] },
    context: GitlabCallContext = {},
  ): Promise<{ decreased: boolean; messages: PostReceiveMessage[] }> {
    // Keys in the order Go's encoder writes a map: sorted.
    const body = {
      changes: params.changes,
      gitaly_client_context_bin: null,
      gl_repository: params.glRepository,
      identifier: params.glId,
      push_options: params.pushOptions.length > 0 ? params.pushOptions : null,
    };
    let response: InternalApiResponse;
    try {
      response = await this.#post("/post_receive", body, context);
    } catch (error) {
      if (error instanceof GitlabRateLimitedError) throw error;
      throw new Error(`http post to gitlab api /post_receive endpoint: ${(error as Error).message}`, { cause: error });
    }
    if (response.status !== 200) throw new Error(`post-receive call failed with status: ${response.status}`);
    if (response.mediaType === "") {
      throw new Error("/post_receive endpoint respond with invalid content type: mime: no media type");
    }
    if (response.mediaType !== "application/json") {
      throw new Error(`/post_receive endpoint respond with unsupported content type: ${response.mediaType}`);
    }
    let decoded: Record<string, unknown> | null;
    try {
      decoded = JSON.parse(response.body) as Record<string, unknown> | null;
    } catch (error) {
      throw new Error(`decoding response from /post_receive endpoint: ${(error as Error).message}`);
    }
    const messages = Array.isArray(decoded?.messages)
      ? (decoded.messages as unknown[]).map((m) => {
          const record = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
          return {
            message: typeof record.message === "string" ? record.message : "",
            type: typeof record.type === "string" ? record.type : "",
          };
        })
      : [];
    return { decreased: decoded?.reference_counter_decreased === true, messages };
  }
}

/**
 * The client for `[gitlab]`, or undefined when no url is configured (pushes are then
 * allowed without asking anyone). Reads the secret now, so a missing secret stops startup.
 */
export async function createGitlabClient(
  config: GitalyConfig,
  options: { userAgent?: string } = {},
): Promise<GitlabClient | undefined> {
  if (config.gitlab.url === "") return undefined;
  const secret = await readGitlabSecret(config);
  return new GitlabHttpClient(config, {
    secret,
    ...(options.userAgent === undefined ? {} : { userAgent: options.userAgent }),
  });
}
