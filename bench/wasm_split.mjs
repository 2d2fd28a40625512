// What each wasm module's gzip size is made of, split at its room session:
// the base module with and without the chat room session (the connection
// alone: channels, presence, client events), and the E2EE module with and
// without the E2EE room session (the device keys, fingerprints and safety
// numbers alone). It answers "how small can a module get without its room
// session", which decides whether a size budget is reachable by trimming or
// needs a different split of the product.
//
// After `npm run build` (pkg/ then holds the modules as wasm-bindgen wrote
// them): `npm run bench:split`. A session's exports are made unreachable with
// binaryen's wasm-metadce, then each module goes through the release wasm-opt
// passes of scripts/build; the full module must come out byte for byte as the
// shipped one (else the passes here have drifted from scripts/build's and the
// script stops), so a full row is bench/size's figure. A row
// without the session is an upper bound: whatever else still reaches session
// code keeps it linked (the base's socket handler routes room events to
// sessions). The JS column is the TS layer and glue bundled and minified by
// esbuild as bench/size does it; for the E2EE module it is not split (its TS
// is mostly the room session's driver).
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

const MODULES = [
  {
    title: "base module",
    wasm: "pkg/domvia_realtime_bg.wasm",
    shipped: "packages/realtime/wasm/domvia_realtime_bg.wasm",
    full: "connection and chat room session (every app)",
    without: "connection alone (chat session exports unreachable; upper bound)",
    // Exports that exist for the chat room session alone.
    session: /^(chatroomsession_|__wbg_chatroomsession_|buildChatChannelName$|realtimeconnection_(routeToSession|unroute)$)/,
    js: { full: ["packages/realtime/dist/index.js", "packages/realtime-chat/dist/index.js"], without: ["packages/realtime/dist/index.js"] },
    external: ["@domvia/realtime-e2ee"],
  },
  {
    title: "E2EE module",
    wasm: "pkg/domvia_e2ee_bg.wasm",
    shipped: "packages/realtime-e2ee/wasm/domvia_e2ee_bg.wasm",
    full: "device keys and the E2EE room session (encrypted rooms add)",
    without: "device keys, fingerprints and safety numbers alone (room session exports unreachable; upper bound)",
    session: /^(e2eeroomsession_|__wbg_e2eeroomsession_)/,
    js: { full: ["packages/realtime-e2ee/dist/index.js"], without: ["packages/realtime-e2ee/dist/index.js"] },
    external: ["@domvia/realtime", "@domvia/realtime/*"],
  },
];

const scratch = mkdtempSync(join(tmpdir(), "wasm-split-"));
// GNU gzip -9 from a pipe (no file name in the header), as bench/size
// measures; zlib's level 9 differs by ~0.5 KB here.
const gz = (bytes) => execFileSync("gzip", ["-9", "-c"], { input: bytes }).length;

function optimised(input) {
  const output = join(scratch, "out.wasm");
  execFileSync(bin("wasm-opt"), [...release, input, "-o", output], { stdio: ["ignore", "ignore", "inherit"] });
  return readFileSync(output);
}

// wasm-metadce keeps what its graph's roots reach: every export but the session's.
function withoutSession(source, exported, session) {
  const graph = [
    { name: "root", root: true, reaches: exported.filter((name) => !session.test(name)).map((name) => `export:${name}`) },
    ...exported.map((name) => ({ name: `export:${name}`, export: name })),
  ];
  const graphFile = join(scratch, "graph.json");
  const output = join(scratch, "metadce.wasm");
  writeFileSync(graphFile, JSON.stringify(graph));
  execFileSync(bin("wasm-metadce"), [...features, "-f", graphFile, source, "-o", output], { stdio: ["ignore", "ignore", "inherit"] });
  return optimised(output);
}

function bundledJs(entries, external) {
  const entry = entries.map((path) => `export * from ${JSON.stringify(`./${path}`)};`).join("\n");
  const bundle = execFileSync(
    bin("esbuild"),
    ["--bundle", "--minify", "--format=esm", "--log-level=warning", ...external.map((name) => `--external:${name}`)],
    { cwd: root, input: entry },
  );
  return gz(bundle);
}

try {
  for (const module of MODULES) {
    const source = join(root, module.wasm);
    const exported = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(source))).map((entry) => entry.name);
    if (!exported.some((name) => module.session.test(name))) {
      throw new Error(`${source} has no room session exports: run npm run build first`);
    }
    const fullWasm = optimised(source);
    if (!fullWasm.equals(readFileSync(join(root, module.shipped)))) {
      throw new Error(`${module.title}: these wasm-opt passes no longer give ${module.shipped}; match them to scripts/build`);
    }
    const full = { js: bundledJs(module.js.full, module.external), wasm: gz(fullWasm) };
    const without = { js: bundledJs(module.js.without, module.external), wasm: gz(withoutSession(source, exported, module.session)) };
    console.log(`\n| ${module.title} | min JS gz | .wasm gz | total |\n| --- | ---: | ---: | ---: |`);
    for (const [label, row] of [[module.full, full], [module.without, without]]) {
      console.log(`| ${label} | ${row.js} | ${row.wasm} | ${row.js + row.wasm} |`);
    }
    console.log(
      `| the room session's share | ${full.js - without.js} | ${full.wasm - without.wasm} | ${full.js + full.wasm - without.js - without.wasm} |`,
    );
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
