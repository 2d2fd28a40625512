// @domvia/realtime-vue where no browser is: server rendering (Nuxt,
// @vue/server-renderer) renders each room's empty `loading` snapshot, opens
// no connection and loads no wasm; misuse fails with coded errors. The
// composables' browser behaviour (v-if toggles, sharing, release) is proven
// in the example apps (tests/apps/), in real pages.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createSSRApp, defineComponent, effectScope, h } from "vue";
import { renderToString } from "vue/server-renderer";
import { isReady } from "@domvia/realtime";
import { createDomVia, useChatRoom, useConnectionState, usePresence, useTyping } from "@domvia/realtime-vue";

const options = { key: "k", host: "127.0.0.1", authEndpoint: "/realtime/auth" };

const Room = defineComponent({
  props: { roomId: { type: String, required: true } },
  setup(props) {
    const room = useChatRoom(() => props.roomId, { presence: true });
    const { typingUserIds } = useTyping(() => props.roomId, { presence: true });
    const members = usePresence(() => props.roomId, { presence: true });
    const connection = useConnectionState();
    return () =>
      h(
        "section",
        { "data-status": room.status.value, "data-connection": connection.value },
        `${room.snapshot.value.roomId}:${room.messages.value.length}:${typingUserIds.value.length}:${members.value.length}:${room.room.value === null}`,
      );
  },
});

async function render(roomId, plugin = createDomVia({ options })) {
  const app = createSSRApp({ render: () => h(Room, { roomId }) });
  if (plugin) app.use(plugin);
  let captured;
  app.config.errorHandler = (error) => {
    captured = error;
  };
  try {
    const html = await renderToString(app);
    return captured ? { error: captured } : { html };
  } catch (error) {
    return { error };
  }
}

test("SSR: a room renders its loading placeholder; nothing connects, no wasm loads", async () => {
  const { html, error } = await render("r_1");
  assert.equal(error, undefined);
  assert.equal(html, '<section data-status="loading" data-connection="initialized">r_1:0:0:0:true</section>');
  assert.equal(isReady(), false, "the wasm was never loaded");
});

test("a composable without the plugin, or outside setup, throws missing_provider", async () => {
  const { error } = await render("r_1", null);
  assert.equal(error?.name, "DomViaError");
  assert.equal(error.code, "missing_provider");
  assert.throws(() => useChatRoom("r_1"), { name: "DomViaError", code: "missing_provider" });
  const scope = effectScope();
  assert.throws(() => scope.run(() => useConnectionState()), { code: "missing_provider" });
  scope.stop();
});

test("an invalid room id throws the core's invalid_room_id, not an empty room", async () => {
  for (const roomId of ["", "room 42", "a/b", "x".repeat(183)]) {
    const { error } = await render(roomId);
    assert.equal(error?.code, "invalid_room_id", `room id ${JSON.stringify(roomId)}`);
  }
});

test("the plugin needs exactly one of realtime and options", () => {
  assert.throws(() => createDomVia({}), { code: "invalid_config" });
  assert.throws(() => createDomVia({ options, realtime: {} }), { code: "invalid_config" });
});
