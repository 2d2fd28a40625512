// @domvia/realtime-angular where no browser is: on the server platform
// (Angular SSR) rooms are their empty `loading` snapshot and nothing opens or
// loads wasm; misuse fails with coded errors. The signals' browser behaviour
// (zoneless and zone.js, @if toggles, DestroyRef release) is proven in the
// example app (tests/apps/), in real pages.
import assert from "node:assert/strict";
import { test } from "node:test";
import "@angular/compiler";
import { createEnvironmentInjector, DestroyRef, Injector, PLATFORM_ID, runInInjectionContext } from "@angular/core";
import { isReady } from "@domvia/realtime";
import { DomViaChat, injectDomViaChat, provideDomVia } from "@domvia/realtime-angular";

const options = { key: "k", host: "127.0.0.1", authEndpoint: "/realtime/auth" };

/** An environment injector like an app's root, on `platform`, with `providers`. */
function environment(platform, providers) {
  const root = Injector.create({ providers: [] });
  return createEnvironmentInjector([{ provide: PLATFORM_ID, useValue: platform }, ...providers], root);
}

test("server platform: a room is its loading snapshot; nothing connects, no wasm loads", async () => {
  const injector = environment("server", [provideDomVia({ options })]);
  const room = runInInjectionContext(injector, () => injectDomViaChat().chatRoom("r_1", { presence: true }));
  assert.equal(room.status(), "loading");
  assert.equal(room.snapshot().roomId, "r_1");
  assert.deepEqual([room.messages(), room.typing(), room.members(), room.unreadCount(), room.room()], [[], [], [], 0, null]);
  const state = runInInjectionContext(injector, () => injector.get(DomViaChat).connectionState());
  assert.equal(state(), "initialized");
  assert.equal(injector.get(DomViaChat).realtime, null);
  assert.equal(isReady(), false, "the wasm was never loaded");
  // Actions of a room that never opens: promises reject with not_ready, signals do nothing.
  await assert.rejects(room.sendMessage({ text: "hi" }), { code: "not_ready", message: /room r_1 is not open/ });
  await assert.rejects(room.loadOlder(), { code: "not_ready" });
  assert.equal(room.sendTyping(), undefined);
  injector.destroy();
});

test("without provideDomVia, injectDomViaChat throws missing_provider", () => {
  const injector = environment("browser", []);
  assert.throws(() => runInInjectionContext(injector, () => injectDomViaChat()), {
    name: "DomViaError",
    code: "missing_provider",
  });
  injector.destroy();
});

test("an invalid room id throws the core's invalid_room_id; outside an injection context, invalid_config", () => {
  const injector = environment("server", [provideDomVia({ options })]);
  const chat = injector.get(DomViaChat);
  for (const roomId of ["", "room 42", "a/b", "x".repeat(183)]) {
    assert.throws(() => runInInjectionContext(injector, () => chat.chatRoom(roomId)), { code: "invalid_room_id" });
  }
  assert.throws(() => chat.chatRoom("r_1"), { code: "invalid_config", message: /injection context/ });
  // With an explicit DestroyRef it works anywhere.
  const room = chat.chatRoom("r_1", { destroyRef: injector.get(DestroyRef) });
  assert.equal(room.status(), "loading");
  injector.destroy();
});

test("provideDomVia needs exactly one of realtime and options", () => {
  assert.throws(() => provideDomVia({}), { code: "invalid_config" });
  assert.throws(() => provideDomVia({ options, realtime: {} }), { code: "invalid_config" });
});
