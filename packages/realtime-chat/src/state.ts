/**
 * The wasm `ChatRoomState` (the room's pure state machine in Rust), with its
 * loose wasm-bindgen types tightened by hand. Every call goes through
 * `callCore`, so a core error becomes a `DomViaError` with the core's code.
 */
import { callCore, ChatRoomState } from "@domvia/realtime/core";
import type { ChatMessage } from "./types.js";

/** A backend Message object (API.md), as received. */
export type StoredMessageJson = Record<string, unknown>;

/** What applying messages changed. */
export interface Applied {
  /** Stored messages new to the room, ascending by seq. */
  added: ChatMessage[];
  /** Set when a seq gap needs `GET .../messages?after=<this>`. */
  catch_up_after?: number | undefined;
  /** Users whose typing the new messages ended (a message from a typist ends their typing). */
  typing_stopped: string[];
}

/** The methods of the wasm class this package uses, as the plan defines them. */
interface WasmRoomState {
  applyLatestPage(messages: unknown[], hasMore: boolean, nowMs: number): unknown;
  applyOlderPage(messages: unknown[], hasMore: boolean, nowMs: number): unknown;
  applyCatchUpPage(messages: unknown[], hasMore: boolean, nowMs: number): unknown;
  applyCreated(message: unknown, nowMs: number): unknown;
  readonly olderCursor: number | undefined;
  readonly catchUpCursor: number;
  beginSend(clientId: string, text: string, nowMs: number): unknown;
  sendSucceeded(clientId: string, stored: unknown, nowMs: number): unknown;
  sendFailed(clientId: string): void;
  retry(clientId: string): string;
  pendingSends(): unknown;
  typingInput(nowMs: number): boolean;
  typingStop(): boolean;
  typingReceived(userId: string, isTyping: boolean, nowMs: number): boolean;
  expireTyping(nowMs: number): unknown;
  readonly nextTypingDeadline: number | undefined;
  typingUsers(): unknown;
  setReadState(myLastReadSeq: number, unreadCount: number, latestSeq: number): void;
  markRead(messageId: string): number | undefined;
  receiptReceived(userId: string, seq: number): boolean;
  readPositions(): unknown;
  readonly unreadCount: number;
  messages(): unknown;
  free(): void;
}

type WasmRoomStateClass = new (
  roomId: string,
  myUserId: string,
  typingThrottleMs: number,
  typingTimeoutMs: number,
) => WasmRoomState;

function toApplied(value: unknown): Applied {
  const applied = value as
    | { added?: ChatMessage[]; catch_up_after?: number | null; typing_stopped?: string[] }
    | undefined;
  const result: Applied = { added: applied?.added ?? [], typing_stopped: applied?.typing_stopped ?? [] };
  if (typeof applied?.catch_up_after === "number") result.catch_up_after = applied.catch_up_after;
  return result;
}

/** One room's state in the wasm core. Free it with {@link RoomState.free}. */
export class RoomState {
  readonly #inner: WasmRoomState;

  constructor(roomId: string, myUserId: string, throttleMs: number, timeoutMs: number) {
    // Assigned without a cast, so a drift of the wasm class from this interface fails to compile.
    const Class: WasmRoomStateClass = ChatRoomState;
    this.#inner = callCore("create the chat room state", () => new Class(roomId, myUserId, throttleMs, timeoutMs));
  }

  applyLatestPage(messages: StoredMessageJson[], hasMore: boolean, nowMs: number): Applied {
    return toApplied(callCore("apply the latest messages", () => this.#inner.applyLatestPage(messages, hasMore, nowMs)));
  }

  applyOlderPage(messages: StoredMessageJson[], hasMore: boolean, nowMs: number): Applied {
    return toApplied(callCore("apply older messages", () => this.#inner.applyOlderPage(messages, hasMore, nowMs)));
  }

  applyCatchUpPage(messages: StoredMessageJson[], hasMore: boolean, nowMs: number): Applied {
    return toApplied(callCore("apply caught-up messages", () => this.#inner.applyCatchUpPage(messages, hasMore, nowMs)));
  }

  applyCreated(message: StoredMessageJson, nowMs: number): Applied {
    return toApplied(callCore("apply a new message", () => this.#inner.applyCreated(message, nowMs)));
  }

  get olderCursor(): number | undefined {
    return callCore("read the older cursor", () => this.#inner.olderCursor ?? undefined);
  }

  get catchUpCursor(): number {
    return callCore("read the catch-up cursor", () => this.#inner.catchUpCursor);
  }

  beginSend(clientId: string, text: string, nowMs: number): ChatMessage {
    return callCore("send a message", () => this.#inner.beginSend(clientId, text, nowMs) as ChatMessage);
  }

  sendSucceeded(clientId: string, stored: StoredMessageJson, nowMs: number): Applied {
    return toApplied(callCore("confirm a sent message", () => this.#inner.sendSucceeded(clientId, stored, nowMs)));
  }

  sendFailed(clientId: string): void {
    callCore("mark a message failed", () => this.#inner.sendFailed(clientId));
  }

  retry(clientId: string): string {
    return callCore("retry a message", () => this.#inner.retry(clientId));
  }

  pendingSends(): { client_id: string; text: string }[] {
    return callCore("list pending messages", () => this.#inner.pendingSends() as { client_id: string; text: string }[]);
  }

  typingInput(nowMs: number): boolean {
    return callCore("signal typing", () => this.#inner.typingInput(nowMs));
  }

  typingStop(): boolean {
    return callCore("stop typing", () => this.#inner.typingStop());
  }

  typingReceived(userId: string, isTyping: boolean, nowMs: number): boolean {
    return callCore("apply a typing signal", () => this.#inner.typingReceived(userId, isTyping, nowMs));
  }

  expireTyping(nowMs: number): string[] {
    return callCore("expire typing", () => this.#inner.expireTyping(nowMs) as string[]);
  }

  get nextTypingDeadline(): number | undefined {
    return callCore("read the typing deadline", () => this.#inner.nextTypingDeadline ?? undefined);
  }

  typingUsers(): string[] {
    return callCore("list typing users", () => this.#inner.typingUsers() as string[]);
  }

  setReadState(myLastReadSeq: number, unreadCount: number, latestSeq: number): void {
    callCore("set the read state", () => this.#inner.setReadState(myLastReadSeq, unreadCount, latestSeq));
  }

  markRead(messageId: string): number | undefined {
    return callCore("mark a message read", () => this.#inner.markRead(messageId) ?? undefined);
  }

  receiptReceived(userId: string, seq: number): boolean {
    return callCore("apply a read receipt", () => this.#inner.receiptReceived(userId, seq));
  }

  readPositions(): Record<string, number> {
    return callCore("read the read positions", () => {
      const positions = this.#inner.readPositions();
      // A wasm Map or a plain object, whichever the boundary hands over.
      return positions instanceof Map
        ? (Object.fromEntries(positions) as Record<string, number>)
        : { ...(positions as Record<string, number>) };
    });
  }

  get unreadCount(): number {
    return callCore("read the unread count", () => this.#inner.unreadCount);
  }

  messages(): ChatMessage[] {
    return callCore("list messages", () => this.#inner.messages() as ChatMessage[]);
  }

  free(): void {
    this.#inner.free();
  }
}
