// Rejections with the right stable codes, the chat channel naming scheme, and
// the verification helpers failing on tampered input.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import test from "node:test";

import {
  DomViaServerError,
  authenticateUser,
  authorizePresenceChannel,
  authorizePrivateChannel,
  buildChatChannelName,
  channelKind,
  chatRoomIdFromChannel,
  createRealtimeClient,
  signRestRequest,
  validateChannelName,
  verifyChannelAuth,
  verifyUserAuth,
  verifyWebhook,
} from "../dist/index.js";

const KEY = "278d425bdf160c739803";
const SECRET = "7ad3773142a6692b25b8";
const base = { key: KEY, secret: SECRET };

/** Asserts that `run` throws or rejects with a DomViaServerError with `code`. */
async function rejectsWith(run, code, label = code) {
  await assert.rejects(
    async () => run(),
    (error) => {
      assert.ok(error instanceof DomViaServerError, `${label}: not a DomViaServerError: ${error}`);
      assert.ok(error instanceof Error);
      assert.equal(error.name, "DomViaServerError");
      assert.equal(error.code, code, `${label}: ${error.message}`);
      assert.match(error.message, /^unable to /);
      assert.ok(!error.message.includes(SECRET), "the secret never appears in a message");
      return true;
    },
    label,
  );
}

test("authorizePrivateChannel rejects each bad input with its code", async () => {
  const ok = { ...base, socketId: "123.456", channelName: "private-chat.room.room-42" };
  const cases = [
    [{ socketId: "" }, "invalid_socket_id"],
    [{ socketId: "123" }, "invalid_socket_id"],
    [{ socketId: "123.456.789" }, "invalid_socket_id"],
    [{ socketId: "123.45a" }, "invalid_socket_id"],
    [{ socketId: "123.456\n" }, "invalid_socket_id"],
    [{ socketId: " 123.456" }, "invalid_socket_id"],
    [{ socketId: "١٢٣.٤٥٦" }, "invalid_socket_id"], // non-ASCII digits
    [{ socketId: 123.456 }, "invalid_socket_id"],
    [{ channelName: "" }, "invalid_channel_name"],
    [{ channelName: "private-" }, "invalid_channel_name"],
    [{ channelName: "private-chat room" }, "invalid_channel_name"],
    [{ channelName: "private-chat/room" }, "invalid_channel_name"],
    [{ channelName: "private-é" }, "invalid_channel_name"],
    [{ channelName: `private-${"a".repeat(193)}` }, "invalid_channel_name"],
    [{ channelName: undefined }, "invalid_channel_name"],
    [{ channelName: "chat.room.room-42" }, "wrong_channel_kind"],
    [{ channelName: "presence-chat.room.room-42" }, "wrong_channel_kind"],
    [{ channelName: "private-encrypted-chat.room.room-42" }, "wrong_channel_kind"],
    [{ channelName: "Private-chat.room.room-42" }, "wrong_channel_kind"],
    [{ key: "" }, "invalid_config"],
    [{ key: undefined }, "invalid_config"],
    [{ key: "a:b" }, "invalid_config"],
    [{ secret: "" }, "invalid_config"],
    [{ secret: undefined }, "invalid_config"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => authorizePrivateChannel({ ...ok, ...change }), code, JSON.stringify(change));
  }
  // The longest allowed name is fine.
  await authorizePrivateChannel({ ...ok, channelName: `private-${"a".repeat(192)}` });
  // Errors are rejections, never synchronous throws.
  const pending = authorizePrivateChannel({ ...ok, socketId: "x" });
  assert.ok(pending instanceof Promise);
  await rejectsWith(() => pending, "invalid_socket_id");
});

test("authorizePresenceChannel rejects each bad input with its code", async () => {
  const ok = { ...base, socketId: "123.456", channelName: "presence-chat.room.room-42", user: { id: "user-1" } };
  const cyclic = {};
  cyclic.self = cyclic;
  const cases = [
    [{ socketId: "1.2.3" }, "invalid_socket_id"],
    [{ channelName: "presence-" }, "invalid_channel_name"],
    [{ channelName: "presence-a b" }, "invalid_channel_name"],
    [{ channelName: "private-chat.room.room-42" }, "wrong_channel_kind"],
    [{ channelName: "chat" }, "wrong_channel_kind"],
    [{ user: { id: "" } }, "invalid_user_data"],
    [{ user: { id: 42 } }, "invalid_user_data"],
    [{ user: {} }, "invalid_user_data"],
    [{ user: null }, "invalid_user_data"],
    [{ user: undefined }, "invalid_user_data"],
    [{ user: { id: "u", info: 10n } }, "invalid_user_data"],
    [{ user: { id: "u", info: cyclic } }, "invalid_user_data"],
    [{ secret: undefined }, "invalid_config"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => authorizePresenceChannel({ ...ok, ...change }), code, String(Object.keys(change)));
  }
  const withoutInfo = await authorizePresenceChannel(ok);
  assert.equal(withoutInfo.channel_data, '{"user_id":"user-1"}');
  const withNull = await authorizePresenceChannel({ ...ok, user: { id: "user-1", info: null } });
  assert.equal(withNull.channel_data, '{"user_id":"user-1","user_info":null}');
});

test("authenticateUser rejects each bad input with its code", async () => {
  const ok = { ...base, socketId: "123.456", user: { id: "user-1" } };
  const cases = [
    [{ socketId: "abc" }, "invalid_socket_id"],
    [{ user: { id: "" } }, "invalid_user_data"],
    [{ user: { name: "no id" } }, "invalid_user_data"],
    [{ user: { id: 7 } }, "invalid_user_data"],
    [{ user: [] }, "invalid_user_data"],
    [{ user: "user-1" }, "invalid_user_data"],
    [{ user: { id: "u", big: 1n } }, "invalid_user_data"],
    [{ key: undefined }, "invalid_config"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => authenticateUser({ ...ok, ...change }), code, String(Object.keys(change)));
  }
  assert.equal((await authenticateUser(ok)).user_data, '{"id":"user-1"}');
});

test("buildChatChannelName and chatRoomIdFromChannel are strict inverses", async () => {
  assert.equal(buildChatChannelName("room-42"), "private-chat.room.room-42");
  assert.equal(buildChatChannelName("room-42", { presence: false }), "private-chat.room.room-42");
  assert.equal(buildChatChannelName("room-42", { presence: true }), "presence-chat.room.room-42");
  assert.deepEqual(chatRoomIdFromChannel("private-chat.room.room-42"), { roomId: "room-42", presence: false });
  assert.deepEqual(chatRoomIdFromChannel("presence-chat.room.a.b"), { roomId: "a.b", presence: true });
  assert.deepEqual(chatRoomIdFromChannel("private-chat.room.a_b-c=d@e,f.g;h"), { roomId: "a_b-c=d@e,f.g;h", presence: false });
  for (const name of [
    "private-chat.room.",
    "presence-chat.room.",
    "private-chat.rooms.x",
    "private-chat.roomx",
    "chat.room.x",
    "private-encrypted-chat.room.x",
    "private-chat.room.x y",
    "private-chat.room.x/../y",
    "Private-chat.room.x",
    "private-private-chat.room.x",
    "xprivate-chat.room.x",
    " private-chat.room.x",
    "private-chat.room.x\n",
    `private-chat.room.${"a".repeat(183)}`,
    "",
    undefined,
    42,
  ]) {
    assert.equal(chatRoomIdFromChannel(name), null, String(name));
  }
  // Round trips at the length limits, over the whole alphabet.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;";
  for (const [presence, max] of [[false, 182], [true, 181]]) {
    for (const roomId of [alphabet, "a".repeat(max), "x", ".", "private-chat.room.x"]) {
      const name = buildChatChannelName(roomId, { presence });
      assert.ok(name.length <= 200);
      assert.deepEqual(chatRoomIdFromChannel(name), { roomId, presence });
    }
    await rejectsWith(() => buildChatChannelName("a".repeat(max + 1), { presence }), "invalid_room_id");
  }
  for (const roomId of ["", "room 42", "room/42", "röom", "room\n", "😀", undefined]) {
    await rejectsWith(() => buildChatChannelName(roomId), "invalid_room_id", JSON.stringify(roomId));
  }
});

test("buildChatChannelName gives the core's names and exact errors (tests/vectors/channels.json)", async () => {
  const vectors = JSON.parse(await readFile(new URL("../../../tests/vectors/channels.json", import.meta.url), "utf8"));
  assert.ok(vectors.cases.length > 0);
  for (const { room_id: roomId, presence, channel, error } of vectors.cases) {
    const label = `${JSON.stringify(roomId)} presence=${presence}`;
    if (error === undefined) {
      assert.equal(buildChatChannelName(roomId, { presence }), channel, label);
      continue;
    }
    assert.throws(
      () => buildChatChannelName(roomId, { presence }),
      (thrown) => {
        assert.ok(thrown instanceof DomViaServerError, label);
        assert.equal(thrown.code, error.code, label);
        assert.equal(thrown.message, error.message, label);
        return true;
      },
      label,
    );
  }
});

test("channel kinds and validation", async () => {
  assert.equal(validateChannelName("chat"), "public");
  assert.equal(validateChannelName("private-x"), "private");
  assert.equal(validateChannelName("presence-x"), "presence");
  assert.equal(validateChannelName("private-encrypted-x"), "private-encrypted");
  assert.equal(channelKind("private-encrypted-"), "private-encrypted");
  await rejectsWith(() => validateChannelName("private-encrypted-"), "invalid_channel_name");
  await rejectsWith(() => validateChannelName("a".repeat(201)), "invalid_channel_name");
});

test("verifyChannelAuth accepts a real signature and rejects tampering", async () => {
  const socketId = "123.456";
  const channelName = "private-chat.room.room-42";
  const { auth } = await authorizePrivateChannel({ ...base, socketId, channelName });
  verifyChannelAuth({ ...base, socketId, channelName, auth });
  const flip = (text, index) => text.slice(0, index) + (text[index] === "0" ? "1" : "0") + text.slice(index + 1);
  const signature = auth.split(":")[1];
  const cases = [
    [{ auth: flip(auth, auth.length - 1) }, "invalid_signature"],
    [{ auth: flip(auth, KEY.length + 1) }, "invalid_signature"],
    [{ auth: auth.slice(0, -1) }, "invalid_signature"],
    [{ auth: `${auth}0` }, "invalid_signature"],
    [{ auth: `${KEY}:` }, "invalid_signature"],
    [{ auth: signature }, "invalid_signature"],
    [{ auth: "" }, "invalid_signature"],
    [{ auth: undefined }, "invalid_signature"],
    [{ auth: `other:${signature}` }, "auth_key_mismatch"],
    [{ socketId: "123.457" }, "invalid_signature"],
    [{ channelName: "private-chat.room.room-43" }, "invalid_signature"],
    [{ channelData: "{}" }, "invalid_signature"],
    [{ secret: "another-secret" }, "invalid_signature"],
    [{ channelName: "chat.room.room-42" }, "wrong_channel_kind"],
    [{ socketId: "nope" }, "invalid_socket_id"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => verifyChannelAuth({ ...base, socketId, channelName, auth, ...change }), code, JSON.stringify(change));
  }
  // Either hex case is the same signature bytes.
  verifyChannelAuth({ ...base, socketId, channelName, auth: `${KEY}:${signature.toUpperCase()}` });

  const presenceChannel = "presence-chat.room.room-42";
  const presence = await authorizePresenceChannel({ ...base, socketId, channelName: presenceChannel, user: { id: "user-1", info: { name: "Ada" } } });
  verifyChannelAuth({ ...base, socketId, channelName: presenceChannel, auth: presence.auth, channelData: presence.channel_data });
  const presenceCases = [
    [{ channelData: presence.channel_data.replace("Ada", "Eve") }, "invalid_signature"],
    [{ channelData: undefined }, "invalid_user_data"],
    [{ channelData: "not json" }, "invalid_user_data"],
    [{ channelData: '{"user_id":""}' }, "invalid_user_data"],
  ];
  for (const [change, code] of presenceCases) {
    await rejectsWith(
      () => verifyChannelAuth({ ...base, socketId, channelName: presenceChannel, auth: presence.auth, channelData: presence.channel_data, ...change }),
      code,
      JSON.stringify(change),
    );
  }
});

test("verifyUserAuth accepts a real signature and rejects tampering", async () => {
  const socketId = "123.456";
  const { auth, user_data: userData } = await authenticateUser({ ...base, socketId, user: { id: "user-1", user_info: { name: "Ada" } } });
  verifyUserAuth({ ...base, socketId, auth, userData });
  await rejectsWith(() => verifyUserAuth({ ...base, socketId, auth, userData: userData.replace("Ada", "Eve") }), "invalid_signature");
  await rejectsWith(() => verifyUserAuth({ ...base, socketId: "123.457", auth, userData }), "invalid_signature");
  await rejectsWith(() => verifyUserAuth({ ...base, socketId, auth: auth.replace(KEY, "other"), userData }), "auth_key_mismatch");
  await rejectsWith(() => verifyUserAuth({ ...base, socketId, auth, userData: '{"name":"no id"}' }), "invalid_user_data");
});

test("verifyWebhook rejects each bad webhook with its code", async () => {
  const body = '{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"private-chat.room.room-42"}]}';
  const sign = (text) => createHmac("sha256", SECRET).update(text).digest("hex");
  const good = { "x-pusher-key": KEY, "x-pusher-signature": sign(body) };
  const payload = verifyWebhook({ ...base, headers: good, body });
  assert.equal(payload.time_ms, 1700000000000);
  assert.equal(payload.events[0].name, "channel_occupied");
  // Header names in any case, Node's header object or a fetch Headers.
  verifyWebhook({ ...base, headers: { "X-PUSHER-KEY": KEY, "X-Pusher-Signature": sign(body) }, body });
  verifyWebhook({ ...base, headers: new Headers(good), body });
  verifyWebhook({ ...base, headers: { ...good, "x-pusher-signature": [sign(body)] }, body });

  const tampered = body.replace("occupied", "vacated");
  const cases = [
    [{ headers: { ...good, "x-pusher-key": "another-key" } }, "auth_key_mismatch"],
    [{ headers: { "x-pusher-signature": sign(body) } }, "auth_key_mismatch"],
    [{ headers: { ...good, "X-Pusher-Key": "another-key" } }, "auth_key_mismatch"], // given twice
    [{ body: tampered }, "invalid_signature"],
    [{ body: `${body} ` }, "invalid_signature"],
    [{ body: Buffer.from(tampered) }, "invalid_signature"],
    [{ headers: { "x-pusher-key": KEY } }, "invalid_signature"],
    [{ headers: { ...good, "x-pusher-signature": "" } }, "invalid_signature"],
    [{ headers: { ...good, "x-pusher-signature": sign(body).slice(0, 63) } }, "invalid_signature"],
    [{ headers: { ...good, "x-pusher-signature": `${sign(body)}00` } }, "invalid_signature"],
    [{ headers: { ...good, "x-pusher-signature": "z".repeat(64) } }, "invalid_signature"],
    [{ headers: { ...good, "x-pusher-signature": [sign(body), sign(body)] } }, "invalid_signature"],
    [{ secret: "another-secret" }, "invalid_signature"],
    [{ secret: undefined }, "invalid_config"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => verifyWebhook({ ...base, headers: good, body, ...change }), code, JSON.stringify(change));
  }
  // Correctly signed, but not the webhook body the API describes.
  for (const bad of ["not json", "[]", "null", '{"events":[]}', '{"time_ms":"1","events":[]}', '{"time_ms":1,"events":{}}', '{"time_ms":1,"events":[1]}', '{"time_ms":1,"events":[{"channel":"x"}]}']) {
    await rejectsWith(
      () => verifyWebhook({ ...base, headers: { "x-pusher-key": KEY, "x-pusher-signature": sign(bad) }, body: bad }),
      "invalid_webhook_body",
      bad,
    );
  }
  const badUtf8 = Buffer.from([0x7b, 0xff, 0x7d]);
  await rejectsWith(
    () => verifyWebhook({ ...base, headers: { "x-pusher-key": KEY, "x-pusher-signature": sign(badUtf8) }, body: badUtf8 }),
    "invalid_webhook_body",
  );
});

test("signRestRequest rejects malformed requests", async () => {
  const ok = { ...base, method: "POST", path: "/apps/3/events", body: "{}", timestamp: 1700000000 };
  const cases = [
    [{ params: { auth_key: "x" } }, "invalid_request"],
    [{ params: { AUTH_SIGNATURE: "x" } }, "invalid_request"],
    [{ params: { body_md5: "x" } }, "invalid_request"],
    [{ params: { info: "a", INFO: "b" } }, "invalid_request"],
    [{ params: { info: {} } }, "invalid_request"],
    [{ params: { info: "\ud800" } }, "invalid_request"],
    [{ timestamp: 1.5 }, "invalid_request"],
    [{ timestamp: -1 }, "invalid_request"],
    [{ timestamp: undefined }, "invalid_request"],
    [{ method: "" }, "invalid_request"],
    [{ path: "apps/3/events" }, "invalid_request"],
    [{ key: undefined }, "invalid_config"],
  ];
  for (const [change, code] of cases) {
    await rejectsWith(() => signRestRequest({ ...ok, ...change }), code, JSON.stringify(change));
  }
  // No body or an empty body: no body_md5.
  assert.ok(!signRestRequest({ ...ok, body: undefined }).includes("body_md5"));
  assert.ok(!signRestRequest({ ...ok, body: "" }).includes("body_md5"));
  // Keys are lowercased and values percent-encoded where needed.
  const query = signRestRequest({ ...ok, method: "GET", body: undefined, params: { Info: "user_count,subscription_count", filter_by_prefix: "a b*" } });
  assert.match(query, /&filter_by_prefix=a%20b%2A&info=user_count%2Csubscription_count&auth_signature=[0-9a-f]{64}$/);
});

test("createRealtimeClient rejects bad configuration", async () => {
  const ok = { appId: "3", ...base, host: "127.0.0.1", port: 8080, useTLS: false };
  const cases = [
    { appId: "" }, { appId: "3/../4" }, { appId: undefined },
    { host: "" }, { host: "http://127.0.0.1" }, { host: "127.0.0.1:8080" }, { host: "a/b" },
    { port: 0 }, { port: 70000 }, { port: 80.5 },
    { timeoutMs: 0 }, { timeoutMs: -1 }, { timeoutMs: Number.NaN },
    { key: undefined }, { secret: "" },
  ];
  for (const change of cases) {
    await rejectsWith(() => createRealtimeClient({ ...ok, ...change }), "invalid_config", JSON.stringify(change));
  }
  createRealtimeClient({ ...ok, appId: 3, host: "::1" });
  createRealtimeClient({ ...ok, port: undefined, useTLS: undefined });
});

test("client-side request checks reject before sending", async () => {
  // Port 9 (discard) on 127.0.0.1: nothing may be sent, so nothing listens.
  const client = createRealtimeClient({ appId: "3", ...base, host: "127.0.0.1", port: 9, useTLS: false, timeoutMs: 1000 });
  const cases = [
    [() => client.trigger([], "e", {}), "invalid_request"],
    [() => client.trigger(Array.from({ length: 101 }, (_, i) => `c${i}`), "e", {}), "invalid_request"],
    [() => client.trigger("bad channel", "e", {}), "invalid_channel_name"],
    [() => client.trigger("c", "", {}), "invalid_request"],
    [() => client.trigger("c", "e".repeat(201), {}), "invalid_request"],
    [() => client.trigger("c", "e", undefined), "invalid_request"],
    [() => client.trigger("c", "e", 1n), "invalid_request"],
    [() => client.trigger("c", "e", "x".repeat(10_241)), "payload_too_large"],
    [() => client.trigger("c", "e", {}, { socketId: "x" }), "invalid_socket_id"],
    [() => client.triggerBatch([]), "invalid_request"],
    [() => client.triggerBatch(Array.from({ length: 11 }, () => ({ channel: "c", name: "e", data: "" }))), "invalid_request"],
    [() => client.triggerBatch([{ channel: "c", name: "e", data: "x".repeat(10_241) }]), "payload_too_large"],
    [() => client.triggerBatch([{ channel: "c d", name: "e", data: "" }]), "invalid_channel_name"],
    [() => client.triggerBatch([{ channel: "c", name: "e", data: "", socketId: "1" }]), "invalid_socket_id"],
    [() => client.channels({ prefix: "a b" }), "invalid_channel_name"],
    [() => client.channels({ info: ["User Count"] }), "invalid_request"],
    [() => client.channel("a/b"), "invalid_channel_name"],
    [() => client.users("private-chat.room.a"), "wrong_channel_kind"],
  ];
  for (const [run, code] of cases) await rejectsWith(run, code, run.toString());
});
