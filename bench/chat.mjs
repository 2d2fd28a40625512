// @domvia/realtime-chat in one headless Chromium page against the optimised
// embedded server, each figure next to a bare pusher-js 8 reference measured in
// the same page and run (the two never subscribed at the same time, alternating
// which goes first, so machine noise falls on both alike):
//  1. apply and render 1,000 incoming `message.created` events (published
//     through the broker's signed REST API, seqs 1..1000 after an empty room),
//     with a keyed <li> renderer driven only by room.subscribe + getSnapshot;
//  2. main-thread CPU for 10,000 `client-typing` events from 99 other members
//     of a 100-member presence room, the same renderer showing who is typing.
// CPU is the renderer main thread's CDP Performance metrics (TaskDuration,
// ScriptDuration), read just before the events are sent and just after the
// last one was handled; the page is otherwise idle, so the deltas are the work.
// TaskDuration is wall time inside main-thread tasks: contention from the Node
// senders on these cores inflates both ways alike.
//
// A benchmark, not a test: `npm run bench:chat`. BENCH_RUNS (default 5; the
// median is printed), BENCH_TYPING_RATE (typing events per second over all
// senders, default 400: every event also fans out to the 98 other Node
// clients, which share these cores with Chromium; at 1000/s Node fell behind
// and the broker closed one of them), BENCH_MESSAGE_RATE (part 1, messages per
// second, in REST batches of 10; default 2000). BENCH_PROFILE=1 also samples
// the main thread's JavaScript (CDP Profiler) during every measurement and
// prints each way's top functions by self time, summed over the runs.
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createRealtimeClient } from "../packages/realtime-server/dist/index.js";
import { connectPusher, signIn, subscribed } from "../tests/support/chat.mjs";
import { devApp, launchChromium, repoRoot, startServer } from "../tests/support/harness.mjs";
import { addSelfTimes, printSelfTimes } from "./support/profile.mjs";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const PROFILE = process.env.BENCH_PROFILE === "1";
const TYPING_RATE = Number(process.env.BENCH_TYPING_RATE ?? 400);
const MESSAGE_RATE = Number(process.env.BENCH_MESSAGE_RATE ?? 2000);
const MESSAGES = 1000;
const TYPING_EVENTS = 10_000;
const MEMBERS = 100;
// The import map an app's page gives the packages' bare specifiers (as tests/browser/chat_rooms does).
const IMPORT_MAP = JSON.stringify({ imports: { "@domvia/realtime": "/sdk/realtime/dist/index.js",
  "@domvia/realtime/core": "/sdk/realtime/dist/core.js", "@domvia/realtime-chat": "/sdk/realtime-chat/dist/index.js" } });

/** Runs in the page: signs in, loads both clients, and defines `window.B` (open a way, count, finish). */
async function installPage({ importMap, key, port, name }) {
  document.head.append(Object.assign(document.createElement("script"), { type: "importmap", textContent: importMap }));
  // The session cookie of member #1: both clients' /realtime/auth calls use it.
  const signedIn = await fetch("/api/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) });
  if (!signedIn.ok) throw new Error(`sign-in failed: ${signedIn.status}`);
  const { DomViaRealtime, ready } = await import("@domvia/realtime");
  const chat = await import("@domvia/realtime-chat");
  await ready();

  const B = { armed: false, states: [] };
  window.B = B;
  // Stamp the first matching frame as the socket hands it to the page: a
  // listener added in the constructor runs before the client's own handler.
  // Both clients create their sockets through window.WebSocket, so both pay it.
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (!B.armed) return;
        if (B.firstAt === undefined && event.data.includes(B.marker)) B.firstAt = performance.now();
        // Typing events are counted here, for both clients alike: a listener
        // on ours' channel would make every event cross to JS for the count
        // alone (the room's session takes them inside the wasm). The finish
        // waits a task, until the client's own handler has run on the last one.
        if (B.marker === "client-typing" && event.data.includes('"client-typing"') && ++B.count === B.expected) {
          setTimeout(B.finish, 0);
        }
      });
      this.addEventListener("close", (event) => B.states.push(`a socket closed: ${event.code} ${event.reason}`));
    }
  };
  const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth", clientEvents: true });
  // A reconnect or a closed socket in a measurement makes it invalid: keep them for the report.
  realtime.connection.onStateChange((change) => B.states.push(JSON.stringify(change)));
  realtime.connection.onError((error) => B.states.push(`error ${JSON.stringify(error)}`));
  const list = document.body.appendChild(document.createElement("ul"));
  const typing = document.body.appendChild(document.createElement("p"));
  const within = (what, promise, ms = 10_000) => {
    let timer;
    const limit = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)));
    return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
  };

  // A measurement expects `expected` units (rendered <li>s or typing events).
  const arm = (marker, expected) => {
    list.replaceChildren();
    typing.textContent = "";
    Object.assign(B, { marker, expected, count: 0, firstAt: undefined, lastAt: undefined, armed: true });
    B.done = new Promise((resolve) => (B.finish = () => {
      B.lastAt = performance.now();
      B.armed = false;
      resolve();
    }));
  };
  B.result = (ms) => within("the last event", B.done, ms).then(() => true, () => false).then((ok) => ({
    ok, count: B.marker === "message.created" ? list.childElementCount : B.count, wallMs: B.lastAt - B.firstAt,
  }));

  // Ours: a room and the renderer an app would write against its snapshot.
  B.openOurs = async ({ roomId, presence, marker, expected }) => {
    arm(marker, expected);
    const room = chat.createChatRoom(realtime, { roomId, channelName: chat.buildChatChannelName(roomId), presence });
    await within("the room to be ready", room.waitUntilReady());
    const rows = new Map(); // client_id -> { li, message }
    let names = new Map(); // user_id -> name, rebuilt when the members change
    let shown;
    let scheduled = false;
    const render = () => {
      scheduled = false;
      const snapshot = room.getSnapshot();
      if (snapshot.messages !== shown?.messages) {
        for (const message of snapshot.messages) {
          const row = rows.get(message.client_id);
          if (row === undefined) {
            const li = list.appendChild(Object.assign(document.createElement("li"), { textContent: message.text }));
            rows.set(message.client_id, { li, message });
          } else if (row.message !== message) {
            row.li.textContent = message.text;
            row.message = message;
          }
        }
      }
      if (snapshot.members !== shown?.members) names = new Map(snapshot.members.map((member) => [member.user_id, member.name]));
      if (snapshot.typingUserIds !== shown?.typingUserIds) {
        const ids = snapshot.typingUserIds;
        typing.textContent = ids.length === 0 ? "" : `${ids.slice(0, 3).map((id) => names.get(id) ?? "someone").join(", ")}${ids.length > 3 ? ` and ${ids.length - 3} more` : ""} typing`;
      }
      shown = snapshot;
      if (B.armed && B.marker === "message.created" && list.childElementCount >= B.expected) B.finish();
    };
    // Re-render at most once per frame, however many notifications came.
    const unsubscribe = room.subscribe(() => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(render);
    });
    render();
    B.close = () => {
      unsubscribe();
      room.leave();
    };
  };

  // The reference: pusher-js, rendering straight from its event handlers.
  B.openReference = async ({ channelName, marker, expected }) => {
    arm(marker, expected);
    const client = new window.Pusher(key, {
      wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], disableStats: true, cluster: "local",
      channelAuthorization: { endpoint: "/realtime/auth", transport: "ajax" },
    });
    const channel = client.subscribe(channelName);
    await within("pusher-js to subscribe", new Promise((resolve) => channel.bind("pusher:subscription_succeeded", resolve)));
    channel.bind("message.created", (message) => {
      list.appendChild(Object.assign(document.createElement("li"), { textContent: message.text }));
      if (B.armed && list.childElementCount >= B.expected) B.finish();
    });
    channel.bind("client-typing", (_data, metadata) => {
      typing.textContent = `${channel.members.get(metadata.user_id)?.info.name ?? "someone"} typing`;
    });
    // Wait for the socket's close, so it is not counted in the next measurement.
    B.close = () =>
      within("pusher-js to disconnect", new Promise((resolve) => {
        client.connection.bind("disconnected", resolve);
        client.disconnect();
      }));
  };
}

process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;
const server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0" });
const browser = await launchChromium((process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean));
const senders = [];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

try {
  const users = [];
  for (let i = 1; i <= MEMBERS; i++) users.push(await signIn(server.url, `bench-${i}-${process.pid}`));
  const [me, other] = users;
  const newRoom = (memberIds) => me.api("POST", "/api/rooms", { kind: "group", name: "bench", member_ids: memberIds })
    .then(({ status, body }) => (status === 201 ? body : Promise.reject(new Error(`room creation failed: ${status} ${JSON.stringify(body)}`))));
  const rest = createRealtimeClient({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: server.port, useTLS: false });

  const page = await browser.newPage();
  await page.route("**/favicon.ico", (route) => route.fulfill({ status: 204 }));
  page.on("pageerror", (error) => console.error("page error:", error.message));
  page.on("console", (message) => ["error", "warning"].includes(message.type()) && console.error(`page ${message.type()}:`, message.text()));
  let catchUps = 0; // a catch-up would mean the run did not measure the live path
  page.on("request", (request) => request.url().includes("/messages?after=") && catchUps++);
  await page.goto(`${server.url}/healthz`);
  await page.addScriptTag({ content: await readFile(`${repoRoot}node_modules/pusher-js/dist/web/pusher.min.js`, "utf8") });
  await page.evaluate(installPage, { importMap: IMPORT_MAP, key: devApp.key, port: server.port, name: me.name });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  // BENCH_PROFILE: self time (ms) per "part way" per function, summed over the measured runs.
  const selfTimes = new Map();
  let profiling = false;
  if (PROFILE) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  }
  function addProfile(key, profile) {
    selfTimes.set(key, addSelfTimes(selfTimes.get(key) ?? new Map(), profile));
  }

  /** Opens `way`, sends, waits for the page to finish; returns wall and CPU figures in ms. */
  async function measure(way, options, send, limitMs) {
    const seen = await page.evaluate(({ way, options }) => (way === "ours" ? B.openOurs(options) : B.openReference(options)).then(() => B.states.length), { way, options });
    if (profiling) await cdp.send("Profiler.start");
    const before = await metrics();
    const finished = page.evaluate((ms) => B.result(ms), limitMs);
    finished.catch(() => {}); // a failing send() is the error to report
    const sendStart = performance.now();
    await send();
    const sendMs = performance.now() - sendStart;
    const result = await finished;
    const after = await metrics();
    if (profiling) addProfile(`${options.marker} ${way}`, (await cdp.send("Profiler.stop")).profile);
    // A socket closed or reconnecting mid-measurement (a 4100 from the broker) invalidates the run.
    const trouble = await page.evaluate((seen) => B.states.slice(seen), seen);
    // Typing counts are reported; every message must be rendered.
    if (trouble.length > 0 || (!result.ok && options.marker === "message.created")) {
      throw new Error(`${way}: ${result.count} of ${options.expected} arrived; connection events: ${trouble.join(", ") || "none"}\nserver: ${server.stderr()}`);
    }
    await page.evaluate(() => B.close());
    return { ...result, sendMs, taskMs: (after.TaskDuration - before.TaskDuration) * 1000, scriptMs: (after.ScriptDuration - before.ScriptDuration) * 1000 };
  }

  // 1. 1,000 messages, in order, through the REST API in batches of 10: every
  // frame travels the broker's WebSocket like a live message.
  async function messages(way) {
    const room = await newRoom([other.id]);
    const channel = room.channel_name;
    const message = (seq) => ({
      message_id: `m_${randomBytes(16).toString("hex")}`, room_id: room.room_id, seq, user_id: other.id,
      text: `message ${seq}`, sent_at: Date.now(), client_id: `c-${randomBytes(16).toString("hex")}`,
    });
    // Paced: back to back (~6 frames/ms), a short stall of the page (or of the
    // broker's writer on these busy cores) let 256 frames queue up, and the broker
    // closed the socket with 4100 "the client does not read", for both clients.
    const deliver = async () => {
      const start = performance.now();
      for (let seq = 1; seq <= MESSAGES; seq += 10) {
        await sleep(start + (seq - 1) * (1000 / MESSAGE_RATE) - performance.now());
        await rest.triggerBatch(Array.from({ length: 10 }, (_, i) => ({ channel, name: "message.created", data: message(seq + i) })));
      }
    };
    const options = { roomId: room.room_id, channelName: channel, presence: false, marker: "message.created", expected: MESSAGES };
    return measure(way, options, deliver, 30_000);
  }

  // 2. One 100-member room; the 99 others stay subscribed to its presence
  // channel for the whole run and take turns sending, paced to TYPING_RATE.
  const group = await newRoom(users.slice(1).map((user) => user.id));
  for (const user of users.slice(1)) {
    const client = await connectPusher(server, devApp, user);
    senders.push({ client, channel: await subscribed(client, group.presence_channel_name) });
  }
  async function sendTyping() {
    const start = performance.now();
    for (let sent = 0; sent < TYPING_EVENTS; await sleep(4)) {
      const due = Math.min(TYPING_EVENTS, Math.ceil(((performance.now() - start) / 1000) * TYPING_RATE));
      for (; sent < due; sent++) {
        const { channel } = senders[sent % senders.length];
        // Each sender alternates, so every event changes who is typing.
        const isTyping = Math.floor(sent / senders.length) % 2 === 0;
        // The broker closes (4100) a client that falls 256 frames behind: Node reads every fan-out.
        if (!channel.trigger("client-typing", { is_typing: isTyping })) throw new Error(`a sender's socket closed at event ${sent}: lower BENCH_TYPING_RATE`);
      }
    }
  }
  const typingOptions = { roomId: group.room_id, channelName: group.presence_channel_name, presence: true, marker: "client-typing", expected: TYPING_EVENTS };

  // Warm-up: part 1 three times each way (V8 tiers the wasm and both clients up), then the runs.
  for (let i = 0; i < 3; i++) for (const way of ["ours", "reference"]) await messages(way);
  const samples = { messages: { ours: [], reference: [] }, typing: { ours: [], reference: [] } };
  profiling = PROFILE;
  for (let run = 0; run < RUNS; run++) {
    const order = run % 2 === 0 ? ["ours", "reference"] : ["reference", "ours"];
    for (const way of order) samples.messages[way].push(await messages(way));
    for (const way of order) samples.typing[way].push(await measure(way, typingOptions, sendTyping, (TYPING_EVENTS / TYPING_RATE) * 1000 + 30_000));
  }
  if (catchUps > 0) throw new Error(`the room caught up ${catchUps} times: not the live path`);

  const median = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    return (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
  };
  const perRun = (part, pick) => ["ours", "reference"].map((way) => `${way} ${samples[part][way].map(pick).join(" / ")}`).join("; ");
  const table = (part, title, columns, rows) => {
    console.log(`\n## ${title}\n\n| | ours: ${columns[0]} | reference: ${columns[1]} | ratio |\n| --- | ---: | ---: | ---: |`);
    for (const [label, pick, unit, digits = 1] of rows) {
      const [ours, reference] = ["ours", "reference"].map((way) => median(samples[part][way].map(pick)));
      console.log(`| ${label} | ${ours.toFixed(digits)} ${unit} | ${reference.toFixed(digits)} ${unit} | ${(ours / reference).toFixed(2)}x |`);
    }
    console.log(`\nTaskDuration per run (ms): ${perRun(part, (s) => s.taskMs.toFixed(0))}`);
    console.log(`ScriptDuration per run (ms): ${perRun(part, (s) => s.scriptMs.toFixed(1))}`);
  };
  console.log(`# @domvia/realtime-chat vs bare pusher-js 8 in one Chromium page (${await browser.version()}), ${process.env.DOMVIA_SERVER_BIN}`);
  console.log(`Medians of ${RUNS} runs; ratio = ours / reference.`);
  table("messages", `1. Apply and render ${MESSAGES} incoming messages (REST batches of 10, ${MESSAGE_RATE}/s)`, ["room + snapshot renderer", "pusher-js handler appends"], [
    ["wall, first frame to last <li> in the DOM", (s) => s.wallMs, "ms"],
    ["main-thread TaskDuration", (s) => s.taskMs, "ms"],
    ["main-thread ScriptDuration", (s) => s.scriptMs, "ms"],
    ["sending (Node, first request to last answer)", (s) => s.sendMs, "ms"],
  ]);
  table("typing", `2. ${TYPING_EVENTS} typing events from ${senders.length} members of a ${MEMBERS}-member presence room (${TYPING_RATE}/s)`, ["room (presence) + renderer", "pusher-js presence channel"], [
    ["main-thread TaskDuration", (s) => s.taskMs, "ms"],
    ["per event", (s) => (s.taskMs * 1000) / s.count, "µs"],
    ["main-thread ScriptDuration", (s) => s.scriptMs, "ms"],
    ["wall, first to last event received", (s) => s.wallMs, "ms", 0],
  ]);
  console.log(`Typing events received per run: ${perRun("typing", (s) => s.count)}`);
  for (const [key, totals] of selfTimes) {
    console.log(`\n## Self time by function, ${key}, summed over ${RUNS} runs (BENCH_PROFILE)\n`);
    printSelfTimes(totals);
  }
} finally {
  for (const { client } of senders) client.disconnect();
  await browser.close();
  await server.stop();
}
