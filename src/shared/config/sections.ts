// Tables that Gitaly and Praefect configure identically upstream ([auth], [tls], [logging],
// [prometheus]). Field names stay the TOML names; durations become milliseconds.
import { z } from "zod";
import { durationField } from "./duration.js";

/** [auth]: an empty token (and no token_file) disables authentication. */
export function authSection() {
  return z
    .object({
      token: z.string().default(""),
      token_file: z.string().default(""),
      transitioning: z.boolean().default(false),
    })
    .superRefine((auth, ctx) => {
      if (auth.token !== "" && auth.token_file !== "") {
        ctx.addIssue({ code: "custom", path: ["token_file"], message: "token and token_file are mutually exclusive" });
      }
    })
    .prefault({});
}
export type AuthSection = z.output<ReturnType<typeof authSection>>;

export const TLS_VERSIONS = ["TLS 1.2", "TLS 1.3"] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/** [tls]: certificate_path plus key_path (or an inline PEM `key`); min_version "TLS 1.2" | "TLS 1.3". */
export function tlsSection() {
  return z
    .object({
      certificate_path: z.string().default(""),
      key_path: z.string().default(""),
      key: z.string().default(""),
      min_version: z
        .enum(TLS_VERSIONS, {
          error: (issue) => `unsupported TLS version: ${JSON.stringify(issue.input)}`,
        })
        .default("TLS 1.2"),
    })
    .superRefine((tls, ctx) => {
      if (tls.key !== "" && tls.key_path !== "") {
        ctx.addIssue({ code: "custom", path: ["key"], message: "key_path and key cannot both be set" });
        return;
      }
      const hasKey = tls.key !== "" || tls.key_path !== "";
      if (tls.certificate_path !== "" && !hasKey) {
        ctx.addIssue({ code: "custom", path: ["key_path"], message: "not set (certificate_path needs a key)" });
      }
      if (tls.certificate_path === "" && hasKey) {
        ctx.addIssue({ code: "custom", path: ["certificate_path"], message: "not set (a key needs a certificate)" });
      }
    })
    .prefault({});
}
export type TlsSection = z.output<ReturnType<typeof tlsSection>>;

/** True when [tls] names a certificate and key, i.e. a TLS listener can be started. */
export function tlsConfigured(tls: TlsSection): boolean {
  return tls.certificate_path !== "" && (tls.key_path !== "" || tls.key !== "");
}

/** The levels upstream's logger (logrus) accepts. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "warning", "error", "fatal", "panic"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** [logging] fields both programs share; spread them into a program's own logging table. */
export const loggingFields = {
  format: z
    .enum(["text", "json"], { error: (issue) => `invalid logger format ${JSON.stringify(issue.input)}` })
    .default("text"),
  level: z
    .enum(LOG_LEVELS, {
      error: (issue) =>
        `not a valid logrus Level: ${JSON.stringify(issue.input)}, expected one of ${LOG_LEVELS.join(", ")}`,
    })
    .default("info"),
};

/** Upstream's default gRPC latency histogram buckets, in seconds. */
export const DEFAULT_GRPC_LATENCY_BUCKETS: readonly number[] = [
  0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 10.0, 30.0, 60.0, 300.0, 1500.0,
];

function formatGoFloatSlice(values: readonly number[]): string {
  return `[${values.join(" ")}]`;
}

/** [prometheus]: grpc_latency_buckets (strictly ascending seconds), scrape_timeout (ms). */
export function prometheusSection() {
  return z
    .object({
      grpc_latency_buckets: z
        .array(z.number())
        .default([...DEFAULT_GRPC_LATENCY_BUCKETS])
        .superRefine((buckets, ctx) => {
          // Strict: a Prometheus histogram refuses equal neighbouring buckets.
          if (buckets.some((b, i) => i > 0 && b <= (buckets[i - 1] ?? Number.NEGATIVE_INFINITY))) {
            ctx.addIssue({ code: "custom", message: `bad order: expected asc: ${formatGoFloatSlice(buckets)}` });
          }
        }),
      scrape_timeout: durationField().default(10_000),
    })
    .prefault({});
}
export type PrometheusSection = z.output<ReturnType<typeof prometheusSection>>;
