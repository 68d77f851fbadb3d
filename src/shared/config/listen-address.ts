// Listen addresses as Gitaly and Praefect write them (`listen_addr = "0.0.0.0:8075"`), split the way
// Go's net.SplitHostPort does, so what upstream accepts we accept and report errors in its words.
import { isIP } from "node:net";
import { z } from "zod";

export interface ListenAddress {
  /** IP literal or host name, without brackets; "" means every interface (":8075"). */
  host: string;
  /** 0 asks the kernel for a free port. */
  port: number;
}

export class ListenAddressError extends Error {
  override name = "ListenAddressError";
}

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

function splitHostPort(addr: string): [string, string] {
  const fail = (reason: string) => new ListenAddressError(`address ${addr}: ${reason}`);
  let host: string;
  let rest: string;
  if (addr.startsWith("[")) {
    const close = addr.indexOf("]");
    if (close < 0) throw fail("missing ']' in address");
    host = addr.slice(1, close);
    rest = addr.slice(close + 1);
    if (rest === "") throw fail("missing port in address");
    if (!rest.startsWith(":")) throw fail(rest.includes("]") ? "unexpected ']' in address" : "missing port in address");
    if (rest.indexOf(":", 1) >= 0) throw fail("too many colons in address");
  } else {
    const colon = addr.lastIndexOf(":");
    if (colon < 0) throw fail("missing port in address");
    host = addr.slice(0, colon);
    rest = addr.slice(colon);
    if (host.includes(":")) throw fail("too many colons in address");
  }
  if (host.includes("[") || host.includes("]")) throw fail("unexpected '[' or ']' in host");
  return [host, rest.slice(1)];
}

/**
 * Splits "host:port" ("127.0.0.1:8075", "[::1]:8075", ":8075", "0.0.0.0:8075", "gitaly:8075").
 * Throws ListenAddressError naming the address and what is wrong with it.
 */
export function parseListenAddress(addr: string): ListenAddress {
  const [host, portText] = splitHostPort(addr);
  const fail = (reason: string) => new ListenAddressError(`address ${addr}: ${reason}`);
  if (portText === "") throw fail("missing port number");
  if (!/^[0-9]+$/.test(portText)) throw fail(`invalid port ${JSON.stringify(portText)}`);
  const port = Number(portText);
  if (port > 65535) throw fail(`port ${portText} out of range 0-65535`);
  if (host !== "" && isIP(host) === 0 && !HOST_NAME.test(host)) throw fail(`invalid host ${JSON.stringify(host)}`);
  if (addr.startsWith("[") && isIP(host) !== 6) throw fail(`invalid IPv6 address ${JSON.stringify(host)}`);
  return { host, port };
}

/** A zod string field holding a listen address; "" (not configured) is allowed. */
export function listenAddressField() {
  return z.string().superRefine((addr, ctx) => {
    if (addr === "") return;
    try {
      parseListenAddress(addr);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
    }
  });
}
