// The docs' "Trusted server authorization" example (the contract) and every
// TypeScript block of the README type-check, strict, against the built
// declarations. Express is stubbed: only this package's types are under test.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "node:test";

const packageDir = fileURLToPath(new URL("..", import.meta.url));
const repoDir = fileURLToPath(new URL("../../..", import.meta.url));
// The product docs page, copied into the repository (and checked byte-equal to
// ../shared/reference by tests/vector_copies.rs when that exists) rather than
// skipped when absent: its server example is the public contract, so a clone
// alone must still type-check it.
const docs = readFileSync(new URL("../../../docs/reference/domvia-chat-sdk-docs.txt", import.meta.url), "utf8");
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

const STUBS = `
declare module "express" {
  interface Request { body: any; headers: Record<string, string | string[] | undefined> }
  interface Response { status(code: number): Response; json(body: unknown): Response; end(): Response }
  type Handler = (request: Request, response: Response) => unknown;
  interface App { use(...args: unknown[]): void; post(path: string, ...handlers: [Handler] | [unknown, Handler]): void }
  interface Express { (): App; urlencoded(options: object): unknown; json(): unknown; raw(options: object): unknown }
  const express: Express;
  export default express;
}
declare function requireSignedInUser(request: unknown): Promise<{ id: string; displayName: string }>;
declare function userCanAccessChatRoom(userId: string, roomId: string): Promise<boolean>;
declare function markOffline(channel: string | undefined, userId: string | undefined): void;
declare const key: string;
declare const secret: string;
`;

/** Puts a snippet's imports first and gives it what it uses but does not define. */
function module(snippet) {
  const imports = snippet.match(/^import[\s\S]*?;\n/gm) ?? [];
  let body = snippet;
  for (const line of imports) body = body.replace(line, "");
  const prelude = [];
  if (/\bapp\./.test(body) && !/const app = /.test(body)) {
    if (!imports.some((line) => line.includes('from "express"'))) prelude.push('import express from "express";');
    prelude.push("const app = express();");
  }
  if (/\brequest\.body/.test(body) && !/app\.post/.test(body)) prelude.push('const request = { body: { socket_id: "1.2" } };');
  return `${imports.join("")}${prelude.join("\n")}\nexport {};\n${body}`;
}

test("the docs' contract example and the README's TypeScript type-check", { timeout: 120_000 }, () => {
  const start = docs.indexOf('import { authorizePrivateChannel } from "@domvia/realtime-server";');
  const end = docs.indexOf("\nSafety", start);
  assert.ok(start >= 0 && end > start, "the docs still have the Trusted server authorization example");
  const snippets = [docs.slice(start, end), ...[...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1])];
  assert.ok(snippets.length >= 6, `found ${snippets.length} snippets`);

  const dir = mkdtempSync(join(tmpdir(), "domvia-realtime-server-docs-"));
  try {
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n');
    writeFileSync(join(dir, "stubs.d.ts"), STUBS);
    for (const [index, snippet] of snippets.entries()) writeFileSync(join(dir, `snippet${index}.ts`), module(snippet));
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022"],
          types: ["node"],
          typeRoots: [join(repoDir, "node_modules/@types")],
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          noEmit: true,
          paths: { "@domvia/realtime-server": [join(packageDir, "dist/index.d.ts")] },
        },
        include: ["*.ts"],
      }),
    );
    const tsc = join(repoDir, "node_modules/typescript/bin/tsc");
    const run = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], { encoding: "utf8", timeout: 100_000 });
    assert.equal(run.status, 0, `tsc failed:\n${run.stdout}${run.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
