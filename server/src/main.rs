//! `domvia-server`: the embedded development server.
//!
//! Prints exactly one `listening on http://HOST:PORT` line on stdout once the
//! socket accepts connections (tests and scripts wait for it), and exits 0 on
//! SIGINT or SIGTERM after in-flight requests finish.

mod config;
mod routes;

use config::Config;
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
    let listener = match TcpListener::bind((config.host, config.port)).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!(
                "domvia-server: unable to listen on {}:{}; {err}",
                config.host, config.port
            );
            return ExitCode::from(1);
        }
    };
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(err) => {
            eprintln!("domvia-server: unable to read the bound address; {err}");
            return ExitCode::from(1);
        }
    };
    println!("listening on http://{address}");
    let _ = std::io::stdout().flush();

    let served = axum::serve(listener, routes::router(&config.root))
        .with_graceful_shutdown(shutdown_requested())
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("domvia-server: {err}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_requested() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
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
