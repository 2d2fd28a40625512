//! The E2EE known answers again, in a real browser, on the wasm build.
//!
//! wasm32 builds select other software backends than native ones
//! (.cargo/config.toml: sha2's and aes's compact rounds), so the crypto the
//! E2EE module ships is not the code tests/e2ee.rs runs natively. This suite
//! runs the same checks (tests/support/crypto_vectors.rs) on the shipped
//! code: the published primitive vectors (tests/vectors/crypto/standard.json)
//! and this format's own (tests/vectors/e2ee.json: Ed25519 records over
//! SHA-512, key shares, SHA-256 digests, sealed envelopes).
//!
//! Run with: wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
//!   --mode no-install . --test wasm_crypto_vectors
#![cfg(target_arch = "wasm32")]

#[path = "support/crypto_vectors.rs"]
mod crypto_vectors;

use crypto_vectors::to_hex;
use domvia_realtime::e2ee::primitives::sha256;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn sha256_known_answers() {
    // FIPS 180-2 examples: one block, and two (the padding spills over).
    assert_eq!(
        to_hex(&sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        to_hex(&sha256(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[wasm_bindgen_test]
fn standard_x25519() {
    crypto_vectors::check_x25519();
}

#[wasm_bindgen_test]
fn standard_x25519_dh() {
    crypto_vectors::check_x25519_dh();
}

#[wasm_bindgen_test]
fn standard_hkdf_sha256() {
    crypto_vectors::check_hkdf_sha256();
}

#[wasm_bindgen_test]
fn standard_aes256gcm() {
    crypto_vectors::check_aes256gcm();
}

#[wasm_bindgen_test]
fn own_vectors_open_from_the_file() {
    crypto_vectors::check_own_vectors_open();
}
