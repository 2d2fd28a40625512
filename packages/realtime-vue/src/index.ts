/**
 * `@domvia/realtime-vue`: a Vue plugin and composables over
 * `@domvia/realtime-chat` rooms.
 *
 * Each composable holds a `shallowRef` of the room's snapshot (a new immutable
 * object on each change, so `shallowRef` is all the reactivity it needs), fed
 * by the room's `subscribe`, and releases its room with `onScopeDispose`.
 * Rooms are shared by lease ({@link ChatRoomRegistry}): two components
 * showing one room share one subscription, and a `v-if` flicker keeps it.
 *
 * On the server (Nuxt, `@vue/server-renderer`) nothing opens: rooms render
 * their empty `loading` snapshot and no wasm is loaded.
 *
 * @packageDocumentation
 */
import { computed, getCurrentScope, inject, onScopeDispose, shallowReadonly, shallowRef, toValue, watch } from "vue";
import type { App, ComputedRef, InjectionKey, MaybeRefOrGetter, ShallowRef } from "vue";
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

/** Options of {@link createDomVia}: exactly one of `realtime` or `options`. */
export interface DomViaPluginOptions {
  /** A connection you created and dispose yourself. */
  realtime?: DomViaRealtime;
  /** Or the options of a connection the plugin opens on first use in the browser and disposes when the app unmounts. */
  options?: DomViaRealtimeOptions;
  /** Options every room starts from, for example `api` or `encryptionWasm`. */
  roomDefaults?: SharedRoomOptions;
  /** How long a room nobody shows stays open for the next view of it. Default 250 ms. */
  releaseDelayMs?: number;
}

/** What the plugin provides: the connection and its rooms, opened on first use, never on the server. */
interface DomViaHandle {
  realtime(): DomViaRealtime | null;
  rooms(): ChatRoomRegistry | null;
}

const DOMVIA: InjectionKey<DomViaHandle> = Symbol("domvia");

const inBrowser = (): boolean => typeof window !== "undefined" && typeof document !== "undefined";

/**
 * The plugin: `app.use(createDomVia({ options: { key, host, authEndpoint } }))`.
 *
 * @throws {DomViaError} `invalid_config` unless exactly one of `realtime` and `options` is given.
 */
export function createDomVia(config: DomViaPluginOptions): { install(app: App): void } {
  if ((config.realtime === undefined) === (config.options === undefined)) {
    throw new DomViaError("invalid_config", "createDomVia needs exactly one of realtime and options");
  }
  return {
    install(app) {
      let realtime: DomViaRealtime | undefined;
      let rooms: ChatRoomRegistry | undefined;
      const handle: DomViaHandle = {
        realtime() {
          if (!inBrowser()) return null;
          realtime ??= config.realtime ?? DomViaRealtime.create(config.options!);
          return realtime;
        },
        rooms() {
          const connection = handle.realtime();
          if (connection === null) return null;
          rooms ??= new ChatRoomRegistry(connection, {
            ...(config.releaseDelayMs === undefined ? {} : { releaseDelayMs: config.releaseDelayMs }),
            ...(config.roomDefaults === undefined ? {} : { defaults: config.roomDefaults }),
          });
          return rooms;
        },
      };
      app.provide(DOMVIA, handle);
      app.onUnmount(() => {
        rooms?.close();
        if (config.realtime === undefined) realtime?.dispose();
      });
    },
  };
}

function useHandle(composable: string): DomViaHandle {
  const handle = getCurrentScope() === undefined ? undefined : inject(DOMVIA, undefined);
  if (handle === undefined) {
    throw new DomViaError(
      "missing_provider",
      `${composable} must be called in a component's setup (or an effect scope) of an app that uses createDomVia()`,
    );
  }
  return handle;
}

/** The plugin's connection, or null on the server. */
export function useDomViaRealtime(): DomViaRealtime | null {
  return useHandle("useDomViaRealtime").realtime();
}

/** The connection's state, kept current (`initialized` on the server). */
export function useConnectionState(): Readonly<ShallowRef<ConnectionState>> {
  const realtime = useHandle("useConnectionState").realtime();
  const state = shallowRef<ConnectionState>(realtime?.connection.state ?? "initialized");
  if (realtime !== null) {
    const stop = realtime.connection.onStateChange(({ current }) => {
      state.value = current;
    });
    onScopeDispose(stop);
  }
  return shallowReadonly(state);
}

/** Options of {@link useChatRoom}: the room's options and a message listener. */
export interface UseChatRoomOptions extends SharedRoomOptions {
  /** Called once per new stored message, in order (see `ChatRoom.onMessage`). */
  onMessage?: (message: ChatMessage) => void;
}

/** {@link useChatRoom}'s answer: the snapshot as one ref, its fields as computed refs, and the room's actions. */
export interface UseChatRoomResult extends ChatRoomActions {
  readonly snapshot: Readonly<ShallowRef<ChatRoomSnapshot>>;
  readonly status: ComputedRef<ChatRoomSnapshot["status"]>;
  readonly error: ComputedRef<ChatRoomSnapshot["error"]>;
  readonly messages: ComputedRef<readonly ChatMessage[]>;
  readonly hasOlder: ComputedRef<boolean>;
  readonly typingUserIds: ComputedRef<readonly string[]>;
  readonly members: ComputedRef<readonly ChatMember[]>;
  readonly unreadCount: ComputedRef<number>;
  /** The room itself once open (null on the server). */
  readonly room: Readonly<ShallowRef<ChatRoom | null>>;
}

/**
 * Opens room `roomId` (a string, ref or getter: a new id releases the old
 * room) for as long as the calling scope lives.
 *
 * ```vue
 * <script setup lang="ts">
 * const { messages, sendMessage } = useChatRoom(() => props.roomId, { presence: true });
 * </script>
 * ```
 *
 * @throws {DomViaError} `missing_provider` outside setup or without the
 * plugin; `invalid_room_id` for a room id the channel rules refuse;
 * `invalid_config` when the room is open elsewhere on the page with other options.
 */
export function useChatRoom(roomId: MaybeRefOrGetter<string>, options?: UseChatRoomOptions): UseChatRoomResult {
  const handle = useHandle("useChatRoom");
  const { onMessage, ...roomOptions } = options ?? {};
  const initialId = toValue(roomId);
  // Checked now, so a bad id throws from setup instead of showing an empty room forever.
  buildChatChannelName(initialId);
  const snapshot = shallowRef<ChatRoomSnapshot>(loadingSnapshot(initialId));
  const room = shallowRef<ChatRoom | null>(null);
  let close: (() => void) | undefined;

  const open = (id: string): void => {
    close?.();
    close = undefined;
    room.value = null;
    snapshot.value = loadingSnapshot(id);
    const rooms = handle.rooms();
    if (rooms === null) return;
    close = watchRoom(
      rooms,
      id,
      roomOptions,
      (next, opened) => {
        room.value = opened;
        snapshot.value = next;
      },
      onMessage,
    );
  };

  open(initialId);
  watch(() => toValue(roomId), (id) => {
    buildChatChannelName(id);
    open(id);
  });
  onScopeDispose(() => {
    close?.();
    close = undefined;
  });

  return {
    snapshot: shallowReadonly(snapshot),
    status: computed(() => snapshot.value.status),
    error: computed(() => snapshot.value.error),
    messages: computed(() => snapshot.value.messages),
    hasOlder: computed(() => snapshot.value.hasOlder),
    typingUserIds: computed(() => snapshot.value.typingUserIds),
    members: computed(() => snapshot.value.members),
    unreadCount: computed(() => snapshot.value.unreadCount),
    room: shallowReadonly(room),
    ...roomActions(
      () => room.value,
      () => snapshot.value.roomId,
    ),
  };
}

/** Who is typing in room `roomId` (never yourself), and the typing signals. Pass the options {@link useChatRoom} gets. */
export function useTyping(
  roomId: MaybeRefOrGetter<string>,
  options?: SharedRoomOptions,
): Pick<UseChatRoomResult, "typingUserIds" | "sendTyping" | "stopTyping"> {
  const { typingUserIds, sendTyping, stopTyping } = useChatRoom(roomId, options);
  return { typingUserIds, sendTyping, stopTyping };
}

/** Who is online in presence room `roomId`. Pass the options {@link useChatRoom} gets. */
export function usePresence(roomId: MaybeRefOrGetter<string>, options?: SharedRoomOptions): ComputedRef<readonly ChatMember[]> {
  return useChatRoom(roomId, options).members;
}
