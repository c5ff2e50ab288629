/** CSV cells: RFC 4180 quoting, and no cell that a spreadsheet would run as a formula. Pure. */

/** What a spreadsheet reads as the start of a formula, the full-width forms (＝＋－＠) included. */
const FORMULA_START = /^[=+\-@\t\r\uFF1D\uFF0B\uFF0D\uFF20]/;

/**
 * One CSV cell. A value a spreadsheet would read as a formula gets a leading `'`
 * (OWASP's advice for CSV injection); a value with a quote, comma or line break is
 * quoted with its quotes doubled.
 *
 * @example
 * csvCell('=HYPERLINK("x")'); // "'=HYPERLINK(""x"")" quoted
 */
export function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One CSV record, CRLF-terminated as RFC 4180 says. */
export function csvLine(cells: ReadonlyArray<string | number | null | undefined>): string {
  return `${cells.map(csvCell).join(",")}\r\n`;
}
