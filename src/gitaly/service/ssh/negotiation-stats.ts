// Counts what a client asked for during fetch negotiation, from the pkt-lines it
// sends to upload-pack (v0 and v2), the way upstream's stats.PackfileNegotiation
// does. Returned as PackfileNegotiationStatistics, counted in the
// packfile_negotiation metrics, and logged to explain why a fetch was expensive.
import { create } from "@bufbuild/protobuf";
import type { Counter, Histogram } from "prom-client";
import { type PackfileNegotiationStatistics, PackfileNegotiationStatisticsSchema } from "../../../gen/packfile_pb.js";
import { PktLineParser } from "../../git/pktline.js";

export interface NegotiationSummary {
  payloadSize: number;
  packets: number;
  caps: string[];
  wants: number;
  haves: number;
  shallows: number;
  deepen: string;
  filter: string;
  /** The protocol v2 command ("fetch", "ls-refs", "bundle-uri"), if any. */
  command: string;
  userAgent: string;
}

export class NegotiationStats {
  private readonly parser = new PktLineParser();
  private readonly s: NegotiationSummary = {
    payloadSize: 0,
    packets: 0,
    caps: [],
    wants: 0,
    haves: 0,
    shallows: 0,
    deepen: "",
    filter: "",
    command: "",
    userAgent: "",
  };
  private capsSeen = false;
  private finished = false;
  /** Why parsing stopped early, if it did. The counts up to there stay valid. */
  error: string | undefined;

  /** Feeds client→server bytes; stops looking after `done` or malformed input. */
  observe(chunk: Buffer): void {
    if (this.finished) return;
    try {
      this.parser.feed(chunk);
      for (let p = this.parser.next(); p; p = this.parser.next()) {
        const data = p.kind === "data" ? p.payload.toString("utf8").replace(/\n$/, "") : "";
        this.s.payloadSize += Buffer.byteLength(data);
        if (data === "done") {
          this.finished = true;
          return;
        }
        this.line(data);
        this.s.packets++;
      }
    } catch (err) {
      this.error = (err as Error).message;
      this.finished = true;
    }
  }

  private line(data: string): void {
    const split = data.split(" ");
    const first = split[0] ?? "";
    if (first.startsWith("command=")) {
      this.s.command = first.slice("command=".length);
      return;
    }
    if (first.startsWith("agent=")) {
      this.s.userAgent = first.slice("agent=".length);
      return;
    }
    const fail = (what: string) => {
      throw new Error(`invalid '${what}' for packet ${this.s.packets}: ${data}`);
    };
    switch (first) {
      case "want":
        if (split.length < 2) fail("want");
        if (split.length > 2 && this.capsSeen) {
          throw new Error(`capabilities announced multiple times in packet ${this.s.packets}: ${data}`);
        }
        this.s.wants++;
        if (split.length > 2) {
          // v0 announces the capabilities once, after the first wanted object.
          this.capsSeen = true;
          this.s.caps = split.slice(2);
          const agent = this.s.caps.find((c) => c.startsWith("agent="));
          if (agent) this.s.userAgent = agent.slice("agent=".length);
        }
        break;
      case "shallow":
        if (split.length !== 2) fail("shallow");
        this.s.shallows++;
        break;
      case "deepen":
      case "deepen-since":
      case "deepen-not":
        if (split.length !== 2) fail("deepen");
        this.s.deepen = data;
        break;
      case "filter":
        if (split.length !== 2) fail("filter");
        this.s.filter = split[1] ?? "";
        break;
      case "have":
        if (split.length !== 2) fail("have");
        this.s.haves++;
        break;
    }
  }

  summary(): NegotiationSummary {
    return { ...this.s, caps: [...this.s.caps] };
  }

  /** Counts the features this negotiation used (upstream's UpdateMetrics). */
  updateMetrics(features: Counter<"git_negotiation_feature">, deepen: Histogram): void {
    const s = this.s;
    if (s.command !== "") features.inc({ git_negotiation_feature: s.command });
    if (s.deepen !== "") features.inc({ git_negotiation_feature: "deepen" });
    if (s.filter !== "") features.inc({ git_negotiation_feature: "filter" });
    if (s.haves > 0) features.inc({ git_negotiation_feature: "have" });
    features.inc({ git_negotiation_feature: "total" });
    const depth = /^deepen (-?\d+)$/.exec(s.deepen)?.[1];
    if (depth !== undefined) deepen.observe(Number(depth));
  }

  toProto(): PackfileNegotiationStatistics {
    const s = this.s;
    return create(PackfileNegotiationStatisticsSchema, {
      payloadSize: BigInt(s.payloadSize),
      packets: BigInt(s.packets),
      caps: s.caps,
      wants: BigInt(s.wants),
      haves: BigInt(s.haves),
      shallows: BigInt(s.shallows),
      deepen: s.deepen,
      filter: s.filter,
    });
  }
}
