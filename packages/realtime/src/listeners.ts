import type { Unsubscribe } from "./realtime.js";
import { reportListenerError } from "./runtime.js";

/**
 * A set of an app's listeners: one that throws is reported and never stops the
 * others or the SDK. Shared by every package through `@domvia/realtime/core`.
 */
export class Listeners<A extends unknown[]> {
  readonly #listeners = new Set<(...args: A) => void>();

  add(listener: (...args: A) => void): Unsubscribe {
    // Wrapped, so the same function added twice is called twice and removed once each.
    const entry = (...args: A): void => listener(...args);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /** How many listeners there are. */
  get size(): number {
    return this.#listeners.size;
  }

  emit(...args: A): void {
    if (this.#listeners.size === 0) return;
    for (const listener of [...this.#listeners]) {
      try {
        listener(...args);
      } catch (error) {
        reportListenerError(error);
      }
    }
  }

  clear(): void {
    this.#listeners.clear();
  }
}
