/**
 * Channel names: validation, kinds, and the chat room naming scheme
 * (`private-chat.room.{roomId}`, `presence-chat.room.{roomId}`), the same rules
 * and messages as the DomVia Rust core (src/protocol/channel.rs). A copy rather
 * than an import: this package runs on Node without wasm and depends on no other
 * DomVia package. tests/vectors/channels.json, generated from the core, holds it
 * to the core's answers (test/validation.test.mjs).
 */
import { DomViaServerError } from "./errors.js";

/** The longest channel name the protocol allows, in characters. */
export const MAX_CHANNEL_NAME_LENGTH = 200;

/** The prefix of a private chat room channel. */
export const CHAT_PRIVATE_CHANNEL_PREFIX = "private-chat.room.";

/** The prefix of a presence chat room channel. */
export const CHAT_PRESENCE_CHANNEL_PREFIX = "presence-chat.room.";

/** The kinds of Pusher channel, from the name's prefix. */
export type ChannelKind = "public" | "private" | "presence" | "private-encrypted";

/** Only these characters may appear in a channel name (and so in a room id). */
const NAME_CHARS = /^[A-Za-z0-9_\-=@,.;]*$/;

/** The first character outside the channel alphabet, described, or undefined. */
function firstBadCharacter(text: string): string | undefined {
  if (NAME_CHARS.test(text)) return undefined;
  let position = 0;
  for (const character of text) {
    if (!NAME_CHARS.test(character)) {
      return `${JSON.stringify(character)} at position ${position} is not allowed (only A-Z a-z 0-9 _ - = @ , . ;)`;
    }
    position += 1;
  }
  return undefined;
}

/** The kind of channel `name`, by prefix alone (the name is not validated). */
export function channelKind(name: string): ChannelKind {
  // `private-encrypted-` also starts with `private-`, so it goes first.
  if (name.startsWith("private-encrypted-")) return "private-encrypted";
  if (name.startsWith("private-")) return "private";
  if (name.startsWith("presence-")) return "presence";
  return "public";
}

const KIND_PREFIX: Record<ChannelKind, string> = {
  public: "",
  private: "private-",
  presence: "presence-",
  "private-encrypted": "private-encrypted-",
};

/**
 * Checks a channel name (1-200 characters of `A-Z a-z 0-9 _ - = @ , . ;`, and
 * something after a `private-`/`presence-` prefix) and returns its kind.
 *
 * @throws {DomViaServerError} `invalid_channel_name`
 */
export function validateChannelName(name: string): ChannelKind {
  const invalid = (reason: string): DomViaServerError =>
    new DomViaServerError(
      "invalid_channel_name",
      `unable to use channel name ${quoted(name)}; ${reason}`,
    );
  if (typeof name !== "string") throw invalid("it is not a string");
  if (name.length === 0) throw invalid("it is empty");
  const bad = firstBadCharacter(name);
  if (bad !== undefined) throw invalid(bad);
  // Only ASCII is left, so UTF-16 units are characters.
  if (name.length > MAX_CHANNEL_NAME_LENGTH) {
    throw invalid(`it has ${name.length} characters, more than ${MAX_CHANNEL_NAME_LENGTH}`);
  }
  const kind = channelKind(name);
  if (name.length === KIND_PREFIX[kind].length) {
    throw invalid(`nothing follows the ${JSON.stringify(KIND_PREFIX[kind])} prefix`);
  }
  return kind;
}

/**
 * The channel for a chat room: `private-chat.room.{roomId}`, or
 * `presence-chat.room.{roomId}` with `{ presence: true }`. The inverse of
 * {@link chatRoomIdFromChannel}.
 *
 * @throws {DomViaServerError} `invalid_room_id` when the id is empty, has a
 * character outside `A-Z a-z 0-9 _ - = @ , . ;`, or makes the name longer than 200.
 */
export function buildChatChannelName(roomId: string, options: { presence?: boolean } = {}): string {
  const invalid = (reason: string): DomViaServerError =>
    new DomViaServerError(
      "invalid_room_id",
      `unable to build a channel name for room id ${quoted(roomId)}; ${reason}`,
    );
  if (typeof roomId !== "string") throw invalid("it is not a string");
  if (roomId.length === 0) throw invalid("it is empty");
  const bad = firstBadCharacter(roomId);
  if (bad !== undefined) throw invalid(bad);
  const presence = options.presence === true;
  const prefix = presence ? CHAT_PRESENCE_CHANNEL_PREFIX : CHAT_PRIVATE_CHANNEL_PREFIX;
  const max = MAX_CHANNEL_NAME_LENGTH - prefix.length;
  if (roomId.length > max) {
    throw invalid(
      `it has ${roomId.length} characters, more than the ${max} that fit in a ${presence ? "presence" : "private"} channel name`,
    );
  }
  return prefix + roomId;
}

/** A chat room channel, taken apart by {@link chatRoomIdFromChannel}. */
export interface ChatRoomChannel {
  /** The room id: the whole rest of the name after the prefix, never empty. */
  roomId: string;
  /** True for `presence-chat.room.`, false for `private-chat.room.`. */
  presence: boolean;
}

/**
 * The room a chat channel name belongs to, or `null` when the name is not
 * exactly a valid `private-chat.room.{roomId}` or `presence-chat.room.{roomId}`
 * with a non-empty id. The strict inverse of {@link buildChatChannelName}: use
 * it in an auth endpoint to find the room whose membership to check, instead
 * of a `replace()` that lets other names through.
 *
 * Never throws: anything that is not a chat room channel (including a
 * non-string) gives `null`, which the endpoint should answer with 403.
 */
export function chatRoomIdFromChannel(channelName: string): ChatRoomChannel | null {
  if (typeof channelName !== "string") return null;
  let kind: ChannelKind;
  try {
    kind = validateChannelName(channelName);
  } catch {
    return null;
  }
  const prefix =
    kind === "private"
      ? CHAT_PRIVATE_CHANNEL_PREFIX
      : kind === "presence"
        ? CHAT_PRESENCE_CHANNEL_PREFIX
        : undefined;
  if (prefix === undefined || !channelName.startsWith(prefix)) return null;
  const roomId = channelName.slice(prefix.length);
  if (roomId.length === 0) return null;
  return { roomId, presence: kind === "presence" };
}

/**
 * A channel name or room id in an error, as the Rust core words it: a string in
 * full, quoted by `JSON.stringify` (the core's quoting; tests/vectors/channels.json
 * holds both to the same messages), anything else as its type.
 */
function quoted(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : `(${typeof value})`;
}

/** A short, safe rendering of a caller's value for an error message. */
export function describe(value: unknown): string {
  if (typeof value !== "string") return `(${typeof value})`;
  const shown = value.length > 60 ? `${value.slice(0, 60)}...` : value;
  return JSON.stringify(shown);
}
