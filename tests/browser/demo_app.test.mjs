// The demo app (www/) driven like a person would, in two headless browser
// contexts (Chromium or Firefox, per DOMVIA_BROWSER) against the real embedded server and the built SDK: sign in
// through the form, start a direct chat from the people picker, messages both
// ways reach 'sent', typing, presence and "seen by" show, hostile text stays
// text, a too-long message is explained inline, the connection banner comes
// and goes with the server; a refused message turns red and is retried; and
// an end-to-end encrypted group made in the dialog: readable by its members,
// ciphertext on the server, the same safety numbers on both sides.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { CONNECTION_FAILURE_REPORTS, launchBrowser, recordPageErrors, startServer } from "../support/harness.mjs";
import { signIn } from "../support/chat.mjs";

/** Every wait is bounded; reconnecting after a restart gets longer (backoff). */
const WAIT_MS = 10_000;
const RECONNECT_MS = 30_000;

let dataDir;
let env;
let server;
let browser;

before(async () => {
  // A file database: the restart below must keep the users, rooms and messages.
  dataDir = await mkdtemp(join(tmpdir(), "domvia-demo-test-"));
  env = { DOMVIA_DB: join(dataDir, "chat.sqlite") };
  server = await startServer(env);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** A new browser context on the demo, signed in as `name` through the sign-in form. */
async function signInThroughUi(name) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  const errors = recordPageErrors(page);
  await page.goto(server.url);
  await page.getByTestId("sign-in-input").fill(name);
  await page.getByTestId("sign-in-submit").click();
  await page.getByTestId("me").filter({ hasText: name }).waitFor({ timeout: WAIT_MS });
  return { name, context, page, errors };
}

const message = (page, text) => page.getByTestId("message").filter({ hasText: text });

async function send(page, text) {
  const input = page.getByTestId("composer-input");
  await input.fill(text);
  await input.press("Enter");
}

/** Waits until `text` is in the list with status 'sent' and a seq; returns its row's data. */
async function sentMessage(page, text) {
  const row = message(page, text).and(page.locator("[data-status=sent]"));
  await row.waitFor({ timeout: WAIT_MS });
  return row.evaluate((element) => ({ ...element.dataset, mine: element.classList.contains("mine") }));
}

/**
 * Types `query` in the people dialog and clicks the person named `name` once the
 * list answers that query: the rows above reflow when it arrives, and a click
 * aimed before that can land beside the row.
 */
async function pickPerson(page, query, name) {
  await page.getByTestId("people-search").fill(query);
  await page.locator(`[data-testid=people-results][data-query="${query}"]`).waitFor({ timeout: WAIT_MS });
  await page.getByTestId("user-result").filter({ hasText: name }).click({ timeout: WAIT_MS });
}

async function waitForText(locator, expected, timeout = WAIT_MS) {
  const element = await locator.elementHandle({ timeout });
  await locator.page().waitForFunction(
    ({ element, expected }) => element.textContent === expected,
    { element, expected },
    { timeout },
  ).catch(async (error) => {
    throw new Error(`expected ${JSON.stringify(expected)}, got ${JSON.stringify(await locator.textContent())}: ${error.message}`);
  });
}

test("two people chat through the demo: direct room, sent messages both ways, typing, presence, seen by, banner across a restart", { timeout: 180_000 }, async () => {
  const bob = await signInThroughUi("Bob");
  const ada = await signInThroughUi("Ada");

  // Ada starts a direct chat with Bob from the people picker.
  await ada.page.getByTestId("new-chat").click();
  await pickPerson(ada.page, "bo", "Bob");
  await ada.page.waitForFunction(() => location.hash.length > 1, null, { timeout: WAIT_MS });
  const roomId = await ada.page.evaluate(() => decodeURIComponent(location.hash.slice(1)));
  assert.match(roomId, /^r_[0-9a-f]{32}$/);
  await ada.page.locator(`[data-testid=room-item][data-room-id="${roomId}"][aria-current]`).waitFor({ timeout: WAIT_MS });
  await waitForText(ada.page.getByTestId("room-title"), "Bob");

  // Bob reloads (the session cookie resumes him) and finds the room in his list.
  await bob.page.reload();
  await bob.page.locator(`[data-testid=room-item][data-room-id="${roomId}"]`).click({ timeout: WAIT_MS });
  // Each room is one item of the list: <ul> > <li> > button (the rows are kept across redraws).
  for (const user of [ada, bob]) {
    const items = user.page.getByTestId("room-item");
    assert.equal(await user.page.locator("[data-testid=room-list] > li > [data-testid=room-item]").count(), await items.count(), `${user.name}: one <li> per room`);
    assert.ok(await items.count() >= 1);
  }
  await waitForText(bob.page.getByTestId("room-title"), "Ada");
  // A plaintext room: no lock, no verification panel.
  for (const user of [ada, bob]) {
    assert.equal(await user.page.getByTestId("room-encrypted").isHidden(), true, `${user.name}: no lock`);
    assert.equal(await user.page.getByTestId("verification").isHidden(), true, `${user.name}: no verification`);
  }

  // Both are in the presence channel: each sees the other online.
  await ada.page.locator("[data-testid=presence-item][data-online=true]").filter({ hasText: "Bob" }).waitFor({ timeout: WAIT_MS });
  await bob.page.locator("[data-testid=presence-item][data-online=true]").filter({ hasText: "Ada" }).waitFor({ timeout: WAIT_MS });

  // Ada -> Bob.
  await send(ada.page, "Hi Bob! 👋");
  const first = await sentMessage(ada.page, "Hi Bob! 👋");
  assert.equal(first.mine, true);
  assert.equal(first.seq, "1");
  assert.match(first.clientId, /^c-[0-9a-f]{32}$/);
  const received = await sentMessage(bob.page, "Hi Bob! 👋");
  assert.equal(received.mine, false);
  assert.equal(received.clientId, first.clientId);

  // Bob has the room open at the bottom: he reads it, and Ada sees it.
  await ada.page.getByTestId("seen-by").filter({ hasText: "Seen by Bob" }).waitFor({ timeout: WAIT_MS });

  // Bob types: Ada sees the indicator; sending the message clears it.
  await bob.page.getByTestId("composer-input").fill("Hello Ada, ");
  await waitForText(ada.page.getByTestId("typing-indicator"), "Bob is typing…");
  await bob.page.getByTestId("composer-input").press("End");
  await bob.page.getByTestId("composer-input").pressSequentially("good to see you");
  await bob.page.getByTestId("composer-input").press("Enter");
  const reply = await sentMessage(bob.page, "Hello Ada, good to see you");
  assert.equal(reply.seq, "2");
  await sentMessage(ada.page, "Hello Ada, good to see you");
  await waitForText(ada.page.getByTestId("typing-indicator"), "");
  assert.equal(await bob.page.getByTestId("composer-input").inputValue(), "", "the composer is cleared");

  // Shift+Enter is a newline, not a send.
  const input = ada.page.getByTestId("composer-input");
  await input.fill("line one");
  await input.press("Shift+Enter");
  await input.pressSequentially("line two");
  await input.press("Enter");
  await sentMessage(bob.page, "line one\nline two");

  // Other people's text is shown as text, never parsed as HTML.
  const hostile = `<img src=x onerror="window.pwned = true"><b>bold?</b>`;
  await send(ada.page, hostile);
  await sentMessage(bob.page, hostile);
  assert.equal(await bob.page.locator("[data-testid=message-list] img, [data-testid=message-list] b").count(), 0);
  assert.equal(await bob.page.evaluate(() => window.pwned ?? false), false);

  // A message over the limit is explained inline and the draft is given back.
  const tooLong = "x".repeat(4001);
  await send(ada.page, tooLong);
  await ada.page.getByTestId("error-area").waitFor({ state: "visible", timeout: WAIT_MS });
  assert.equal(await ada.page.getByTestId("error-area").getAttribute("data-code"), "text_too_large");
  assert.match(await ada.page.getByTestId("error-area").textContent(), /too long/);
  assert.equal(await input.inputValue(), tooLong);
  await input.fill("");

  // The server goes away: both pages say so; it comes back: the banner goes.
  for (const user of [ada, bob]) {
    assert.equal(await user.page.getByTestId("connection-banner").isHidden(), true, `${user.name}: no banner while connected`);
  }
  const port = server.port;
  assert.equal(await server.stop(), 0);
  for (const user of [ada, bob]) {
    const banner = user.page.getByTestId("connection-banner");
    await banner.waitFor({ state: "visible", timeout: WAIT_MS });
    assert.notEqual(await banner.getAttribute("data-state"), "connected");
    assert.match(await banner.textContent(), /connect|offline/i);
  }
  server = await startServer(env, { port });
  for (const user of [ada, bob]) {
    await user.page.getByTestId("connection-banner").waitFor({ state: "hidden", timeout: RECONNECT_MS });
    assert.equal(await user.page.getByTestId("connection-banner").getAttribute("data-state"), "connected");
  }

  // After the restart messages flow again, both ways.
  await send(bob.page, "still there?");
  await sentMessage(bob.page, "still there?");
  await sentMessage(ada.page, "still there?");
  await send(ada.page, "yes!");
  await sentMessage(ada.page, "yes!");
  await sentMessage(bob.page, "yes!");

  // The order is the backend's: seq ascending, no duplicates.
  const seqs = await bob.page.getByTestId("message").evaluateAll((rows) => rows.map((row) => Number(row.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6]);

  // Nothing went wrong in the pages. The browsers log refused requests as
  // errors: the session check before signing in (401, Chromium), and the
  // socket and the room-list refresh while the server was down (both engines).
  const expected = new RegExp(`status of 401 \\(Unauthorized\\)|${CONNECTION_FAILURE_REPORTS.source}`);
  for (const user of [ada, bob]) {
    assert.deepEqual(user.errors.filter((error) => !expected.test(error)), [], `${user.name}'s page errors`);
  }
  await ada.context.close();
  await bob.context.close();
});

test("a message the backend refuses is shown failed with Retry, and Retry sends it once; a removed member's room closes at once", { timeout: 60_000 }, async () => {
  const eve = await signIn(server.url, "Eve");
  const fay = await signInThroughUi("Fay");
  const fayId = await fay.page.evaluate(async () => (await (await fetch("/api/session")).json()).user.id);
  const group = (await eve.api("POST", "/api/rooms", { kind: "group", name: "Book club", member_ids: [fayId] })).body;
  await fay.page.reload();
  await fay.page.locator(`[data-testid=room-item][data-room-id="${group.room_id}"]`).click({ timeout: WAIT_MS });
  await fay.page.getByTestId("conversation-state").filter({ hasText: "No messages yet" }).waitFor({ timeout: WAIT_MS });

  // The first POST of the message is damaged on its way (its content type
  // becomes text/plain, as a cross-site form's would be), so the real backend
  // refuses it with 415 json_required.
  let damaged = 0;
  await fay.page.route(`**/api/rooms/${encodeURIComponent(group.room_id)}/messages`, (route) => {
    const request = route.request();
    if (request.method() !== "POST" || damaged > 0) return route.continue();
    damaged += 1;
    return route.continue({ headers: { ...request.headers(), "content-type": "text/plain" } });
  });
  await send(fay.page, "am I still in?");
  const failed = message(fay.page, "am I still in?").and(fay.page.locator("[data-status=failed]"));
  await failed.waitFor({ timeout: WAIT_MS });
  assert.equal(damaged, 1);
  assert.equal(await fay.page.getByTestId("error-area").getAttribute("data-code"), "json_required");

  // Retry sends the same message (same client_id) once.
  const clientId = await failed.getAttribute("data-client-id");
  await failed.getByTestId("retry").click();
  const sent = await sentMessage(fay.page, "am I still in?");
  assert.equal(sent.clientId, clientId);
  const history = (await eve.api("GET", `/api/rooms/${group.room_id}/messages`)).body.messages;
  assert.deepEqual(history.map((stored) => [stored.text, stored.client_id]), [["am I still in?", clientId]]);

  // Eve removes Fay: her open room says so at once and the composer is disabled.
  assert.equal((await eve.api("DELETE", `/api/rooms/${group.room_id}/members/${fayId}`)).status, 200);
  await fay.page.locator("[data-testid=conversation-state][data-status=error]")
    .filter({ hasText: "don't have access to this conversation anymore" }).waitFor({ timeout: WAIT_MS });
  assert.equal(await fay.page.getByTestId("composer-input").isDisabled(), true);

  const expected = /status of (401|403|415) \((Unauthorized|Forbidden|Unsupported Media Type)\)/;
  assert.deepEqual(fay.errors.filter((error) => !expected.test(error)), [], "Fay's page errors");
  await fay.context.close();
});

test("an end-to-end encrypted group made in the dialog: members read it, the server keeps ciphertext, safety numbers match", { timeout: 90_000 }, async () => {
  const iris = await signInThroughUi("Iris");
  const jude = await signInThroughUi("Jude");
  const irisApi = await signIn(server.url, "Iris");

  // Iris creates an encrypted group with Jude, the checkbox ticked.
  await iris.page.getByTestId("new-chat").click();
  await iris.page.getByTestId("mode-group").click();
  await iris.page.getByTestId("group-name").fill("Secret plans");
  await iris.page.getByTestId("encrypted-toggle").check();
  await pickPerson(iris.page, "ju", "Jude");
  await iris.page.getByTestId("create-group").click();
  await iris.page.waitForFunction(() => location.hash.length > 1, null, { timeout: WAIT_MS });
  const roomId = await iris.page.evaluate(() => decodeURIComponent(location.hash.slice(1)));
  const room = (await irisApi.api("GET", `/api/rooms/${roomId}`)).body;
  assert.equal(room.encrypted, true);
  assert.equal(room.kind, "group");

  // Jude finds it in his list, marked, and opens it: both headers show the lock.
  await jude.page.reload();
  const item = jude.page.locator(`[data-testid=room-item][data-room-id="${roomId}"]`);
  await item.waitFor({ timeout: WAIT_MS });
  assert.equal(await item.getAttribute("data-encrypted"), "true");
  assert.equal(await item.locator(`[role=img][aria-label="End-to-end encrypted"]`).count(), 1);
  await item.click();
  for (const user of [iris, jude]) {
    await waitForText(user.page.getByTestId("room-title"), "Secret plans");
    const lock = user.page.getByTestId("room-encrypted");
    await lock.waitFor({ state: "visible", timeout: WAIT_MS });
    assert.equal(await lock.getAttribute("aria-label"), "End-to-end encrypted");
    // Ready: this device's keys are stored, so the first message can be encrypted for it.
    await user.page.getByTestId("conversation-state").filter({ hasText: "No messages yet" }).waitFor({ timeout: WAIT_MS });
  }

  // Iris writes through the composer; Jude reads the text.
  const secretText = `meet at the old mill ${Date.now().toString(36)}`;
  await send(iris.page, secretText);
  const sent = await sentMessage(iris.page, secretText);
  const received = await sentMessage(jude.page, secretText);
  assert.equal(received.clientId, sent.clientId);
  assert.equal(await jude.page.getByTestId("undecryptable").count(), 0);

  // The server's copy is ciphertext only.
  const stored = await irisApi.api("GET", `/api/rooms/${roomId}/messages`);
  assert.equal(stored.status, 200);
  assert.equal(stored.body.messages.length, 1);
  assert.equal(stored.body.messages[0].text, undefined);
  assert.equal(typeof stored.body.messages[0].ciphertext, "object");
  assert.equal(stored.body.messages[0].client_id, sent.clientId);
  assert.ok(!JSON.stringify(stored.body).includes(secretText), "the plaintext is nowhere in the server's answer");

  // Verification: each shows their own fingerprint and the same safety number for the other.
  const irisId = irisApi.id;
  const judeId = room.members.find((member) => member.id !== irisId).id;
  const number = async (user, otherId) => {
    const element = user.page.locator(`[data-testid=safety-number][data-user-id="${otherId}"]`);
    await element.waitFor({ timeout: WAIT_MS }).catch(async (error) => {
      throw new Error(`${user.name}'s panel: ${JSON.stringify(await user.page.getByTestId("verification").textContent())}: ${error.message}`);
    });
    assert.equal(await element.count(), 1, `${user.name} sees one device of the other`);
    return element.textContent();
  };
  const atIris = await number(iris, judeId);
  const atJude = await number(jude, irisId);
  assert.match(atIris, /^\d{5}( \d{5}){5}$/);
  assert.equal(atIris, atJude);
  const fingerprints = [];
  for (const user of [iris, jude]) {
    const fingerprint = await user.page.getByTestId("fingerprint").textContent();
    assert.match(fingerprint, /^[0-9a-f]{4}( [0-9a-f]{4}){4}$/);
    fingerprints.push(fingerprint);
  }
  assert.notEqual(fingerprints[0], fingerprints[1]);

  // The direct mode takes the checkbox too: a second, encrypted, direct room.
  await jude.page.getByTestId("new-chat").click();
  await jude.page.getByTestId("encrypted-toggle").check();
  await pickPerson(jude.page, "iri", "Iris");
  await jude.page.waitForFunction((groupId) => location.hash.length > 1 && !location.hash.includes(groupId), roomId, { timeout: WAIT_MS });
  const directId = await jude.page.evaluate(() => decodeURIComponent(location.hash.slice(1)));
  const direct = (await irisApi.api("GET", `/api/rooms/${directId}`)).body;
  assert.deepEqual([direct.kind, direct.encrypted], ["direct", true]);
  await waitForText(jude.page.getByTestId("room-title"), "Iris");
  await jude.page.getByTestId("room-encrypted").waitFor({ state: "visible", timeout: WAIT_MS });
  await jude.page.getByTestId("conversation-state").filter({ hasText: "No messages yet" }).waitFor({ timeout: WAIT_MS });

  const expected = /status of 401 \(Unauthorized\)/;
  for (const user of [iris, jude]) {
    assert.deepEqual(user.errors.filter((error) => !expected.test(error)), [], `${user.name}'s page errors`);
  }
  await iris.context.close();
  await jude.context.close();
});
