// Where a wasm module's bytes go, in the manner of `twiggy top`: the size of
// each function body and data segment, by function and by crate, read from the
// module's name section. After `npm run build`, pkg/ holds both modules as
// wasm-bindgen wrote them, names included; optimise one as the release is,
// keeping the names, and read it:
//   node_modules/.bin/wasm-opt -Oz -g --enable-bulk-memory --enable-nontrapping-float-to-int \
//     --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
//     pkg/domvia_realtime_bg.wasm -o /tmp/base.g.wasm
//   node bench/wasm_top.mjs /tmp/base.g.wasm [count]
// Sizes are raw bytes of the code and data sections (gzip is not additive per
// function). The export shims show large because wasm-opt inlines the bodies
// of the functions they call into them.
import { readFileSync } from "node:fs";

const [path, countArg] = process.argv.slice(2);
if (!path) {
  console.error("usage: node bench/wasm_top.mjs <module.wasm> [count]");
  process.exit(2);
}
const count = Number(countArg ?? 20);
const bytes = readFileSync(path);
let offset = 8; // magic and version

function leb(at) {
  let result = 0;
  let shift = 0;
  let position = at;
  for (;;) {
    const byte = bytes[position++];
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [result, position];
  }
}

let importedFunctions = 0;
const bodies = []; // sizes of defined functions, in order
const dataSegments = [];
const names = new Map();
const sectionSizes = new Map();

while (offset < bytes.length) {
  const id = bytes[offset];
  const [size, start] = leb(offset + 1);
  const end = start + size;
  sectionSizes.set(id, (sectionSizes.get(id) ?? 0) + (end - offset));
  if (id === 2) {
    // imports: count the functions, whose indices come before the bodies'
    let [entries, at] = leb(start);
    for (let i = 0; i < entries; i++) {
      let length;
      [length, at] = leb(at);
      at += length;
      [length, at] = leb(at);
      at += length;
      const kind = bytes[at++];
      if (kind === 0) {
        importedFunctions++;
        [, at] = leb(at);
      } else if (kind === 1) {
        at += 1;
        const flags = bytes[at++];
        [, at] = leb(at);
        if (flags & 1) [, at] = leb(at);
      } else if (kind === 2) {
        const flags = bytes[at++];
        [, at] = leb(at);
        if (flags & 1) [, at] = leb(at);
      } else if (kind === 3) {
        at += 2;
      } else {
        [, at] = leb(at);
        at += 1;
      }
    }
  } else if (id === 10) {
    let [entries, at] = leb(start);
    for (let i = 0; i < entries; i++) {
      const [length, bodyStart] = leb(at);
      bodies.push(bodyStart - at + length);
      at = bodyStart + length;
    }
  } else if (id === 11) {
    let [entries, at] = leb(start);
    for (let i = 0; i < entries; i++) {
      const segmentStart = at;
      let flags;
      [flags, at] = leb(at);
      if (flags === 2) [, at] = leb(at);
      if (flags !== 1) {
        while (bytes[at] !== 0x0b) at++; // the offset expression
        at++;
      }
      let length;
      [length, at] = leb(at);
      at += length;
      dataSegments.push(at - segmentStart);
    }
  } else if (id === 0) {
    let [length, at] = leb(start);
    const name = bytes.subarray(at, at + length).toString();
    at += length;
    if (name === "name") {
      while (at < end) {
        const subsection = bytes[at];
        const [subsize, subStart] = leb(at + 1);
        if (subsection === 1) {
          let [entries, p] = leb(subStart);
          for (let i = 0; i < entries; i++) {
            let index, nameLength;
            [index, p] = leb(p);
            [nameLength, p] = leb(p);
            names.set(index, bytes.subarray(p, p + nameLength).toString());
            p += nameLength;
          }
        }
        at = subStart + subsize;
      }
    }
  }
  offset = end;
}

// A readable form of a Rust symbol: legacy `_ZN...E` paths are split into
// their segments and `$LT$`-style escapes undone; v0 `_R...` symbols keep
// only their identifiers. Exports (`chatroomsession_send_...`) stay as they are.
function demangle(mangled) {
  let symbol = mangled;
  if (symbol.startsWith("_ZN")) {
    const parts = [];
    let at = 3;
    while (at < symbol.length && symbol[at] !== "E") {
      const digits = /^\d+/.exec(symbol.slice(at));
      if (!digits) break;
      at += digits[0].length;
      parts.push(symbol.slice(at, at + Number(digits[0])));
      at += Number(digits[0]);
    }
    if (/^h[0-9a-f]{16}$/.test(parts.at(-1) ?? "")) parts.pop();
    return parts
      .join("::")
      .replace(/\$LT\$/g, "<").replace(/\$GT\$/g, ">").replace(/\$u20\$/g, " ")
      .replace(/\$u7b\$/g, "{").replace(/\$u7d\$/g, "}").replace(/\$RF\$/g, "&")
      .replace(/\$C\$/g, ",").replace(/\$BP\$/g, "*").replace(/\.\./g, "::").replace(/^_</, "<");
  }
  if (symbol.startsWith("_R")) {
    const words = [];
    symbol = symbol.replace(/C[sy][0-9A-Za-z]*_/g, "");
    let at = 2;
    for (;;) {
      const match = /\d+/.exec(symbol.slice(at));
      if (!match) break;
      const length = Number(match[0]);
      const begin = at + match.index + match[0].length + (symbol[at + match.index + match[0].length] === "_" ? 1 : 0);
      const word = symbol.slice(begin, begin + length);
      if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(word) && word.length === length) words.push(word);
      at = begin + Math.max(length, 1);
    }
    return words.join("::");
  }
  return symbol;
}

// The crate a function's code belongs to: the first path segment, looking
// through `<impl Trait for Type>` to the type's crate (the code is the type's).
function crateOf(name) {
  let text = name;
  while (text.startsWith("<")) text = text.slice(1);
  text = text.replace(/^(&|mut |dyn |\*const |\*mut )+/, "");
  const match = /^([A-Za-z_][A-Za-z0-9_]*)::/.exec(text);
  if (match) {
    // domvia_realtime is split by module: that is where the choices are.
    if (match[1] === "domvia_realtime") {
      const module = /^domvia_realtime::([a-z0-9_]+)(::([a-z0-9_]+))?/.exec(text);
      return module ? `domvia_realtime::${module[1]}${module[3] ? `::${module[3]}` : ""}` : match[1];
    }
    return match[1];
  }
  if (/^(__wbg|__wbindgen|__externref|wasm_bindgen)/.test(text)) return "wasm-bindgen glue";
  if (/^[a-z]+_[A-Za-z0-9]+( |_[0-9a-f]{16}|$)/.test(text)) {
    return "exports (shims with inlined bodies)";
  }
  return "other";
}

const functions = bodies.map((size, i) => {
  const index = importedFunctions + i;
  const name = names.get(index) ?? `func[${index}]`;
  return { name: demangle(name).replace(/::h[0-9a-f]{16}$/, "").replace(/\[[0-9a-f]{16}\]/g, ""), size };
});
const codeTotal = bodies.reduce((a, b) => a + b, 0);
const dataTotal = dataSegments.reduce((a, b) => a + b, 0);

const pad = (text, width) => String(text).padEnd(width);
const num = (n, width = 9) => String(n).padStart(width);
const pct = (n) => `${((100 * n) / bytes.length).toFixed(1).padStart(5)}%`;

console.log(`${path}: ${bytes.length} B; code ${codeTotal} B in ${bodies.length} functions, data ${dataTotal} B`);
console.log(`\ntop ${count} functions (raw bytes)`);
for (const f of [...functions].sort((a, b) => b.size - a.size).slice(0, count)) {
  console.log(`${num(f.size)} ${pct(f.size)}  ${f.name.slice(0, 110)}`);
}
const byCrate = new Map();
for (const f of functions) {
  const crate = crateOf(f.name);
  byCrate.set(crate, (byCrate.get(crate) ?? 0) + f.size);
}
byCrate.set("(data segments)", dataTotal);
console.log(`\nby crate (raw bytes)`);
for (const [crate, size] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, count)) {
  console.log(`${num(size)} ${pct(size)}  ${pad(crate, 30)}`);
}
