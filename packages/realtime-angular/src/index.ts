/**
 * `@domvia/realtime-angular`: DomVia Realtime chat rooms as Angular signals.
 *
 * `provideDomVia(options)` in the app's providers; then in a component,
 * `inject(DomViaChat).chatRoom(roomId)` gives the room's snapshot and its
 * fields as signals, released when the component is destroyed (`DestroyRef`).
 * Signals need no zone: it works zoneless (a new app's default) and with
 * zone.js. Plain functions and an injection token, no decorators, so the
 * package needs no Angular compiler step.
 *
 * On the server (Angular SSR) nothing opens: rooms are their empty `loading`
 * snapshot and no wasm is loaded.
 *
 * @packageDocumentation
 */
import {
  computed,
  DestroyRef,
  effect,
  inject,
  Injector,
  makeEnvironmentProviders,
  PLATFORM_ID,
  signal,
  untracked,
} from "@angular/core";
import type { EnvironmentProviders, Signal } from "@angular/core";
import { isPlatformBrowser } from "@angular/common";
import { DomViaError, DomViaRealtime } from "@domvia/realtime";
import type { ConnectionState, DomViaRealtimeOptions } from "@domvia/realtime";
import { buildChatChannelName, ChatRoomRegistry, loadingSnapshot, roomActions, watchRoom } from "@domvia/realtime-chat";
import type {
  ChatMember,
  ChatMessage,
  ChatRoom,
  ChatRoomActions,
  ChatRoomSnapshot,
  SharedRoomOptions,
} from "@domvia/realtime-chat";

/** Options of {@link provideDomVia}: exactly one of `realtime` or `options`. */
export interface DomViaProviderOptions {
  /** A connection you created and dispose yourself. */
  realtime?: DomViaRealtime;
  /**
   * Or the options of a connection opened on first use in the browser and
   * disposed with the app. Angular CLI's builder does not copy the `.wasm`
   * files: add them to `assets` and give their URLs (`wasm` here,
   * `encryptionWasm` in `roomDefaults`).
   */
  options?: DomViaRealtimeOptions;
  /** Options every room starts from, for example `api` or `encryptionWasm`. */
  roomDefaults?: SharedRoomOptions;
  /** How long a room nobody shows stays open for the next view of it. Default 250 ms. */
  releaseDelayMs?: number;
}

/** Options of {@link DomViaChat.chatRoom}. */
export interface ChatRoomSignalOptions extends SharedRoomOptions {
  /** Called once per new stored message, in order (see `ChatRoom.onMessage`). */
  onMessage?: (message: ChatMessage) => void;
  /** Releases the room when this is destroyed; default: the calling context's (`inject(DestroyRef)`). */
  destroyRef?: DestroyRef;
  /** For a room id given as a signal, outside an injection context: where its effect lives. */
  injector?: Injector;
}

/** A room as signals, and its actions. */
export interface ChatRoomSignals extends ChatRoomActions {
  readonly snapshot: Signal<ChatRoomSnapshot>;
  readonly status: Signal<ChatRoomSnapshot["status"]>;
  readonly error: Signal<ChatRoomSnapshot["error"]>;
  readonly messages: Signal<readonly ChatMessage[]>;
  readonly hasOlder: Signal<boolean>;
  /** Who is typing now, never yourself. */
  readonly typing: Signal<readonly string[]>;
  readonly members: Signal<readonly ChatMember[]>;
  readonly unreadCount: Signal<number>;
  /** The room itself once open (null on the server). */
  readonly room: Signal<ChatRoom | null>;
}

function contextual<T>(what: string, given: T | undefined, fromContext: () => T): T {
  if (given !== undefined) return given;
  try {
    return fromContext();
  } catch (cause) {
    throw new DomViaError(
      "invalid_config",
      `unable to open ${what}; call it in an injection context (a constructor or field initialiser) or pass options.destroyRef`,
      { cause },
    );
  }
}

/**
 * The app's DomVia connection and its rooms (provided by {@link provideDomVia}).
 * Use it as `inject(DomViaChat)`.
 */
export class DomViaChat {
  readonly #realtime: DomViaRealtime | null;
  readonly #rooms: ChatRoomRegistry | null;

  /** @internal Made by {@link provideDomVia}. */
  constructor(realtime: DomViaRealtime | null, rooms: ChatRoomRegistry | null) {
    this.#realtime = realtime;
    this.#rooms = rooms;
  }

  /** The connection, or null on the server. */
  get realtime(): DomViaRealtime | null {
    return this.#realtime;
  }

  /** The connection's state as a signal (`initialized` on the server), until `destroyRef` (default: the caller's) is destroyed. */
  connectionState(options: { destroyRef?: DestroyRef } = {}): Signal<ConnectionState> {
    const state = signal<ConnectionState>(this.#realtime?.connection.state ?? "initialized");
    if (this.#realtime !== null) {
      const destroyRef = contextual("the connection state", options.destroyRef, () => inject(DestroyRef));
      const stop = this.#realtime.connection.onStateChange(({ current }) => state.set(current));
      destroyRef.onDestroy(stop);
    }
    return state.asReadonly();
  }

  /**
   * Opens room `roomId` until the caller is destroyed. The id, and the
   * options, may be given as functions that read signals (component inputs:
   * `() => this.roomId()`): they are read in an effect, once inputs are set,
   * and a change releases the old room and opens the new one.
   *
   * @throws {DomViaError} `invalid_room_id` for a room id the channel rules
   * refuse; `invalid_config` outside an injection context without
   * `destroyRef`, or when the room is open elsewhere with other options.
   */
  chatRoom(
    roomId: string | (() => string),
    options: ChatRoomSignalOptions | (() => ChatRoomSignalOptions) = {},
  ): ChatRoomSignals {
    const fixed = typeof options === "function" ? {} : options;
    const destroyRef = contextual(`room ${String(roomId)}`, fixed.destroyRef, () => inject(DestroyRef));
    const snapshot = signal<ChatRoomSnapshot>(loadingSnapshot(typeof roomId === "string" ? roomId : ""));
    const room = signal<ChatRoom | null>(null);
    let close: (() => void) | undefined;

    const open = (id: string, chosen: ChatRoomSignalOptions): void => {
      const { onMessage, destroyRef: _destroyRef, injector: _injector, ...roomOptions } = chosen;
      close?.();
      close = undefined;
      buildChatChannelName(id);
      room.set(null);
      snapshot.set(loadingSnapshot(id));
      if (this.#rooms === null) return;
      close = watchRoom(
        this.#rooms,
        id,
        roomOptions,
        (next, opened) => {
          room.set(opened);
          snapshot.set(next);
        },
        onMessage,
      );
    };

    if (typeof roomId === "string" && typeof options !== "function") {
      open(roomId, options);
    } else {
      const injector = contextual(`room ${String(roomId)}`, fixed.injector, () => inject(Injector));
      const watcher = effect(
        () => {
          const id = typeof roomId === "string" ? roomId : roomId();
          const chosen = typeof options === "function" ? options() : options;
          untracked(() => open(id, chosen));
        },
        { injector },
      );
      destroyRef.onDestroy(() => watcher.destroy());
    }
    destroyRef.onDestroy(() => {
      close?.();
      close = undefined;
    });

    return {
      snapshot: snapshot.asReadonly(),
      status: computed(() => snapshot().status),
      error: computed(() => snapshot().error),
      messages: computed(() => snapshot().messages),
      hasOlder: computed(() => snapshot().hasOlder),
      typing: computed(() => snapshot().typingUserIds),
      members: computed(() => snapshot().members),
      unreadCount: computed(() => snapshot().unreadCount),
      room: room.asReadonly(),
      ...roomActions(room, () => snapshot().roomId),
    };
  }
}

/**
 * The providers of a DomVia connection for the app (or a lazy route):
 * `bootstrapApplication(App, { providers: [provideDomVia({ options })] })`.
 *
 * @throws {DomViaError} `invalid_config` unless exactly one of `realtime` and `options` is given.
 */
export function provideDomVia(config: DomViaProviderOptions): EnvironmentProviders {
  if ((config.realtime === undefined) === (config.options === undefined)) {
    throw new DomViaError("invalid_config", "provideDomVia needs exactly one of realtime and options");
  }
  return makeEnvironmentProviders([
    {
      provide: DomViaChat,
      useFactory: (): DomViaChat => {
        if (!isPlatformBrowser(inject(PLATFORM_ID))) return new DomViaChat(null, null);
        const realtime = config.realtime ?? DomViaRealtime.create(config.options!);
        const rooms = new ChatRoomRegistry(realtime, {
          ...(config.releaseDelayMs === undefined ? {} : { releaseDelayMs: config.releaseDelayMs }),
          ...(config.roomDefaults === undefined ? {} : { defaults: config.roomDefaults }),
        });
        inject(DestroyRef).onDestroy(() => {
          rooms.close();
          if (config.realtime === undefined) realtime.dispose();
        });
        return new DomViaChat(realtime, rooms);
      },
    },
  ]);
}

/**
 * `inject(DomViaChat)`, with a coded error when {@link provideDomVia} is missing
 * (Angular's own would be a bare NullInjectorError).
 *
 * @throws {DomViaError} `missing_provider`.
 */
export function injectDomViaChat(): DomViaChat {
  const chat = inject(DomViaChat, { optional: true });
  if (chat === null) {
    throw new DomViaError("missing_provider", "DomViaChat is not provided: add provideDomVia(...) to the app's providers");
  }
  return chat;
}
