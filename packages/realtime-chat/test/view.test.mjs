// What stays in TypeScript besides the pump: the view's rows (reused while a
// message shows the same, so frameworks skip unchanged rows) and the presence
// channel's member mirror. Plain Node, no wasm, no browser.
import assert from "node:assert/strict";
import { test } from "node:test";
import { PresenceMembers } from "../dist/presence.js";
import { MessageRows, toChatMessage } from "../dist/view.js";

const stored = (seq, extra = {}) => ({
  message_id: `m${seq}`,
  room_id: "r",
  seq,
  user_id: "u_ada",
  text: `text ${seq}`,
  sent_at: 1000 + seq,
  client_id: `c${seq}`,
  status: "sent",
  ...extra,
});

test("a row has exactly the documented fields and is frozen", () => {
  const row = toChatMessage({ ...stored(1), extra_field: "dropped" });
  assert.deepEqual(Object.keys(row).sort(), ["client_id", "message_id", "room_id", "sent_at", "seq", "status", "text", "user_id"]);
  assert.ok(Object.isFrozen(row));
  const failed = toChatMessage(stored(2, { text: null, ciphertext: { v: 1 }, decryption_error: { code: "e2ee_replay", message: "no" } }));
  assert.deepEqual(failed.decryption_error, { code: "e2ee_replay", message: "no" });
  assert.ok(Object.isFrozen(failed.decryption_error));
  assert.deepEqual(failed.ciphertext, { v: 1 });
});

test("an update keeps the row object of every message that shows the same, and replaces the changed ones", () => {
  const rows = new MessageRows();
  const pending = { ...stored(0), message_id: null, seq: null, client_id: "c-p", status: "sending" };
  const first = rows.update([stored(1), stored(2), pending]);
  assert.ok(Object.isFrozen(first));
  const second = rows.update([stored(1), stored(2, { text: "edited" }), { ...pending, status: "failed" }, stored(3)]);
  assert.equal(second[0], first[0], "unchanged: the same object");
  assert.notEqual(second[1], first[1], "new text: a new row");
  assert.equal(second[1].text, "edited");
  assert.notEqual(second[2], first[2], "new status: a new row");
  assert.equal(second[2].status, "failed");
  assert.equal(rows.row(stored(1)), second[0], "row() hands out the current row");
  assert.equal(rows.list, second);
  const third = rows.update([stored(1, { decryption_error: { code: "network_error", message: "offline" }, text: null })]);
  assert.notEqual(third[0], second[0], "an opening that failed changes the row");
  assert.equal(rows.update([]).length, 0);
});

/** A presence channel as @domvia/realtime exposes it: bind() and members.each(). */
function presenceChannel(members) {
  const handlers = new Map();
  return {
    members: { each: (callback) => members.forEach(callback) },
    bind(event, handler) {
      handlers.set(event, handler);
      return () => handlers.delete(event);
    },
    fire: (event, data) => handlers.get(event)?.(data),
  };
}

test("the member mirror reports joins and leaves once, and who came and went across a resubscription", () => {
  let changes = 0;
  const mirror = new PresenceMembers(() => changes++);
  const events = [];
  mirror.onPresence((event) => events.push(event));
  const channel = presenceChannel([{ id: "u_ada", info: { name: "Ada" } }]);
  const unbind = mirror.bind(channel);
  mirror.refresh(channel, false);
  assert.deepEqual(mirror.list, [{ user_id: "u_ada", name: "Ada" }]);
  assert.deepEqual(events, [], "the first list is not news");

  channel.fire("pusher:member_added", { id: "u_bob", info: {} });
  channel.fire("pusher:member_added", { id: "u_bob", info: {} });
  channel.fire("pusher:member_removed", { id: "u_ada" });
  channel.fire("pusher:member_added", "not a member");
  assert.deepEqual(events, [
    { type: "joined", user_id: "u_bob", name: null },
    { type: "left", user_id: "u_ada", name: "Ada" },
  ]);
  assert.ok(Object.isFrozen(mirror.list));

  // After a reconnect the broker's list is the truth: Carol came, Bob went.
  mirror.refresh(presenceChannel([{ id: "u_carol", info: { name: "Carol" } }]), true);
  assert.deepEqual(events.slice(2), [
    { type: "left", user_id: "u_bob", name: null },
    { type: "joined", user_id: "u_carol", name: "Carol" },
  ]);
  assert.equal(changes, 4);
  for (const off of unbind) off();
  mirror.close();
  channel.fire("pusher:member_added", { id: "u_dan" });
  assert.equal(events.length, 4, "nothing after close");
});
