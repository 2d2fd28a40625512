// The reference backend's HTTP API (server/backend/API.md), same origin, with
// the session cookie; and the one place errors become sentences for people.

/** A failed backend call: the backend's stable `code`, or `network_error`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** One JSON request. Resolves with the parsed body (null for 204); rejects with an ApiError. */
export async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network_error", "unable to reach the server");
  }
  if (response.status === 204) return null;
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    // A proxy's HTML error page, or an empty body: the status says enough.
  }
  if (!response.ok) {
    const error = parsed?.error;
    throw new ApiError(response.status, error?.code ?? `http_${response.status}`, error?.message ?? `unable to complete the request; the server answered ${response.status}`);
  }
  return parsed;
}

// Codes from the backend and from the SDK (DomViaError) that people may meet,
// said the way a product says them. Anything else falls back to the message,
// which both layers write as "unable to <op>; <reason>".
const SENTENCES = {
  network_error: "Can't reach the server. Check your connection and try again.",
  room_left: "You left this conversation.",
  unknown_client_id: "That message can't be retried anymore.",
  not_signed_in: "Your session has ended. Sign in again.",
  invalid_name: "Names are 1 to 40 characters, without control characters.",
  invalid_room_name: "Group names are 1 to 80 characters, without control characters.",
  invalid_member_ids: "Pick at least one other person.",
  unknown_user: "That person no longer exists.",
  not_a_member: "You're not a member of this conversation anymore.",
  room_not_found: "This conversation doesn't exist.",
  room_access_denied: "You don't have access to this conversation anymore.",
  direct_room: "Direct conversations always have exactly two people.",
  not_room_creator: "Only the group's creator can remove other people.",
  invalid_text: "Messages can't be empty or contain control characters.",
  text_too_large: "That message is too long (at most 4,000 bytes).",
  client_id_conflict: "That message clashed with another one. Try sending it again.",
  encryption_unavailable: "End-to-end encryption couldn't be loaded. Reload the page to try again.",
  room_encryption_mismatch: "This conversation's encryption setting changed. Reload the page to open it again.",
  encryption_required: "This conversation is end-to-end encrypted: only encrypted messages can be sent to it.",
  room_not_encrypted: "This conversation isn't end-to-end encrypted.",
  e2ee_device_key_changed: "Someone's device key changed. Compare the safety number, accept the change, then retry.",
  e2ee_storage_unavailable: "This browser can't keep encryption keys (private browsing may block it). Encrypted conversations need it.",
  e2ee_epoch_failed: "The conversation's members kept changing while encrypting. Try again in a moment.",
  epoch_stale: "The conversation's members changed while sending. Try again.",
  wasm_load_failed: "The chat engine failed to load. Reload the page.",
  internal: "Something went wrong on our side. Try again in a moment.",
};

/** A human-readable sentence for any error the app can meet. */
export function describeError(error) {
  const code = error?.code;
  if (typeof code === "string" && SENTENCES[code]) return SENTENCES[code];
  const message = typeof error?.message === "string" && error.message ? error.message : String(error);
  // "unable to send the message; the room is full" -> "Unable to send the message: the room is full."
  const sentence = message.replace(/; /, ": ");
  return sentence.charAt(0).toUpperCase() + sentence.slice(1) + (/[.!?]$/.test(sentence) ? "" : ".");
}
