//! HTTP routes: the broker, the chat backend, health, the built SDK packages
//! and the `www/` demo, on one origin.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domvia_backend::publisher::BrokerUrl;
use domvia_backend::Backend;
use domvia_broker::Broker;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// The npm packages whose build output the demo loads through its import map.
const SERVED_PACKAGES: [&str; 3] = ["realtime", "realtime-chat", "realtime-e2ee"];

/// Where browsers reach the broker, for `GET /api/config`.
#[derive(Clone)]
pub struct BrowserConfig {
    pub app_key: String,
    /// An external broker's URL; `None` for the embedded one, which the
    /// browser reaches at the host it loaded the page from.
    pub external_broker: Option<BrokerUrl>,
}

/// Which `Host` headers the server answers: a defence against DNS rebinding.
///
/// A page of `attacker.test` can make its name resolve to 127.0.0.1 and then
/// call this server as same-origin (dev sign-in, the broker): its requests
/// still say `Host: attacker.test`. So the server answers only names that no
/// attacker can point here: `localhost`, IP addresses (loopback, or the
/// address a remote client typed), and the names of `--allowed-hosts`. The
/// port is not checked: it proves nothing against rebinding, and a dev
/// server's proxy forwards its own (`localhost:5173`).
#[derive(Clone, Debug, Default)]
pub struct HostCheck {
    /// Lower-case `name` (any port) or `name:port` entries.
    pub allowed: Vec<String>,
}

impl HostCheck {
    /// Whether a request with `Host: {authority}` may be answered.
    pub fn allows(&self, authority: &str) -> bool {
        let authority = authority.trim().to_ascii_lowercase();
        let name = host_name(&authority);
        let name = name.strip_suffix('.').unwrap_or(name);
        name == "localhost"
            || name.parse::<IpAddr>().is_ok()
            || self
                .allowed
                .iter()
                .any(|entry| *entry == name || *entry == authority)
    }

    /// The accepted hosts, for the start-up message.
    pub fn describe(&self) -> String {
        let mut text = String::from("localhost, IP addresses");
        for entry in &self.allowed {
            text.push_str(", ");
            text.push_str(entry);
        }
        text
    }
}

/// The host part of an authority: `[::1]:7420` -> `::1`, `a.test:80` -> `a.test`.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(name, _)| name);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

/// Refuses requests (WebSocket upgrades too) whose `Host` is not accepted.
/// A request without one comes from no browser, so it is no rebinding: it passes.
async fn check_host(State(check): State<Arc<HostCheck>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    match host {
        Some(host) if !check.allows(&host) => {
            let message = format!(
                "unable to serve host {host:?}; this development server answers localhost and IP addresses, and names given with --allowed-hosts (DOMVIA_ALLOWED_HOSTS)"
            );
            let body = json!({ "error": { "code": "host_not_allowed", "message": message } });
            (StatusCode::MISDIRECTED_REQUEST, Json(body)).into_response()
        }
        _ => next.run(request).await,
    }
}

pub fn router(
    root: &Path,
    broker: Option<&Broker>,
    backend: &Backend,
    browser: BrowserConfig,
    hosts: HostCheck,
) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        // Browsers ask every page of the origin for /favicon.ico, pages without
        // an icon link too (/healthz, where the SDK tests load): the demo's
        // icon, not a 404 logged as an error in each page's console.
        .route_service(
            "/favicon.ico",
            ServeFile::new(root.join("www").join("favicon.svg")),
        )
        .route(
            "/api/config",
            get(move |headers: HeaderMap| async move { browser_config(&browser, &headers) }),
        )
        .merge(backend.router());
    if let Some(broker) = broker {
        router = router.merge(broker.router());
    }
    for package in SERVED_PACKAGES {
        for part in ["dist", "wasm"] {
            let dir = root.join("packages").join(package).join(part);
            router = router.nest_service(&format!("/sdk/{package}/{part}"), ServeDir::new(dir));
        }
    }
    router
        .fallback_service(ServeDir::new(root.join("www")))
        // Cross-origin isolation gives pages full-resolution performance.now(),
        // which the latency benchmarks need; everything the demo loads is same-origin.
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static("cross-origin-embedder-policy"),
            HeaderValue::from_static("require-corp"),
        ))
        // Pages on another origin (a Vite or Angular dev server) may call the
        // backend with a bearer token; never with credentials, so the session
        // cookie stays same-origin (the backend's CORS policy, API.md).
        .layer(domvia_backend::cors_layer())
        // A development server: always serve the latest build.
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // Outermost: a foreign Host gets no answer from any route.
        .layer(middleware::from_fn_with_state(Arc::new(hosts), check_host))
}

/// The public realtime options a page needs (`DomViaRealtime.create`): never
/// a secret. The embedded broker answers on the page's own host and port.
fn browser_config(config: &BrowserConfig, headers: &HeaderMap) -> Json<Value> {
    let (host, port) = match &config.external_broker {
        // Plain http:// only (the server refuses other URLs at start).
        Some(url) => (url.host().to_owned(), url.port()),
        None => {
            let authority = headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .unwrap_or("127.0.0.1");
            // An IPv6 authority is `[::1]:7420`: the port follows the closing bracket.
            match authority.rsplit_once(':') {
                Some((host, port)) if !port.contains(']') => {
                    (host.to_owned(), port.parse().unwrap_or(80))
                }
                _ => (authority.to_owned(), 80),
            }
        }
    };
    Json(json!({ "key": config.app_key, "host": host, "port": port, "forceTLS": false }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "version": domvia_realtime::VERSION }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check() {
        let check = HostCheck {
            allowed: vec!["chat.test".into(), "dev.example:8443".into()],
        };
        for host in [
            "localhost",
            "localhost:7420",
            "LocalHost.:80",
            "127.0.0.1:7420",
            "[::1]:7420",
            "[::1]",
            "10.0.0.7:7420",
            "chat.test:1",
            "dev.example:8443",
        ] {
            assert!(check.allows(host), "{host}");
        }
        for host in [
            "attacker.test:7420",
            "localhost.attacker.test",
            "127.0.0.1.attacker.test:7420",
            "dev.example",
            "dev.example:1",
            "",
            "[::1",
        ] {
            assert!(!check.allows(host), "{host}");
        }
    }
}
