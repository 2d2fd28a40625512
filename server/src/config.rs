//! Server configuration: flags win over environment variables, which win over
//! defaults that just work on a developer's machine.

use std::net::IpAddr;
use std::path::PathBuf;

use domvia_backend::{Limits, Rate};

/// The port the demo uses when none is given. `0` asks the OS for a free one.
pub const DEFAULT_PORT: u16 = 7420;

/// Development app credentials. Printed at start; never use them in production.
pub const DEV_APP_ID: &str = "domvia-dev";
pub const DEV_APP_KEY: &str = "domvia-dev-key";
pub const DEV_APP_SECRET: &str = "domvia-dev-secret";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// The repository root: `www/` and the built `packages/*` are served from it.
    pub root: PathBuf,
    /// A SQLite file path, or `:memory:`.
    pub database: String,
    pub app_id: String,
    pub app_key: String,
    pub app_secret: String,
    /// Backend-only mode: publish to this Pusher-compatible broker (for example
    /// `http://127.0.0.1:6001`) instead of running the embedded one.
    pub external_broker: Option<String>,
    /// Client events per second per connection on the embedded broker (0 = unlimited).
    pub client_events_per_second: u32,
    /// Listening on an address other than loopback was asked for explicitly:
    /// dev sign-in lets anyone who reaches the port be anyone.
    pub allow_remote: bool,
    /// Host names (`name` or `name:port`) accepted in the `Host` header
    /// besides `localhost` and IP addresses (see `routes::HostCheck`).
    pub allowed_hosts: Vec<String>,
    /// Open TCP connections (HTTP and WebSocket) from one IP address; 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers, counted from the
    /// connection's opening or the end of the previous response (so it is
    /// also the keep-alive idle timeout).
    pub header_timeout_secs: u64,
    /// Whether the backend's HTTP rate limits are on (`API.md`, "Limits").
    pub rate_limits: bool,
    /// Messages per second one user may send (the burst is 5 times that).
    pub sends_per_second: u32,
    /// Device records per user (one more replaces the least recently registered).
    pub devices_per_user: usize,
}

/// Connections one IP address may hold open by default: far above what a
/// browser opens (6 HTTP connections per host, plus its WebSockets), far below
/// the file descriptors of a process. Benchmarks that open 1,000 sockets from
/// one address set 0 (unlimited).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// Seconds to send a request's headers by default: a browser sends them at
/// once, a client on a bad network within a few seconds.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 10;

/// The flag that takes no value.
const ALLOW_REMOTE_FLAG: &str = "--allow-remote";

/// Every setting: (flag, environment variable, what it is).
const SETTINGS: [(&str, &str, &str); 16] = [
    (
        "--host",
        "DOMVIA_HOST",
        "IP address to listen on (127.0.0.1)",
    ),
    ("--port", "DOMVIA_PORT", "port (7420; 0 picks a free one)"),
    (
        "--root",
        "DOMVIA_ROOT",
        "repository root holding www/ and packages/ (this checkout)",
    ),
    (
        "--db",
        "DOMVIA_DB",
        "SQLite file, or :memory: (ROOT/data/domvia.sqlite)",
    ),
    ("--app-id", "DOMVIA_APP_ID", "broker app id"),
    ("--app-key", "DOMVIA_APP_KEY", "broker app key (public)"),
    ("--app-secret", "DOMVIA_APP_SECRET", "broker app secret"),
    (
        "--broker",
        "DOMVIA_BROKER_URL",
        "publish to this external broker, backend only",
    ),
    (
        "--client-events-per-second",
        "DOMVIA_CLIENT_EVENTS_PER_SECOND",
        "client-event limit (10)",
    ),
    (
        ALLOW_REMOTE_FLAG,
        "DOMVIA_ALLOW_REMOTE",
        "(no value; env 1) allow a --host other than loopback",
    ),
    (
        "--allowed-hosts",
        "DOMVIA_ALLOWED_HOSTS",
        "more Host header names, comma-separated (localhost and IPs)",
    ),
    (
        "--max-connections-per-ip",
        "DOMVIA_MAX_CONNECTIONS_PER_IP",
        "open connections per client IP (256; 0 = unlimited)",
    ),
    (
        "--header-timeout",
        "DOMVIA_HEADER_TIMEOUT",
        "seconds to send request headers, and keep-alive idle time (10)",
    ),
    (
        "--rate-limits",
        "DOMVIA_RATE_LIMITS",
        "backend HTTP rate limits: on or off (on)",
    ),
    (
        "--sends-per-second",
        "DOMVIA_SENDS_PER_SECOND",
        "messages per second per user, burst 5x (20)",
    ),
    (
        "--devices-per-user",
        "DOMVIA_DEVICES_PER_USER",
        "E2EE device records per user (10)",
    ),
];

impl Config {
    /// Reads the `DOMVIA_*` variables from `env`, then flags from `args` (which win).
    pub fn from_env_and_args(
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Config, String> {
        let mut values: Vec<Option<String>> = SETTINGS.iter().map(|(_, var, _)| env(var)).collect();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            if flag == "--help" || flag == "-h" {
                return Err(usage());
            }
            let Some(index) = SETTINGS.iter().position(|(name, _, _)| *name == flag) else {
                return Err(format!("unknown argument {flag:?}\n{}", usage()));
            };
            let value = if flag == ALLOW_REMOTE_FLAG {
                "1".to_owned()
            } else {
                args.next().ok_or_else(|| format!("{flag} needs a value"))?
            };
            values[index] = Some(value);
        }
        let [host, port, root, database, app_id, app_key, app_secret, broker, client_events, allow_remote, allowed_hosts, per_ip, header_timeout, rate_limits, sends, devices] =
            <[Option<String>; 16]>::try_from(values).map_err(|_| usage())?;

        let host = host.unwrap_or_else(|| "127.0.0.1".to_owned());
        let host = host
            .parse()
            .map_err(|_| format!("DOMVIA_HOST/--host {host:?} is not an IP address"))?;
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| format!("DOMVIA_PORT/--port {port:?} is not a port number"))?,
            None => DEFAULT_PORT,
        };
        let root = root.map(PathBuf::from).unwrap_or_else(default_root);
        let database = database.unwrap_or_else(|| {
            root.join("data")
                .join("domvia.sqlite")
                .to_string_lossy()
                .into_owned()
        });
        let client_events_per_second = match client_events {
            Some(value) => value.parse().map_err(|_| {
                format!("DOMVIA_CLIENT_EVENTS_PER_SECOND {value:?} is not a whole number")
            })?,
            None => 10,
        };
        let rate_limits = match rate_limits.as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(format!("DOMVIA_RATE_LIMITS {other:?} must be on or off")),
        };
        let sends_per_second = match sends {
            Some(value) => value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("DOMVIA_SENDS_PER_SECOND {value:?} is not a whole number above 0")
            })?,
            None => 20,
        };
        let devices_per_user = match devices {
            Some(value) => value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("DOMVIA_DEVICES_PER_USER {value:?} is not a whole number above 0")
            })?,
            None => Limits::default().devices_per_user,
        };
        let external_broker = broker.filter(|url| !url.is_empty());
        if let Some(url) = &external_broker {
            if !url.starts_with("http://") {
                return Err(format!(
                    "DOMVIA_BROKER_URL/--broker {url:?} must be an http:// URL (TLS is not supported yet)"
                ));
            }
        }
        let allow_remote = match allow_remote.as_deref() {
            None | Some("" | "0" | "false") => false,
            Some("1" | "true") => true,
            Some(other) => {
                return Err(format!(
                    "DOMVIA_ALLOW_REMOTE {other:?} is not 1 or 0 (or true or false)"
                ))
            }
        };
        // Dev sign-in lets whoever reaches the port be any user: listening
        // beyond this machine must be asked for.
        if !allow_remote && !is_loopback(host) {
            return Err(format!(
                "refusing to listen on {host}: it is not a loopback address, and this server's dev sign-in lets anyone who reaches it act as any user; pass --allow-remote (DOMVIA_ALLOW_REMOTE=1) to listen beyond this machine"
            ));
        }
        let allowed_hosts = allowed_hosts
            .unwrap_or_default()
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        let max_connections_per_ip = match per_ip {
            Some(value) => value.parse().map_err(|_| {
                format!("DOMVIA_MAX_CONNECTIONS_PER_IP/--max-connections-per-ip {value:?} is not a whole number")
            })?,
            None => DEFAULT_MAX_CONNECTIONS_PER_IP,
        };
        let header_timeout_secs = match header_timeout {
            Some(value) => match value.parse() {
                Ok(secs) if secs > 0 => secs,
                _ => {
                    return Err(format!(
                        "DOMVIA_HEADER_TIMEOUT/--header-timeout {value:?} is not a whole number of seconds above 0"
                    ))
                }
            },
            None => DEFAULT_HEADER_TIMEOUT_SECS,
        };
        Ok(Config {
            host,
            port,
            root,
            database,
            app_id: app_id.unwrap_or_else(|| DEV_APP_ID.to_owned()),
            app_key: app_key.unwrap_or_else(|| DEV_APP_KEY.to_owned()),
            app_secret: app_secret.unwrap_or_else(|| DEV_APP_SECRET.to_owned()),
            external_broker,
            client_events_per_second,
            allow_remote,
            allowed_hosts,
            max_connections_per_ip,
            header_timeout_secs,
            rate_limits,
            sends_per_second,
            devices_per_user,
        })
    }

    /// The backend's limits from these settings.
    pub fn backend_limits(&self) -> Limits {
        let mut limits = if self.rate_limits {
            Limits::default()
        } else {
            Limits::without_rate_limits()
        };
        limits.devices_per_user = self.devices_per_user;
        if self.rate_limits {
            limits.sends_per_user = Some(Rate::per_second(
                self.sends_per_second,
                self.sends_per_second.saturating_mul(5),
            ));
        }
        limits
    }

    /// Whether the app credentials are the published development defaults.
    pub fn uses_dev_credentials(&self) -> bool {
        self.app_secret == DEV_APP_SECRET
    }
}

/// 127.0.0.0/8, ::1, and ::ffff:127.0.0.0/104 (IPv4 loopback written as IPv6).
fn is_loopback(host: IpAddr) -> bool {
    host.to_canonical().is_loopback()
}

fn usage() -> String {
    let mut text = String::from("usage: domvia-server [FLAG VALUE]...\n");
    for (flag, var, about) in SETTINGS {
        text.push_str(&format!("  {flag:<28} {var:<32} {about}\n"));
    }
    text
}

/// The checkout this binary was built from, so `cargo run` works from anywhere.
fn default_root() -> PathBuf {
    let server_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    server_dir.parent().unwrap_or(server_dir).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<Config, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_env_and_args(
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            args.iter().map(|s| s.to_string()),
        )
    }

    #[test]
    fn defaults_just_work_on_loopback() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(config.port, DEFAULT_PORT);
        assert!(config.database.ends_with("data/domvia.sqlite"));
        assert_eq!(config.app_key, DEV_APP_KEY);
        assert!(config.uses_dev_credentials());
        assert_eq!(config.external_broker, None);
        assert_eq!(config.client_events_per_second, 10);
        assert_eq!(config.backend_limits(), Limits::default());
    }

    #[test]
    fn backend_limits_are_configurable() {
        let config = parse(
            &[("DOMVIA_SENDS_PER_SECOND", "50")],
            &["--devices-per-user", "3"],
        )
        .unwrap();
        let limits = config.backend_limits();
        assert_eq!(limits.devices_per_user, 3);
        assert_eq!(limits.sends_per_user, Some(Rate::per_second(50, 250)));
        let off = parse(&[], &["--rate-limits", "off"])
            .unwrap()
            .backend_limits();
        assert_eq!(off.sends_per_user, None);
        assert_eq!(off.sign_ins_per_ip, None);
        assert!(parse(&[], &["--rate-limits", "maybe"]).is_err());
        assert!(parse(&[], &["--sends-per-second", "0"]).is_err());
    }

    #[test]
    fn flags_override_environment() {
        let config = parse(&[("DOMVIA_PORT", "9000")], &["--port", "0"]).unwrap();
        assert_eq!(config.port, 0);
        let config = parse(&[("DOMVIA_PORT", "9000"), ("DOMVIA_DB", ":memory:")], &[]).unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.database, ":memory:");
        let config = parse(
            &[("DOMVIA_APP_SECRET", "s3")],
            &["--broker", "http://127.0.0.1:6001"],
        )
        .unwrap();
        assert!(!config.uses_dev_credentials());
        assert_eq!(
            config.external_broker.as_deref(),
            Some("http://127.0.0.1:6001")
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        assert!(parse(&[("DOMVIA_PORT", "http")], &[])
            .unwrap_err()
            .contains("not a port"));
        assert!(parse(&[], &["--host", "localhost!"])
            .unwrap_err()
            .contains("not an IP"));
        assert!(parse(&[], &["--port"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&[], &["--bogus"])
            .unwrap_err()
            .contains("unknown argument"));
        assert!(parse(&[], &["--broker", "https://x"])
            .unwrap_err()
            .contains("http://"));
        assert!(parse(&[("DOMVIA_CLIENT_EVENTS_PER_SECOND", "-1")], &[])
            .unwrap_err()
            .contains("whole number"));
        assert!(parse(&[], &["--header-timeout", "0"])
            .unwrap_err()
            .contains("above 0"));
        assert!(parse(&[("DOMVIA_ALLOW_REMOTE", "yes")], &[])
            .unwrap_err()
            .contains("DOMVIA_ALLOW_REMOTE"));
    }

    #[test]
    fn listening_off_loopback_needs_allow_remote() {
        for host in ["0.0.0.0", "::", "192.168.1.5"] {
            let err = parse(&[], &["--host", host]).unwrap_err();
            assert!(err.contains("--allow-remote"), "{err}");
            assert!(parse(&[], &["--host", host, "--allow-remote"]).is_ok());
            assert!(parse(&[("DOMVIA_ALLOW_REMOTE", "1")], &["--host", host]).is_ok());
        }
        for host in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(parse(&[], &["--host", host]).is_ok(), "{host}");
        }
    }

    #[test]
    fn connection_limits() {
        let config = parse(&[], &[]).unwrap();
        assert!(!config.allow_remote);
        assert!(config.allowed_hosts.is_empty());
        assert_eq!(config.max_connections_per_ip, 256);
        assert_eq!(config.header_timeout_secs, 10);
        let config = parse(
            &[
                ("DOMVIA_MAX_CONNECTIONS_PER_IP", "0"),
                ("DOMVIA_ALLOWED_HOSTS", "a.test"),
            ],
            &[
                "--allowed-hosts",
                " Chat.Test ,,b.test:8080",
                "--header-timeout",
                "2",
            ],
        )
        .unwrap();
        assert_eq!(config.max_connections_per_ip, 0);
        assert_eq!(config.allowed_hosts, ["chat.test", "b.test:8080"]);
        assert_eq!(config.header_timeout_secs, 2);
    }
}
