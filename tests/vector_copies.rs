#![cfg(not(target_arch = "wasm32"))]
//! `tests/vectors/` holds copies of the project's shared vectors, and
//! `docs/reference/` a copy of the product docs page, so a clone of the
//! repository alone runs every test. When the originals exist beside the
//! checkout (`../shared/`), the copies must be byte-equal to them, and every
//! shared vector file must have its copy. Without `../shared` there is nothing
//! to compare: the test says so and passes.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every file under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs::read_dir(&current).unwrap_or_else(|e| panic!("read {current:?}: {e}")) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn assert_same_bytes(original: &Path, copy: &Path) {
    let want = fs::read(original).unwrap_or_else(|e| panic!("read {original:?}: {e}"));
    let have = fs::read(copy)
        .unwrap_or_else(|e| panic!("{copy:?} is missing ({e}); copy {original:?} there"));
    assert!(
        want == have,
        "{copy:?} differs from {original:?}; copy the original over it"
    );
}

#[test]
fn copies_equal_the_shared_originals() {
    let shared = Path::new(ROOT).join("../shared");
    let vectors = shared.join("vectors");
    if !vectors.is_dir() {
        println!(
            "note: {} does not exist; the copies in tests/vectors and docs/reference are not compared",
            vectors.display()
        );
        return;
    }
    let originals: Vec<PathBuf> = files_under(&vectors)
        .into_iter()
        // The shared README describes the shared layout; ours (tests/vectors/README.md) says where the copies came from.
        .filter(|path| path != Path::new("README.md"))
        .collect();
    assert!(!originals.is_empty(), "{vectors:?} has no vector files");
    for path in &originals {
        assert_same_bytes(
            &vectors.join(path),
            &Path::new(ROOT).join("tests/vectors").join(path),
        );
    }
    let docs = shared.join("reference/domvia-chat-sdk-docs.txt");
    if docs.is_file() {
        assert_same_bytes(
            &docs,
            &Path::new(ROOT).join("docs/reference/domvia-chat-sdk-docs.txt"),
        );
    }
}
