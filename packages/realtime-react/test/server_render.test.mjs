// @domvia/realtime-react where no browser is: server rendering (Next.js and
// any React SSR) renders each room's empty `loading` snapshot, opens no
// connection and loads no wasm; misuse fails with coded errors. The hooks'
// browser behaviour (StrictMode, sharing, unmount) is proven in the example
// apps (tests/apps/), in real pages.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createElement } from "react";
import { renderToString } from "react-dom/server";
import { isReady } from "@domvia/realtime";
import { DomViaProvider, useChatRoom, useConnectionState, usePresence, useTyping } from "@domvia/realtime-react";

const options = { key: "k", host: "127.0.0.1", authEndpoint: "/realtime/auth" };

function Room({ roomId }) {
  const room = useChatRoom(roomId, { presence: true });
  const { typingUserIds } = useTyping(roomId, { presence: true });
  const members = usePresence(roomId, { presence: true });
  return createElement(
    "section",
    { "data-status": room.status, "data-connection": useConnectionState() },
    `${room.roomId}:${room.messages.length}:${typingUserIds.length}:${members.length}:${room.room === null}`,
  );
}

function render(element) {
  try {
    return { html: renderToString(element) };
  } catch (error) {
    return { error };
  }
}

test("SSR: a room renders its loading placeholder; nothing connects, no wasm loads", () => {
  const { html, error } = render(createElement(DomViaProvider, { options }, createElement(Room, { roomId: "r_1" })));
  assert.equal(error, undefined);
  assert.equal(html, '<section data-status="loading" data-connection="initialized">r_1:0:0:0:true</section>');
  assert.equal(isReady(), false, "the wasm was never loaded");
});

test("a hook outside its provider throws missing_provider", () => {
  for (const hook of [() => useChatRoom("r_1"), () => useConnectionState(), () => useTyping("r_1"), () => usePresence("r_1")]) {
    const { error } = render(
      createElement(() => {
        hook();
        return null;
      }),
    );
    assert.equal(error?.name, "DomViaError");
    assert.equal(error.code, "missing_provider");
    assert.match(error.message, /inside a <DomViaProvider>/);
  }
});

test("an invalid room id throws the core's invalid_room_id, not an empty room", () => {
  for (const roomId of ["", "room 42", "a/b", "x".repeat(183)]) {
    const { error } = render(createElement(DomViaProvider, { options }, createElement(Room, { roomId })));
    assert.equal(error?.code, "invalid_room_id", `room id ${JSON.stringify(roomId)}`);
  }
});

test("the provider needs exactly one of realtime and options", () => {
  for (const props of [{}, { options, realtime: {} }]) {
    const { error } = render(createElement(DomViaProvider, props));
    assert.equal(error?.code, "invalid_config");
  }
});

test("the build keeps the 'use client' directive first", async () => {
  const { readFile } = await import("node:fs/promises");
  const built = await readFile(new URL("../dist/index.js", import.meta.url), "utf8");
  assert.match(built, /^"use client";/);
});
