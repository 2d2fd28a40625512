"use client";
/**
 * `@domvia/realtime-react`: React hooks over `@domvia/realtime-chat` rooms.
 *
 * Every hook reads a room's store (`subscribe` + `getSnapshot`) through
 * `useSyncExternalStore`; the chat logic stays in the room. Rooms are shared by
 * lease ({@link ChatRoomRegistry}), so two components showing one room share
 * one subscription, and StrictMode's mount-unmount-mount keeps it.
 *
 * On the server (SSR, React Server Components rendering client components),
 * nothing opens: effects do not run there, so every room renders its empty
 * `loading` snapshot and no wasm is loaded.
 *
 * @packageDocumentation
 */
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore,
} from "react";
import type { ReactNode } from "react";
import { DomViaError, DomViaRealtime } from "@domvia/realtime";
import type { ConnectionState, DomViaRealtimeOptions } from "@domvia/realtime";
import { buildChatChannelName, ChatRoomRegistry, loadingSnapshot, roomActions, roomOptionsKey } from "@domvia/realtime-chat";
import type {
  ChatMember,
  ChatMessage,
  ChatRoom,
  ChatRoomActions,
  ChatRoomSnapshot,
  SharedRoomOptions,
} from "@domvia/realtime-chat";

export type { ChatRoomActions } from "@domvia/realtime-chat";

interface DomViaContextValue {
  readonly realtime: DomViaRealtime | null;
  readonly rooms: ChatRoomRegistry | null;
}

/** Before the provider's effect has run (and always on the server): nothing open. */
const NOTHING_OPEN: DomViaContextValue = Object.freeze({ realtime: null, rooms: null });

const DomViaContext = createContext<DomViaContextValue | undefined>(undefined);

/** Props of {@link DomViaProvider}: exactly one of `realtime` or `options`. */
export interface DomViaProviderProps {
  /** A connection you created and dispose yourself. */
  realtime?: DomViaRealtime;
  /**
   * Or the options of a connection the provider opens in the browser (never on
   * the server) and disposes after it unmounts. Compared by value: an inline
   * object does not reconnect.
   */
  options?: DomViaRealtimeOptions;
  /** Options every room starts from, for example `api` or `encryptionWasm`. */
  roomDefaults?: SharedRoomOptions;
  /** How long a room nobody shows stays open for the next view of it. Default 250 ms. */
  releaseDelayMs?: number;
  children?: ReactNode;
}

/** A connection the provider owns, shared by its key so StrictMode's second mount reuses it. */
interface OwnedConnection {
  readonly realtime: DomViaRealtime;
  holders: number;
  disposeTimer: ReturnType<typeof setTimeout> | undefined;
}

const ownedConnections = new Map<string, OwnedConnection>();

/** How long an owned connection outlives its provider: past StrictMode's remount, not past a real unmount. */
const CONNECTION_RELEASE_DELAY_MS = 250;

function holdConnection(key: string, options: DomViaRealtimeOptions): { realtime: DomViaRealtime; release(): void } {
  let owned = ownedConnections.get(key);
  if (owned === undefined) {
    owned = { realtime: DomViaRealtime.create(options), holders: 0, disposeTimer: undefined };
    ownedConnections.set(key, owned);
  }
  clearTimeout(owned.disposeTimer);
  owned.disposeTimer = undefined;
  owned.holders += 1;
  const held = owned;
  return {
    realtime: held.realtime,
    release() {
      held.holders -= 1;
      if (held.holders > 0) return;
      held.disposeTimer = setTimeout(() => {
        if (ownedConnections.get(key) === held) ownedConnections.delete(key);
        held.realtime.dispose();
      }, CONNECTION_RELEASE_DELAY_MS);
    },
  };
}

/** One registry per connection, so every provider of one connection shares its rooms. */
const registries = new WeakMap<DomViaRealtime, { registry: ChatRoomRegistry; key: string }>();

function registryOf(realtime: DomViaRealtime, releaseDelayMs: number | undefined, defaults: SharedRoomOptions | undefined) {
  const key = JSON.stringify([releaseDelayMs ?? null, roomOptionsKey(defaults)]);
  const known = registries.get(realtime);
  if (known !== undefined && known.key === key) return known.registry;
  const registry = new ChatRoomRegistry(realtime, {
    ...(releaseDelayMs === undefined ? {} : { releaseDelayMs }),
    ...(defaults === undefined ? {} : { defaults }),
  });
  registries.set(realtime, { registry, key });
  return registry;
}

/**
 * Makes a DomVia connection and its rooms available to the hooks below it.
 *
 * ```tsx
 * <DomViaProvider options={{ key, host, authEndpoint: "/realtime/auth", clientEvents: true }}>
 *   <Room roomId="r_42" />
 * </DomViaProvider>
 * ```
 *
 * @throws {DomViaError} `invalid_config` unless exactly one of `realtime` and `options` is given.
 */
export function DomViaProvider(props: DomViaProviderProps): ReactNode {
  const { realtime: given, options, roomDefaults, releaseDelayMs, children } = props;
  if ((given === undefined) === (options === undefined)) {
    throw new DomViaError("invalid_config", "DomViaProvider needs exactly one of the props realtime and options");
  }
  const optionsKey = options === undefined ? "" : roomOptionsKey(options);
  const defaultsKey = roomOptionsKey(roomDefaults);
  const latest = useRef({ options, roomDefaults });
  latest.current = { options, roomDefaults };
  const [value, setValue] = useState<DomViaContextValue>(NOTHING_OPEN);

  useEffect(() => {
    const { options: currentOptions, roomDefaults: currentDefaults } = latest.current;
    const held = given === undefined && currentOptions !== undefined ? holdConnection(optionsKey, currentOptions) : undefined;
    const realtime = given ?? held!.realtime;
    setValue({ realtime, rooms: registryOf(realtime, releaseDelayMs, currentDefaults) });
    return () => held?.release();
  }, [given, optionsKey, defaultsKey, releaseDelayMs]);

  return createElement(DomViaContext.Provider, { value }, children);
}

function useDomViaContext(hook: string): DomViaContextValue {
  const value = useContext(DomViaContext);
  if (value === undefined) {
    throw new DomViaError("missing_provider", `${hook} must be used inside a <DomViaProvider>`);
  }
  return value;
}

/** The provider's connection, or null until it is open (and on the server). */
export function useDomViaRealtime(): DomViaRealtime | null {
  return useDomViaContext("useDomViaRealtime").realtime;
}

const noSubscription = () => () => undefined;

/** The connection's state (`initialized` on the server and before the connection opens). */
export function useConnectionState(): ConnectionState {
  const { realtime } = useDomViaContext("useConnectionState");
  const subscribe = useCallback(
    (notify: () => void) => (realtime === null ? noSubscription() : realtime.connection.onStateChange(notify)),
    [realtime],
  );
  const getState = useCallback((): ConnectionState => realtime?.connection.state ?? "initialized", [realtime]);
  return useSyncExternalStore(subscribe, getState, () => "initialized");
}

/** Options of {@link useChatRoom}: the room's options (compared by value) and listeners. */
export interface UseChatRoomOptions extends SharedRoomOptions {
  /**
   * Called once per new stored message, in order (see `ChatRoom.onMessage`).
   * The latest function is called: an inline arrow does not resubscribe.
   */
  onMessage?: (message: ChatMessage) => void;
}

/** {@link useChatRoom}'s answer: the room's snapshot, its actions, and the room itself once open. */
export type UseChatRoomResult = ChatRoomSnapshot & ChatRoomActions & { readonly room: ChatRoom | null };

/**
 * Opens room `roomId` while the component is mounted (shared with every other
 * component showing it) and re-renders on each change of its snapshot.
 *
 * ```tsx
 * const { status, messages, sendMessage } = useChatRoom("r_42", { presence: true });
 * ```
 *
 * @throws {DomViaError} `missing_provider` outside a {@link DomViaProvider};
 * `invalid_room_id` for a room id the channel rules refuse; `invalid_config`
 * when the room is open elsewhere on the page with other options.
 */
export function useChatRoom(roomId: string, options?: UseChatRoomOptions): UseChatRoomResult {
  const { rooms } = useDomViaContext("useChatRoom");
  // Checked here, in render, so a bad id reaches the error boundary instead of rendering an empty room forever.
  buildChatChannelName(roomId);
  const { onMessage, ...roomOptions } = options ?? {};
  const optionsKey = roomOptionsKey(roomOptions);
  const latestOptions = useRef(roomOptions);
  latestOptions.current = roomOptions;
  const onMessageRef = useRef(onMessage);
  useEffect(() => {
    onMessageRef.current = onMessage;
  });
  const [opened, setOpened] = useState<{ room: ChatRoom } | { error: unknown } | null>(null);
  if (opened !== null && "error" in opened) throw opened.error;

  useEffect(() => {
    if (rooms === null) return;
    let lease: ReturnType<ChatRoomRegistry["acquire"]>;
    try {
      lease = rooms.acquire(roomId, latestOptions.current);
    } catch (error) {
      setOpened({ error });
      return;
    }
    setOpened({ room: lease.room });
    const stopListening = lease.room.onMessage((message) => onMessageRef.current?.(message));
    return () => {
      stopListening();
      lease.release();
    };
  }, [rooms, roomId, optionsKey]);

  const room = opened !== null && "room" in opened && opened.room.roomId === roomId ? opened.room : null;
  const subscribe = useCallback((notify: () => void) => (room === null ? noSubscription() : room.subscribe(notify)), [room]);
  const getSnapshot = useCallback(() => (room === null ? loadingSnapshot(roomId) : room.getSnapshot()), [room, roomId]);
  const getServerSnapshot = useCallback(() => loadingSnapshot(roomId), [roomId]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, getServerSnapshot);

  const actions = useMemo(
    () =>
      roomActions(
        () => room,
        () => roomId,
      ),
    [room, roomId],
  );

  return useMemo(() => ({ ...snapshot, ...actions, room }), [snapshot, actions, room]);
}

/**
 * Who is typing in room `roomId` (never yourself), and the typing signals.
 * Shares the room with {@link useChatRoom}: pass the same options.
 */
export function useTyping(
  roomId: string,
  options?: SharedRoomOptions,
): { typingUserIds: readonly string[]; sendTyping: ChatRoomActions["sendTyping"]; stopTyping: ChatRoomActions["stopTyping"] } {
  const { typingUserIds, sendTyping, stopTyping } = useChatRoom(roomId, options);
  return useMemo(() => ({ typingUserIds, sendTyping, stopTyping }), [typingUserIds, sendTyping, stopTyping]);
}

/** Who is online in presence room `roomId`. Shares the room with {@link useChatRoom}: pass the same options. */
export function usePresence(roomId: string, options?: SharedRoomOptions): readonly ChatMember[] {
  return useChatRoom(roomId, options).members;
}
