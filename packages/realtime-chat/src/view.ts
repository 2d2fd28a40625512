/**
 * The room as the app reads it: frozen message rows and snapshots, rebuilt
 * only when the session says something changed, and each unchanged row kept
 * as the same object (so `React.memo` and `v-for` keys skip it).
 */
import type { ChatMessage } from "./types.js";

/** A message as the wasm session hands it out (`ChatRoomViewMessage`). */
export interface ViewMessageJson {
  message_id: string | null;
  room_id: string;
  seq: number | null;
  user_id: string;
  text: string | null;
  ciphertext?: object;
  sent_at: number;
  client_id: string;
  status: "sending" | "sent" | "failed";
  decryption_error?: { code: string; message: string };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `row` still shows `message` (status, seq, text and the decryption error). */
function showsSame(row: ChatMessage, message: ViewMessageJson): boolean {
  return (
    row.status === message.status &&
    row.seq === message.seq &&
    row.text === message.text &&
    row.decryption_error?.code === message.decryption_error?.code
  );
}

/** A message with exactly the documented fields, frozen. */
export function toChatMessage(message: ViewMessageJson): ChatMessage {
  const result: { -readonly [K in keyof ChatMessage]: ChatMessage[K] } = {
    message_id: message.message_id ?? null,
    room_id: message.room_id,
    seq: message.seq ?? null,
    user_id: message.user_id,
    text: message.text ?? null,
    sent_at: message.sent_at,
    client_id: message.client_id,
    status: message.status ?? "sent",
  };
  if (isObject(message.ciphertext)) result.ciphertext = message.ciphertext;
  if (message.decryption_error !== undefined) {
    result.decryption_error = Object.freeze({ code: message.decryption_error.code, message: message.decryption_error.message });
  }
  return Object.freeze(result);
}

function keyOf(message: ViewMessageJson): string {
  return message.message_id ?? `pending:${message.client_id}`;
}

/** The message rows, rebuilt from the session's list keeping unchanged rows. */
export class MessageRows {
  #rows = new Map<string, ChatMessage>();
  #list: readonly ChatMessage[] = Object.freeze([]);

  get list(): readonly ChatMessage[] {
    return this.#list;
  }

  /** Replaces the rows with `messages`, reusing the row object of every message that shows the same. */
  update(messages: readonly ViewMessageJson[]): readonly ChatMessage[] {
    const rows = new Map<string, ChatMessage>();
    const list: ChatMessage[] = [];
    for (const message of messages) {
      const key = keyOf(message);
      const known = this.#rows.get(key);
      const row = known !== undefined && showsSame(known, message) ? known : toChatMessage(message);
      rows.set(key, row);
      list.push(row);
    }
    this.#rows = rows;
    this.#list = Object.freeze(list);
    return this.#list;
  }

  /** The row for one message (the current one when it shows the same). */
  row(message: ViewMessageJson): ChatMessage {
    const known = this.#rows.get(keyOf(message));
    return known !== undefined && showsSame(known, message) ? known : toChatMessage(message);
  }
}
