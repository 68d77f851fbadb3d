// Counts what a client asked for during fetch negotiation, from the pkt-lines it
// sends to upload-pack (v0 and v2). Returned as PackfileNegotiationStatistics and
// useful in logs to explain why a fetch was expensive.
import { create } from "@bufbuild/protobuf";
import { type PackfileNegotiationStatistics, PackfileNegotiationStatisticsSchema } from "../../../gen/packfile_pb.js";
import { PktLineParser } from "../../git/pktline.js";

export class NegotiationStats {
  private readonly parser = new PktLineParser();
  private payloadSize = 0;
  private packets = 0;
  private caps: string[] = [];
  private wants = 0;
  private haves = 0;
  private shallows = 0;
  private deepen = "";
  private filter = "";
  private broken = false;

  /** Feeds client→server bytes; malformed input just stops the counting. */
  observe(chunk: Buffer): void {
    if (this.broken) return;
    this.payloadSize += chunk.length;
    try {
      this.parser.feed(chunk);
      for (let p = this.parser.next(); p; p = this.parser.next()) {
        this.packets++;
        if (p.kind === "data") this.line(p.payload.toString("utf8").replace(/\n$/, ""));
      }
    } catch {
      this.broken = true;
    }
  }

  private line(text: string): void {
    if (text.startsWith("want ")) {
      // v0: the first want carries the capabilities after a NUL or space.
      if (this.wants === 0) {
        const rest = text
          .slice(5 + 40)
          .replace(/^\0/, " ")
          .trim();
        if (rest) this.caps = rest.split(" ").filter(Boolean);
      }
      this.wants++;
    } else if (text.startsWith("have ")) this.haves++;
    else if (text.startsWith("shallow ")) this.shallows++;
    else if (text.startsWith("deepen")) this.deepen = text;
    else if (text.startsWith("filter ")) this.filter = text.slice("filter ".length);
    else if (/^(agent|object-format|session-id)=/.test(text) || text === "thin-pack" || text === "ofs-delta") {
      // v2 sends capabilities as their own lines.
      this.caps.push(text);
    }
  }

  toProto(): PackfileNegotiationStatistics {
    return create(PackfileNegotiationStatisticsSchema, {
      payloadSize: BigInt(this.payloadSize),
      packets: BigInt(this.packets),
      caps: this.caps,
      wants: BigInt(this.wants),
      haves: BigInt(this.haves),
      shallows: BigInt(this.shallows),
      deepen: this.deepen,
      filter: this.filter,
    });
  }
}
