//! `domvia-server`: the embedded development server. One process is the
//! Pusher-compatible broker, the reference chat backend (SQLite) and the demo.
//!
//! Prints exactly one `listening on http://HOST:PORT` line on stdout once the
//! socket accepts connections (tests and scripts wait for it); everything else
//! goes to stderr. On SIGINT or SIGTERM it closes the broker's sockets (4200:
//! reconnect now), finishes in-flight requests, checkpoints SQLite and exits 0.

mod config;
mod routes;
mod serve;

use config::Config;
use domvia_backend::publisher::BrokerUrl;
use domvia_backend::{Backend, BackendConfig};
use domvia_broker::{Broker, Limits};
use domvia_realtime::protocol::AppCredentials;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::ExitCode;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env_and_args(
        |name| std::env::var(name).ok(),
        std::env::args().skip(1),
    ) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("domvia-server: {message}");
            return ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("domvia-server: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
    let listener = TcpListener::bind((config.host, config.port))
        .await
        .map_err(|err| format!("unable to listen on {}:{}; {err}", config.host, config.port))?;
    let address = listener
        .local_addr()
        .map_err(|err| format!("unable to read the bound address; {err}"))?;

    let app = AppCredentials {
        id: config.app_id.clone(),
        key: config.app_key.clone(),
        secret: config.app_secret.clone(),
    };
    // The backend publishes through the broker's signed REST API exactly as it
    // would to any Pusher-compatible broker: the embedded one is just local.
    let broker = match config.external_broker {
        Some(_) => None,
        None => Some(Broker::new(
            app.clone(),
            Limits {
                client_events_per_second: config.client_events_per_second,
                ..Limits::default()
            },
        )),
    };
    let broker_url = config
        .external_broker
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));

    if config.database != ":memory:" {
        if let Some(dir) = std::path::Path::new(&config.database).parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("unable to create {}; {err}", dir.display()))?;
        }
    }
    let backend = Backend::open(BackendConfig {
        database: config.database.clone(),
        app,
        broker_url: Some(broker_url.clone()),
        session_secret: session_secret(&config.app_secret),
        limits: config.backend_limits(),
    })
    .map_err(|err| format!("unable to open the database {}; {err}", config.database))?;

    let browser = routes::BrowserConfig {
        app_key: config.app_key.clone(),
        external_broker: config
            .external_broker
            .as_deref()
            .map(BrokerUrl::parse)
            .transpose()
            .map_err(|err| err.to_string())?,
    };
    let hosts = routes::HostCheck {
        allowed: config.allowed_hosts.clone(),
    };
    let accepted_hosts = hosts.describe();
    let router = routes::router(&config.root, broker.as_ref(), &backend, browser, hosts);

    eprintln!("domvia-server {}", domvia_realtime::VERSION);
    eprintln!("  app id {}, key {}", config.app_id, config.app_key);
    if config.uses_dev_credentials() {
        eprintln!(
            "  secret {} (development default: set DOMVIA_APP_SECRET outside development)",
            config.app_secret
        );
    }
    match &broker {
        Some(_) => eprintln!("  broker ws://{address}/app/{}", config.app_key),
        None => eprintln!("  backend only: publishing to {broker_url}"),
    }
    eprintln!("  database {}", config.database);
    if config.allow_remote || !config.allowed_hosts.is_empty() {
        eprintln!(
            "  accepting requests with Host: {accepted_hosts} (more names with --allowed-hosts)"
        );
    }
    match config.max_connections_per_ip {
        0 => eprintln!("  no limit on connections per client address"),
        max => eprintln!("  at most {max} connections per client address"),
    }
    println!("listening on http://{address}");
    // A closed stdout only means nobody waits for the line above.
    std::io::stdout().flush().ok();

    let limits = serve::ConnectionLimits {
        header_timeout: std::time::Duration::from_secs(config.header_timeout_secs),
        max_per_ip: config.max_connections_per_ip,
    };
    let stopping_broker = broker.clone();
    serve::serve(listener, router, limits, async move {
        shutdown_requested().await;
        if let Some(broker) = stopping_broker {
            broker.shutdown().await;
        }
    })
    .await;
    backend
        .close()
        .map_err(|err| format!("unable to close the database cleanly; {err}"))
}

/// Session tokens are keyed from the app secret, so they survive a restart
/// without another setting, and rotate with it.
fn session_secret(app_secret: &str) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"domvia-session-v1\0")
        .chain_update(app_secret.as_bytes())
        .finalize()
        .to_vec()
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_requested() {
    // Without a Ctrl-C handler only SIGTERM stops the server (an `Err` here
    // must not read as a Ctrl-C and stop it at once).
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
