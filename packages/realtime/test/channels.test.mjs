// buildChatChannelName before the wasm loads (the TypeScript copy of the core's
// rule) against tests/vectors/channels.json, generated from the Rust core: the
// same names, and the same error codes and messages. Runs on the built package
// in Node, where the wasm is never loaded.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import test from "node:test";

import { DomViaError, buildChatChannelName, isReady } from "../dist/index.js";

const vectors = JSON.parse(await readFile(new URL("../../../tests/vectors/channels.json", import.meta.url), "utf8"));

test("before the wasm loads, buildChatChannelName answers as the core does", () => {
  assert.equal(isReady(), false);
  assert.ok(vectors.cases.length > 0);
  for (const { room_id: roomId, presence, channel, error } of vectors.cases) {
    const label = `${JSON.stringify(roomId)} presence=${presence}`;
    if (error === undefined) {
      assert.equal(buildChatChannelName(roomId, { presence }), channel, label);
      continue;
    }
    assert.throws(
      () => buildChatChannelName(roomId, { presence }),
      (thrown) => {
        assert.ok(thrown instanceof DomViaError, label);
        assert.equal(thrown.code, error.code, label);
        assert.equal(thrown.message, error.message, label);
        return true;
      },
      label,
    );
  }
});
