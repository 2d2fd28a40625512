// bindEventText (from @domvia/realtime/core) on a channel that is not one of
// DomViaRealtime's own: the SDK's packages still get the data as JSON text.
// Runs on the built package in Node, without the wasm.
import assert from "node:assert/strict";
import test from "node:test";

import { bindEventText } from "../dist/core.js";

test("bindEventText serialises the data of another Channel implementation, and unbinds", () => {
  const bound = new Map();
  const channel = {
    bind(event, callback) {
      bound.set(event, callback);
      return () => bound.delete(event);
    },
  };
  const received = [];
  const unbind = bindEventText(channel, "message.created", (dataJson, metadata) => received.push([dataJson, metadata]));
  bound.get("message.created")({ text: "hi", seq: 1 }, { user_id: "u_ada" });
  bound.get("message.created")(undefined, {});
  assert.deepEqual(received, [
    ['{"text":"hi","seq":1}', { user_id: "u_ada" }],
    [undefined, {}],
  ]);
  unbind();
  assert.equal(bound.size, 0);
});
