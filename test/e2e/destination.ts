/** The destination the queue-e2e project configures, shared by its config and its tests. */
export const E2E_DESTINATION_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
export const E2E_DESTINATION_HOST = "crm.example.test";
export const E2E_DESTINATIONS = JSON.stringify([
  { name: "crm", url: `https://${E2E_DESTINATION_HOST}/hooks/1flow`, secret: E2E_DESTINATION_SECRET },
]);
