// Every entry of the Pusher vectors (tests/vectors/pusher, a copy of the shared
// vectors, produced by the `pusher` npm library 5.3.4), matched byte for byte.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import test from "node:test";

import {
  authenticateUser,
  authorizePresenceChannel,
  authorizePrivateChannel,
  signRestRequest,
  verifyChannelAuth,
  verifyUserAuth,
  verifyWebhook,
} from "../dist/index.js";

const authVectors = JSON.parse(
  await readFile(new URL("../../../tests/vectors/pusher/auth.json", import.meta.url), "utf8"),
);
const restVectors = JSON.parse(
  await readFile(new URL("../../../tests/vectors/pusher/rest.json", import.meta.url), "utf8"),
);
const { key, secret } = authVectors.app;

test("auth.json has only the sections this file knows", () => {
  assert.deepEqual(Object.keys(authVectors).sort(), ["app", "presence", "private", "user", "webhook"]);
});

test("private channel vectors", async () => {
  let checked = 0;
  for (const vector of authVectors.private) {
    const answer = await authorizePrivateChannel({
      key,
      secret,
      socketId: vector.socket_id,
      channelName: vector.channel_name,
    });
    assert.deepEqual(answer, vector.response, vector.channel_name);
    verifyChannelAuth({ key, secret, socketId: vector.socket_id, channelName: vector.channel_name, auth: vector.response.auth });
    checked += 1;
  }
  assert.ok(checked > 0);
});

test("presence channel vectors", async () => {
  let checked = 0;
  for (const vector of authVectors.presence) {
    const { user_id: id, user_info: info, ...rest } = vector.presence_data;
    assert.deepEqual(rest, {}, "presence_data has only user_id and user_info");
    const answer = await authorizePresenceChannel({
      key,
      secret,
      socketId: vector.socket_id,
      channelName: vector.channel_name,
      user: { id, info },
    });
    assert.deepEqual(answer, vector.response, vector.channel_name);
    // Byte for byte, not just structurally.
    assert.equal(answer.channel_data, vector.response.channel_data);
    assert.equal(answer.auth, vector.response.auth);
    verifyChannelAuth({
      key,
      secret,
      socketId: vector.socket_id,
      channelName: vector.channel_name,
      auth: vector.response.auth,
      channelData: vector.response.channel_data,
    });
    checked += 1;
  }
  assert.ok(checked > 0);
});

test("user authentication vectors", async () => {
  let checked = 0;
  for (const vector of authVectors.user) {
    const answer = await authenticateUser({ key, secret, socketId: vector.socket_id, user: vector.user_data });
    assert.equal(answer.user_data, vector.response.user_data);
    assert.equal(answer.auth, vector.response.auth);
    assert.deepEqual(answer, vector.response);
    verifyUserAuth({ key, secret, socketId: vector.socket_id, auth: vector.response.auth, userData: vector.response.user_data });
    checked += 1;
  }
  assert.ok(checked > 0);
});

test("webhook vectors", () => {
  let checked = 0;
  for (const vector of authVectors.webhook) {
    assert.equal(vector.header_key, key);
    const headers = { "X-Pusher-Key": vector.header_key, "X-Pusher-Signature": vector.header_signature };
    const payload = verifyWebhook({ key, secret, headers, body: vector.body });
    assert.deepEqual(payload, JSON.parse(vector.body));
    // The same as bytes.
    verifyWebhook({ key, secret, headers, body: Buffer.from(vector.body) });
    checked += 1;
  }
  assert.ok(checked > 0);
});

test("REST query string vectors", () => {
  let checked = 0;
  for (const vector of restVectors) {
    const query = signRestRequest({
      key,
      secret,
      method: vector.method,
      path: vector.path,
      params: vector.params,
      body: vector.body,
      timestamp: vector.auth_timestamp,
    });
    assert.equal(query, vector.query, `${vector.method} ${vector.path} at ${vector.auth_timestamp}`);
    checked += 1;
  }
  assert.ok(checked > 0);
});
