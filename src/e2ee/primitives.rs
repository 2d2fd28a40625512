//! The four primitives, behind one small interface each, so the standard
//! known-answer vectors exercise exactly the code the format uses.

use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;

/// AES-GCM tag bytes, appended to every ciphertext.
pub const TAG_BYTES: usize = 16;
/// AES-GCM nonce bytes.
pub const NONCE_BYTES: usize = 12;

/// X25519 (RFC 7748): `scalar` (clamped) times the point with u-coordinate `u`.
pub fn x25519(scalar: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(scalar, u)
}

/// The X25519 public key of a secret scalar.
pub fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*secret);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// X25519 key agreement; `e2ee_invalid_key` when the result is all zero (a
/// small-order public key contributes nothing).
pub fn x25519_shared(secret: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
    let secret = x25519_dalek::StaticSecret::from(*secret);
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(Error::E2eeInvalidKey {
            reason: "the X25519 key is of small order".into(),
        });
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// HKDF-SHA256 (RFC 5869) extract-then-expand into `okm` (at most 8160 bytes).
/// An empty `salt` is the RFC's default (32 zero bytes).
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), Error> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm)
        .map_err(|_| Error::E2eeMalformed {
            reason: "HKDF output longer than 8160 bytes".into(),
        })
}

/// HKDF-SHA256 extract alone: the pseudorandom key.
pub fn hkdf_sha256_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    prk.into()
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// AES-256-GCM encryption: returns `ciphertext || tag` (16 bytes).
pub fn aes256gcm_seal(
    key: &[u8; 32],
    nonce: &[u8; NONCE_BYTES],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let cipher = Aes256Gcm::new(&Array::from(*key));
    let mut out = Vec::with_capacity(plaintext.len() + TAG_BYTES);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_inout_detached(&Array::from(*nonce), aad, out.as_mut_slice().into())
        .map_err(|_| Error::E2eeMalformed {
            reason: "the plaintext is too long for AES-GCM".into(),
        })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// AES-256-GCM decryption of `ciphertext || tag`; `e2ee_decrypt_failed` when
/// the tag does not authenticate the key, nonce, associated data and ciphertext.
pub fn aes256gcm_open(
    key: &[u8; 32],
    nonce: &[u8; NONCE_BYTES],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, Error> {
    let Some(split) = sealed.len().checked_sub(TAG_BYTES) else {
        return Err(Error::E2eeDecryptFailed);
    };
    let cipher = Aes256Gcm::new(&Array::from(*key));
    let mut out = sealed[..split].to_vec();
    let tag: [u8; TAG_BYTES] = sealed[split..]
        .try_into()
        .map_err(|_| Error::E2eeDecryptFailed)?;
    cipher
        .decrypt_inout_detached(
            &Array::from(*nonce),
            aad,
            out.as_mut_slice().into(),
            &Array::from(tag),
        )
        .map_err(|_| Error::E2eeDecryptFailed)?;
    Ok(out)
}
