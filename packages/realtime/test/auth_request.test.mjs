// The auth POST the connection's TS layer makes for the wasm core
// (dist/auth.js), against a real HTTP server on 127.0.0.1: the form and
// headers as pusher-js sends them, and every failure before an answer as a
// status-0 answer whose body says why (the core reports it as the
// subscription error's message).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import test from "node:test";

import { postAuth } from "../dist/auth.js";

async function withServer(handler, run) {
  const requests = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => {
      body += chunk;
    });
    request.on("end", () => {
      requests.push({ method: request.method, url: request.url, headers: request.headers, body });
      handler(response);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await run(`http://127.0.0.1:${server.address().port}`, requests);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

test("postAuth sends the form, the headers and the provider's headers, and returns the status and body as they came", async () => {
  await withServer(
    (response) => response.writeHead(403, { "content-type": "application/json" }).end('{"error":{"message":"not a member"}}'),
    async (base, requests) => {
      const answer = await postAuth(`${base}/realtime/auth`, "123.456", "private-chat.room.a b", {
        headers: { "X-App": "one" },
        params: { team: "t&1" },
        headersProvider: async () => ({ Authorization: "Bearer tok", ignored: 7 }),
      });
      assert.deepEqual(answer, { status: 403, body: '{"error":{"message":"not a member"}}' });
      assert.equal(requests.length, 1);
      const [request] = requests;
      assert.equal(request.method, "POST");
      assert.equal(request.url, "/realtime/auth");
      assert.equal(request.headers["content-type"], "application/x-www-form-urlencoded");
      assert.equal(request.headers["x-app"], "one");
      assert.equal(request.headers.authorization, "Bearer tok");
      assert.equal(request.headers.ignored, undefined, "a header value that is not a string is left out");
      assert.deepEqual(Object.fromEntries(new URLSearchParams(request.body)), {
        socket_id: "123.456",
        channel_name: "private-chat.room.a b",
        team: "t&1",
      });
      // User authentication: no channel_name.
      await postAuth(`${base}/realtime/user-auth`, "1.2", undefined, {});
      assert.deepEqual(Object.fromEntries(new URLSearchParams(requests[1].body)), { socket_id: "1.2" });
    },
  );
});

test("postAuth: a bad header, a failing headersProvider and an unreachable endpoint are status-0 answers that say why, with no request sent", async () => {
  await withServer(
    (response) => response.writeHead(200).end("{}"),
    async (base, requests) => {
      const badHeader = await postAuth(`${base}/a`, "1.1", "private-x", { headers: { "bad name": "x" } });
      assert.equal(badHeader.status, 0);
      assert.match(badHeader.body, /^invalid header "bad name"; /);
      const badProvided = await postAuth(`${base}/a`, "1.1", "private-x", { headersProvider: async () => ({ "bad\nname": "x" }) });
      assert.match(badProvided.body, /^invalid header "bad\\nname" from the headersProvider; /);
      const failing = await postAuth(`${base}/a`, "1.1", "private-x", {
        headersProvider: async () => {
          throw new Error("token expired");
        },
      });
      assert.deepEqual(failing, { status: 0, body: "the headersProvider failed; token expired" });
      assert.equal(requests.length, 0);
    },
  );
  // A port nobody listens on (the server above is closed).
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address();
  await new Promise((resolve) => closed.close(resolve));
  const unreachable = await postAuth(`http://127.0.0.1:${port}/a`, "1.1", "private-x", {});
  assert.equal(unreachable.status, 0);
  assert.match(unreachable.body, /^the auth endpoint could not be reached; /);
});
