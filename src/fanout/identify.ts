/**
 * The `1flow-identify` format: talks back to 1Flow, writing the respondent's last answer
 * to their 1Flow profile as traits (POST https://api.1flow.app/v1/identify, `api_key`
 * header), so that 1Flow's targeting can use it. Traits carry no free text but the survey
 * name, cut to a bound, so a request stays far below 1Flow's 32 KB. Pure.
 */
import { npsCategory, type NpsCategory } from "../alert";
import type { StoredAlert } from "../store/deliveries";

/** 1Flow takes at most 32 KB a request; the one free-text trait is cut to this. */
export const MAX_SURVEY_NAME_CHARS = 200;

export interface IdentifyBody {
  user_id: string;
  traits: {
    oneflow_last_survey_id: string;
    oneflow_last_survey_name: string | null;
    oneflow_last_response_at: string;
    oneflow_last_nps?: number;
    oneflow_last_nps_category?: NpsCategory;
  };
  timestamp: string;
}

/** The identify call for an alert (which has a user: destinations of this format want only those). */
export function identifyBody(alert: StoredAlert): IdentifyBody {
  const nps = alert.answers.find((a) => a.type === "nps" && a.value !== null);
  const name = alert.survey_name === null ? null : alert.survey_name.slice(0, MAX_SURVEY_NAME_CHARS);
  return {
    user_id: alert.user_system_id ?? "",
    traits: {
      oneflow_last_survey_id: alert.survey_id,
      oneflow_last_survey_name: name,
      oneflow_last_response_at: alert.submitted_at,
      ...(nps?.value != null ? { oneflow_last_nps: nps.value, oneflow_last_nps_category: npsCategory(nps.value) } : {}),
    },
    timestamp: alert.submitted_at,
  };
}
