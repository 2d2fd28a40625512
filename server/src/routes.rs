//! HTTP routes: the broker, the chat backend, health, the built SDK packages
//! and the `www/` demo, on one origin.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::routing::get;
use axum::{Json, Router};
use domvia_backend::publisher::BrokerUrl;
use domvia_backend::Backend;
use domvia_broker::Broker;
use serde_json::{json, Value};
use std::path::Path;
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

pub fn router(
    root: &Path,
    broker: Option<&Broker>,
    backend: &Backend,
    browser: BrowserConfig,
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
