//! Runs the real `domvia-server` binary on a free loopback port and talks HTTP
//! to it over a real socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const STARTUP_LIMIT: Duration = Duration::from_secs(20);

struct RunningServer {
    child: Child,
    address: String,
}

impl RunningServer {
    fn start() -> RunningServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_domvia-server"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn domvia-server");
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
                };
            }
        }
    }

    /// One HTTP/1.1 GET; returns (status, headers, body).
    fn get(&self, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read response");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .expect("a complete response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        (status, head.to_ascii_lowercase(), body.to_owned())
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
