// Pages that load the built SDK packages the way an app does: a real page of
// the server's origin (a page fulfilled by the test itself would have no
// address space, and Chromium's local-network checks would block its
// WebSocket) given an import map to the server's /sdk/ paths.
import assert from "node:assert/strict";
import { recordPageErrors } from "./harness.mjs";
import { signIn } from "./chat.mjs";

/** The bare specifiers of the four browser packages, mapped to the dev server's /sdk/ paths. */
export const SDK_IMPORTS = {
  "@domvia/realtime": "/sdk/realtime/dist/index.js",
  "@domvia/realtime/core": "/sdk/realtime/dist/core.js",
  "@domvia/realtime-chat": "/sdk/realtime-chat/dist/index.js",
  "@domvia/realtime-e2ee": "/sdk/realtime-e2ee/dist/index.js",
};

/** Loads a page of `serverUrl` and gives it an import map of `imports` (again after a reload). */
export async function prepareSdkPage(page, serverUrl, imports = SDK_IMPORTS) {
  await page.goto(`${serverUrl}/healthz`);
  await page.evaluate((map) => {
    const script = document.createElement("script");
    script.type = "importmap";
    script.textContent = map;
    document.head.append(script);
  }, JSON.stringify({ imports }));
}

/** A fresh page in a new context of `browser` (pushed on `contexts` for cleanup), its errors recorded. */
export async function newSdkPage(browser, contexts, serverUrl, imports = SDK_IMPORTS) {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await page.route("**/favicon.ico", (route) => route.fulfill({ status: 204 }));
  const errors = recordPageErrors(page);
  await prepareSdkPage(page, serverUrl, imports);
  return { context, page, errors };
}

let userCount = 0;

/**
 * A browser context signed in as a fresh user `label-N-pid` (the real sign-in
 * route sets its cookie), plus a bearer-token API client for the same user.
 */
export async function openSdkUser(browser, contexts, serverUrl, label) {
  const name = `${label}-${++userCount}-${process.pid}`;
  const { context, page, errors } = await newSdkPage(browser, contexts, serverUrl);
  const user = await page.evaluate(async (name) => {
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    if (!response.ok) throw new Error(`sign-in failed: ${response.status}`);
    return (await response.json()).user;
  }, name);
  const session = await signIn(serverUrl, name);
  assert.equal(session.id, user.id);
  return { name, context, page, errors, user, session, api: session.api };
}

/** Page errors except the browser's own lines about failed requests (expected in some tests). */
export function unexpectedErrors(who) {
  return who.errors.filter((line) => !/Failed to load resource|WebSocket connection to/.test(line));
}
