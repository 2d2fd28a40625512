// Rewrites a release wasm module's wasm-bindgen glue for the short import and
// export names binaryen gave the module, as emscripten does for its own output.
// wasm-bindgen names every import `__wbg_<name>_<16 hex digits>` under the
// module "./<name>_bg.js", and every export after its Rust path: ~4.5 KB of
// names in the base module, the hex digits incompressible, and the glue
// repeats them all. scripts/build's wasm-opt run ends with
// `--minify-imports-and-exports-and-modules`, which renames them (`A`, `B`,
// ... under module `a`) and prints the mapping; this script applies it to the
// glue (the import object's keys and module, each `wasm.<export>`) and to the
// `InitOutput` interface of its .d.ts. Anything it cannot match exactly fails
// the build.
//
// usage: node scripts/minify-wasm-names.mjs <mapping.json> <module.wasm> <glue.js> <glue.d.ts>
import { readFileSync, writeFileSync } from "node:fs";

const [mappingPath, wasmPath, gluePath, typesPath] = process.argv.slice(2);
if (!typesPath) {
  console.error("usage: node scripts/minify-wasm-names.mjs <mapping.json> <module.wasm> <glue.js> <glue.d.ts>");
  process.exit(2);
}

function fail(message) {
  console.error(`minify-wasm-names: ${message} (${gluePath})`);
  process.exit(1);
}

/** @type {{ imports: [string, string, string][], exports: [string, string][] }} */
const mapping = JSON.parse(readFileSync(mappingPath, "utf8"));

// The one import module the glue provides, before and after.
const oldModules = new Set(mapping.imports.map(([module]) => module));
const newModules = new Set(importModules(readFileSync(wasmPath)));
if (oldModules.size !== 1 || newModules.size !== 1) {
  fail(`expected one import module, found ${[...oldModules]} -> ${[...newModules]}`);
}
const [oldModule] = oldModules;
const [newModule] = newModules;

let glue = readFileSync(gluePath, "utf8");
const escapeRegExp = (text) => text.replace(/[$.*+?^(){}[\]|\\/]/g, "\\$&");
/** Replaces the one match of `pattern`; none or several fail the build. */
function replaceOnce(pattern, replacement, what) {
  const matches = glue.match(new RegExp(pattern.source, `${pattern.flags}g`)) ?? [];
  if (matches.length !== 1) fail(`${what}: ${matches.length} matches`);
  glue = glue.replace(pattern, replacement);
}
for (const [, name, short] of mapping.imports) {
  replaceOnce(new RegExp(`^(\\s+)${escapeRegExp(name)}: `, "m"), `$1${short}: `, `import ${name}`);
}
replaceOnce(new RegExp(`${escapeRegExp(JSON.stringify(oldModule))}: import0\\b`), `${JSON.stringify(newModule)}: import0`, `module ${oldModule}`);
const exportNames = new Map(mapping.exports);
glue = glue.replace(/\bwasm\.([A-Za-z_$][\w$]*)/g, (_, name) => {
  const short = exportNames.get(name);
  if (short === undefined) fail(`the glue uses wasm.${name}, which the module does not export`);
  return `wasm.${short}`;
});
writeFileSync(gluePath, glue);

// The .d.ts's InitOutput lists the raw exports (what `init()` resolves to).
let types = readFileSync(typesPath, "utf8");
const start = types.indexOf("export interface InitOutput {");
const end = types.indexOf("\n}", start);
if (start < 0 || end < 0) fail("no InitOutput interface in the .d.ts");
const block = types.slice(start, end).replace(/^(\s+readonly )([\w$]+)(:)/gm, (_, head, name, colon) => {
  const short = exportNames.get(name);
  if (short === undefined) fail(`InitOutput lists ${name}, which the module does not export`);
  return `${head}${short}${colon}`;
});
types = types.slice(0, start) + block + types.slice(end);
writeFileSync(typesPath, types);

/** The module names of a wasm binary's imports, read from its import section. */
function importModules(bytes) {
  let at = 8;
  const leb = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[at++];
      result += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (byte < 0x80) return result;
    }
  };
  const name = () => {
    const length = leb();
    at += length;
    return bytes.subarray(at - length, at).toString("utf8");
  };
  while (at < bytes.length) {
    const id = bytes[at++];
    const size = leb();
    if (id !== 2) {
      at += size;
      continue;
    }
    const modules = [];
    for (let count = leb(); count > 0; count--) {
      modules.push(name());
      name();
      const kind = bytes[at++];
      if (kind === 0) leb(); // function: type index
      else if (kind === 1) { at++; if (leb() & 1) leb(); leb(); } // table: reftype, limits
      else if (kind === 2) { if (leb() & 1) leb(); leb(); } // memory: limits
      else if (kind === 3) at += 2; // global: valtype, mutability
      else if (kind === 4) { at++; leb(); } // tag
      else fail(`unknown import kind ${kind}`);
    }
    return modules;
  }
  return [];
}
