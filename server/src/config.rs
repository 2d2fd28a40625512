//! Server configuration: flags win over environment variables, which win over
//! defaults that just work on a developer's machine.

use std::net::IpAddr;
use std::path::PathBuf;

/// The port the demo uses when none is given. `0` asks the OS for a free one.
pub const DEFAULT_PORT: u16 = 7420;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// The repository root: `www/` and the built `packages/*` are served from it.
    pub root: PathBuf,
}

impl Config {
    /// Reads `DOMVIA_HOST`, `DOMVIA_PORT`, `DOMVIA_ROOT` from `env`, then
    /// `--host`, `--port`, `--root` from `args` (which win).
    pub fn from_env_and_args(
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Config, String> {
        let mut host = env("DOMVIA_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
        let mut port = env("DOMVIA_PORT").unwrap_or_else(|| DEFAULT_PORT.to_string());
        let mut root = env("DOMVIA_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(default_root);

        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--host" => host = value()?,
                "--port" => port = value()?,
                "--root" => root = PathBuf::from(value()?),
                "--help" | "-h" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }

        let host = host
            .parse()
            .map_err(|_| format!("DOMVIA_HOST/--host {host:?} is not an IP address"))?;
        let port = port
            .parse()
            .map_err(|_| format!("DOMVIA_PORT/--port {port:?} is not a port number"))?;
        Ok(Config { host, port, root })
    }
}

const USAGE: &str =
    "usage: domvia-server [--host IP] [--port PORT (0 = any free port)] [--root REPO_DIR]";

/// The checkout this binary was built from, so `cargo run` works from anywhere.
fn default_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
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
    fn defaults_bind_loopback_on_the_demo_port() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config.host.to_string(), "127.0.0.1");
        assert_eq!(config.port, DEFAULT_PORT);
    }

    #[test]
    fn flags_override_environment() {
        let config = parse(&[("DOMVIA_PORT", "9000")], &["--port", "0"]).unwrap();
        assert_eq!(config.port, 0);
        let config = parse(&[("DOMVIA_PORT", "9000")], &[]).unwrap();
        assert_eq!(config.port, 9000);
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
    }
}
