// Loads the RELEASE build (after wasm-opt) in a real Chromium page served by
// the real embedded server, and calls into it, so a broken optimiser never ships.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { launchChromium, recordPageErrors, repoRoot, startServer } from "../support/harness.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  const code = await server?.stop();
  assert.equal(code, 0, "the server exits cleanly on SIGTERM");
});

test("the demo page loads the release wasm and shows the SDK version", async () => {
  const page = await browser.newPage();
  const errors = recordPageErrors(page);
  await page.goto(server.url);
  await page.waitForSelector('#sdk-status[data-state="ready"]', { timeout: 15_000 });

  const health = await (await fetch(`${server.url}/healthz`)).json();
  assert.equal(await page.textContent("#sdk-version"), health.version);
  assert.match(health.version, /^\d+\.\d+\.\d+/);

  // The wasm the page fetched is byte for byte the release build on disk.
  const served = Buffer.from(await (await fetch(`${server.url}/sdk/realtime/wasm/domvia_realtime_bg.wasm`)).arrayBuffer());
  const built = await readFile(`${repoRoot}packages/realtime/wasm/domvia_realtime_bg.wasm`);
  assert.ok(served.equals(built), "the server serves the release .wasm");
  assert.deepEqual(errors, []);
  await page.close();
});

test("the page calls into the release wasm: channel names and coded errors", async () => {
  const page = await browser.newPage();
  const errors = recordPageErrors(page);
  await page.goto(server.url);
  await page.waitForSelector('#sdk-status[data-state="ready"]', { timeout: 15_000 });

  assert.equal(await page.textContent("#channel-result"), "private-chat.room.room-42");
  await page.fill("#room-id", "room 42");
  await page.waitForSelector('#channel-result[data-state="error"]');
  assert.match(await page.textContent("#channel-result"), /^invalid_room_id: /);

  const results = await page.evaluate(async () => {
    const sdk = await import("@domvia/realtime");
    const caught = (call) => {
      try {
        call();
        return null;
      } catch (error) {
        return { isDomViaError: error instanceof sdk.DomViaError, isError: error instanceof Error, code: error.code };
      }
    };
    return {
      presence: sdk.buildChatChannelName("room-42", { presence: true }),
      kind: sdk.validateChannelName("private-encrypted-x"),
      fail: sdk.closeAction(4001),
      keep: sdk.closeAction(4301),
      badRoom: caught(() => sdk.buildChatChannelName("a/b")),
      badChannel: caught(() => sdk.validateChannelName("private-")),
      tooLong: caught(() => sdk.buildChatChannelName("x".repeat(190))),
    };
  });
  assert.deepEqual(results, {
    presence: "presence-chat.room.room-42",
    kind: "private-encrypted",
    fail: "fail",
    keep: "keep_socket",
    badRoom: { isDomViaError: true, isError: true, code: "invalid_room_id" },
    badChannel: { isDomViaError: true, isError: true, code: "invalid_channel_name" },
    tooLong: { isDomViaError: true, isError: true, code: "invalid_room_id" },
  });
  assert.deepEqual(errors, []);
  await page.close();
});

test("using the SDK before its wasm is loaded is a clear not_ready error", async () => {
  const page = await browser.newPage();
  // A blank page of the same origin, so the import map is absent: import by URL.
  await page.goto(`${server.url}/healthz`);
  const result = await page.evaluate(async (url) => {
    const sdk = await import(url);
    try {
      sdk.buildChatChannelName("room-42");
      return { threw: false };
    } catch (error) {
      return { threw: true, code: error.code, ready: sdk.isReady(), message: error.message };
    }
  }, `${server.url}/sdk/realtime/dist/index.js`);
  assert.equal(result.threw, true);
  assert.equal(result.code, "not_ready");
  assert.equal(result.ready, false);
  assert.match(result.message, /await ready\(\)/);
  await page.close();
});
