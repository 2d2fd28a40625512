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

/** What changed since the view last read the session (`ChatRoomViewDelta`). */
export interface ViewDeltaJson {
  epoch: number;
  cursor: number;
  full: boolean;
  changed: ViewMessageJson[];
  pending: ViewMessageJson[];
}

/**
 * The message rows, kept from the session's deltas (`viewSince`): a refresh
 * reads and converts only the messages that are new or changed, not the whole
 * history, so a long room costs the same per refresh as a short one.
 */
export class MessageRows {
  #epoch = 0;
  #cursor = 0;
  /** The stored rows, ascending by seq. */
  #stored: ChatMessage[] = [];
  #pending: readonly ChatMessage[] = [];
  /** Every row shown, by message id (pending ones by client id). */
  #byKey = new Map<string, ChatMessage>();
  #list: readonly ChatMessage[] = Object.freeze([]);

  get list(): readonly ChatMessage[] {
    return this.#list;
  }

  /** What to pass to the session's `viewSince(epoch, cursor)` next. */
  get epoch(): number {
    return this.#epoch;
  }

  get cursor(): number {
    return this.#cursor;
  }

  /** Applies one delta; rows of messages that show the same keep their objects. */
  apply(delta: ViewDeltaJson): readonly ChatMessage[] {
    this.#epoch = delta.epoch;
    this.#cursor = delta.cursor;
    let changed = false;
    const before = this.#byKey;
    if (delta.full) {
      this.#byKey = new Map();
      this.#stored = delta.changed.map((message) => this.#keep(before, message));
      changed = true;
    } else {
      for (const message of delta.changed) changed = this.#place(this.#keep(before, message)) || changed;
    }
    const pending = delta.pending.map((message) => this.#keep(before, message));
    if (pending.length !== this.#pending.length || pending.some((row, i) => row !== this.#pending[i])) {
      // A send that left the pending list is stored now (under its message id) or gone.
      for (const row of this.#pending) {
        const key = keyOf(row);
        if (this.#byKey.get(key) === row && !pending.includes(row)) this.#byKey.delete(key);
      }
      this.#pending = pending;
      changed = true;
    }
    if (changed) this.#list = Object.freeze([...this.#stored, ...this.#pending]);
    return this.#list;
  }

  /** The row for one message (the current one when it shows the same). */
  row(message: ViewMessageJson): ChatMessage {
    const known = this.#byKey.get(keyOf(message));
    return known !== undefined && showsSame(known, message) ? known : toChatMessage(message);
  }

  /** The row for `message`, reusing the one in `from` if it shows the same; recorded as current. */
  #keep(from: Map<string, ChatMessage>, message: ViewMessageJson): ChatMessage {
    const key = keyOf(message);
    const known = from.get(key);
    const row = known !== undefined && showsSame(known, message) ? known : toChatMessage(message);
    this.#byKey.set(key, row);
    return row;
  }

  /** Puts a stored row where its seq goes (usually the end); false when it was already there. */
  #place(row: ChatMessage): boolean {
    const stored = this.#stored;
    const seq = row.seq ?? 0;
    let low = 0;
    let high = stored.length;
    if (high === 0 || (stored[high - 1]?.seq ?? 0) < seq) low = high;
    while (low < high) {
      const middle = (low + high) >> 1;
      if ((stored[middle]?.seq ?? 0) < seq) low = middle + 1;
      else high = middle;
    }
    if (stored[low]?.seq === seq) {
      if (stored[low] === row) return false;
      stored[low] = row;
    } else {
      stored.splice(low, 0, row);
    }
    return true;
  }
}
