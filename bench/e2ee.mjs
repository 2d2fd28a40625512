// End-to-end encryption cost in ONE headless Chromium page (cross-origin
// isolated, so performance.now() has microsecond resolution), the release E2EE
// wasm module of @domvia/realtime-e2ee through its glue:
//
// - seal + open of a text message of 100 B, 1 KiB and 4095 B (the largest an
//   envelope holds) through E2eeRoom.seal / E2eeRoom.open, exactly what the
//   chat SDK does per message (JSON objects in and out, signature, padding,
//   AES-256-GCM, replay bookkeeping), beside WebCrypto AES-256-GCM
//   encrypt + decrypt (each awaited) of the same bytes in the same page;
// - 64 KiB: larger than an envelope holds (the product's text limit is 4000
//   bytes), so "ours" is the product path for 64 KiB of text: 16 envelopes of
//   4095 B each (65,520 B), sealed and opened; WebCrypto is one 64 KiB encrypt + decrypt;
// - epoch creation (E2eeRoom.createEpoch) for 10, 100 and 1,000 member devices,
//   and a member opening its share of that epoch (E2eeRoom.openShare, which
//   checks the members digest over every record).
//
// The TS layer drives these through E2eeRoomSession, whose release module
// leaves out the E2eeRoom export; so this bench builds the same module, the
// same way (release, the wasm-opt passes of scripts/build), with the `e2ee-primitives` feature, into
// target/bench-e2ee, and the page imports that copy.
//
// A benchmark, not a test: `npm run bench:e2ee` (builds the release SDK and
// the optimised server first). BENCH_ITERATIONS (default 2000 per small size)
// and BENCH_PASSES (default 10: ours and WebCrypto alternate in short passes,
// so machine noise falls on both alike, after a warm-up that lets V8 tier up).
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { launchChromium, repoRoot, startServer } from "../tests/support/harness.mjs";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 2000);
const PASSES = Number(process.env.BENCH_PASSES ?? 10);

const moduleDir = `${repoRoot}target/bench-e2ee`;
const wasmFeatures = ["bulk-memory", "nontrapping-float-to-int", "sign-ext", "mutable-globals", "reference-types", "multivalue"];
execFileSync("wasm-pack", ["--quiet", "build", "--release", "--target", "web", "--mode", "no-install", "--no-pack",
  "--out-dir", moduleDir, "--out-name", "domvia_e2ee", ".", "--", "--no-default-features", "--features", "e2ee,e2ee-primitives"],
{ cwd: repoRoot, stdio: "inherit" });
execFileSync(`${repoRoot}node_modules/.bin/wasm-opt`, ["--low-memory-unused", "--flatten", "--rereloop", "-Oz", "-Oz", "--strip-debug", "--strip-producers", "--strip-target-features",
  ...wasmFeatures.map((feature) => `--enable-${feature}`), `${moduleDir}/domvia_e2ee_bg.wasm`, "-o", `${moduleDir}/domvia_e2ee_bg.wasm`]);

process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;
const server = await startServer();
const browser = await launchChromium((process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean));

try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => console.error("page error:", error.message));
  // The page is the server's; only the module and its wasm come from the bench's build.
  await page.route("**/bench-e2ee/*", async (route) => {
    const name = new URL(route.request().url()).pathname.split("/").pop();
    const contentType = name.endsWith(".wasm") ? "application/wasm" : "text/javascript";
    await route.fulfill({ body: await readFile(`${moduleDir}/${name}`), contentType, headers: { "Cross-Origin-Resource-Policy": "same-origin" } });
  });
  await page.goto(`${server.url}/healthz`);

  const results = await page.evaluate(async ({ iterations, passes }) => {
    if (!crossOriginIsolated) throw new Error("the page is not cross-origin isolated: timings would be coarse");
    const e2ee = await import("/bench-e2ee/domvia_e2ee.js");
    await e2ee.default();
    const { E2eeDevice, E2eeRoom } = e2ee;
    const ROOM = "r_00112233445566778899aabbccddeeff";
    const now = Date.now();

    const median = (values) => {
      const sorted = [...values].sort((a, b) => a - b);
      const mid = sorted.length >> 1;
      return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    };
    const p90 = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.9)];

    // Two members and epoch 1, as the SDK sets it up.
    const ada = E2eeDevice.generate("u_ada", "d-ada");
    const bob = E2eeDevice.generate("u_bob", "d-bob");
    const records = [ada.record(), bob.record()];
    const adaRoom = new E2eeRoom(ROOM);
    const created = adaRoom.createEpoch(ada, 1, now, records);
    adaRoom.commitEpoch(1, records);
    const bobRoom = new E2eeRoom(ROOM);
    bobRoom.openShare(bob, created.shares[1].share, ada.record(), records);

    const text = (bytes) => "x".repeat(bytes);
    let counter = 0;
    // Ours: seal then open each chunk; samples are per message (all chunks).
    const ours = (chunks) => () => {
      const start = performance.now();
      for (const chunk of chunks) {
        const id = `c-${++counter}`;
        const envelope = adaRoom.seal(ada, id, chunk);
        const opened = bobRoom.open(envelope, now, `m_${counter}`);
        if (opened.text.length !== chunk.length) throw new Error("round trip mismatch");
      }
      return performance.now() - start;
    };
    const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    const webCrypto = (bytes) => {
      const data = new TextEncoder().encode(text(bytes));
      return async () => {
        const start = performance.now();
        const iv = crypto.getRandomValues(new Uint8Array(12));
        const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, data);
        const opened = await crypto.subtle.decrypt({ name: "AES-GCM", iv }, key, sealed);
        const elapsed = performance.now() - start;
        if (opened.byteLength !== data.byteLength) throw new Error("round trip mismatch");
        return elapsed;
      };
    };

    async function compare(label, oursRun, webRun, count) {
      const samples = { ours: [], web: [] };
      for (let i = 0; i < Math.min(300, count); i++) { oursRun(); await webRun(); }
      const perPass = Math.ceil(count / passes);
      for (let pass = 0; pass < passes; pass++) {
        for (let i = 0; i < perPass; i++) samples.ours.push(oursRun());
        for (let i = 0; i < perPass; i++) samples.web.push(await webRun());
      }
      return { label, n: samples.ours.length, ours: median(samples.ours), oursP90: p90(samples.ours), web: median(samples.web), webP90: p90(samples.web) };
    }

    const messages = [];
    messages.push(await compare("100 B", ours([text(100)]), webCrypto(100), iterations));
    messages.push(await compare("1 KiB", ours([text(1024)]), webCrypto(1024), iterations));
    messages.push(await compare("4095 B (largest envelope)", ours([text(4095)]), webCrypto(4095), iterations / 2));
    messages.push(await compare("64 KiB (ours: 16 envelopes of 4095 B)", ours(Array.from({ length: 16 }, () => text(4095))), webCrypto(65536), Math.max(100, iterations / 10)));

    // The parts of one 1 KiB message, for the record.
    const parts = { seal: [], open: [] };
    for (let i = 0; i < iterations; i++) {
      const id = `c-${++counter}`;
      let start = performance.now();
      const envelope = adaRoom.seal(ada, id, text(1024));
      parts.seal.push(performance.now() - start);
      start = performance.now();
      bobRoom.open(envelope, now, `m_${counter}`);
      parts.open.push(performance.now() - start);
    }

    const epochs = [];
    for (const size of [10, 100, 1000]) {
      const devices = [ada, bob];
      for (let i = devices.length; i < size; i++) devices.push(E2eeDevice.generate(`u_${i}`, `d-${i}`));
      const list = devices.map((d) => d.record());
      const room = new E2eeRoom(ROOM);
      const reps = size >= 1000 ? 9 : size >= 100 ? 31 : 201;
      let start = performance.now();
      let made = room.createEpoch(ada, 1, now, list);
      const first = performance.now() - start;
      room.discardEpoch();
      const create = [];
      for (let i = 0; i < reps; i++) {
        start = performance.now();
        made = room.createEpoch(ada, 1, now, list);
        create.push(performance.now() - start);
        room.discardEpoch();
      }
      const body = JSON.stringify(made).length;
      // Bob's side: open his share and install the epoch with all records.
      const share = made.shares[1].share;
      const creator = ada.record();
      const open = [];
      const reader = new E2eeRoom(ROOM);
      start = performance.now();
      reader.openShare(bob, share, creator, list);
      const openFirst = performance.now() - start;
      for (let i = 0; i < reps; i++) {
        start = performance.now();
        reader.openShare(bob, share, creator, list);
        open.push(performance.now() - start);
      }
      reader.free();
      room.free();
      for (const d of devices.slice(2)) d.free();
      epochs.push({ size, reps, first, create: median(create), openFirst, open: median(open), body });
    }
    return {
      messages,
      parts: { seal: median(parts.seal), open: median(parts.open), n: iterations },
      epochs,
      userAgent: navigator.userAgent,
    };
  }, { iterations: ITERATIONS, passes: PASSES });

  const ms = (x) => `${x.toFixed(3)} ms`;
  console.log(`# E2EE in one Chromium page (${await browser.version()}), release E2EE wasm with the e2ee-primitives exports (target/bench-e2ee)`);
  console.log();
  console.log("## seal + open of one message vs WebCrypto AES-256-GCM encrypt + decrypt (awaited)");
  console.log("| size | n | ours p50 | ours p90 | WebCrypto p50 | WebCrypto p90 | ours / WebCrypto (p50) |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of results.messages) {
    console.log(`| ${r.label} | ${r.n} | ${ms(r.ours)} | ${ms(r.oursP90)} | ${ms(r.web)} | ${ms(r.webP90)} | ${(r.ours / r.web).toFixed(2)} |`);
  }
  console.log();
  console.log(`1 KiB split (p50 of ${results.parts.n}): seal ${ms(results.parts.seal)}, open ${ms(results.parts.open)}`);
  console.log();
  console.log("## epoch creation and share opening");
  console.log("| member devices | createEpoch p50 | createEpoch first call (verifies records) | openShare p50 | openShare first call | POST body | reps |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const e of results.epochs) {
    console.log(`| ${e.size} | ${ms(e.create)} | ${ms(e.first)} | ${ms(e.open)} | ${ms(e.openFirst)} | ${(e.body / 1024).toFixed(1)} KiB | ${e.reps} |`);
  }
} finally {
  await browser.close();
  await server.stop();
}
