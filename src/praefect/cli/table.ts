// Tables in the two shapes upstream's tablewriter produces for Praefect's commands.

function width(text: string): number {
  return [...text].length;
}

function padRight(text: string, size: number): string {
  return text + " ".repeat(Math.max(0, size - width(text)));
}

function center(text: string, size: number): string {
  const total = Math.max(0, size - width(text));
  const left = Math.floor(total / 2);
  return " ".repeat(left) + text + " ".repeat(total - left);
}

function columnWidths(header: readonly string[], rows: readonly (readonly string[])[]): number[] {
  return header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
}

/**
 * Borderless, left-aligned, header as written (list-storages):
 * ` VIRTUAL_STORAGE  NODE       ADDRESS       \n vs-1             storage-1  tcp://1.2.3.4 \n`
 */
export function plainTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = columnWidths(header, rows);
  const line = (cells: readonly string[]) => `${widths.map((w, i) => ` ${padRight(cells[i] ?? "", w)} `).join("")}\n`;
  return line(header) + rows.map(line).join("");
}

/** tablewriter's default: light box drawing, upper-case centred header, left-aligned cells (sql-migrate-status). */
export function boxTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const upper = header.map((h) => h.toUpperCase());
  const widths = columnWidths(upper, rows);
  const rule = (left: string, mid: string, right: string) =>
    `${left}${widths.map((w) => "─".repeat(w + 2)).join(mid)}${right}\n`;
  const line = (cells: readonly string[], align: (t: string, w: number) => string) =>
    `│${widths.map((w, i) => ` ${align(cells[i] ?? "", w)} `).join("│")}│\n`;
  return (
    rule("┌", "┬", "┐") +
    line(upper, center) +
    rule("├", "┼", "┤") +
    rows.map((r) => line(r, padRight)).join("") +
    rule("└", "┴", "┘")
  );
}
