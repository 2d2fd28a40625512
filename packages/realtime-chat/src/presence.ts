/**
 * Who is in the room now: the presence channel's member list, mirrored as
 * frozen `ChatMember`s, with a `joined`/`left` event for each change.
 */
import type { Channel, Member, Unsubscribe } from "@domvia/realtime";
import { Listeners } from "@domvia/realtime/core";
import type { ChatMember, PresenceEvent } from "./types.js";

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function toMember(member: Member): ChatMember {
  const name = isObject(member.info) && typeof member.info.name === "string" ? member.info.name : null;
  return Object.freeze({ user_id: member.id, name });
}

export class PresenceMembers {
  #members: readonly ChatMember[] = Object.freeze([]);
  readonly #listeners = new Listeners<[PresenceEvent]>();
  /** Called after every change, before the events. */
  readonly #changed: () => void;

  constructor(changed: () => void) {
    this.#changed = changed;
  }

  get list(): readonly ChatMember[] {
    return this.#members;
  }

  onPresence(listener: (event: PresenceEvent) => void): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /** Binds the channel's member events; returns their unbinders. */
  bind(channel: Channel): Unsubscribe[] {
    return [
      channel.bind("pusher:member_added", (member) => this.#memberChanged("joined", member as Member)),
      channel.bind("pusher:member_removed", (member) => this.#memberChanged("left", member as Member)),
    ];
  }

  #memberChanged(type: "joined" | "left", member: Member): void {
    if (!isObject(member) || typeof member.id !== "string") return;
    const known = this.#members.find((entry) => entry.user_id === member.id);
    // A leave names the member as they joined (brokers send only the id with it).
    const entry = known ?? toMember(member);
    if (type === "joined" && known === undefined) this.#members = Object.freeze([...this.#members, entry]);
    else if (type === "left" && known !== undefined) this.#members = Object.freeze(this.#members.filter((other) => other !== known));
    else return;
    this.#changed();
    this.#listeners.emit({ type, user_id: entry.user_id, name: entry.name });
  }

  /** Reads the member list after a (re)subscription; `emit` reports who came and went meanwhile. */
  refresh(channel: Channel | undefined, emit: boolean): void {
    const members = channel?.members;
    if (members === undefined) return;
    const next: ChatMember[] = [];
    members.each((member) => next.push(toMember(member)));
    const before = this.#members;
    const left = before.filter((known) => !next.some((entry) => entry.user_id === known.user_id));
    const joined = next.filter((entry) => !before.some((known) => known.user_id === entry.user_id));
    if (left.length === 0 && joined.length === 0) return;
    this.#members = Object.freeze(next);
    this.#changed();
    if (!emit) return;
    for (const entry of left) this.#listeners.emit({ type: "left", user_id: entry.user_id, name: entry.name });
    for (const entry of joined) this.#listeners.emit({ type: "joined", user_id: entry.user_id, name: entry.name });
  }

  /** Stops reporting (the room was left); the last list stays for the final snapshot. */
  close(): void {
    this.#listeners.clear();
  }
}
