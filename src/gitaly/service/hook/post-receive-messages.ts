// How the post-receive hook prints GitLab's messages (e.g. "Create merge request for
// <branch>"): a "basic" message as is, an "alert" centred in a box of '=' sized for an
// 80-column terminal minus git's "remote: " prefix. The layout matches upstream byte
// for byte, since users see it on every push.
import type { PostReceiveMessage } from "../../gitlab/client.js";

const TERMINAL_WIDTH = 80;
const REMOTE_PREFIX_LENGTH = "remote: ".length;
const PADDING = 2;
const MAX_MESSAGE_WIDTH = TERMINAL_WIDTH - REMOTE_PREFIX_LENGTH;
const MAX_TEXT_WIDTH = MAX_MESSAGE_WIDTH - 2 * PADDING;

function centerLine(line: string): string {
  const text = line.trim();
  const padding = Math.max(Math.trunc((MAX_MESSAGE_WIDTH - Buffer.byteLength(text)) / 2), 0);
  return " ".repeat(padding) + text;
}

function alert(message: string): string {
  const rule = "=".repeat(MAX_MESSAGE_WIDTH);
  let out = `${rule}\n\n`;
  let line = "";
  for (const word of message.split(/\s+/).filter((w) => w !== "")) {
    if (Buffer.byteLength(line) + 1 + Buffer.byteLength(word) > MAX_TEXT_WIDTH) {
      out += `${centerLine(line)}\n`;
      line = "";
    }
    line += `${word} `;
  }
  return `${out}${centerLine(line)}\n\n${rule}`;
}

/** The text printed for GitLab's post-receive messages; throws on an unknown message type. */
export function formatPostReceiveMessages(messages: readonly PostReceiveMessage[]): string {
  let out = "";
  for (const { type, message } of messages) {
    out += "\n";
    if (type === "basic") out += message;
    else if (type === "alert") out += alert(message);
    else throw new Error(`invalid message type: ${type}`);
    out += "\n\n";
  }
  return out;
}
