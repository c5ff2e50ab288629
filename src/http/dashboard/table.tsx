/** A labelled table: a header row, and each cell labelled for a phone's narrow layout (layout.tsx's STYLE). */
import type { Child } from "hono/jsx";

export interface Column<T> {
  label: string;
  cell: (row: T) => Child;
}

export function Table<T>({ id, columns, rows }: { id?: string; columns: Column<T>[]; rows: T[] }) {
  return (
    <table id={id}>
      <tr class="head">
        {columns.map((c) => (
          <th>{c.label}</th>
        ))}
      </tr>
      {rows.map((row) => (
        <tr>
          {columns.map((c) => (
            <td data-label={c.label}>{c.cell(row)}</td>
          ))}
        </tr>
      ))}
    </table>
  );
}
