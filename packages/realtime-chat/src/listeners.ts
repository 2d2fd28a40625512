import type { Unsubscribe } from "@domvia/realtime";
import { reportListenerError } from "@domvia/realtime/core";

/** A set of an app's listeners: one that throws is reported and never stops the others or the room. */
export class Listeners<A extends unknown[]> {
  readonly #listeners = new Set<(...args: A) => void>();

  get size(): number {
    return this.#listeners.size;
  }

  add(listener: (...args: A) => void): Unsubscribe {
    // Wrapped, so the same function added twice is called twice and removed once each.
    const entry = (...args: A): void => listener(...args);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  emit(...args: A): void {
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
