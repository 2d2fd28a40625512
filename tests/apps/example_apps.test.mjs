// The example apps (examples/), each installed from the npm tarballs only
// (scripts/examples), in their dev server and their production build, against
// the real embedded server, in real browser pages (DOMVIA_BROWSER; the apps
// stage runs Chromium). Each proves what a user of that toolchain meets:
// the .wasm files found and fetched once, the E2EE one only for an encrypted
// room, two users' messages and typing shown exactly once, one subscription
// per channel whatever the framework's mounting does, and a clean console.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { EXAMPLE_APPS, startApp } from "../support/example_apps.mjs";
import { eventually, signIn } from "../support/chat.mjs";
import { launchBrowser, startServer } from "../support/harness.mjs";

const only = process.env.DOMVIA_EXAMPLES?.split(",").filter(Boolean);
const apps = EXAMPLE_APPS.filter((app) => only === undefined || only.some((name) => app.id.startsWith(name)));

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

let users = 0;
async function twoUsersAndRooms() {
  const suffix = `${++users}-${process.pid}`;
  const ada = await signIn(server.url, `ada-${suffix}`);
  const bob = await signIn(server.url, `bob-${suffix}`);
  const plain = await ada.api("POST", "/api/rooms", { kind: "group", name: "Plain", member_ids: [bob.id] });
  const sealed = await ada.api("POST", "/api/rooms", { kind: "group", name: "Sealed", member_ids: [bob.id], encrypted: true });
  assert.equal(plain.status, 201);
  assert.equal(sealed.status, 201);
  return { ada, bob, plainRoom: plain.body.room_id, sealedRoom: sealed.body.room_id };
}

/**
 * A page of the app in a fresh context, recording what a user's devtools
 * would show: the frames the page sent on its WebSocket, the .wasm responses,
 * and console errors and warnings.
 */
async function openApp(appUrl, query) {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    const sent = [];
    window.__sentFrames = sent;
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      sent.push(String(data));
      return send.call(this, data);
    };
  });
  const page = await context.newPage();
  const wasm = [];
  const console = [];
  page.on("response", (response) => {
    if (/\.wasm(\?|$)/.test(response.url())) {
      wasm.push({ url: response.url(), status: response.status(), type: response.headers()["content-type"] ?? "" });
    }
  });
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warning") console.push(`${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (error) => console.push(`pageerror: ${error.message}`));
  const search = new URLSearchParams({ server: server.url, ...query });
  await page.goto(`${appUrl}/?${search}`);
  return { context, page, wasm, console };
}

/** The `pusher:subscribe` and `pusher:unsubscribe` frames the page sent, counted by channel. */
async function subscriptions(page) {
  const frames = await page.evaluate(() => window.__sentFrames);
  const counts = {};
  for (const frame of frames) {
    const { event, data } = JSON.parse(frame);
    if (event !== "pusher:subscribe" && event !== "pusher:unsubscribe") continue;
    counts[data.channel] ??= { subscribe: 0, unsubscribe: 0 };
    counts[data.channel][event === "pusher:subscribe" ? "subscribe" : "unsubscribe"] += 1;
  }
  return counts;
}

const roomStatus = (page) => page.getByTestId("room").getAttribute("data-status");
const shownMessages = async (page) => (await page.getByTestId("message").allTextContents()).map((text) => text.trim());

async function waitReady(who, what) {
  await eventually(`${what}: the room to be ready`, async () => (await roomStatus(who.page)) === "ready", 60_000);
}

function wasmFetches(who, pattern) {
  return who.wasm.filter((response) => pattern.test(new URL(response.url).pathname));
}

const BASE_WASM = /domvia_realtime_bg[^/]*\.wasm$/;
const E2EE_WASM = /domvia_e2ee_bg[^/]*\.wasm$/;

for (const app of apps) {
  for (const mode of app.modes) {
    describe(`${app.id} (${mode})`, () => {
      let running;
      const pages = [];
      before(async () => {
        running = await startApp(app, mode, { DOMVIA_SERVER: server.url });
      });
      after(async () => {
        for (const who of pages) await who.context.close();
        await running?.stop();
        const log = running?.log() ?? "";
        // The app's server never loads the SDK's wasm (SSR renders the placeholder).
        assert.doesNotMatch(log, /\.wasm|WebAssembly/i, `the ${app.id} server's output mentions wasm:\n${log}`);
      });

      test("two users chat: messages and typing shown once each, the base wasm fetched once, one subscription per channel", async () => {
        const { ada, bob, plainRoom } = await twoUsersAndRooms();
        const adaPage = await openApp(running.url, { name: ada.name, room: plainRoom });
        const bobPage = await openApp(running.url, { name: bob.name, room: plainRoom });
        pages.push(adaPage, bobPage);
        await waitReady(adaPage, "ada");
        await waitReady(bobPage, "bob");
        if (app.pageCheck) {
          const { zone, expected } = await app.pageCheck(adaPage.page, mode);
          assert.equal(zone, expected, `zone.js loaded: ${zone}, expected ${expected}`);
        }

        const fromAda = `hello from ada in ${app.id} ${mode}`;
        const fromBob = `hello from bob in ${app.id} ${mode}`;
        await adaPage.page.getByTestId("composer").fill(fromAda);
        await adaPage.page.getByTestId("send").click();
        await bobPage.page.getByTestId("composer").fill(fromBob);
        await bobPage.page.getByTestId("send").click();
        for (const who of [adaPage, bobPage]) {
          await eventually("both messages on both pages", async () => {
            const shown = await shownMessages(who.page);
            return shown.includes(fromAda) && shown.includes(fromBob);
          });
          const shown = await shownMessages(who.page);
          assert.equal(shown.filter((text) => text === fromAda).length, 1, "ada's message shown once");
          assert.equal(shown.filter((text) => text === fromBob).length, 1, "bob's message shown once");
          // onMessage heard each stored message once (your own too, once stored).
          await eventually("onMessage to hear both", async () => (await who.page.getByTestId("heard").textContent()) === "2");
        }

        // Typing: bob types, ada sees bob; ada types, bob sees ada.
        await bobPage.page.getByTestId("composer").pressSequentially("typ");
        await eventually("ada to see bob typing", async () => (await adaPage.page.getByTestId("typing").textContent()) === bob.id);
        await adaPage.page.getByTestId("composer").pressSequentially("typ");
        await eventually("bob to see ada typing", async () => (await bobPage.page.getByTestId("typing").textContent()) === ada.id);

        for (const who of [adaPage, bobPage]) {
          const base = wasmFetches(who, BASE_WASM);
          assert.equal(base.length, 1, `the base wasm fetched once: ${JSON.stringify(who.wasm)}`);
          assert.equal(base[0].status, 200);
          assert.match(base[0].type, /^application\/wasm/);
          assert.deepEqual(wasmFetches(who, E2EE_WASM), [], "no E2EE wasm for a plain room");
          const channels = await subscriptions(who.page);
          assert.deepEqual(channels, { [`private-chat.room.${plainRoom}`]: { subscribe: 1, unsubscribe: 0 } });
          assert.deepEqual(who.console, [], "no console errors or warnings");
        }
      });

      test("the room toggled 10 times keeps one subscription; hidden, it unsubscribes", async () => {
        const { ada, plainRoom } = await twoUsersAndRooms();
        const who = await openApp(running.url, { name: ada.name, room: plainRoom });
        pages.push(who);
        await waitReady(who, "ada");
        const channel = `private-chat.room.${plainRoom}`;
        const toggle = who.page.getByTestId("toggle-room");
        for (let i = 0; i < 10; i += 1) await toggle.click();
        await waitReady(who, "ada after 10 toggles");
        const live = (counts) => counts[channel].subscribe - counts[channel].unsubscribe;
        assert.equal(live(await subscriptions(who.page)), 1, "one live subscription after the toggles");
        await toggle.click();
        await eventually("the unsubscribe after the room is hidden", async () => live(await subscriptions(who.page)) === 0);
        const counts = await subscriptions(who.page);
        assert.equal(counts[channel].unsubscribe, counts[channel].subscribe, "every subscribe has its unsubscribe");
        assert.deepEqual(who.console, [], "no console errors or warnings");
      });

      test("an encrypted room loads the E2EE wasm once, on demand, and messages open on the other side", async () => {
        const { ada, bob, sealedRoom } = await twoUsersAndRooms();
        const adaPage = await openApp(running.url, { name: ada.name, room: sealedRoom, encrypted: "1" });
        const bobPage = await openApp(running.url, { name: bob.name, room: sealedRoom, encrypted: "1" });
        pages.push(adaPage, bobPage);
        await waitReady(adaPage, "ada (encrypted)");
        await waitReady(bobPage, "bob (encrypted)");
        const secret = `sealed in ${app.id} ${mode}`;
        await adaPage.page.getByTestId("composer").fill(secret);
        await adaPage.page.getByTestId("send").click();
        await eventually("bob to open ada's message", async () => (await shownMessages(bobPage.page)).includes(secret), 30_000);
        for (const who of [adaPage, bobPage]) {
          for (const pattern of [BASE_WASM, E2EE_WASM]) {
            const fetched = wasmFetches(who, pattern);
            assert.equal(fetched.length, 1, `${pattern} fetched once: ${JSON.stringify(who.wasm)}`);
            assert.equal(fetched[0].status, 200);
            assert.match(fetched[0].type, /^application\/wasm/);
          }
          assert.deepEqual(who.console, [], "no console errors or warnings");
        }
        const stored = await ada.api("GET", `/api/rooms/${sealedRoom}/messages`);
        assert.ok(!JSON.stringify(stored.body).includes(secret), "the backend holds no plaintext");
      });

      if (app.serverRendered) {
        test("the server's HTML has the empty room placeholder, and hydration is clean", async () => {
          const { ada, plainRoom } = await twoUsersAndRooms();
          const search = new URLSearchParams({ server: server.url, name: ada.name, room: plainRoom });
          const html = await (await fetch(`${running.url}/?${search}`)).text();
          assert.match(html, /data-testid="room" data-status="loading"/);
          assert.match(html, /Loading the room…/);
          const who = await openApp(running.url, { name: ada.name, room: plainRoom });
          pages.push(who);
          await waitReady(who, "ada after hydration");
          assert.deepEqual(who.console, [], "no hydration (or other) warnings");
        });
      }
    });
  }
}
