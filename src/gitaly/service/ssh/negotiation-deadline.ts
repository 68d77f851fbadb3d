// A deadline on the negotiation phase of upload-pack and upload-archive. Access is
// checked when the call starts; a client that opened the call and then sat on it
// could negotiate what it gets long after its permissions changed. So the client has
// `timeoutMs` to send the packet that ends negotiation ("done" for upload-pack, a
// flush for upload-archive); the transfer after that may take as long as it needs.
import { PktLineParser } from "../../git/pktline.js";

export type NegotiationBoundary = "done" | "flush";

export class NegotiationDeadline {
  private readonly controller = new AbortController();
  private readonly parser = new PktLineParser();
  private readonly timer: NodeJS.Timeout;
  private settled = false;

  constructor(
    timeoutMs: number,
    private readonly boundary: NegotiationBoundary,
  ) {
    this.timer = setTimeout(() => {
      this.settled = true;
      this.controller.abort(new Error("negotiation deadline exceeded"));
    }, timeoutMs);
    this.timer.unref();
  }

  /** Fires when the client did not finish negotiating in time. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get expired(): boolean {
    return this.controller.signal.aborted;
  }

  /** Feeds client→server bytes; the deadline is lifted once the boundary packet passed. */
  observe(chunk: Buffer): void {
    if (this.settled) return;
    try {
      this.parser.feed(chunk);
      for (let p = this.parser.next(); p; p = this.parser.next()) {
        const hit =
          this.boundary === "flush"
            ? p.kind === "flush"
            : p.kind === "data" && p.payload.length === 5 && p.payload.toString("latin1") === "done\n";
        if (hit) {
          this.stop();
          return;
        }
      }
    } catch {
      // Malformed input is git's to reject; watching it any further makes no sense.
      this.stop();
    }
  }

  /** Lifts the deadline (negotiation is over, or the call ended). */
  stop(): void {
    this.settled = true;
    clearTimeout(this.timer);
  }
}
