// The backend enforces "a change of the member devices needs a new epoch
// before the next encrypted message": a ciphertext is stored only in the
// room's current epoch, and only while that epoch covers the current member
// devices (else 409 epoch_stale, nothing stored or published). An encrypted
// room takes no plaintext at all. Against the real server process, with opaque
// stand-in envelopes.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { collect, connectPusher, signIn, subscribed } from "../support/chat.mjs";
import { devApp, startServer } from "../support/harness.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  assert.equal(await server.stop(), 0);
});

/** Creates `epoch` with a share for every current member device, as a client would. */
async function createEpoch(user, roomId, epoch) {
  const devices = await user.api("GET", `/api/rooms/${roomId}/devices`);
  assert.equal(devices.status, 200);
  const shares = devices.body.map((device) => ({ device_id: device.device_id, share: { for: device.device_id } }));
  return user.api("POST", `/api/rooms/${roomId}/epochs`, { epoch, shares });
}

function sendSealed(user, roomId, clientId, envelope) {
  return user.api("POST", `/api/rooms/${roomId}/messages`, { client_id: clientId, ciphertext: envelope });
}

function assertStale(answer, currentEpoch, needsNewEpoch) {
  assert.equal(answer.status, 409, JSON.stringify(answer.body));
  assert.equal(answer.body.error.code, "epoch_stale");
  assert.match(answer.body.error.message, /^unable to send the message; /);
  assert.equal(answer.body.error.current_epoch, currentEpoch);
  assert.equal(answer.body.error.needs_new_epoch, needsNewEpoch);
}

test("a ciphertext needs the current epoch, created for the current member devices", async () => {
  const [ada, bob, carol] = await Promise.all(["Ada", "Bob", "Carol"].map((name) => signIn(server.url, `${name}-epochs`)));
  for (const user of [ada, bob, carol]) {
    const put = await user.api("PUT", `/api/devices/${user.name}-laptop`, { record: { key: user.name } });
    assert.equal(put.status, 201);
  }
  const created = await ada.api("POST", "/api/rooms", { kind: "group", name: "Epochs", member_ids: [bob.id, carol.id], encrypted: true });
  assert.equal(created.status, 201);
  const roomId = created.body.room_id;
  const watcher = await connectPusher(server, devApp, bob);
  const published = collect(await subscribed(watcher, created.body.channel_name), "message.created");

  try {
    assertStale(await sendSealed(ada, roomId, "before-any-epoch", { epoch: 0 }), 0, true);
    assert.equal((await createEpoch(ada, roomId, 1)).status, 201);
    const first = await sendSealed(ada, roomId, "in-epoch-1", { epoch: 1, c: "first" });
    assert.equal(first.status, 201);

    // An old (or future, or missing) epoch in the envelope is refused.
    assert.equal((await createEpoch(bob, roomId, 2)).status, 201);
    assertStale(await sendSealed(ada, roomId, "old-epoch", { epoch: 1, c: "old" }), 2, false);
    assertStale(await sendSealed(ada, roomId, "future-epoch", { epoch: 3 }), 2, false);
    assertStale(await sendSealed(ada, roomId, "no-epoch", { c: "x" }), 2, false);
    assert.equal((await sendSealed(ada, roomId, "in-epoch-2", { epoch: 2 })).status, 201);

    // Carol is removed: epoch 2 still is the current one, but it covers her device.
    const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${carol.id}`);
    assert.equal(removed.body.removed, true);
    assertStale(await sendSealed(bob, roomId, "after-removal", { epoch: 2, c: "stale" }), 2, true);
    // Plaintext is never stored in an encrypted room; a replay of a stored message still answers 200.
    const plain = await bob.api("POST", `/api/rooms/${roomId}/messages`, { client_id: "plain", text: "hi" });
    assert.equal(plain.status, 400);
    assert.equal(plain.body.error.code, "encryption_required");
    const replay = await sendSealed(ada, roomId, "in-epoch-1", { epoch: 1, c: "first" });
    assert.equal(replay.status, 200);
    assert.equal(replay.body.message_id, first.body.message_id);

    // A fresh epoch for exactly the remaining devices: the refused client_id, sealed anew, is stored.
    assert.equal((await createEpoch(bob, roomId, 3)).status, 201);
    const fresh = await sendSealed(bob, roomId, "after-removal", { epoch: 3, c: "fresh" });
    assert.equal(fresh.status, 201);

    // A member's new device changes the member devices too.
    assert.equal((await bob.api("PUT", `/api/devices/${bob.name}-phone`, { record: { key: "phone" } })).status, 201);
    assertStale(await sendSealed(ada, roomId, "after-new-device", { epoch: 3 }), 3, true);
    assert.equal((await createEpoch(ada, roomId, 4)).status, 201);
    assert.equal((await sendSealed(ada, roomId, "after-new-device", { epoch: 4 })).status, 201);

    // Nothing refused was stored or published.
    const history = await bob.api("GET", `/api/rooms/${roomId}/messages`);
    const stored = history.body.messages.map((message) => message.client_id);
    assert.deepEqual(stored, ["in-epoch-1", "in-epoch-2", "after-removal", "after-new-device"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(published.map((event) => event.data.client_id), stored);
  } finally {
    watcher.disconnect();
  }
});

test("an epoch lists the member devices it was created for, as they were then", async () => {
  const [ada, bob, carol] = await Promise.all(["Ada", "Bob", "Carol"].map((name) => signIn(server.url, `${name}-snapshot`)));
  for (const user of [ada, bob, carol]) {
    const put = await user.api("PUT", `/api/devices/${user.name}-laptop`, { record: { key: user.name } });
    assert.equal(put.status, 201);
  }
  const created = await ada.api("POST", "/api/rooms", { kind: "group", name: "Snapshot", member_ids: [bob.id], encrypted: true });
  assert.equal(created.status, 201);
  const roomId = created.body.room_id;
  const devicesOf = (user, epoch) => user.api("GET", `/api/rooms/${roomId}/epochs/${epoch}/devices`);

  assert.equal((await devicesOf(bob, 1)).body.error.code, "epoch_not_found");
  assert.equal((await createEpoch(ada, roomId, 1)).status, 201);
  const current = await bob.api("GET", `/api/rooms/${roomId}/devices`);
  const first = await devicesOf(bob, 1);
  assert.equal(first.status, 200);
  assert.deepEqual(first.body, current.body);
  assert.deepEqual(first.body.map((device) => device.device_id).sort(), [`${ada.name}-laptop`, `${bob.name}-laptop`].sort());

  // Carol joins, epoch 2 covers her; Ada (epoch 1's creator) leaves: epoch 1's list keeps Ada and not Carol.
  assert.equal((await ada.api("POST", `/api/rooms/${roomId}/members`, { user_id: carol.id })).status, 201);
  assert.equal((await createEpoch(bob, roomId, 2)).status, 201);
  assert.equal((await ada.api("DELETE", `/api/rooms/${roomId}/members/${ada.id}`)).body.removed, true);
  assert.deepEqual((await devicesOf(carol, 1)).body, first.body);
  assert.equal((await devicesOf(carol, 2)).body.length, 3);

  const errors = [
    [await devicesOf(ada, 1), 403, "not_a_member"],
    [await devicesOf(bob, 0), 400, "invalid_epoch"],
    [await devicesOf(bob, "x"), 400, "invalid_epoch"],
    [await devicesOf(bob, 3), 404, "epoch_not_found"],
  ];
  for (const [answer, status, code] of errors) {
    assert.equal(answer.status, status, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, code);
    assert.match(answer.body.error.message, /^unable to /);
  }
});
