// The Pusher-compatible brokers the SDK is tested against, started and
// stopped by the tests on free loopback ports: the embedded broker
// (domvia-server), sockudo 5.2 on one node, and sockudo on several nodes over
// Redis. scripts/setup installs sockudo (cargo install, into
// ~/.cache/domvia/sockudo-5.2.0) and Debian's redis-server.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { connect } from "node:net";
import { homedir } from "node:os";
import { devApp, freePort, startServer } from "./harness.mjs";

const STARTUP_LIMIT_MS = 20_000;

export const SOCKUDO_VERSION = "5.2.0";

/** Where scripts/setup installs sockudo; DOMVIA_SOCKUDO_BIN overrides it. */
export const sockudoBinary =
  process.env.DOMVIA_SOCKUDO_BIN ?? `${homedir()}/.cache/domvia/sockudo-${SOCKUDO_VERSION}/bin/sockudo`;

export const sockudoInstalled = () => existsSync(sockudoBinary);

/** Resolves once something accepts TCP connections on `port`, within `ms`. */
async function accepting(port, what, ms = STARTUP_LIMIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not accept connections on ${port} within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A child process whose output is kept (the last 4,000 characters) for error messages. */
function spawnKept(binary, args, env) {
  const child = spawn(binary, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  const keep = (chunk) => {
    output = (output + chunk).slice(-4000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  return { child, output: () => output };
}

async function killed(child, signal = "SIGKILL") {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill(signal);
  await exited;
}

/** Debian's redis-server on a free port, in memory only. */
export async function startRedis() {
  const port = await freePort();
  const { child, output } = spawnKept(
    "/usr/bin/redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    process.env,
  );
  child.once("exit", (code) => {
    if (code) console.error(`redis-server exited with ${code}:\n${output()}`);
  });
  await accepting(port, "redis-server");
  return { url: `redis://127.0.0.1:${port}`, port, stop: () => killed(child) };
}

/**
 * The environment of one sockudo node serving the development app: client
 * events on, no per-connection client-event limit, no metrics listener (it
 * would take 0.0.0.0:9601), no webhook queue. Its HTTP API rate limiter keeps
 * its default (100 requests a minute): the backend's outbox must cope.
 * With `redisUrl`, the node joins the others over Redis pub/sub, without
 * falling back to running alone.
 */
export function sockudoEnv(port, { redisUrl, app = devApp } = {}) {
  const env = {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    ENVIRONMENT: "production",
    APP_MANAGER_DRIVER: "memory",
    QUEUE_DRIVER: "none",
    METRICS_ENABLED: "false",
    SOCKUDO_DEFAULT_APP_ID: app.id,
    SOCKUDO_DEFAULT_APP_KEY: app.key,
    SOCKUDO_DEFAULT_APP_SECRET: app.secret,
    SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: "true",
    SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND: "0",
    // pusher:signin, off by default in sockudo: without it a removed member's
    // sockets cannot be terminated (the SDK signs in; docs/deploy.md).
    SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION: "true",
    SHUTDOWN_GRACE_PERIOD: "0",
    RUST_LOG: "warn",
  };
  if (redisUrl) {
    Object.assign(env, {
      ADAPTER_DRIVER: "redis",
      ADAPTER_FALLBACK_TO_LOCAL: "false",
      CACHE_DRIVER: "redis",
      REDIS_URL: redisUrl,
    });
  } else {
    Object.assign(env, { ADAPTER_DRIVER: "local", CACHE_DRIVER: "memory" });
  }
  return env;
}

/**
 * One sockudo node on `port` (a free one by default). `restart()` kills it
 * (SIGKILL: a crash, no goodbye to its clients) and starts it again on the
 * same port; `stop()` kills it. `env` adds to (or overrides) what
 * `sockudoEnv` sets, e.g. `{ RATE_LIMITER_ENABLED: "false" }` for a benchmark.
 */
export async function startSockudo({ port, redisUrl, env = {} } = {}) {
  if (!sockudoInstalled()) throw new Error(`sockudo is not installed at ${sockudoBinary}: run bash scripts/setup`);
  port ??= await freePort();
  let node;
  const start = async () => {
    node = spawnKept(sockudoBinary, [], { ...sockudoEnv(port, { redisUrl }), ...env });
    const early = once(node.child, "exit").then(([code]) => {
      throw new Error(`sockudo exited early with ${code}:\n${node.output()}`);
    });
    await Promise.race([accepting(port, "sockudo"), early]);
    early.catch(() => {});
  };
  await start();
  return {
    kind: "sockudo",
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => node.output(),
    async restart() {
      await killed(node.child);
      await start();
    },
    stop: () => killed(node.child),
  };
}

/** The embedded broker as a node: a domvia-server whose backend is not used. */
export async function startEmbeddedNode({ port = 0 } = {}) {
  let server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0" }, { port });
  port = server.port;
  return {
    kind: "embedded",
    port,
    url: server.url,
    output: () => server.stderr(),
    async restart() {
      await server.stop();
      server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0" }, { port });
    },
    stop: () => server.stop(),
  };
}

/**
 * A pass-through HTTP proxy in front of a broker's REST API, for the
 * backend's publishes. `rateLimitEverySecond(true)` makes it answer 429 to
 * every second POST (with `Retry-After: 1`), as a rate-limiting broker
 * would. `dropNextPublish()` makes it answer 200 to the next POST without
 * passing it on: a broker that accepted an event and lost it (a cluster
 * node's pub/sub hiccup). `posts()` counts POSTs, `refused()` the 429s.
 */
export async function startPublishProxy(targetPort) {
  let limiting = false;
  let dropNext = false;
  let posts = 0;
  let refused = 0;
  const server = createServer((incoming, answer) => {
    if (incoming.method === "POST") {
      posts++;
      if (dropNext) {
        dropNext = false;
        incoming.resume();
        answer.writeHead(200, { "content-type": "application/json" });
        answer.end("{}");
        return;
      }
      if (limiting && posts % 2 === 0) {
        refused++;
        incoming.resume();
        answer.writeHead(429, { "retry-after": "1", "content-type": "application/json" });
        answer.end('{"error":"rate limited by the test proxy"}');
        return;
      }
    }
    const forwarded = httpRequest(
      { host: "127.0.0.1", port: targetPort, method: incoming.method, path: incoming.url, headers: incoming.headers },
      (response) => {
        answer.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(answer);
      },
    );
    forwarded.on("error", (error) => {
      answer.writeHead(502, { "content-type": "text/plain" });
      answer.end(`the proxy could not reach the broker: ${error.message}`);
    });
    incoming.pipe(forwarded);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    rateLimitEverySecond(on) {
      limiting = on;
    },
    dropNextPublish() {
      dropNext = true;
    },
    posts: () => posts,
    refused: () => refused,
    async stop() {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** The broker setups every capability is tested on; `DOMVIA_BROKERS` picks some (comma-separated). */
export const BROKER_SETUPS = ["embedded", "sockudo", "sockudo-cluster"];

/**
 * A whole deployment on loopback: broker node(s), a publish proxy in front of
 * the node the backend publishes to, and domvia-server in backend-only mode
 * (pages, API, /realtime/auth) publishing through the proxy.
 * - embedded: one embedded broker node;
 * - sockudo: one sockudo node;
 * - sockudo-cluster: three sockudo nodes over one Redis: users connect to
 *   nodes 0 and 1, the backend publishes to node 2.
 * `userPort(i)` is the node user i's browser connects to.
 */
export async function startBrokerSetup(setup) {
  const stops = [];
  try {
    const nodes = [];
    if (setup === "embedded") {
      nodes.push(await startEmbeddedNode());
    } else if (setup === "sockudo") {
      nodes.push(await startSockudo());
    } else if (setup === "sockudo-cluster") {
      const redis = await startRedis();
      stops.push(redis.stop);
      for (let i = 0; i < 3; i++) nodes.push(await startSockudo({ redisUrl: redis.url }));
    } else {
      throw new Error(`unknown broker setup ${setup}`);
    }
    for (const node of nodes) stops.unshift(node.stop);
    const publishNode = nodes[nodes.length - 1];
    const proxy = await startPublishProxy(publishNode.port);
    stops.unshift(proxy.stop);
    const backend = await startServer({ DOMVIA_BROKER_URL: proxy.url });
    stops.unshift(backend.stop);
    return {
      setup,
      nodes,
      proxy,
      backend,
      url: backend.url,
      userPort: (i) => nodes[i % Math.min(nodes.length, 2)].port,
      async stop() {
        for (const stop of stops) await stop().catch(() => {});
      },
    };
  } catch (error) {
    for (const stop of stops) await stop().catch(() => {});
    throw error;
  }
}
