//! Black-box test helpers for Nacre: spawn the real `nacre` binary on 127.0.0.1 in a
//! temporary directory, wait for readiness, and talk HTTP/1.1 to it over a plain
//! `std::net::TcpStream`.
//!
//! The helpers never reach anything but 127.0.0.1 and only stop the processes they started
//! (`Child::kill` on their own child, also on drop). The binary's path is passed in by the
//! caller: a test inside the server crate gets it from `env!("CARGO_BIN_EXE_nacre")`.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The Raft port is the HTTP port minus this, as in Nacos (wire reference §1.1).
pub const RAFT_PORT_OFFSET: u16 = 1000;
/// The Distro port is the HTTP port plus this (wire reference §1.1).
pub const DISTRO_PORT_OFFSET: u16 = 1001;
/// How long a spawned member may take to elect itself and answer readiness.
pub const READY_WAIT_MS: u64 = 20_000;
/// Socket read/write timeout of one test HTTP request.
pub const HTTP_TIMEOUT_MS: u64 = 10_000;
/// Attempts at finding an HTTP port whose Raft port is also free.
const PORT_ATTEMPTS_MAX: usize = 100;

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory under the system temp dir, unique to this process and call.
pub fn temp_dir(label: &str) -> PathBuf {
    let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("nacre-{label}-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A high port on 127.0.0.1 that is free, and whose Raft port (port − 1000) and Distro port
/// (port + 1001) are free too.
pub fn free_http_port() -> u16 {
    for _ in 0..PORT_ATTEMPTS_MAX {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        if port <= 10_000 + RAFT_PORT_OFFSET || port > u16::MAX - DISTRO_PORT_OFFSET {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port - RAFT_PORT_OFFSET)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + DISTRO_PORT_OFFSET)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair after {PORT_ATTEMPTS_MAX} attempts");
}

/// `n` distinct HTTP ports on 127.0.0.1 whose Raft ports (port − 1000) are free too, and such
/// that no member's HTTP or Raft port equals another's.
pub fn free_http_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    for _ in 0..PORT_ATTEMPTS_MAX {
        if ports.len() == n {
            break;
        }
        let p = free_http_port();
        let clash = ports.iter().any(|q| clashes(*q, p));
        if !clash {
            ports.push(p);
        }
    }
    assert_eq!(ports.len(), n, "no {n} distinct free port pairs");
    ports
}

/// True when two members' ports (HTTP, Raft = −1000, Distro = +1001) overlap.
pub fn clashes(a: u16, b: u16) -> bool {
    let ports = |p: u16| [p, p - RAFT_PORT_OFFSET, p + DISTRO_PORT_OFFSET];
    ports(a).iter().any(|x| ports(b).contains(x))
}

/// Writes a Nacos-format `cluster.conf` naming `127.0.0.1:<port>` for every port.
pub fn write_cluster_conf(path: &Path, ports: &[u16]) {
    let mut text = String::from("# written by nacre-tests\n");
    for p in ports {
        text.push_str(&format!("127.0.0.1:{p}\n"));
    }
    fs::write(path, text).expect("write cluster.conf");
}

/// One parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses a complete HTTP/1.1 response (the connection was closed after it).
    pub fn parse(raw: &[u8]) -> Result<HttpResponse, String> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no end of headers")?;
        let head = std::str::from_utf8(&raw[..split]).map_err(|e| e.to_string())?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().ok_or("no status line")?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {status_line}"))?;
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header: {line}"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        if chunked {
            body = decode_chunked(&body)?;
        }
        let body = String::from_utf8(body).map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

fn decode_chunked(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size without line end")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|e| e.to_string())?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Sends one HTTP/1.1 request to 127.0.0.1:`port` and reads the whole response.
/// `target` is the path with its query string, already percent-encoded.
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let timeout = Some(Duration::from_millis(HTTP_TIMEOUT_MS));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    HttpResponse::parse(&raw)
}

/// A running `nacre` process that this test started.
pub struct Nacre {
    child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Nacre {
    /// Starts `bin` as a standalone member on 127.0.0.1:`port` with `data_dir`, logging to
    /// `log`, and waits until readiness answers 200.
    pub fn spawn(bin: &Path, port: u16, data_dir: &Path, log: &Path) -> Nacre {
        let mut nacre = Nacre::start(
            bin,
            port,
            data_dir,
            log,
            &["-m", "standalone"],
            "info,openraft=warn",
        );
        nacre.wait_ready();
        nacre
    }

    /// Starts `bin` with `--port port --data-dir data_dir` followed by `args`, with `RUST_LOG`
    /// set to `rust_log` and output (stdout and stderr) to `log`. Does not wait for readiness:
    /// a cluster member becomes ready only once enough members run.
    pub fn start(
        bin: &Path,
        port: u16,
        data_dir: &Path,
        log: &Path,
        args: &[&str],
        rust_log: &str,
    ) -> Nacre {
        let out = fs::File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = Command::new(bin)
            .arg("--port")
            .arg(port.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn nacre");
        Nacre {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.wait_ready_within(Duration::from_millis(READY_WAIT_MS)) {
            panic!("{e}");
        }
    }

    /// Polls readiness until it answers 200, the process exits, or `limit` passes; the error
    /// carries the process's log.
    // Black-box tests wait on the real clock: the process under test runs in real time.
    #[allow(clippy::disallowed_methods)]
    pub fn wait_ready_within(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "nacre exited early ({status}):\n{}",
                    self.log_text()
                ));
            }
            let ready = http(
                self.port,
                "GET",
                "/nacos/v1/console/health/readiness",
                &[],
                "",
            );
            if matches!(ready, Ok(ref r) if r.status == 200) {
                return Ok(());
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "nacre on port {} not ready within {} ms:\n{}",
                    self.port,
                    limit.as_millis(),
                    self.log_text()
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the process's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process abruptly (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a graceful stop) to this process, through the `kill` command, and waits
    /// up to `limit` for it to exit; true when it did.
    #[allow(clippy::disallowed_methods)]
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        let start = Instant::now();
        while sent && start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Nacre {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `(ip, healthy)` of every host the member on `port` lists for `service` (public
/// namespace, default group).
pub fn listed(port: u16, service: &str) -> Result<Vec<(String, bool)>, String> {
    let r = http(
        port,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName={service}"),
        &[],
        "",
    )?;
    if r.status != 200 {
        return Err(format!("list via {port}: {} {}", r.status, r.body));
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    Ok(v["hosts"]
        .as_array()
        .ok_or("no hosts array")?
        .iter()
        .map(|h| {
            (
                h["ip"].as_str().unwrap_or("").to_string(),
                h["healthy"].as_bool().unwrap_or(false),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_fixed_length_response() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-MD5: abc\r\ncontent-length: 22\r\n\r\nconfig data not exist\n";
        let r = HttpResponse::parse(raw).expect("parse");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("content-md5"), Some("abc"));
        assert_eq!(r.body, "config data not exist\n");
    }

    #[test]
    fn parses_a_chunked_response() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\nWorld!\r\n0\r\n\r\n";
        let r = HttpResponse::parse(raw).expect("parse");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "helloWorld!");
    }

    #[test]
    fn free_port_pairs_do_not_overlap() {
        let ports = free_http_ports(3);
        let mut all: Vec<u16> = ports
            .iter()
            .flat_map(|p| [*p, *p - RAFT_PORT_OFFSET])
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6, "{ports:?}");
    }

    #[test]
    fn free_port_pair_is_in_range() {
        let p = free_http_port();
        assert!(p > 10_000 + RAFT_PORT_OFFSET);
    }
}
