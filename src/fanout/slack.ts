/** The Slack format: a readable incoming-webhook message for one survey response. Pure. */
import { npsCategory } from "../alert";
import type { StoredAlert } from "../store/deliveries";

/** Slack's own limits: 50 blocks a message, 3000 characters a section's text, 2000 a field or context element, 150 a header. */
const MAX_BLOCKS = 50;
const MAX_SECTION_CHARS = 3_000;
const MAX_FIELD_CHARS = 2_000;
const MAX_HEADER_CHARS = 150;

interface SlackText {
  type: "mrkdwn" | "plain_text";
  text: string;
}

type SlackBlock =
  | { type: "header"; text: SlackText }
  | { type: "section"; text?: SlackText; fields?: SlackText[] }
  | { type: "context"; elements: SlackText[] };

export interface SlackMessage {
  text: string;
  blocks: SlackBlock[];
}

/** Escapes the three characters Slack's mrkdwn treats as markup. */
function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function answerLine(answer: StoredAlert["answers"][number]): string {
  if (answer.type === "nps" && answer.value !== null) {
    return `*${answer.value}* (${npsCategory(answer.value)})`;
  }
  if (answer.answer === null || answer.answer === "") return "_no answer_";
  return escape(answer.answer);
}

/**
 * The Slack message for one alert: survey, user, each question and answer,
 * and the NPS score with its category.
 *
 * @example
 * await fetch(slackUrl, { method: "POST", body: JSON.stringify(slackMessage(alert)) });
 */
export function slackMessage(alert: StoredAlert): SlackMessage {
  const survey = alert.survey_name ?? alert.survey_id;
  const user = alert.user_system_id ?? "anonymous user";
  const nps = alert.answers.find((a) => a.type === "nps" && a.value !== null);
  const summary = nps?.value != null ? ` · NPS ${nps.value} (${npsCategory(nps.value)})` : "";

  const blocks: SlackBlock[] = [
    { type: "header", text: { type: "plain_text", text: clip(`New response: ${survey}`, MAX_HEADER_CHARS) } },
    {
      type: "section",
      fields: [
        { type: "mrkdwn", text: clip(`*User*\n${escape(user)}`, MAX_FIELD_CHARS) },
        { type: "mrkdwn", text: clip(`*Platform*\n${escape(alert.platform ?? "unknown")}`, MAX_FIELD_CHARS) },
        { type: "mrkdwn", text: clip(`*Submitted*\n${alert.submitted_at}`, MAX_FIELD_CHARS) },
      ],
    },
  ];
  const room = MAX_BLOCKS - blocks.length - 1;
  for (const answer of alert.answers.slice(0, room)) {
    const title = escape(answer.title ?? `Question ${answer.position + 1}`);
    blocks.push({ type: "section", text: { type: "mrkdwn", text: clip(`*${title}*\n${answerLine(answer)}`, MAX_SECTION_CHARS) } });
  }
  blocks.push({ type: "context", elements: [{ type: "mrkdwn", text: clip(`alert_id ${escape(alert.alert_id)}`, MAX_FIELD_CHARS) }] });

  return { text: clip(`New response to ${escape(survey)} from ${escape(user)}${summary}`, MAX_SECTION_CHARS), blocks };
}
