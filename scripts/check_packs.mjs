// Checks each npm tarball in the folder given (scripts/pack made them) the way
// a user's install meets it: what is inside, whether its `exports` and source
// maps point at files it has, publint, and whether its types resolve under
// TypeScript's node16 and bundler resolution (arethetypeswrong, ESM-only
// profile: these packages are ESM). Exits 1 with every problem listed.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { publint } from "publint";
import { formatMessage } from "publint/utils";

const folder = process.argv[2];
if (!folder) throw new Error("usage: node scripts/check_packs.mjs <folder of .tgz>");

/** The files of a tarball, by path without the `package/` prefix (ustar, as npm writes it). */
function untar(buffer) {
  const files = new Map();
  for (let offset = 0; offset + 512 <= buffer.length; ) {
    const header = buffer.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start, length) => header.subarray(start, start + length).toString("utf8").replace(/\0.*$/s, "");
    const prefix = field(345, 155);
    const name = (prefix ? `${prefix}/` : "") + field(0, 100);
    const size = parseInt(field(124, 12).trim() || "0", 8);
    const type = field(156, 1);
    if (type === "0" || type === "") files.set(name.replace(/^package\//, ""), buffer.subarray(offset + 512, offset + 512 + size));
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

function exportTargets(exports) {
  if (typeof exports === "string") return [exports];
  if (exports === null || typeof exports !== "object") return [];
  return Object.values(exports).flatMap(exportTargets);
}

const problems = [];
const tarballs = readdirSync(folder).filter((name) => name.endsWith(".tgz")).sort();
if (tarballs.length === 0) problems.push(`${folder}: no tarballs`);
for (const tarball of tarballs) {
  const path = join(folder, tarball);
  const bytes = readFileSync(path);
  const files = untar(gunzipSync(bytes));
  const manifest = JSON.parse(files.get("package.json").toString("utf8"));
  const say = (problem) => problems.push(`${manifest.name}: ${problem}`);

  for (const required of ["package.json", "README.md", "LICENSE"]) if (!files.has(required)) say(`lacks ${required}`);
  for (const name of files.keys()) {
    if (/(^|\/)(test|tests|__tests__)\//.test(name) || /\.test\.[cm]?[jt]s$/.test(name)) say(`ships a test file, ${name}`);
    if (/\.tsbuildinfo$|(^|\/)tsconfig\.json$/.test(name)) say(`ships a build file, ${name}`);
  }
  for (const target of new Set([...exportTargets(manifest.exports), manifest.main, manifest.types].filter(Boolean))) {
    if (!files.has(target.replace(/^\.\//, ""))) say(`exports ${target}, which the tarball lacks`);
  }
  for (const name of files.keys()) {
    if (name.endsWith(".wasm") && !exportTargets(manifest.exports).includes(`./${name}`)) say(`does not list ${name} in exports`);
    if (!name.endsWith(".map")) continue;
    const map = JSON.parse(files.get(name).toString("utf8"));
    const base = name.split("/").slice(0, -1);
    for (const source of map.sources ?? []) {
      const parts = [...base];
      for (const part of source.split("/")) {
        if (part === "..") parts.pop();
        else if (part !== ".") parts.push(part);
      }
      if (!files.has(parts.join("/"))) say(`${name} points at ${source}, which the tarball lacks`);
    }
  }

  const { messages } = await publint({ pack: { tarball: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) }, strict: true });
  for (const message of messages) say(`publint ${message.type}: ${formatMessage(message, manifest) ?? message.code}`);

  // The .wasm exports are files for bundlers, not modules with types.
  const wasmEntries = Object.keys(manifest.exports ?? {}).filter((entry) => entry.endsWith(".wasm"));
  const exclude = wasmEntries.length > 0 ? ["--exclude-entrypoints", ...wasmEntries] : [];
  try {
    execFileSync("attw", [path, "--profile", "esm-only", "--no-definitely-typed", "--format", "ascii", "--no-color", ...exclude], {
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (failure) {
    say(`arethetypeswrong:\n${failure.stdout}${failure.stderr}`);
  }
  console.log(`${tarball}: ${files.size} files, ${bytes.length} bytes`);
}
if (problems.length > 0) {
  console.error(`\n${problems.length} packaging problem(s):\n- ${problems.join("\n- ")}`);
  process.exit(1);
}
console.log(`${tarballs.length} tarballs: contents, publint and types (node16, bundler) all clean`);
