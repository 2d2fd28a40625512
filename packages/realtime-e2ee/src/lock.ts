/**
 * Mutual exclusion of the tabs of one browser profile around every
 * read-modify-write of the stored key state and around epoch creation: a Web
 * Lock named `domvia-e2ee:<userId>`. Where `navigator.locks` is missing (old
 * browsers, some embedded web views) an in-page mutex serializes this page
 * only: two such tabs could then race, and the later write of a room's state
 * wins (an epoch the other tab installed is fetched again from its key share).
 *
 * Web Locks are not reentrant: code holding the lock must never ask for it again.
 */

interface LockManagerLike {
  request<T>(name: string, callback: () => Promise<T>): Promise<T>;
}

const pageQueues = new Map<string, Promise<unknown>>();

function lockManager(): LockManagerLike | undefined {
  const locks = (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks;
  return typeof locks?.request === "function" ? locks : undefined;
}

/** Runs `task` holding the user's lock; resolves or rejects with its outcome. */
export function withLock<T>(userId: string, task: () => Promise<T>): Promise<T> {
  const name = `domvia-e2ee:${userId}`;
  const locks = lockManager();
  if (locks !== undefined) return locks.request(name, task);
  const previous = pageQueues.get(name) ?? Promise.resolve();
  const run = previous.then(task, task);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  pageQueues.set(name, tail);
  void tail.then(() => {
    if (pageQueues.get(name) === tail) pageQueues.delete(name);
  });
  return run;
}

/**
 * Takes the user's lock and resolves with the function that releases it: for
 * a holder that is not one async function (the room's session takes the lock
 * with one action and releases it with a later one). Rejects when the lock
 * cannot be requested.
 */
export function acquireLock(userId: string): Promise<() => void> {
  return new Promise((acquired, failed) => {
    withLock(userId, () => new Promise<void>((release) => acquired(() => release()))).catch(failed);
  });
}
