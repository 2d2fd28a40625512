// The reference backend as a real process with a real SQLite file: concurrent
// senders, exactly-once history, membership, and a restart that loses nothing.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { devApp, startServer } from "../support/harness.mjs";
import { call, collect, connectPusher, eventually, signIn, subscribed } from "../support/chat.mjs";

const SENDERS = 4;
const MESSAGES_PER_SENDER = 30;

let dataDir;
let database;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "domvia-backend-test-"));
  database = join(dataDir, "chat.sqlite");
});

after(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** Every message of a room, paging back from the latest with `before`. */
async function wholeHistory(user, roomId, limit) {
  const pages = [];
  let before = "";
  for (let guard = 0; guard < 1000; guard++) {
    const page = await user.api("GET", `/api/rooms/${roomId}/messages?limit=${limit}${before}`);
    assert.equal(page.status, 200);
    pages.unshift(...page.body.messages);
    if (!page.body.has_more) return pages;
    before = `&before=${page.body.messages[0].seq}`;
  }
  throw new Error("history paging did not end");
}

test("concurrent senders, exactly-once delivery and history, no access for a non-member, and a restart that keeps everything", async () => {
  let server = await startServer({ DOMVIA_DB: database });
  let token;
  let roomId;
  let expectedIds;
  try {
    const users = await Promise.all(["Ada", "Bob", "Cy", "Dee"].map((name) => signIn(server.url, name)));
    const eve = await signIn(server.url, "Eve");
    token = users[0].token;
    const created = await users[0].api("POST", "/api/rooms", { kind: "group", name: "Load", member_ids: users.slice(1).map((u) => u.id) });
    assert.equal(created.status, 201);
    roomId = created.body.room_id;

    const watcher = await connectPusher(server, devApp, users[0]);
    const channel = await subscribed(watcher, created.body.channel_name);
    const published = collect(channel, "message.created");

    // Every sender sends concurrently, and retries each message once (same client_id).
    const sends = users.flatMap((user, u) =>
      Array.from({ length: MESSAGES_PER_SENDER }, async (_, i) => {
        const body = { client_id: `c-${u}-${i}`, text: `message ${i} from ${user.name}` };
        const first = await user.api("POST", `/api/rooms/${roomId}/messages`, body);
        const retry = await user.api("POST", `/api/rooms/${roomId}/messages`, body);
        assert.equal(first.status, 201);
        assert.equal(retry.status, 200, "a retry with the same client_id is the same message");
        assert.equal(retry.body.message_id, first.body.message_id);
        return first.body;
      }),
    );
    const stored = await Promise.all(sends);
    const total = SENDERS * MESSAGES_PER_SENDER;
    assert.deepEqual(stored.map((m) => m.seq).sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i + 1), "seq is 1..N with no gap or repeat");

    // Pusher delivers each stored message once (retries publish nothing).
    await eventually("every message.created", () => published.length >= total);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(published.length, total);
    assert.equal(new Set(published.map((p) => p.data.message_id)).size, total);
    watcher.disconnect();

    // History pages visit every message exactly once, in seq order.
    const history = await wholeHistory(users[1], roomId, 7);
    assert.deepEqual(history.map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1));
    expectedIds = history.map((m) => m.message_id);
    assert.deepEqual([...expectedIds].sort(), stored.map((m) => m.message_id).sort());

    // A non-member gets no message, history or channel access.
    const send = await eve.api("POST", `/api/rooms/${roomId}/messages`, { client_id: "c-eve", text: "let me in" });
    assert.equal(send.status, 403);
    const read = await eve.api("GET", `/api/rooms/${roomId}/messages`);
    assert.equal(read.status, 403);
    const auth = await eve.api("POST", "/realtime/auth", { socket_id: "1.1", channel_name: created.body.channel_name });
    assert.equal(auth.status, 403);
    const signedOut = await call(server.url, null, "GET", `/api/rooms/${roomId}/messages`);
    assert.equal(signedOut.status, 401);
  } finally {
    assert.equal(await server.stop(), 0, "SIGTERM stops the server cleanly");
  }

  // Restart on the same file: every message is there, and the session still works.
  server = await startServer({ DOMVIA_DB: database });
  try {
    const history = [];
    let before = "";
    for (;;) {
      const page = await call(server.url, token, "GET", `/api/rooms/${roomId}/messages?limit=50${before}`);
      assert.equal(page.status, 200);
      history.unshift(...page.body.messages);
      if (!page.body.has_more) break;
      before = `&before=${page.body.messages[0].seq}`;
    }
    assert.deepEqual(history.map((m) => m.message_id), expectedIds);
    const next = await call(server.url, token, "POST", `/api/rooms/${roomId}/messages`, { client_id: "after-restart", text: "still here" });
    assert.equal(next.status, 201);
    assert.equal(next.body.seq, SENDERS * MESSAGES_PER_SENDER + 1, "seq continues after a restart");
  } finally {
    assert.equal(await server.stop(), 0);
  }
});
