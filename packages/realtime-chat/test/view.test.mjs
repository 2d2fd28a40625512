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

test("deltas build the list: appends, older pages in place, replaced rows, pending sends; unchanged rows and lists keep their objects", () => {
  const rows = new MessageRows();
  assert.deepEqual([rows.epoch, rows.cursor], [0, 0]);
  const pending = { ...stored(0), message_id: null, seq: null, client_id: "c-p", status: "sending" };
  const first = rows.apply({ epoch: 1, cursor: 2, full: true, changed: [stored(4), stored(5)], pending: [pending] });
  assert.ok(Object.isFrozen(first));
  assert.deepEqual(first.map((row) => row.seq), [4, 5, null]);
  assert.deepEqual([rows.epoch, rows.cursor], [1, 2]);

  // Nothing new: the same list object (frameworks skip the render).
  assert.equal(rows.apply({ epoch: 1, cursor: 2, full: false, changed: [], pending: [pending] }), first);

  // A live message, an older page below, a failed send: rows land by seq.
  const second = rows.apply({
    epoch: 1, cursor: 5, full: false,
    changed: [stored(2), stored(3), stored(6)],
    pending: [{ ...pending, status: "failed" }],
  });
  assert.deepEqual(second.map((row) => row.seq), [2, 3, 4, 5, 6, null]);
  assert.equal(second[2], first[0], "unchanged: the same object");
  assert.equal(second[3], first[1]);
  assert.notEqual(second[5], first[2], "new status: a new row");
  assert.equal(second[5].status, "failed");
  assert.equal(rows.row({ ...pending, status: "failed" }), second[5], "row() hands out the current row");

  // A message shown differently (opened again) replaces its row; the send is stored now.
  const third = rows.apply({
    epoch: 1, cursor: 7, full: false,
    changed: [stored(4, { text: null, decryption_error: { code: "network_error", message: "offline" } }), stored(7, { client_id: "c-p", user_id: "u_me" })],
    pending: [],
  });
  assert.deepEqual(third.map((row) => row.seq), [2, 3, 4, 5, 6, 7]);
  assert.notEqual(third[2], second[2]);
  assert.equal(third[2].decryption_error?.code, "network_error");
  assert.equal(third[0], second[0]);
  assert.equal(rows.list, third);

  // Another epoch: read from scratch, still reusing rows that show the same.
  const fourth = rows.apply({ epoch: 2, cursor: 1, full: true, changed: [stored(3)], pending: [] });
  assert.deepEqual(fourth.map((row) => row.seq), [3]);
  assert.equal(fourth[0], third[1]);
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
