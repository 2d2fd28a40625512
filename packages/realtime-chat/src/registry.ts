/**
 * Rooms shared by reference count, for UI bindings: every component that shows
 * room R holds a lease on one `ChatRoom`, and the room is left a short while
 * after the last lease is released. The delay is what makes React's
 * StrictMode (mount, unmount, mount again at once), a Vue `v-if` flicker or a
 * route change to a view of the same room keep the one subscription instead
 * of tearing the room down and subscribing again (ably-chat-js's room
 * reference manager does the same).
 */
import type { DomViaRealtime } from "@domvia/realtime";
import { buildChatChannelName } from "@domvia/realtime";
import { chatError } from "./backend.js";
import { createChatRoom } from "./create.js";
import type { ChatMessage, ChatRoom, ChatRoomOptions, ChatRoomSnapshot } from "./types.js";

/** The options of a room opened through a registry: `roomId` and `channelName` come from the registry. */
export type SharedRoomOptions = Omit<ChatRoomOptions, "roomId" | "channelName">;

/** One holder's claim on a shared room; `release()` once, when the holder goes. */
export interface ChatRoomLease {
  readonly room: ChatRoom;
  /** Gives the lease back; the room is left `releaseDelayMs` after the last one. Idempotent. */
  release(): void;
}

/** Options of {@link ChatRoomRegistry}. */
export interface ChatRoomRegistryOptions {
  /** How long a room with no lease stays open for the next one. Default 250 ms. */
  releaseDelayMs?: number;
  /** Options every room starts from (for example `api` and `encryptionWasm`); a room's own options win. */
  defaults?: SharedRoomOptions;
}

interface Entry {
  readonly room: ChatRoom;
  readonly key: string;
  leases: number;
  releaseTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * A key that is equal for options equal by value (a room's, or a
 * connection's), so an inline `{}` or `{ presence: true }` written anew on
 * every render opens no new room. Functions (a `headersProvider`) do not
 * count: the first holder's are used.
 */
export function roomOptionsKey(options: object | undefined): string {
  const canonical = (value: unknown): unknown => {
    if (typeof value === "function") return undefined;
    if (value instanceof URL) return value.href;
    if (Array.isArray(value)) return value.map(canonical);
    if (typeof value === "object" && value !== null) {
      const sorted: Record<string, unknown> = {};
      for (const name of Object.keys(value).sort()) {
        const field = canonical((value as Record<string, unknown>)[name]);
        if (field !== undefined) sorted[name] = field;
      }
      return sorted;
    }
    return value;
  };
  return JSON.stringify(canonical(options ?? {}));
}

/** The placeholder snapshots of rooms not opened yet, one object per room id (stable identity). */
const placeholders = new Map<string, ChatRoomSnapshot>();

/**
 * The snapshot of a room that is not open yet (server rendering, or the
 * render before a binding's effect runs): `loading` and empty. The same
 * object for the same room id, as `useSyncExternalStore` requires.
 */
export function loadingSnapshot(roomId: string): ChatRoomSnapshot {
  let snapshot = placeholders.get(roomId);
  if (snapshot === undefined) {
    snapshot = Object.freeze({
      roomId,
      status: "loading",
      connection: "initialized",
      messages: Object.freeze([]),
      hasOlder: false,
      typingUserIds: Object.freeze([]),
      members: Object.freeze([]),
      unreadCount: 0,
      readPositions: Object.freeze({}),
    } satisfies ChatRoomSnapshot);
    // Bounded: a page that visits more rooms than this starts over.
    if (placeholders.size >= 1000) placeholders.clear();
    placeholders.set(roomId, snapshot);
  }
  return snapshot;
}

/** The rooms of one connection, shared by lease. */
export class ChatRoomRegistry {
  readonly #realtime: DomViaRealtime;
  readonly #releaseDelayMs: number;
  readonly #defaults: SharedRoomOptions;
  readonly #entries = new Map<string, Entry>();
  #closed = false;

  /** @throws {DomViaError} `invalid_config` for a negative or non-finite `releaseDelayMs`. */
  constructor(realtime: DomViaRealtime, options: ChatRoomRegistryOptions = {}) {
    const delay = options.releaseDelayMs ?? 250;
    if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) {
      throw chatError("invalid_config", "unable to create the room registry; releaseDelayMs must be a number of ms >= 0");
    }
    this.#realtime = realtime;
    this.#releaseDelayMs = delay;
    this.#defaults = options.defaults ?? {};
  }

  /**
   * A lease on room `roomId`, opening it unless it is open (or being
   * released) with the same options.
   *
   * @throws {DomViaError} `invalid_room_id` for a room id the channel rules
   * refuse; `invalid_config` when the room is held open with other options
   * (two views of one room must agree on `presence`, `encrypted`, ...), or
   * for an invalid option; `disposed` after {@link close}.
   */
  acquire(roomId: string, options?: SharedRoomOptions): ChatRoomLease {
    if (this.#closed) throw chatError("disposed", "unable to open the room; its registry was closed");
    const merged: SharedRoomOptions = { ...this.#defaults, ...options };
    const channelName = buildChatChannelName(roomId);
    const key = roomOptionsKey(merged);
    let entry = this.#entries.get(roomId);
    if (entry !== undefined && entry.key !== key) {
      if (entry.leases > 0) {
        throw chatError(
          "invalid_config",
          `unable to open room ${roomId} with these options; it is open with other options (${entry.key}) elsewhere on the page`,
        );
      }
      // Nobody holds it: the old options' room goes now, not after its delay.
      this.#leave(roomId, entry);
      entry = undefined;
    }
    if (entry === undefined) {
      const room = createChatRoom(this.#realtime, { ...merged, roomId, channelName });
      entry = { room, key, leases: 0, releaseTimer: undefined };
      this.#entries.set(roomId, entry);
    }
    clearTimeout(entry.releaseTimer);
    entry.releaseTimer = undefined;
    entry.leases += 1;
    const held = entry;
    let released = false;
    return {
      room: held.room,
      release: () => {
        if (released) return;
        released = true;
        held.leases -= 1;
        if (held.leases > 0 || this.#entries.get(roomId) !== held) return;
        held.releaseTimer = setTimeout(() => this.#leave(roomId, held), this.#releaseDelayMs);
      },
    };
  }

  /** The rooms open now and how many leases each has (for devtools and tests). */
  get openRooms(): ReadonlyArray<{ roomId: string; leases: number }> {
    return [...this.#entries].map(([roomId, entry]) => ({ roomId, leases: entry.leases }));
  }

  /** Leaves every room at once, leases or not; later `acquire` calls throw `disposed`. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const [roomId, entry] of [...this.#entries]) this.#leave(roomId, entry);
  }

  #leave(roomId: string, entry: Entry): void {
    clearTimeout(entry.releaseTimer);
    if (this.#entries.get(roomId) === entry) this.#entries.delete(roomId);
    entry.room.leave();
  }
}

/** A room's actions, for bindings: the room's own, usable before it opens (they reject with `not_ready` or do nothing). */
export interface ChatRoomActions {
  sendMessage(input: { text: string }): Promise<ChatMessage>;
  retry(clientId: string): Promise<ChatMessage>;
  loadOlder(): Promise<{ added: number; hasMore: boolean }>;
  sendTyping(input?: { user_id?: string }): void;
  stopTyping(): void;
  markRead(messageId: string): void;
}

/**
 * The actions of whichever room `current()` returns: the promises reject
 * with `not_ready` (naming `roomId()`) while it is null, and the signals
 * (typing, read position) do nothing then, as they do on a room not ready yet.
 */
export function roomActions(current: () => ChatRoom | null, roomId: () => string): ChatRoomActions {
  const notOpen = (operation: string) =>
    Promise.reject(chatError("not_ready", `unable to ${operation}; room ${roomId()} is not open yet`));
  return {
    sendMessage: (input) => current()?.sendMessage(input) ?? notOpen("send a message"),
    retry: (clientId) => current()?.retry(clientId) ?? notOpen("retry a message"),
    loadOlder: () => current()?.loadOlder() ?? notOpen("load older messages"),
    sendTyping: (input) => current()?.sendTyping(input),
    stopTyping: () => current()?.stopTyping(),
    markRead: (messageId) => current()?.markRead(messageId),
  };
}

/**
 * Takes a lease on room `roomId` and calls `onSnapshot` with its snapshot now
 * and after each change (and `onMessage` per new message), for bindings whose
 * state is a cell to set (Vue refs, Angular signals). Returns the function
 * that stops both and releases the lease.
 */
export function watchRoom(
  rooms: ChatRoomRegistry,
  roomId: string,
  options: SharedRoomOptions,
  onSnapshot: (snapshot: ChatRoomSnapshot, room: ChatRoom) => void,
  onMessage?: (message: ChatMessage) => void,
): () => void {
  const lease = rooms.acquire(roomId, options);
  const { room } = lease;
  onSnapshot(room.getSnapshot(), room);
  const stopWatching = room.subscribe(() => onSnapshot(room.getSnapshot(), room));
  const stopListening = onMessage === undefined ? undefined : room.onMessage(onMessage);
  return () => {
    stopWatching();
    stopListening?.();
    lease.release();
  };
}
