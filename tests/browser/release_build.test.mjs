// Loads the RELEASE build (after wasm-opt) in a real browser page (Chromium or Firefox, per DOMVIA_BROWSER) served by
// the real embedded server, and calls into it, so a broken optimiser never ships.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, test } from "node:test";
import { launchBrowser, recordPageErrors, repoRoot, startServer } from "../support/harness.mjs";
import { prepareSdkPage } from "../support/sdk_pages.mjs";

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  const code = await server?.stop();
  assert.equal(code, 0, "the server exits cleanly on SIGTERM");
});

/** The demo page, once its sign-in form shows (the SDK has loaded by then). */
async function demoPage() {
  const page = await browser.newPage();
  const errors = recordPageErrors(page);
  await page.goto(server.url);
  await page.waitForSelector('[data-testid="sign-in-form"]:visible', { timeout: 15_000 });
  return { page, errors: () => errors.filter((error) => !/401 \(Unauthorized\)/.test(error)) };
}

test("the demo page loads the release wasm, whose version is the server's", async () => {
  const { page, errors } = await demoPage();
  const version = await page.evaluate(async () => {
    const sdk = await import("@domvia/realtime");
    await sdk.ready();
    return sdk.version();
  });
  const health = await (await fetch(`${server.url}/healthz`)).json();
  assert.equal(version, health.version);
  assert.match(health.version, /^\d+\.\d+\.\d+/);

  // The wasm the page fetched is byte for byte the release build on disk.
  const served = Buffer.from(await (await fetch(`${server.url}/sdk/realtime/wasm/domvia_realtime_bg.wasm`)).arrayBuffer());
  const built = await readFile(`${repoRoot}packages/realtime/wasm/domvia_realtime_bg.wasm`);
  assert.ok(served.equals(built), "the server serves the release .wasm");
  assert.deepEqual(errors(), []);
  await page.close();
});

test("the page calls into the release wasm: channel names and coded errors", async () => {
  const { page, errors } = await demoPage();
  const results = await page.evaluate(async () => {
    const sdk = await import("@domvia/realtime");
    await sdk.ready();
    const caught = (call) => {
      try {
        call();
        return null;
      } catch (error) {
        return { isDomViaError: error instanceof sdk.DomViaError, isError: error instanceof Error, code: error.code };
      }
    };
    return {
      private: sdk.buildChatChannelName("room-42"),
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
    private: "private-chat.room.room-42",
    presence: "presence-chat.room.room-42",
    kind: "private-encrypted",
    fail: "fail",
    keep: "keep_socket",
    badRoom: { isDomViaError: true, isError: true, code: "invalid_room_id" },
    badChannel: { isDomViaError: true, isError: true, code: "invalid_channel_name" },
    tooLong: { isDomViaError: true, isError: true, code: "invalid_room_id" },
  });
  assert.deepEqual(errors(), []);
  await page.close();
});

test("before the wasm loads: chat channel names already work (same answers as the wasm), the rest is a clear not_ready", async () => {
  const page = await browser.newPage();
  // A blank page of the same origin, so the import map is absent: import by URL.
  await page.goto(`${server.url}/healthz`);
  const result = await page.evaluate(async (url) => {
    const sdk = await import(url);
    const ids = ["room-42", "r_0123456789abcdef", "a=b@c,d.e;f_g", "", "room 42", "a/b", "é", "x".repeat(181), "x".repeat(182), "x".repeat(183)];
    const answers = () =>
      ids.flatMap((id) =>
        [false, true].map((presence) => {
          try {
            return sdk.buildChatChannelName(id, { presence });
          } catch (error) {
            return `error:${error.code}:${error instanceof sdk.DomViaError}`;
          }
        }),
      );
    const before = answers();
    let notReady;
    try {
      sdk.validateChannelName("private-x");
    } catch (error) {
      notReady = { code: error.code, message: error.message };
    }
    const wasReady = sdk.isReady();
    await sdk.ready();
    return { before, after: answers(), notReady, wasReady };
  }, `${server.url}/sdk/realtime/dist/index.js`);
  assert.equal(result.wasReady, false);
  assert.deepEqual(result.before, result.after, "the pre-load rule is the core's rule");
  assert.equal(result.before[0], "private-chat.room.room-42");
  assert.equal(result.before[1], "presence-chat.room.room-42");
  assert.ok(result.before.includes("error:invalid_room_id:true"));
  // 181 characters fit after "presence-chat.room." (19) and "private-chat.room." (18); 182 only the private one.
  assert.deepEqual(result.before.slice(14), [
    `private-chat.room.${"x".repeat(181)}`, `presence-chat.room.${"x".repeat(181)}`,
    `private-chat.room.${"x".repeat(182)}`, "error:invalid_room_id:true",
    "error:invalid_room_id:true", "error:invalid_room_id:true",
  ]);
  assert.equal(result.notReady.code, "not_ready");
  assert.match(result.notReady.message, /await ready\(\)/);
  await page.close();
});

test("a wasm URL that 404s or answers a page fails with wasm_load_failed naming the URL; a good one loads after", async () => {
  const page = await browser.newPage();
  const errors = recordPageErrors(page);
  await prepareSdkPage(page, server.url);
  const result = await page.evaluate(async () => {
    const sdk = await import("@domvia/realtime");
    const failure = async (load) => {
      try {
        await load();
        return "loaded";
      } catch (error) {
        return { code: error.code, message: error.message, isDomViaError: error instanceof sdk.DomViaError };
      }
    };
    const missing = await failure(() => sdk.ready("/sdk/realtime/wasm/no_such_file.wasm"));
    // The server's HTML page where the .wasm was expected: what a misconfigured bundler or SPA fallback serves.
    const page = await failure(() => sdk.ready(new URL("/", location.href)));
    // A connection created with a bad `wasm` option reports the same through `attached`.
    const realtime = sdk.DomViaRealtime.create({
      key: "k",
      host: "127.0.0.1",
      authEndpoint: "/realtime/auth",
      autoConnect: false,
      wasm: "/sdk/realtime/wasm/nope.wasm",
    });
    const attached = await failure(() => realtime.attached);
    realtime.dispose();
    const e2ee = await import("@domvia/realtime-e2ee");
    const e2eeMissing = await failure(() => e2ee.ready("/sdk/realtime-e2ee/wasm/nope.wasm"));
    // After failures the default URL still loads (a failed load may be retried).
    await sdk.ready();
    return { missing, page, attached, e2eeMissing, ready: sdk.isReady() };
  });
  for (const failure of [result.missing, result.page, result.attached, result.e2eeMissing]) {
    assert.equal(failure.code, "wasm_load_failed");
    assert.equal(failure.isDomViaError, true);
  }
  assert.match(result.missing.message, /DomVia wasm module from \/sdk\/realtime\/wasm\/no_such_file\.wasm; the server answered 404/);
  assert.match(result.page.message, new RegExp(`from ${server.url}/; the server answered text/html.*not WebAssembly`));
  assert.doesNotMatch(result.page.message, /magic/i, "the engine's own wording is not all the user gets");
  assert.match(result.attached.message, /from \/sdk\/realtime\/wasm\/nope\.wasm; the server answered 404/);
  assert.match(result.e2eeMissing.message, /DomVia E2EE wasm module from \/sdk\/realtime-e2ee\/wasm\/nope\.wasm; the server answered 404/);
  assert.equal(result.ready, true);
  // The browser's own line for each 404 is expected; nothing else.
  assert.deepEqual(errors.filter((line) => !/404|Failed to load resource/.test(line)), []);
  await page.close();
});
