// A static file server for a production build (Angular's dist/ has no server
// of its own): what a CDN or nginx would do, with real Content-Types (the
// .wasm as application/wasm) and index.html for every route the app owns.
// Bound to 127.0.0.1 on a free port; stop() closes it.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, sep } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
};

export async function serveStatic(root) {
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? "/", "http://x").pathname);
    const file = normalize(join(root, path));
    if (file !== root && !file.startsWith(root.endsWith(sep) ? root : root + sep)) {
      response.writeHead(403).end();
      return;
    }
    let chosen = file;
    const found = await stat(file).catch(() => undefined);
    if (found === undefined || found.isDirectory()) {
      // A file-like path that is missing is a 404; any other path is a route of the app.
      chosen = extname(path) !== "" && found === undefined ? "" : join(root, "index.html");
    }
    if (chosen === "") {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    response.writeHead(200, { "content-type": TYPES[extname(chosen)] ?? "application/octet-stream" });
    createReadStream(chosen).pipe(response);
  });
  server.keepAliveTimeout = 1000;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stop: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}
