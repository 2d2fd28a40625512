// The example apps of examples/ and how each is served: its toolchain's dev
// server, and its production build served the way it would be deployed
// (`vite preview`, `next start`, or static files for Angular's dist/).
// scripts/examples installs them from the npm tarballs and builds them first.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./harness.mjs";
import { serveStatic } from "./static_server.mjs";

const START_LIMIT_MS = 180_000;
const STOP_LIMIT_MS = 10_000;

/** Where scripts/examples installed and built the apps: outside the checkout (see there why). */
export const examplesBuild = process.env.DOMVIA_EXAMPLES_BUILD ?? join(process.env.TMPDIR ?? tmpdir(), "domvia-examples");

const bin = (dir, name) => join(examplesBuild, dir, "node_modules/.bin", name);

/**
 * Each app: its folder, its modes, and the command of each mode (given a
 * free port); `static` serves a built folder instead of running a command.
 */
export const EXAMPLE_APPS = [
  {
    id: "react-vite",
    dir: "react-vite",
    modes: ["dev", "prod"],
    dev: (dir, port) => [bin(dir, "vite"), "--host", "127.0.0.1", "--port", port, "--strictPort"],
    prod: (dir, port) => [bin(dir, "vite"), "preview", "--host", "127.0.0.1", "--port", port, "--strictPort"],
  },
  {
    id: "vue-vite",
    dir: "vue-vite",
    modes: ["dev", "prod"],
    dev: (dir, port) => [bin(dir, "vite"), "--host", "127.0.0.1", "--port", port, "--strictPort"],
    prod: (dir, port) => [bin(dir, "vite"), "preview", "--host", "127.0.0.1", "--port", port, "--strictPort"],
  },
  {
    id: "angular",
    dir: "angular",
    modes: ["dev", "prod", "prod-zone"],
    dev: (dir, port) => [bin(dir, "ng"), "serve", "--host", "127.0.0.1", "--port", port, "--no-open", "--no-hmr"],
    prod: { static: "dist/angular/browser" },
    // The same app built with zone.js (angular.json's `zone` configuration).
    "prod-zone": { static: "dist/angular-zone/browser" },
    // What each mode must show on the page: zoneless unless built with zone.js.
    pageCheck: async (page, mode) => ({ zone: await page.evaluate(() => typeof globalThis.Zone === "function"), expected: mode === "prod-zone" }),
  },
  {
    id: "next-turbopack",
    dir: "next",
    modes: ["dev", "prod"],
    serverRendered: true,
    dev: (dir, port) => [bin(dir, "next"), "dev", "--turbopack", "-H", "127.0.0.1", "-p", port],
    prod: (dir, port) => [bin(dir, "next"), "start", "-H", "127.0.0.1", "-p", port],
  },
  {
    id: "next-webpack",
    dir: "next",
    modes: ["dev", "prod"],
    serverRendered: true,
    // Its own build folder (next.config.mjs), beside Turbopack's.
    env: { dev: { NEXT_DIST_DIR: ".next-webpack" }, prod: { NEXT_DIST_DIR: ".next-webpack" } },
    dev: (dir, port) => [bin(dir, "next"), "dev", "--webpack", "-H", "127.0.0.1", "-p", port],
    prod: (dir, port) => [bin(dir, "next"), "start", "-H", "127.0.0.1", "-p", port],
  },
];

/**
 * Starts `app` in `mode` (with `env` added to its environment: DOMVIA_SERVER
 * for a server-rendered app); resolves once its page answers, with its URL,
 * its output, and stop().
 */
export async function startApp(app, mode, env = {}) {
  const dir = join(examplesBuild, app.dir);
  const served = app[mode];
  if (typeof served === "object" && served.static) {
    const server = await serveStatic(join(dir, served.static));
    return { url: server.url, log: () => "", stop: server.stop };
  }
  const port = String(await freePort());
  const [command, ...args] = served(app.dir, port);
  // Its own process group, so stop() also ends the workers a dev server starts.
  const child = spawn(command, args, {
    cwd: dir,
    detached: true,
    env: { ...process.env, ...env, ...(app.env?.[mode] ?? {}), NO_COLOR: "1", BROWSER: "none", NEXT_TELEMETRY_DISABLED: "1", NG_CLI_ANALYTICS: "false" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const keep = (chunk) => {
    log = (log + chunk).slice(-20_000);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = once(child, "exit");
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }, STOP_LIMIT_MS);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + START_LIMIT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${app.id} ${mode} exited with ${child.exitCode}:\n${log}`);
    const answered = await fetch(url, { signal: AbortSignal.timeout(30_000) }).then(
      (response) => response.status < 500,
      () => false,
    );
    if (answered) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${app.id} ${mode} did not answer on ${url} within ${START_LIMIT_MS} ms:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return { url, log: () => log, stop };
}
