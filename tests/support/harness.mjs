// Shared pieces of the browser tests: the real embedded server on a free
// loopback port, and Debian's Chromium and Firefox driven by playwright-core
// (Chromium over CDP, Firefox over WebDriver BiDi: Playwright's own Firefox
// build cannot be downloaded here, Debian's firefox-esr can be installed).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium, firefox } from "playwright-core";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

const STARTUP_LIMIT_MS = 20_000;
const STOP_LIMIT_MS = 10_000;

/** A free loopback port (the OS picks; released just before the caller binds it). */
export async function freePort() {
  const probe = createServer();
  await new Promise((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** The development app credentials the server uses unless told otherwise. */
export const devApp = { id: "domvia-dev", key: "domvia-dev-key", secret: "domvia-dev-secret" };

/**
 * Starts `domvia-server` on 127.0.0.1 with port 0 and resolves once it printed
 * its `listening on` line (on `port` when given, to restart a server where its
 * clients expect it). The database is `:memory:` unless `env.DOMVIA_DB` names
 * a file. DOMVIA_SERVER_BIN overrides the binary.
 */
export async function startServer(env = {}, { port = 0 } = {}) {
  const binary = process.env.DOMVIA_SERVER_BIN ?? `${repoRoot}target/debug/domvia-server`;
  const child = spawn(binary, ["--host", "127.0.0.1", "--port", String(port), "--root", repoRoot], {
    env: { ...process.env, DOMVIA_DB: ":memory:", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // Keep the server's stderr out of the test report unless it fails to start.
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const lines = createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`domvia-server printed no listening line within ${STARTUP_LIMIT_MS} ms`));
    }, STARTUP_LIMIT_MS);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`domvia-server exited early with ${code}:\n${stderr}`)));
    lines.on("line", (line) => {
      const match = /^listening on (http:\/\/\S+)$/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return {
    url,
    port: Number(new URL(url).port),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_LIMIT_MS);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** The engines every browser suite runs in; `scripts/test` runs each suite once per engine. */
export const ENGINES = ["chromium", "firefox"];

/** The engine this test process drives: DOMVIA_BROWSER, else Chromium. */
export const browserEngine = process.env.DOMVIA_BROWSER ?? "chromium";
if (!ENGINES.includes(browserEngine)) throw new Error(`DOMVIA_BROWSER must be one of ${ENGINES.join(", ")}, not ${browserEngine}`);

/** Launches `engine` (default: this process's engine) headless. */
export function launchBrowser(engine = browserEngine) {
  return engine === "firefox" ? launchFirefox() : launchChromium();
}

/**
 * Debian's Firefox ESR, headless, over WebDriver BiDi (Playwright's "moz-"
 * channels). playwright-core is pinned to 1.64: 1.65 sends a BiDi command
 * (emulation.setMediaFeaturesOverride) that Firefox 153 ESR does not know.
 */
export function launchFirefox() {
  return firefox.launch({
    channel: "moz-firefox",
    executablePath: process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr",
    headless: true,
    firefoxUserPrefs: {
      // Nothing outside loopback answers here: no update, telemetry or captive-portal checks.
      "app.update.enabled": false,
      "network.captive-portal-service.enabled": false,
      "network.connectivity-service.enabled": false,
      "datareporting.policy.dataSubmissionEnabled": false,
    },
  });
}

/** Debian's Chromium, headless, with the flags this closed network needs. */
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      ...extraArgs,
    ],
  });
}

/**
 * The browsers' own reports of a refused or cut connection, which no script of
 * the page sees or throws: Chromium logs them as console errors, Firefox as
 * script errors that Playwright's BiDi client reports as page errors.
 */
export const CONNECTION_FAILURE_REPORTS =
  /Failed to load resource|WebSocket connection to .* failed|net::ERR_CONNECTION_(REFUSED|RESET)|Firefox can’t establish a connection to the server at|The connection to .* was interrupted while the page was loading/;

/** Collects console errors and uncaught page errors, for asserting there were none. */
export function recordPageErrors(page) {
  const errors = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  return errors;
}
