/**
 * The encrypted key store: one IndexedDB database, `domvia-e2ee`.
 *
 * - object store `storage_keys`, key = user id: `{ key }`, a non-extractable
 *   AES-256-GCM `CryptoKey` generated once per user (IndexedDB's structured
 *   clone keeps it non-extractable: script can use it, never read it);
 * - object store `entries`, key = `[user id, name]`: `{ rev, iv, data }`, the
 *   JSON of one entry encrypted under that key with a fresh random 12-byte IV
 *   per write, the user id and entry name bound as associated data (an entry
 *   cannot be moved to another user or name). Names: `device` (device id and
 *   its 64-byte secret), `known_devices` (pinned public keys), `room:<roomId>`
 *   (the room's exported state: epoch secrets and their member devices);
 * - object store `seen`, key = `[user id, room id, sender user id, message id]`:
 *   the backend message id under which this user's devices first opened that
 *   envelope (the replay ledger). One small record per opened message, so a
 *   room's state does not grow with its history and is not rewritten per
 *   message. Not encrypted: these ids are metadata every server holds; code
 *   that can write this profile's storage is outside the threat model (it
 *   could as well replace the app).
 *
 * `rev` counts writes, so a tab notices that another one changed an entry
 * since it read it. Callers hold the user's lock (lock.ts) around
 * read-modify-write.
 */
import { e2eeError } from "./errors.js";

const DB_NAME = "domvia-e2ee";
const DB_VERSION = 2;
const KEYS = "storage_keys";
const ENTRIES = "entries";
const SEEN = "seen";

/** One decrypted entry and its write counter. */
export interface StoredEntry<T> {
  rev: number;
  value: T;
}

interface EntryRecord {
  rev: number;
  iv: Uint8Array;
  data: ArrayBuffer;
}

function unavailable(operation: string, cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return e2eeError("e2ee_storage_unavailable", `unable to ${operation}; IndexedDB failed: ${reason}`, { cause });
}

function settle<T>(request: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error ?? new Error("IndexedDB request failed"));
  });
}

function done(transaction: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error ?? new Error("IndexedDB transaction failed"));
    transaction.onabort = () => reject(transaction.error ?? new Error("IndexedDB transaction aborted"));
  });
}

let database: Promise<IDBDatabase> | undefined;

function openDatabase(): Promise<IDBDatabase> {
  database ??= new Promise<IDBDatabase>((resolve, reject) => {
    if (typeof indexedDB === "undefined") {
      reject(new Error("indexedDB is not available here"));
      return;
    }
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(KEYS)) db.createObjectStore(KEYS);
      if (!db.objectStoreNames.contains(ENTRIES)) db.createObjectStore(ENTRIES);
      if (!db.objectStoreNames.contains(SEEN)) db.createObjectStore(SEEN);
    };
    request.onsuccess = () => {
      const db = request.result;
      // Another tab upgrading later: let it, and reopen on the next use.
      db.onversionchange = () => {
        db.close();
        database = undefined;
      };
      resolve(db);
    };
    request.onerror = () => reject(request.error ?? new Error("unable to open the database"));
    request.onblocked = () => reject(new Error("the database is blocked by another tab"));
  }).catch((cause: unknown) => {
    database = undefined;
    throw unavailable("open the key store", cause);
  });
  return database;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function associatedData(userId: string, name: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`domvia-e2ee store v1\u0000${userId}\u0000${name}`);
}

/** One user's entries. Open it with {@link KeyStore.open} while holding the user's lock. */
export class KeyStore {
  readonly #db: IDBDatabase;
  readonly #userId: string;
  readonly #key: CryptoKey;

  private constructor(db: IDBDatabase, userId: string, key: CryptoKey) {
    this.#db = db;
    this.#userId = userId;
    this.#key = key;
  }

  /** The user's store, generating its storage key on first use. Hold the user's lock. */
  static async open(userId: string): Promise<KeyStore> {
    const db = await openDatabase();
    try {
      const read = db.transaction(KEYS, "readonly");
      const existing = (await settle(read.objectStore(KEYS).get(userId))) as { key?: unknown } | undefined;
      if (existing?.key instanceof CryptoKey) return new KeyStore(db, userId, existing.key);
      const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      const write = db.transaction(KEYS, "readwrite");
      write.objectStore(KEYS).put({ key, created_at: Date.now() }, userId);
      await done(write);
      return new KeyStore(db, userId, key);
    } catch (cause) {
      if (cause instanceof Error && "code" in cause) throw cause;
      throw unavailable("open the key store", cause);
    }
  }

  async #record(name: string): Promise<EntryRecord | undefined> {
    try {
      const transaction = this.#db.transaction(ENTRIES, "readonly");
      return (await settle(transaction.objectStore(ENTRIES).get([this.#userId, name]))) as EntryRecord | undefined;
    } catch (cause) {
      throw unavailable(`read ${name}`, cause);
    }
  }

  /**
   * An entry's write counter (0 when absent), without decrypting it: a tab
   * whose copy is current skips the decryption and parse (every opened batch
   * of messages checks).
   */
  async revision(name: string): Promise<number> {
    return (await this.#record(name))?.rev ?? 0;
  }

  /** An entry, decrypted; undefined when absent. */
  async read<T>(name: string): Promise<StoredEntry<T> | undefined> {
    const record = await this.#record(name);
    if (record === undefined) return undefined;
    let plain: ArrayBuffer;
    try {
      plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: new Uint8Array(record.iv), additionalData: associatedData(this.#userId, name) },
        this.#key,
        record.data,
      );
    } catch (cause) {
      throw e2eeError("e2ee_storage_unavailable", `unable to read ${name}; the stored entry does not decrypt`, { cause });
    }
    return { rev: record.rev, value: JSON.parse(decoder.decode(plain)) as T };
  }

  /** The backend message ids the replay ledger has for `keys` in `roomId` (absent: never opened), in one transaction. */
  async seenIds(roomId: string, keys: readonly SeenKey[]): Promise<(string | undefined)[]> {
    if (keys.length === 0) return [];
    try {
      const store = this.#db.transaction(SEEN, "readonly").objectStore(SEEN);
      const found = await Promise.all(
        keys.map((key) => settle(store.get([this.#userId, roomId, key.senderUserId, key.messageId]))),
      );
      return found.map((value) => (typeof value === "string" ? value : undefined));
    } catch (cause) {
      throw unavailable("read the seen message ids", cause);
    }
  }

  /** Records each key's backend message id in the replay ledger, in one transaction. */
  async recordSeen(roomId: string, entries: readonly (SeenKey & { backendMessageId: string })[]): Promise<void> {
    if (entries.length === 0) return;
    try {
      const transaction = this.#db.transaction(SEEN, "readwrite");
      const store = transaction.objectStore(SEEN);
      for (const entry of entries) {
        store.put(entry.backendMessageId, [this.#userId, roomId, entry.senderUserId, entry.messageId]);
      }
      await done(transaction);
    } catch (cause) {
      throw unavailable("record the seen message ids", cause);
    }
  }

  /** Encrypts and writes an entry with write counter `rev`. */
  async write(name: string, value: unknown, rev: number): Promise<void> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: associatedData(this.#userId, name) },
      this.#key,
      encoder.encode(JSON.stringify(value)),
    );
    try {
      const transaction = this.#db.transaction(ENTRIES, "readwrite");
      const record: EntryRecord = { rev, iv, data };
      transaction.objectStore(ENTRIES).put(record, [this.#userId, name]);
      await done(transaction);
    } catch (cause) {
      throw unavailable(`write ${name}`, cause);
    }
  }
}

/** An envelope of a room as the replay ledger keys it: its sender user and message id. */
export interface SeenKey {
  senderUserId: string;
  messageId: string;
}

/** Deletes the user's storage key, every entry and the replay ledger. Hold the user's lock. */
export async function deleteStored(userId: string): Promise<void> {
  const db = await openDatabase();
  try {
    const transaction = db.transaction([KEYS, ENTRIES, SEEN], "readwrite");
    transaction.objectStore(KEYS).delete(userId);
    // Array keys sort after strings: [userId] .. [userId, []] spans every [userId, ...] key.
    transaction.objectStore(ENTRIES).delete(IDBKeyRange.bound([userId], [userId, []]));
    transaction.objectStore(SEEN).delete(IDBKeyRange.bound([userId], [userId, []]));
    await done(transaction);
  } catch (cause) {
    throw unavailable("clear the encryption state", cause);
  }
}
