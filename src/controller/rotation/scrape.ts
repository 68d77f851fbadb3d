// Observing a server for the rotation: its /metrics, reduced to what the state machine needs.
import type { ProcessSample, ServerRole } from "./machine.js";

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(v: string): string {
  return v.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
}

/** Samples of the Prometheus text format (comments and malformed lines skipped). */
export function parsePrometheusText(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(LABEL)) labels[l[1] as string] = unescapeLabel(l[2] as string);
    out.push({ name: m[1] as string, labels, value });
  }
  return out;
}

/** The rotation-relevant view of one server's metrics. */
export function sampleFromMetrics(name: string, role: ServerRole, text: string): ProcessSample {
  const samples = parsePrometheusText(text);
  const info = samples.find((s) => s.name === "gitaly_auth_token_info" && s.value === 1);
  const authCounts: Record<string, number> = {};
  for (const s of samples) {
    if (s.name !== "gitaly_authentications_total") continue;
    const key = `${s.labels.enforced ?? "?"}/${s.labels.status ?? "?"}`;
    authCounts[key] = (authCounts[key] ?? 0) + s.value;
  }
  const presented = samples
    .filter((s) => s.name === "gitaly_praefect_node_token_info" && s.value === 1)
    .map((s) => s.labels.generation ?? "");
  return {
    name,
    role,
    reachable: true,
    ...(info?.labels.generation !== undefined ? { servedGeneration: info.labels.generation } : {}),
    ...(info?.labels.transitioning !== undefined ? { transitioning: info.labels.transitioning === "true" } : {}),
    ...(role === "praefect" ? { presentedGenerations: presented } : {}),
    authCounts,
  };
}

export interface ScrapeTarget {
  name: string;
  role: ServerRole;
  /** http://host:port/metrics */
  url: string;
}

/** Fetches every target's metrics; an unreachable one is reported, never thrown. */
export async function scrapeTargets(targets: readonly ScrapeTarget[], timeoutMs = 5_000): Promise<ProcessSample[]> {
  return Promise.all(
    targets.map(async (t): Promise<ProcessSample> => {
      try {
        const res = await fetch(t.url, { signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return sampleFromMetrics(t.name, t.role, await res.text());
      } catch (err) {
        const e = err as { cause?: { code?: string }; message?: string };
        return {
          name: t.name,
          role: t.role,
          reachable: false,
          error: e.cause?.code ?? e.message ?? String(err),
          authCounts: {},
        };
      }
    }),
  );
}
