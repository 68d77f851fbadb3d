// The addresses Praefect dials its Gitaly nodes at, in upstream's forms:
//   tcp://host:port   tls://host:port   unix:/path (or unix:///path)
//   dns:host:port, dns:///host:port, dns://resolver/host:port   (and dns+tls: the same over TLS)
// Pure parsing: how a grpc-js channel and the backchannel dialer reach each form.

export interface NodeAddress {
  /** The target string grpc-js understands. */
  grpcTarget: string;
  tls: boolean;
  /** What dialBackchannel understands: tcp://host:port, tls://host:port or unix:/path. */
  backchannelAddress: string;
}

const SCHEMES = ["tcp://", "tls://", "unix:", "dns+tls:", "dns:"] as const;

function splitDnsTarget(rest: string): string {
  // dns:host:port, dns:///host:port and dns://authority/host:port all name host:port last.
  if (rest.startsWith("//")) {
    const slash = rest.indexOf("/", 2);
    return slash < 0 ? "" : rest.slice(slash + 1);
  }
  return rest;
}

/** Why `address` cannot be dialled, in upstream's words; null when it can. */
export function nodeAddressProblem(address: string): string | null {
  try {
    parseNodeAddress(address);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Parses a node address; throws `invalid connection string: "<address>"` (upstream's message) for other forms. */
export function parseNodeAddress(address: string): NodeAddress {
  const invalid = (detail?: string) =>
    new Error(`invalid connection string: ${JSON.stringify(address)}${detail ? ` (${detail})` : ""}`);
  const scheme = SCHEMES.find((s) => address.startsWith(s));
  if (scheme === undefined) throw invalid();
  const rest = address.slice(scheme.length);
  switch (scheme) {
    case "tcp://":
    case "tls://": {
      if (rest === "" || rest.includes("/")) throw invalid("want host:port");
      return {
        grpcTarget: rest,
        tls: scheme === "tls://",
        backchannelAddress: `${scheme}${rest}`,
      };
    }
    case "unix:": {
      const path = rest.startsWith("//") ? rest.slice(2) : rest;
      if (path === "") throw invalid("empty socket path");
      return { grpcTarget: `unix:${path}`, tls: false, backchannelAddress: `unix:${path}` };
    }
    case "dns:":
    case "dns+tls:": {
      const hostPort = splitDnsTarget(rest);
      if (hostPort === "") throw invalid("want dns:[//authority/]host:port");
      const tls = scheme === "dns+tls:";
      // grpc-js resolves dns:///host:port itself (and re-resolves when connections drop).
      return {
        grpcTarget: `dns:///${hostPort}`,
        tls,
        backchannelAddress: `${tls ? "tls" : "tcp"}://${hostPort}`,
      };
    }
  }
}
