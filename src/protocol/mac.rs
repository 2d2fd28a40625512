//! HMAC-SHA256 as the protocol uses it: lowercase hex out, constant-time checks.

use hmac::digest::Key;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{hex, Error};

type HmacSha256 = Hmac<Sha256>;

/// An HMAC-SHA256 keyed with `secret`, without a fallible constructor.
///
/// HMAC zero-pads a key shorter than the hash block and first hashes a longer
/// one (RFC 2104), so doing that here and passing a full block is the same MAC
/// as `new_from_slice(secret)`, through the infallible `KeyInit::new`.
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut key = Key::<HmacSha256>::default();
    if secret.len() > key.len() {
        key.iter_mut()
            .zip(Sha256::digest(secret).iter())
            .for_each(|(k, d)| *k = *d);
    } else {
        key.iter_mut().zip(secret).for_each(|(k, s)| *k = *s);
    }
    <HmacSha256 as KeyInit>::new(&key)
}

/// Lowercase hex HMAC-SHA256 of `message` under `secret`.
pub(crate) fn sign_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = keyed(secret);
    mac.update(message);
    hex::encode(&mac.finalize().into_bytes())
}

/// Checks a hex HMAC-SHA256 of `message` in constant time.
pub(crate) fn verify_hex(secret: &[u8], message: &[u8], signature_hex: &str) -> Result<(), Error> {
    let signature = hex::decode(signature_hex).ok_or(Error::InvalidSignature)?;
    let mut mac = keyed(secret);
    mac.update(message);
    mac.verify_slice(&signature)
        .map_err(|_| Error::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231 test cases 2 (short key) and 6 (key longer than the block).
    #[test]
    fn rfc4231_vectors() {
        assert_eq!(
            sign_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long_key = [0xaa_u8; 131];
        let message = b"Test Using Larger Than Block-Size Key - Hash Key First";
        let expected = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
        assert_eq!(sign_hex(&long_key, message), expected);
        assert_eq!(verify_hex(&long_key, message, expected), Ok(()));
        let exact_block = [0x0b_u8; 64];
        let mut reference = HmacSha256::new_from_slice(&exact_block).unwrap();
        reference.update(b"x");
        assert_eq!(
            sign_hex(&exact_block, b"x"),
            hex::encode(&reference.finalize().into_bytes())
        );
    }

    #[test]
    fn verify_rejects_bad_signatures() {
        let good = sign_hex(b"k", b"m");
        assert_eq!(verify_hex(b"k", b"m", &good), Ok(()));
        assert_eq!(verify_hex(b"k", b"m", &good.to_uppercase()), Ok(()));
        assert_eq!(verify_hex(b"k", b"n", &good), Err(Error::InvalidSignature));
        assert_eq!(
            verify_hex(b"k", b"m", &good[..62]),
            Err(Error::InvalidSignature)
        );
        assert_eq!(verify_hex(b"k", b"m", ""), Err(Error::InvalidSignature));
        assert_eq!(verify_hex(b"k", b"m", "zz"), Err(Error::InvalidSignature));
    }
}
