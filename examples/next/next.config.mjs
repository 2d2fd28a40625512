import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));

/** @type {import("next").NextConfig} */
export default {
  // The webpack build goes to its own folder, so both builds can be served (the test serves each).
  distDir: process.env.NEXT_DIST_DIR ?? ".next",
  // This app is its own project (the SDK's repository around it has another lockfile).
  turbopack: { root: here },
  outputFileTracingRoot: here,
};
