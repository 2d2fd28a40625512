//! Runs the real `domvia-server` binary on a free loopback port and talks HTTP
//! to it over a real socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const STARTUP_LIMIT: Duration = Duration::from_secs(20);

struct RunningServer {
    child: Child,
    address: String,
    stderr: Arc<Mutex<String>>,
}

/// Starts the server binary with `args` (and an in-memory database).
fn spawn(args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_domvia-server"))
        .args(args)
        .env("DOMVIA_DB", ":memory:")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn domvia-server");
    let stderr = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().expect("stderr is piped");
    let text = Arc::clone(&stderr);
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("server: {line}");
            let mut text = text.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    (child, stderr)
}

impl RunningServer {
    fn start() -> RunningServer {
        RunningServer::start_with(&["--host", "127.0.0.1", "--port", "0"])
    }

    fn start_with(args: &[&str]) -> RunningServer {
        let (mut child, stderr) = spawn(args);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match lines_rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    child.kill().ok();
                    child.wait().ok();
                    panic!("domvia-server printed no listening line within {STARTUP_LIMIT:?}");
                }
            };
            if let Some(address) = line.strip_prefix("listening on http://") {
                return RunningServer {
                    child,
                    address: address.to_owned(),
                    stderr,
                };
            }
        }
    }

    /// One HTTP/1.1 GET; returns (status, headers, body).
    fn get(&self, path: &str) -> (u16, String, String) {
        self.get_as(path, &self.address.clone())
    }

    /// One HTTP/1.1 GET with `Host: {host}`.
    fn get_as(&self, path: &str, host: &str) -> (u16, String, String) {
        self.exchange(&format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ))
    }

    /// A WebSocket upgrade request for the broker with `Host: {host}`.
    fn upgrade_as(&self, host: &str) -> (u16, String, String) {
        self.exchange(&upgrade_request(host))
    }

    /// Sends `request` on a new connection and reads one response: its head,
    /// then `Content-Length` bytes of body or until the server closes.
    fn exchange(&self, request: &str) -> (u16, String, String) {
        let mut stream = self.connect();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let mut byte = [0_u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("a response head");
            response.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&response).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map(|length| length.trim().parse::<usize>().expect("a length"));
        match length {
            Some(length) => {
                let mut body = vec![0_u8; length];
                stream.read_exact(&mut body).expect("the body");
                response.extend(body);
            }
            // A 101 has no body and the connection stays open.
            None if head.starts_with("http/1.1 101") => {}
            None => {
                stream.read_to_end(&mut response).expect("the body");
            }
        }
        parse_response(&String::from_utf8_lossy(&response))
    }

    /// A new connection with a 10 s read timeout.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn port(&self) -> &str {
        self.address.rsplit_once(':').expect("HOST:PORT").1
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                panic!("domvia-server did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn upgrade_request(host: &str) -> String {
    format!(
        "GET /app/domvia-dev-key?protocol=7&client=js&version=8.6.0 HTTP/1.1\r\nHost: {host}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// (status, lower-cased head, body) of a response.
fn parse_response(response: &str) -> (u16, String, String) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a complete response head in {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn serves_health_and_the_demo_then_stops_cleanly_on_sigterm() {
    let server = RunningServer::start();
    assert!(
        server.address.starts_with("127.0.0.1:"),
        "bound to {}",
        server.address
    );
    assert_ne!(server.address, "127.0.0.1:0");

    let (status, headers, body) = server.get("/healthz");
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let health: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON body");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], domvia_realtime::VERSION);

    let (status, headers, body) = server.get("/");
    assert_eq!(status, 200);
    assert!(headers.contains("text/html"), "{headers}");
    assert!(body.contains("DomVia"), "the demo page is served");
    assert!(
        headers.contains("cross-origin-opener-policy: same-origin"),
        "{headers}"
    );
    assert!(
        headers.contains("cross-origin-embedder-policy: require-corp"),
        "{headers}"
    );

    // Browsers ask for /favicon.ico on pages without an icon link (/healthz too).
    let (status, headers, body) = server.get("/favicon.ico");
    assert_eq!(status, 200);
    assert!(headers.contains("content-type: image/svg+xml"), "{headers}");
    assert!(body.contains("<svg"), "the demo's icon");

    let (status, _, _) = server.get("/no-such-page");
    assert_eq!(status, 404);

    let exit = server.terminate();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
}

/// Waits up to `limit` for the process to exit.
fn exit_within(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
    None
}

#[test]
fn refuses_to_listen_off_loopback_without_allow_remote() {
    let (mut child, stderr) = spawn(&["--host", "0.0.0.0", "--port", "0"]);
    let status = exit_within(&mut child, Duration::from_secs(10))
        .expect("domvia-server kept running on 0.0.0.0 without --allow-remote");
    assert!(!status.success(), "{status:?}");
    // The stderr thread may still be copying the last line.
    std::thread::sleep(Duration::from_millis(100));
    let stderr = stderr.lock().unwrap().clone();
    assert!(stderr.contains("--allow-remote"), "{stderr}");
    assert!(stderr.contains("0.0.0.0"), "{stderr}");
}

#[test]
fn allow_remote_listens_and_says_which_hosts_it_accepts() {
    let server = RunningServer::start_with(&["--host", "0.0.0.0", "--port", "0", "--allow-remote"]);
    let local = format!("127.0.0.1:{}", server.port());
    let (status, _, _) = server.get_as("/healthz", &local);
    assert_eq!(status, 200);
    let stderr = server.stderr();
    assert!(stderr.contains("Host"), "{stderr}");
    assert!(stderr.contains("--allowed-hosts"), "{stderr}");
}

#[test]
fn host_headers_other_than_loopback_and_the_allow_list_are_refused() {
    let server = RunningServer::start_with(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--allowed-hosts",
        "chat.test, Dev.Example:8443",
    ]);
    let port = server.port().to_owned();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_owned(),
        // A dev server's proxy forwards its own host and port.
        "localhost:5173".to_owned(),
        "chat.test".to_owned(),
        format!("chat.test:{port}"),
        "dev.example:8443".to_owned(),
    ] {
        let (status, _, _) = server.get_as("/healthz", &host);
        assert_eq!(status, 200, "Host: {host}");
    }
    // DNS rebinding: a page of attacker.test whose name now resolves to 127.0.0.1.
    for host in [
        format!("attacker.test:{port}"),
        "attacker.test".to_owned(),
        "dev.example:9999".to_owned(),
        format!("localhost.attacker.test:{port}"),
        format!("127.0.0.1.attacker.test:{port}"),
    ] {
        let (status, headers, body) = server.get_as("/healthz", &host);
        assert_eq!(status, 421, "Host: {host}");
        assert!(headers.contains("application/json"), "{headers}");
        let body: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON");
        assert_eq!(body["error"]["code"], "host_not_allowed", "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("unable to"));
        // The sign-in and the broker's upgrade are refused the same way.
        let (status, _, _) = server.get_as("/api/config", &host);
        assert_eq!(status, 421);
        let (status, _, _) = server.upgrade_as(&host);
        assert_eq!(status, 421, "upgrade with Host: {host}");
    }
    let (status, _, _) = server.upgrade_as(&format!("localhost:{port}"));
    assert_eq!(status, 101);
}

#[test]
fn silent_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = RunningServer::start_with(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--header-timeout",
        "1",
    ]);
    let closed_within = |mut stream: TcpStream| {
        let started = Instant::now();
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            // A reset is a close as well.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("the connection stayed open: {err}"),
        }
        started.elapsed()
    };
    // Says nothing at all.
    let silent = server.connect();
    // Starts a request and never finishes its headers.
    let mut partial = server.connect();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    assert!(closed_within(silent) < Duration::from_secs(3));
    assert!(closed_within(partial) < Duration::from_secs(3));

    // A kept-alive connection that goes idle after a response.
    let mut idle = server.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0_u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(closed_within(idle) < Duration::from_secs(3));
}

#[test]
fn connections_per_ip_are_capped() {
    let server = RunningServer::start_with(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--max-connections-per-ip",
        "3",
    ]);
    let silent = server.connect();
    let _also_silent = server.connect();
    // An upgraded WebSocket counts as well.
    let mut socket = server.connect();
    socket
        .write_all(upgrade_request(&server.address).as_bytes())
        .unwrap();
    let mut head = [0_u8; 12];
    socket.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");

    let mut over = server.connect();
    let mut response = Vec::new();
    over.read_to_end(&mut response)
        .expect("the connection over the cap is answered and closed");
    let (status, _, body) = parse_response(&String::from_utf8_lossy(&response));
    assert_eq!(status, 429);
    let body: serde_json::Value = serde_json::from_str(body.trim()).expect("JSON");
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");

    // A closed connection frees its place.
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = server.connect();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).ok();
        if response.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
