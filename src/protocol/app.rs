//! The credentials of one app on a broker.

use std::fmt;

/// The credentials of one broker app, shared by the broker that verifies and
/// the app server that signs.
///
/// `key` is public (clients put it in the WebSocket URL `/app/{key}` and it is
/// the first half of every `auth`); `secret` signs channel access and REST
/// requests and never leaves a server. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// The app id of the REST API paths, `/apps/{id}/...`.
    pub id: String,
    /// The public app key.
    pub key: String,
    /// The shared secret of the HMAC-SHA256 signatures.
    pub secret: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let app = AppCredentials {
            id: "1".into(),
            key: "public-key".into(),
            secret: "s3cr3t".into(),
        };
        let shown = format!("{app:?}");
        assert!(shown.contains("public-key"));
        assert!(!shown.contains("s3cr3t"));
    }
}
