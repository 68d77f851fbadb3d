// Structured JSON logs (pino). Every request log line carries a correlation id so
// one request can be followed from GitLab through Praefect to a Gitaly node.
import { randomBytes } from "node:crypto";
import pino from "pino";

export type Logger = pino.Logger;
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LoggerOptions {
  level?: LogLevel;
  /** The program, e.g. "gitaly" or "praefect"; added to every line. */
  component: string;
  /** Destination; stderr by default so stdout stays free for command output. */
  destination?: pino.DestinationStream;
}

export function createLogger({ level = "info", component, destination }: LoggerOptions): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, component },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: "msg",
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

/** The gRPC metadata key GitLab (labkit) uses to propagate correlation ids. */
export const CORRELATION_ID_KEY = "x-gitlab-correlation-id";

export function newCorrelationId(): string {
  // Same shape as labkit's: 26 characters of base32-ish randomness is plenty.
  return randomBytes(16).toString("base64url").slice(0, 22);
}
