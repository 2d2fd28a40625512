// What the base module's gzip size is made of, split by what an app uses:
// the connection alone (channels, presence, client events) against the
// connection with the chat room session. It answers "how small can the base
// get without the chat session", which decides whether a size budget is
// reachable by trimming or needs a different split of the product.
//
// After `npm run build` (pkg/ then holds the module as wasm-bindgen wrote
// it): `node bench/wasm_split.mjs`. The chat session's exports are made
// unreachable with binaryen's wasm-metadce, then both modules go through the
// release wasm-opt passes of scripts/build, so the full row is bench/size's
// figure. The connection-only row is an upper bound: the socket handler
// still routes room events to sessions, so part of the session stays linked.
// The JS column is the TS layer and glue bundled and minified by esbuild,
// as bench/size does it.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const bin = (name) => join(root, "node_modules/.bin", name);
const features = [
  "--enable-bulk-memory", "--enable-nontrapping-float-to-int", "--enable-sign-ext",
  "--enable-mutable-globals", "--enable-reference-types", "--enable-multivalue",
];
// The release passes of scripts/build, the names' mapping discarded.
const release = [
  "--low-memory-unused", "--flatten", "--rereloop", "-Oz", "-Oz",
  "--strip-debug", "--strip-producers", "--strip-target-features",
  "--minify-imports-and-exports-and-modules", ...features,
];
// Exports that exist for the chat room session alone.
const CHAT_ONLY = /^(chatroomsession_|__wbg_chatroomsession_|buildChatChannelName$|realtimeconnection_(routeToSession|unroute)$)/;

const source = join(root, "pkg/domvia_realtime_bg.wasm");
const module = new WebAssembly.Module(readFileSync(source));
const exported = WebAssembly.Module.exports(module).map((entry) => entry.name);
if (!exported.some((name) => CHAT_ONLY.test(name))) {
  throw new Error(`${source} has no chat session exports: run npm run build first`);
}
const scratch = mkdtempSync(join(tmpdir(), "wasm-split-"));
// GNU gzip -9 from a pipe (no file name in the header), as bench/size
// measures; zlib's level 9 differs by ~0.5 KB here.
const gz = (bytes) => execFileSync("gzip", ["-9", "-c"], { input: bytes }).length;

function optimised(input) {
  const output = join(scratch, "out.wasm");
  execFileSync(bin("wasm-opt"), [...release, input, "-o", output], { stdio: ["ignore", "ignore", "inherit"] });
  return readFileSync(output);
}

function withoutChat() {
  // wasm-metadce keeps what its graph's roots reach: every export but the chat session's.
  const graph = [
    { name: "root", root: true, reaches: exported.filter((name) => !CHAT_ONLY.test(name)).map((name) => `export:${name}`) },
    ...exported.map((name) => ({ name: `export:${name}`, export: name })),
  ];
  const graphFile = join(scratch, "graph.json");
  const output = join(scratch, "metadce.wasm");
  writeFileSync(graphFile, JSON.stringify(graph));
  execFileSync(bin("wasm-metadce"), [...features, "-f", graphFile, source, "-o", output], { stdio: ["ignore", "ignore", "inherit"] });
  return optimised(output);
}

function bundledJs(entries) {
  const entry = entries.map((path) => `export * from ${JSON.stringify(`./${path}`)};`).join("\n");
  const bundle = execFileSync(
    bin("esbuild"),
    ["--bundle", "--minify", "--format=esm", "--log-level=warning", "--external:@domvia/realtime-e2ee"],
    { cwd: root, input: entry },
  );
  return gz(bundle);
}

try {
  const full = optimised(source);
  const connectionOnly = withoutChat();
  const rows = [
    ["connection and chat room session (every app, as bench/size)", bundledJs(["packages/realtime/dist/index.js", "packages/realtime-chat/dist/index.js"]), gz(full)],
    ["connection alone (chat session exports unreachable; upper bound)", bundledJs(["packages/realtime/dist/index.js"]), gz(connectionOnly)],
  ];
  console.log("| base module | min JS gz | .wasm gz | total |\n| --- | ---: | ---: | ---: |");
  for (const [label, js, wasm] of rows) console.log(`| ${label} | ${js} | ${wasm} | ${js + wasm} |`);
  const [[, js0, wasm0], [, js1, wasm1]] = rows;
  console.log(`\nthe chat room session's share: ${js0 - js1} B of JS + ${wasm0 - wasm1} B of wasm = ${js0 + wasm0 - js1 - wasm1} B gzip`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
