/**
 * The archive's Parquet files, pure: rows in, bytes out, and back. Flat columns, snappy
 * (hyparquet-writer's default), TIMESTAMP (milliseconds, UTC), INTEGER and DOUBLE as typed
 * columns, text as UTF-8 strings; the same schema every time, so a part with no value in a
 * column still types it.
 */
import { parquetReadObjects } from "hyparquet";
import { type ColumnSource, parquetWriteBuffer } from "hyparquet-writer";
import type { ArchiveSource } from "../store/archive";

/** One row of `responses/`: a stored alert as the archive keeps it (`payload` byte for byte). */
export type ResponseRow = Omit<ArchiveSource, "answers_json" | "user_sha256"> & {
  /** The first nps answer's value, else null. */
  nps: number | null;
};

/** One row of `answers/`: one screen of a response. */
export interface AnswerRow {
  alert_id: string;
  survey_id: string;
  submitted_at: string;
  position: number;
  title: string | null;
  type: string;
  answer: string | null;
  value: number | null;
}

export type ArchiveTable = "responses" | "answers";

/** The archive's row of a stored response; `answers` are its rows of `answers/`. */
export function responseRow(source: ArchiveSource, answers: AnswerRow[]): ResponseRow {
  const { answers_json: _, user_sha256: __, ...rest } = source;
  const nps = answers.find((a) => a.type === "nps");
  return { ...rest, nps: nps?.value === null || nps?.value === undefined ? null : Math.round(nps.value) };
}

/** The `answers/` rows of a stored response, one per screen. */
export function answerRows(source: ArchiveSource): AnswerRow[] {
  const answers = JSON.parse(source.answers_json) as { title: string | null; type: string; answer: string | null; value: number | null }[];
  return answers.map((a, position) => ({
    alert_id: source.alert_id,
    survey_id: source.survey_id,
    submitted_at: source.submitted_at,
    position,
    title: a.title,
    type: a.type,
    answer: a.answer,
    value: typeof a.value === "number" && Number.isFinite(a.value) ? a.value : null,
  }));
}

type Column<Row> = { name: keyof Row & string; type: "STRING" | "TIMESTAMP" | "INT32" | "DOUBLE"; nullable: boolean };

const RESPONSE_COLUMNS: Column<ResponseRow>[] = [
  { name: "alert_id", type: "STRING", nullable: false },
  { name: "alert_name", type: "STRING", nullable: false },
  { name: "project_name", type: "STRING", nullable: true },
  { name: "survey_id", type: "STRING", nullable: false },
  { name: "survey_name", type: "STRING", nullable: true },
  { name: "platform", type: "STRING", nullable: true },
  { name: "user_system_id", type: "STRING", nullable: true },
  { name: "user_parameters", type: "STRING", nullable: true },
  { name: "trigger_event_name", type: "STRING", nullable: true },
  { name: "trigger_event_parameters", type: "STRING", nullable: true },
  { name: "submitted_at", type: "TIMESTAMP", nullable: false },
  { name: "received_at", type: "TIMESTAMP", nullable: false },
  { name: "nps", type: "INT32", nullable: true },
  { name: "payload", type: "STRING", nullable: false },
];

const ANSWER_COLUMNS: Column<AnswerRow>[] = [
  { name: "alert_id", type: "STRING", nullable: false },
  { name: "survey_id", type: "STRING", nullable: false },
  { name: "submitted_at", type: "TIMESTAMP", nullable: false },
  { name: "position", type: "INT32", nullable: false },
  { name: "title", type: "STRING", nullable: true },
  { name: "type", type: "STRING", nullable: false },
  { name: "answer", type: "STRING", nullable: true },
  { name: "value", type: "DOUBLE", nullable: true },
];

function encode<Row>(columns: Column<Row>[], rows: readonly Row[]): Uint8Array {
  const columnData: ColumnSource[] = columns.map(({ name, type, nullable }) => ({
    name,
    type,
    nullable,
    data: type === "TIMESTAMP" ? rows.map((r) => new Date(r[name] as string)) : rows.map((r) => r[name] as string | number | null),
  }));
  // One row group: a part is small enough for one, and a reader then reads one footer entry.
  return new Uint8Array(parquetWriteBuffer({ columnData, rowGroupSize: Math.max(rows.length, 1), createdBy: "oneflow-webhooks" }));
}

/** A `responses/` part holding these rows. */
export function responsesParquet(rows: readonly ResponseRow[]): Uint8Array {
  return encode(RESPONSE_COLUMNS, rows);
}

/** An `answers/` part holding these rows. */
export function answersParquet(rows: readonly AnswerRow[]): Uint8Array {
  return encode(ANSWER_COLUMNS, rows);
}

/** The rows of a part written by this module, with timestamps back as ISO text. */
export async function readParquet(table: "responses", bytes: ArrayBuffer): Promise<ResponseRow[]>;
export async function readParquet(table: "answers", bytes: ArrayBuffer): Promise<AnswerRow[]>;
export async function readParquet(table: ArchiveTable, bytes: ArrayBuffer): Promise<ResponseRow[] | AnswerRow[]> {
  const objects = await parquetReadObjects({ file: bytes });
  const columns: Column<ResponseRow>[] | Column<AnswerRow>[] = table === "responses" ? RESPONSE_COLUMNS : ANSWER_COLUMNS;
  const times = columns.filter((c) => c.type === "TIMESTAMP").map((c) => c.name);
  return objects.map((o) => {
    const row: Record<string, unknown> = { ...o };
    for (const name of times) row[name] = (o[name] as Date).toISOString();
    return row;
  }) as unknown as ResponseRow[] | AnswerRow[];
}

/** The same part without the rows of these alerts: what erasure writes in its place. */
export async function withoutAlerts(
  table: ArchiveTable,
  bytes: ArrayBuffer,
  alert_ids: ReadonlySet<string>,
): Promise<{ bytes: Uint8Array; rows: number; removed: number }> {
  if (table === "responses") {
    const rows = await readParquet("responses", bytes);
    const kept = rows.filter((r) => !alert_ids.has(r.alert_id));
    return { bytes: responsesParquet(kept), rows: kept.length, removed: rows.length - kept.length };
  }
  const rows = await readParquet("answers", bytes);
  const kept = rows.filter((r) => !alert_ids.has(r.alert_id));
  return { bytes: answersParquet(kept), rows: kept.length, removed: rows.length - kept.length };
}
