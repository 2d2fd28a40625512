// Client-event round trip between two clients in ONE headless Chromium page,
// three ways in the same run against the same broker: @domvia/realtime (ours),
// pusher-js 8.6 (the reference), and two raw WebSockets speaking the protocol by
// hand (the physical floor). The page is cross-origin isolated (the server sends
// COOP/COEP), so performance.now() has microsecond resolution.
//
// A benchmark, not a test: `npm run bench:rtt` (builds the release SDK and the
// optimised server first). BENCH_ROUND_TRIPS (default 3000 per way: the p50 of 1000 moved by +-0.07 ms between runs) and
// BENCH_PASSES (default 30, a multiple of the number of ways: the ways alternate in short passes, so machine noise falls on all three alike, each going first in as many passes as the others; 300 warm-up round trips each let V8 tier the wasm up first).
// A second table times the client side alone, apart from the broker and the
// network: a socket's message handler called -> the next send, per way, and
// for a handler that sent, the send -> the handler's return (work after a
// send delays the message: see BENCH_TAIL_US).
// BENCH_TAIL_US=20 adds a fourth way, raw WebSockets that spin 20 us on the
// main thread after each send: what that much work after a send costs a
// round trip here (2026-12-07, four runs: +0.04 ms mean for the two 20 us
// tails of a round trip, from -0.025 to +0.105, within run-to-run noise).
// BENCH_PROFILE=ours (or pusher-js, or raw) runs that way alone and prints the
// page's JavaScript self time per function (CDP Profiler) under its figures.
import { readFile } from "node:fs/promises";
import { devApp, launchChromium, repoRoot, startServer } from "../tests/support/harness.mjs";
import { addSelfTimes, printSelfTimes } from "./support/profile.mjs";

const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS ?? 3000);
const WARMUP = 300;
const PROFILE = process.env.BENCH_PROFILE;
const TAIL_US = Number(process.env.BENCH_TAIL_US ?? 0);
// With a fourth way, 32 passes so that each goes first equally often.
const PASSES = Number(process.env.BENCH_PASSES ?? (TAIL_US > 0 ? 32 : 30));
const WAYS = ["ours", "pusher-js", "raw WebSockets", ...(TAIL_US > 0 ? ["raw + tail"] : [])].filter(
  (name) => PROFILE === undefined || name.startsWith(PROFILE),
);
if (WAYS.length !== 1 && PROFILE !== undefined) throw new Error(`BENCH_PROFILE is ours, pusher-js or raw, not ${PROFILE}`);

process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;
const server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0" });
const browser = await launchChromium((process.env.BENCH_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean));
const pusherJs = await readFile(`${repoRoot}node_modules/pusher-js/dist/web/pusher.min.js`);

try {
  const page = await browser.newPage();
  // A real page of the server's origin (its responses carry COOP/COEP), so the
  // auth endpoint's session cookie applies to all three clients alike and
  // Chromium's local-network checks see a loopback page talking to loopback.
  page.on("pageerror", (error) => console.error("page error:", error.message));
  await page.goto(`${server.url}/healthz`);
  await page.addScriptTag({ content: pusherJs.toString("utf8") });

  const cdp = PROFILE === undefined ? undefined : await page.context().newCDPSession(page);
  if (cdp !== undefined) {
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 50 });
    await cdp.send("Profiler.start");
  }
  const { samples: results, hops, tails } = await page.evaluate(async ({ key, port, roundTrips, passes, warmup, only, tailUs }) => {
    if (!crossOriginIsolated) throw new Error("the page is not cross-origin isolated: timings would be coarse");
    // The client side of a round trip, apart from the broker and the network:
    // from a socket's message handler being called to the next send on any
    // socket (the responder's pong, or the pinger's next ping). Installed
    // before any client exists, so all three ways are timed by the same hooks.
    const hops = {};
    const tails = {};
    let hopWay;
    let hopStart;
    let sentAt;
    {
      const onmessage = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
      Object.defineProperty(WebSocket.prototype, "onmessage", {
        configurable: true,
        get() {
          return onmessage.get.call(this);
        },
        set(handler) {
          const timed = handler && function (message) {
            hopStart = performance.now();
            sentAt = undefined;
            const result = handler.call(this, message);
            if (sentAt !== undefined && hopWay !== undefined) {
              tails[hopWay] ??= [];
              tails[hopWay].push(performance.now() - sentAt);
            }
            return result;
          };
          onmessage.set.call(this, timed);
        },
      });
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (data) {
        if (hopStart !== undefined && hopWay !== undefined) {
          hops[hopWay] ??= [];
          hops[hopWay].push(performance.now() - hopStart);
        }
        hopStart = undefined;
        const result = send.call(this, data);
        sentAt = performance.now();
        return result;
      };
    }
    const sdk = await import("/sdk/realtime/dist/index.js");
    const session = await (await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bench" }),
    })).json();
    void session;
    // Each way gets its own room channel, so no client hears another way's traffic.
    const newChannel = async () => (await (await fetch("/api/rooms", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ kind: "group", name: "rtt", member_ids: [] }),
    })).json()).channel_name;

    const within = (what, register, ms = 10_000) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
      register((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });

    // Each way exposes: send(i) and onPong(handler(i)), with a responder on the other side.
    async function ours() {
      const channelName = await newChannel();
      const make = async () => {
        const realtime = sdk.DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth", clientEvents: true });
        await realtime.attached;
        const channel = realtime.subscribe(channelName);
        await within("ours subscribed", (resolve) => channel.bind("pusher:subscription_succeeded", resolve));
        return { realtime, channel };
      };
      const a = await make();
      const b = await make();
      b.channel.bind("client-ping", (data) => void b.channel.trigger("client-pong", data));
      return {
        send: (i) => void a.channel.trigger("client-ping", { i }),
        onPong: (handler) => a.channel.bind("client-pong", (data) => handler(data.i)),
        close: () => { a.realtime.dispose(); b.realtime.dispose(); },
      };
    }

    async function pusher() {
      const channelName = await newChannel();
      const make = async () => {
        const client = new window.Pusher(key, {
          wsHost: "127.0.0.1", wsPort: port, forceTLS: false, enabledTransports: ["ws"], disableStats: true, cluster: "local",
          channelAuthorization: { endpoint: "/realtime/auth", transport: "ajax" },
        });
        const channel = client.subscribe(channelName);
        await within("pusher-js subscribed", (resolve) => channel.bind("pusher:subscription_succeeded", resolve));
        return { client, channel };
      };
      const a = await make();
      const b = await make();
      b.channel.bind("client-ping", (data) => b.channel.trigger("client-pong", data));
      return {
        send: (i) => a.channel.trigger("client-ping", { i }),
        onPong: (handler) => {
          const listener = (data) => handler(data.i);
          a.channel.bind("client-pong", listener);
          return () => a.channel.unbind("client-pong", listener);
        },
        close: () => { a.client.disconnect(); b.client.disconnect(); },
      };
    }

    const spin = (us) => {
      const end = performance.now() + us / 1000;
      while (performance.now() < end);
    };
    async function raw(tailUs = 0) {
      const channelName = await newChannel();
      const make = async () => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/app/${key}?protocol=7&client=raw&version=1`);
        const established = await within("raw connected", (resolve) => {
          socket.onmessage = (message) => {
            const frame = JSON.parse(message.data);
            if (frame.event === "pusher:connection_established") resolve(JSON.parse(frame.data));
          };
        });
        const response = await fetch("/realtime/auth", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: `socket_id=${encodeURIComponent(established.socket_id)}&channel_name=${encodeURIComponent(channelName)}`,
        });
        const { auth } = await response.json();
        await within("raw subscribed", (resolve) => {
          socket.onmessage = (message) => {
            if (JSON.parse(message.data).event === "pusher_internal:subscription_succeeded") resolve();
          };
          socket.send(JSON.stringify({ event: "pusher:subscribe", data: { channel: channelName, auth } }));
        });
        return socket;
      };
      const a = await make();
      const b = await make();
      b.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.event !== "client-ping") return;
        b.send(JSON.stringify({ event: "client-pong", channel: channelName, data: JSON.parse(frame.data) }));
        if (tailUs > 0) spin(tailUs);
      };
      let handler = () => {};
      a.onmessage = (message) => {
        const frame = JSON.parse(message.data);
        if (frame.event === "client-pong") handler(JSON.parse(frame.data).i);
      };
      return {
        send: (i) => {
          a.send(JSON.stringify({ event: "client-ping", channel: channelName, data: { i } }));
          if (tailUs > 0) spin(tailUs);
        },
        onPong: (h) => {
          handler = h;
          return () => { handler = () => {}; };
        },
        close: () => { a.close(); b.close(); },
      };
    }

    async function measure(name, way, count, timed) {
      hopWay = timed ? name : undefined;
      const samples = [];
      let waiting = null;
      const stop = way.onPong((i) => {
        if (waiting && waiting.i === i) waiting.resolve();
      });
      // One watchdog for the whole run: a timer armed per round trip costs
      // Chromium milliseconds per iteration and would swamp what we measure.
      const watchdog = setInterval(() => {
        if (waiting && performance.now() - waiting.start > 5000) waiting.reject(new Error(`round trip ${waiting.i} lost`));
      }, 1000);
      try {
        for (let i = 0; i < count; i++) {
          const start = performance.now();
          await new Promise((resolve, reject) => {
            waiting = { i, start, resolve, reject };
            way.send(i);
          });
          samples.push(performance.now() - start);
        }
      } finally {
        clearInterval(watchdog);
        stop();
      }
      return samples;
    }

    const open = { ours, "pusher-js": pusher, "raw WebSockets": () => raw(), "raw + tail": () => raw(tailUs) };
    const ways = {};
    for (const name of only) ways[name] = await open[name]();
    const samples = Object.fromEntries(Object.keys(ways).map((name) => [name, []]));
    for (const [name, way] of Object.entries(ways)) await measure(name, way, warmup, false);
    // The order rotates from pass to pass: the way that runs first in a pass
    // measured slower (0.05-0.1 ms at p50 when that was always ours), so each
    // way goes first equally often.
    const names = Object.keys(ways);
    for (let pass = 0; pass < passes; pass++) {
      for (let k = 0; k < names.length; k++) {
        const name = names[(pass + k) % names.length];
        samples[name].push(...(await measure(name, ways[name], Math.ceil(roundTrips / passes), true)));
      }
    }
    hopWay = undefined;
    for (const way of Object.values(ways)) way.close();
    return { samples, hops, tails };
  }, { key: devApp.key, port: server.port, roundTrips: ROUND_TRIPS, passes: PASSES, warmup: WARMUP, only: WAYS, tailUs: TAIL_US });
  const profile = cdp === undefined ? undefined : (await cdp.send("Profiler.stop")).profile;

  const summary = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return { n: sorted.length, p50: at(0.5), p99: at(0.99), mean: sorted.reduce((s, x) => s + x, 0) / sorted.length };
  };
  // Alone (BENCH_PROFILE), a way is its own floor.
  const floor = summary(results["raw WebSockets"] ?? Object.values(results)[0]);
  console.log(`# client-event round trip in one Chromium page (${await browser.version()}), ${process.env.DOMVIA_SERVER_BIN}`);
  console.log("| client | n | p50 | p99 | mean | p50 - raw | p99 - raw |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const [name, values] of Object.entries(results)) {
    const s = summary(values);
    const f = (x) => `${x.toFixed(3)} ms`;
    console.log(`| ${name} | ${s.n} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.mean)} | ${f(s.p50 - floor.p50)} | ${f(s.p99 - floor.p99)} |`);
  }
  // performance.now() is coarsened to 5 us here, so the mean (of the lowest
  // 90%, leaving out hops that a GC or the scheduler interrupted) resolves
  // what the quantised p50 cannot.
  const hopFloor = hops["raw WebSockets"] ?? Object.values(hops)[0];
  const lowMean = (values) => {
    const sorted = [...values].sort((a, b) => a - b).slice(0, Math.floor(values.length * 0.9));
    return (sorted.reduce((s, x) => s + x, 0) / sorted.length) * 1000;
  };
  console.log("\n# client side: a socket's message handler called -> the next send (two hops per round trip)");
  console.log("| client | hops | p50 | mean of lowest 90% | that - raw | after a send in the handler (lowest 90%) |\n| --- | ---: | ---: | ---: | ---: | ---: |");
  for (const [name, values] of Object.entries(hops)) {
    const p50 = [...values].sort((a, b) => a - b)[values.length >> 1] * 1000;
    const tail = tails[name] === undefined ? "-" : `${lowMean(tails[name]).toFixed(1)} us`;
    console.log(`| ${name} | ${values.length} | ${p50.toFixed(0)} us | ${lowMean(values).toFixed(1)} us | ${(lowMean(values) - lowMean(hopFloor)).toFixed(1)} us | ${tail} |`);
  }
  if (profile !== undefined) {
    console.log(`\n## Self time by function, ${WAYS[0]} alone, warm-up included (BENCH_PROFILE)\n`);
    printSelfTimes(addSelfTimes(new Map(), profile));
  }
} finally {
  await browser.close();
  await server.stop();
}
