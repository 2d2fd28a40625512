#![cfg(not(target_arch = "wasm32"))]
//! The TypeScript error codes against their sources of truth:
//!
//! - `CoreErrorCode` in `packages/realtime/src/errors.ts` is `ALL_CODES`
//!   (src/error.rs), in the same order;
//! - `SdkErrorCode` there, the registry of codes raised only by the TS layer,
//!   shares no code with the core;
//! - `BackendErrorCode` there is the "Error codes" table of
//!   `server/backend/API.md`;
//! - every code literal the packages' sources make an error with (`chatError`,
//!   `e2eeError`, `new DomViaError`), put in a `code:` field or compare a
//!   `code` with is in `DomViaErrorCode`, and every `new DomViaServerError`
//!   code of `@domvia/realtime-server` is in its `DomViaServerErrorCode`;
//! - the per-package unions `ChatErrorCode` and `E2eeErrorCode` are inside
//!   `DomViaErrorCode`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use domvia_realtime::ALL_CODES;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    let path = Path::new(ROOT).join(path);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"))
}

/// The string literal at the start of `text` (after whitespace), if any.
fn literal_at(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

/// The members of `export type NAME = | "a" | "b";` in `source`, in order.
/// Comments (which may hold quotes and semicolons) are skipped.
fn union(source: &str, name: &str, file: &str) -> Vec<String> {
    let head = format!("export type {name} =");
    let start = source
        .find(&head)
        .unwrap_or_else(|| panic!("{file} has no `{head}`"))
        + head.len();
    let mut rest = &source[start..];
    let mut members = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("//") {
            rest = &after[after.find('\n').unwrap_or(after.len())..];
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = &after[after.find("*/").expect("a closed comment") + 2..];
        } else if let Some(after) = rest.strip_prefix('|') {
            rest = after;
        } else if let Some(literal) = literal_at(rest) {
            members.push(literal.to_owned());
            rest = &rest.trim_start()[literal.len() + 2..];
        } else if rest.starts_with(';') {
            break;
        } else {
            panic!(
                "{file}: {name} has something other than string literals: {:?}",
                &rest[..rest.len().min(40)]
            );
        }
    }
    assert!(!members.is_empty(), "{file}: {name} has no members");
    members
}

fn set(codes: &[String]) -> BTreeSet<&str> {
    codes.iter().map(String::as_str).collect()
}

fn no_duplicates(codes: &[String], what: &str) {
    assert_eq!(set(codes).len(), codes.len(), "{what} lists a code twice");
}

const ERRORS_TS: &str = "packages/realtime/src/errors.ts";

struct Unions {
    core: Vec<String>,
    sdk: Vec<String>,
    backend: Vec<String>,
}

fn unions() -> Unions {
    let source = read(ERRORS_TS);
    assert!(
        source.contains(
            "export type DomViaErrorCode = CoreErrorCode | SdkErrorCode | BackendErrorCode;"
        ),
        "{ERRORS_TS}: DomViaErrorCode is no longer the union of the three registries"
    );
    Unions {
        core: union(&source, "CoreErrorCode", ERRORS_TS),
        sdk: union(&source, "SdkErrorCode", ERRORS_TS),
        backend: union(&source, "BackendErrorCode", ERRORS_TS),
    }
}

/// Every code the TS `DomViaErrorCode` admits.
fn domvia_error_codes() -> BTreeSet<String> {
    let Unions { core, sdk, backend } = unions();
    core.into_iter().chain(sdk).chain(backend).collect()
}

#[test]
fn the_ts_core_codes_are_all_codes_in_order() {
    let core = unions().core;
    assert_eq!(
        core, ALL_CODES,
        "CoreErrorCode in {ERRORS_TS} must list ALL_CODES of src/error.rs, in order"
    );
}

#[test]
fn the_ts_only_registry_shares_no_code_with_the_core() {
    let sdk = unions().sdk;
    no_duplicates(&sdk, "SdkErrorCode");
    for code in &sdk {
        assert!(
            !ALL_CODES.contains(&code.as_str()),
            "{code} is raised by the core; it belongs in CoreErrorCode, not SdkErrorCode"
        );
    }
}

#[test]
fn the_ts_backend_codes_are_the_api_table() {
    let api = read("server/backend/API.md");
    let table = &api[api
        .find("## Error codes")
        .expect("API.md has an Error codes section")..];
    let mut documented = BTreeSet::new();
    for line in table.lines().skip(1) {
        if line.starts_with("## ") {
            break;
        }
        // | 400 | `invalid_body` | ... |
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 && cells[1].bytes().all(|b| b.is_ascii_digit()) && !cells[1].is_empty() {
            if let Some(code) = cells[2].strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                documented.insert(code.to_owned());
            }
        }
    }
    assert!(documented.len() > 10, "the API.md table was not found");
    let backend = unions().backend;
    no_duplicates(&backend, "BackendErrorCode");
    let listed: BTreeSet<String> = backend.into_iter().collect();
    assert_eq!(
        listed, documented,
        "BackendErrorCode in {ERRORS_TS} must be the codes of server/backend/API.md's table"
    );
}

/// Every `.ts` file under `dir`.
fn ts_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap_or_else(|e| panic!("read {current:?}: {e}")) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "ts") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code literals `source` uses: first arguments of the error makers in
/// `makers`, values of `code:` fields, and literals a `code` (a variable, a
/// field, `codeOf(...)`) is compared with by `===`/`!==`.
fn code_literals<'a>(source: &'a str, makers: &[&str]) -> Vec<&'a str> {
    let mut found = Vec::new();
    for maker in makers.iter().chain(&["code: "]) {
        let mut rest = source;
        while let Some(at) = rest.find(maker) {
            rest = &rest[at + maker.len()..];
            if let Some(code) = literal_at(rest) {
                found.push(code);
            }
        }
    }
    for operator in ["=== ", "!== "] {
        let mut offset = 0;
        while let Some(at) = source[offset..].find(operator) {
            let at = offset + at;
            offset = at + operator.len();
            // What is compared: the end of the left-hand side on this line.
            let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
            let left = source[line_start..at].trim_end();
            let left = left
                .rsplit(['(', '|', '&', '!', ' '])
                .find(|s| !s.is_empty())
                .unwrap_or(left);
            let compares_a_code = !source[line_start..at].contains("typeof ")
                && (left.ends_with("code")
                    || left.ends_with("code)")
                    || left.ends_with(".code as string)")
                    || source[line_start..at]
                        .trim_end()
                        .ends_with("code as string)")
                    || source[line_start..at].contains("codeOf(") && left.ends_with(')'));
            if compares_a_code {
                if let Some(code) = literal_at(&source[offset..]) {
                    found.push(code);
                }
            }
        }
    }
    found
}

#[test]
fn every_code_the_packages_use_is_registered() {
    let known = domvia_error_codes();
    let server_source = read("packages/realtime-server/src/errors.ts");
    let server_known: BTreeSet<String> = union(
        &server_source,
        "DomViaServerErrorCode",
        "packages/realtime-server/src/errors.ts",
    )
    .into_iter()
    .collect();

    let mut checked = 0;
    let mut missing = Vec::new();
    let packages = Path::new(ROOT).join("packages");
    for entry in fs::read_dir(&packages).expect("packages/") {
        let src = entry.expect("entry").path().join("src");
        if !src.is_dir() {
            continue;
        }
        let server = src.starts_with(packages.join("realtime-server"));
        let (makers, registry, name): (&[&str], _, _) = if server {
            (
                &["new DomViaServerError("],
                &server_known,
                "DomViaServerErrorCode",
            )
        } else {
            (
                &["chatError(", "e2eeError(", "new DomViaError("],
                &known,
                "DomViaErrorCode",
            )
        };
        for file in ts_files(&src) {
            let source = fs::read_to_string(&file).expect("read a source");
            for code in code_literals(&source, makers) {
                checked += 1;
                if !registry.contains(code) {
                    missing.push(format!("{code:?} ({}) is not in {name}", file.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unregistered codes:\n{}",
        missing.join("\n")
    );
    assert!(
        checked > 50,
        "only {checked} code literals found: is the scan broken?"
    );
}

#[test]
fn the_package_unions_are_inside_domvia_error_code() {
    let known = domvia_error_codes();
    for (file, name) in [
        ("packages/realtime-chat/src/types.ts", "ChatErrorCode"),
        ("packages/realtime-e2ee/src/types.ts", "E2eeErrorCode"),
    ] {
        for code in union(&read(file), name, file) {
            assert!(
                known.contains(&code),
                "{code} of {name} ({file}) is not in DomViaErrorCode"
            );
        }
    }
}

#[test]
fn the_scan_finds_what_it_should() {
    let source = r#"
        throw chatError(
          "room_left", "x");
        if (codeOf(thrown) !== "share_not_found") throw thrown;
        if ((error.code as string) === "network_error") {}
        const result = { ok: false, code: "e2ee_replay" };
        if (code !== "epoch_conflict" && code !== "shares_incomplete") {}
        if (kind === "private") {}
        const code = typeof error?.code === "string" ? error.code : "x";
    "#;
    let mut found = code_literals(source, &["chatError("]);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "e2ee_replay",
            "epoch_conflict",
            "network_error",
            "room_left",
            "share_not_found",
            "shares_incomplete",
        ]
    );
}
