// The embedded broker driven by pusher-js (the reference client, written by
// others) from Node, with channel access signed by the real /realtime/auth of
// the reference backend, and REST publishing by the `pusher` server library.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Pusher from "pusher";
import { createRealtimeClient } from "../../packages/realtime-server/dist/index.js";
import { devApp, startServer } from "../support/harness.mjs";
import { collect, connectPusher, eventually, refused, signIn, subscribed, within } from "../support/chat.mjs";

let server;
let ada;
let bob;
let eve;
let room;
const clients = [];

async function client(user, options) {
  const connected = await connectPusher(server, devApp, user, options);
  clients.push(connected);
  return connected;
}

before(async () => {
  server = await startServer();
  [ada, bob, eve] = await Promise.all(["Ada", "Bob", "Eve"].map((name) => signIn(server.url, name)));
  const created = await ada.api("POST", "/api/rooms", { kind: "group", name: "Team", member_ids: [bob.id] });
  assert.equal(created.status, 201);
  room = created.body;
});

after(async () => {
  for (const connected of clients) connected.disconnect();
  assert.equal(await server.stop(), 0, "the server exits cleanly on SIGTERM");
});

test("a member subscribes to the private room channel through /realtime/auth and receives a REST trigger", async () => {
  const adaClient = await client(ada);
  const channel = await subscribed(adaClient, room.channel_name);
  const received = within("the triggered event", (resolve) => channel.bind("announcement", resolve));
  // The official server library publishes through our REST API, signature and all.
  const rest = new Pusher({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: String(server.port), useTLS: false });
  const response = await rest.trigger(room.channel_name, "announcement", { text: "hello" });
  assert.equal(response.status, 200);
  assert.deepEqual(await received, { text: "hello" });
});

test("a message sent over HTTP is stored, then published on the room channel as message.created", async () => {
  const bobClient = await client(bob);
  const channel = await subscribed(bobClient, room.channel_name);
  const created = within("message.created", (resolve) => channel.bind("message.created", resolve));
  const sent = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "c-rest-1", text: "hi Bob" });
  assert.equal(sent.status, 201);
  const event = await created;
  assert.equal(event.message_id, sent.body.message_id);
  assert.equal(event.text, "hi Bob");
  assert.equal(event.user_id, ada.id, "the sender is the server's identity");
  assert.equal(event.seq, sent.body.seq);
});

test("presence: the member list carries the server's user ids and names; added and removed follow the first and last connection", async () => {
  const adaClient = await client(ada);
  const adaPresence = await subscribed(adaClient, room.presence_channel_name);
  assert.equal(adaPresence.members.me.id, ada.id);
  assert.deepEqual(adaPresence.members.me.info, { name: "Ada" });

  const added = collect(adaPresence, "pusher:member_added");
  const removed = collect(adaPresence, "pusher:member_removed");
  const bobFirst = await client(bob);
  const bobSecond = await client(bob);
  const bobPresence = await subscribed(bobFirst, room.presence_channel_name);
  await subscribed(bobSecond, room.presence_channel_name);
  assert.equal(bobPresence.members.count, 2);
  await eventually("member_added for Bob", () => added.length === 1);

  bobFirst.unsubscribe(room.presence_channel_name);
  // Bob is still present through his second connection: nothing is removed yet.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(removed.length, 0);
  bobSecond.disconnect();
  await eventually("member_removed for Bob", () => removed.length === 1);
  assert.equal(added.length, 1, "two connections of one user are one member");
  assert.equal(added[0].data.id, bob.id);
  assert.equal(removed[0].data.id, bob.id);
  assert.equal(adaPresence.members.count, 1);
});

test("client events reach the other member, are not echoed, and carry the server-stamped user id on presence", async () => {
  const adaClient = await client(ada);
  const bobClient = await client(bob);
  const adaChannel = await subscribed(adaClient, room.presence_channel_name);
  const bobChannel = await subscribed(bobClient, room.presence_channel_name);
  const adaSaw = collect(adaChannel, "client-typing");
  const bobGot = within("Ada's typing event", (resolve) => bobChannel.bind("client-typing", (data, metadata) => resolve({ data, metadata })));
  // Ada claims to be Eve in her payload; the broker's stamp is the truth.
  assert.equal(adaChannel.trigger("client-typing", { user_id: eve.id, is_typing: true }), true);
  const { data, metadata } = await bobGot;
  assert.equal(data.is_typing, true);
  assert.equal(metadata.user_id, ada.id);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(adaSaw.length, 0, "never echoed to the sender");
});

test("a forged channel signature is refused and the socket stays usable", async () => {
  const forger = await client(eve, {
    channelAuthorization: {
      customHandler: ({ socketId }, callback) => callback(null, { auth: `${devApp.key}:${"0".repeat(64)}`, socket_id: socketId }),
    },
  });
  const error = await refused(forger, room.channel_name);
  assert.equal(error.status, 401);
  assert.equal(forger.connection.state, "connected");
  await subscribed(forger, "public-lobby");
});

test("a non-member is refused by /realtime/auth with 403 and receives nothing", async () => {
  const eveClient = await client(eve);
  const error = await refused(eveClient, room.channel_name);
  assert.equal(error.status, 403);
  const direct = await eve.api("POST", "/realtime/auth", { socket_id: eveClient.connection.socket_id, channel_name: room.channel_name });
  assert.equal(direct.status, 403);
  assert.equal(direct.body.error.code, "forbidden");
});

test("client events beyond 10 a second are refused with 4301 and not delivered", async () => {
  const adaClient = await client(ada);
  const bobClient = await client(bob);
  const adaChannel = await subscribed(adaClient, room.channel_name);
  const bobChannel = await subscribed(bobClient, room.channel_name);
  const delivered = collect(bobChannel, "client-burst");
  const errors = [];
  adaClient.connection.bind("error", (error) => errors.push(error));
  for (let i = 0; i < 15; i++) adaChannel.trigger("client-burst", { i });
  await eventually("a 4301 error", () => errors.some((error) => error?.data?.code === 4301));
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.ok(delivered.length <= 10, `${delivered.length} of 15 burst events delivered`);
  assert.ok(delivered.length >= 1);
  assert.equal(adaClient.connection.state, "connected", "rate limiting keeps the socket");
});

/** A pusher-js client of `user` that signs in (`pusher:signin`) through /realtime/user-auth. */
async function signedInClient(user) {
  const headers = { Authorization: `Bearer ${user.token}` };
  const connected = await client(user, {
    userAuthentication: { endpoint: `${server.url}/realtime/user-auth`, transport: "ajax", headers },
  });
  connected.signin();
  await within("pusher:signin_success", (resolve) => connected.user.signinDonePromise.then(resolve));
  assert.equal(connected.user.user_data?.id, user.id, "signed in as the server's identity");
  return connected;
}

/** Resolves with the close code once pusher-js loses `connected` to a close. */
function closedWith(connected) {
  return within("the broker to close the connection", (resolve) =>
    connected.connection.bind("error", (error) => {
      if (error?.data?.code !== undefined) resolve(error.data.code);
    }),
  );
}

test("removing a member ends their realtime access at once: member.removed, then their signed-in sockets close with 4009, and a new subscription is refused", async () => {
  const carol = await signIn(server.url, "Carol");
  const made = await ada.api("POST", "/api/rooms", { kind: "group", name: "Removal", member_ids: [carol.id] });
  assert.equal(made.status, 201);
  const adaClient = await client(ada);
  const adaChannel = await subscribed(adaClient, made.body.channel_name);
  const carolClient = await signedInClient(carol);
  const carolChannel = await subscribed(carolClient, made.body.channel_name);
  await subscribed(carolClient, made.body.presence_channel_name);
  const carolHeard = collect(carolChannel, "message.created");
  const removedEvent = within("member.removed", (resolve) => carolChannel.bind("member.removed", resolve));
  const closed = closedWith(carolClient);

  const removed = await ada.api("DELETE", `/api/rooms/${made.body.room_id}/members/${carol.id}`);
  assert.equal(removed.status, 200);
  assert.equal((await removedEvent).user_id, carol.id, "the event reaches Carol before the close");
  assert.equal(await closed, 4009);

  // Nothing sent afterwards reaches her; the room carries on for Ada.
  const adaHeard = within("Ada's message.created", (resolve) => adaChannel.bind("message.created", resolve));
  const sent = await ada.api("POST", `/api/rooms/${made.body.room_id}/messages`, { client_id: "c-after-removal", text: "secret" });
  assert.equal(sent.status, 201);
  await adaHeard;
  assert.deepEqual(carolHeard, []);

  // Connecting again, she is refused the room's channels.
  const again = await client(carol);
  assert.equal((await refused(again, made.body.channel_name)).status, 403);
  assert.equal((await refused(again, made.body.presence_channel_name)).status, 403);
});

test("signing out revokes every token of the user and closes their signed-in sockets", async () => {
  const dave = await signIn(server.url, "Dave");
  const otherDevice = await signIn(server.url, "Dave");
  const made = await ada.api("POST", "/api/rooms", { kind: "group", name: "Sign-out", member_ids: [dave.id] });
  assert.equal(made.status, 201);
  const daveClient = await signedInClient(dave);
  await subscribed(daveClient, made.body.channel_name);
  const closed = closedWith(daveClient);

  assert.equal((await dave.api("DELETE", "/api/session")).status, 204);
  assert.equal(await closed, 4009);
  for (const token of [dave, otherDevice]) {
    assert.equal((await token.api("GET", "/api/session")).status, 401);
  }
  const again = await client(dave);
  assert.equal((await refused(again, made.body.channel_name)).status, 401);
});

test("@domvia/realtime-server's terminateUserConnections closes only that user's signed-in sockets", async () => {
  const erin = await signIn(server.url, "Erin");
  const erinClient = await signedInClient(erin);
  const adaClient = await signedInClient(ada);
  const closed = closedWith(erinClient);
  const rest = createRealtimeClient({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: server.port, useTLS: false });
  await rest.terminateUserConnections(erin.id);
  assert.equal(await closed, 4009);
  assert.equal(adaClient.connection.state, "connected");
});
