//! The keep-alive HTTP/1.1 client and the HTTP workloads (config and naming over Open API v1).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load::{Failure, Workload, REQUEST_TIMEOUT};

/// Path of the config API.
pub const CONFIGS: &str = "/nacos/v1/cs/configs";
/// Path of the instance API.
pub const INSTANCE: &str = "/nacos/v1/ns/instance";
/// Service the `naming-list` workload reads, and how many instances it holds.
const LIST_SERVICE: &str = "bench.list";
const LIST_INSTANCES: u64 = 10;

/// What each HTTP request is.
#[derive(Clone, Copy)]
pub enum HttpKind {
    /// GET a config, over `keys` configs published first.
    ConfigGet { keys: u64 },
    /// POST a new content, over `keys` configs.
    ConfigPublish { keys: u64 },
    /// POST an ephemeral instance, a distinct ip:port each time, over `services` services.
    NamingRegister { services: u64 },
    /// GET the instance list of a service of 10 instances (registered first).
    NamingList,
    /// `configs` config publishes, then `instances` instance registrations over `services`
    /// services.
    Fill {
        configs: u64,
        instances: u64,
        services: u64,
    },
    /// The config GET against the in-process trivial handler.
    Ceiling,
}

/// An HTTP workload against one server.
pub struct Http {
    pub addr: SocketAddr,
    pub kind: HttpKind,
}

/// The address of instance number `n`: distinct for every `n` below 15 million.
pub fn instance_addr(n: u64) -> (String, u16) {
    let port = 1_000 + (n % 60_000) as u16;
    let high = n / 60_000;
    (format!("10.{}.{}.7", (high / 256) % 256, high % 256), port)
}

/// A `POST` of a form body.
pub fn post_form(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A `GET` of `target` (path and query).
pub fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// Publishing `content` under `dataId=data_id&group=bench`.
pub fn publish(data_id: &str, content: &str) -> String {
    post_form(
        CONFIGS,
        &format!("dataId={data_id}&group=bench&content={content}"),
    )
}

/// Registering an ephemeral instance of `service`.
pub fn register(service: &str, ip: &str, port: u16) -> String {
    post_form(
        INSTANCE,
        &format!("serviceName={service}&ip={ip}&port={port}&ephemeral=true"),
    )
}

impl HttpKind {
    /// The report's workload id, its name, and the ceiling it is a fraction of.
    pub fn label(self) -> (&'static str, String, Option<&'static str>) {
        match self {
            HttpKind::ConfigGet { keys } => (
                "config-get",
                format!("config get, {keys} key{}", if keys == 1 { "" } else { "s" }),
                Some("ceiling"),
            ),
            HttpKind::ConfigPublish { keys } => (
                "config-publish",
                format!("config publish, {keys} keys"),
                Some("ceiling"),
            ),
            HttpKind::NamingRegister { services } => (
                "naming-register",
                format!("instance register, {services} services"),
                Some("ceiling"),
            ),
            HttpKind::NamingList => (
                "naming-list",
                format!("instance list, {LIST_INSTANCES} instances"),
                Some("ceiling"),
            ),
            HttpKind::Fill {
                configs, instances, ..
            } => (
                "fill",
                format!("fill: {configs} configs + {instances} instances"),
                None,
            ),
            HttpKind::Ceiling => ("ceiling", "ceiling: trivial axum GET".into(), None),
        }
    }

    fn request(self, n: u64) -> String {
        match self {
            HttpKind::ConfigGet { keys } => {
                get(&format!("{CONFIGS}?dataId=bench.{}&group=bench", n % keys))
            }
            HttpKind::Ceiling => get(&format!("{CONFIGS}?dataId=bench.0&group=bench")),
            HttpKind::ConfigPublish { keys } => {
                publish(&format!("bench.{}", n % keys), &format!("value-{n}"))
            }
            HttpKind::NamingRegister { services } => {
                let (ip, port) = instance_addr(n);
                register(&format!("bench.ns.{}", n % services), &ip, port)
            }
            HttpKind::NamingList => get(&format!("{INSTANCE}/list?serviceName={LIST_SERVICE}")),
            HttpKind::Fill {
                configs, services, ..
            } => {
                if n < configs {
                    // About 200 bytes of content per config.
                    publish(&format!("fill.{n}"), &format!("{n:0>200}"))
                } else {
                    let m = n - configs;
                    let (ip, port) = instance_addr(m);
                    register(&format!("fill.{}", m % services), &ip, port)
                }
            }
        }
    }
}

impl Workload for Http {
    type Session = Conn;

    fn target(&self) -> String {
        self.addr.to_string()
    }

    async fn open(&self, _conn: usize) -> Result<Conn, String> {
        Conn::connect(self.addr).await
    }

    async fn send(&self, conn: &mut Conn, n: u64) -> Result<(), Failure> {
        match conn.exchange(self.kind.request(n).as_bytes()).await {
            Ok(200) => Ok(()),
            Ok(status) => Err(Failure::answer(format!("HTTP {status}"))),
            Err(e) => Err(Failure::transport(e)),
        }
    }
}

/// What a workload needs on the server before it runs: the configs a GET reads, the instances
/// a list returns.
pub async fn prepare(addr: SocketAddr, kind: HttpKind) -> Result<(), String> {
    let mut conn = Conn::connect(addr).await?;
    match kind {
        HttpKind::ConfigGet { keys } => {
            for k in 0..keys {
                let req = publish(&format!("bench.{k}"), &format!("helloWorld-{k}"));
                conn.expect_ok(&req, &format!("preparing config bench.{k}"))
                    .await?;
            }
        }
        HttpKind::NamingList => {
            for i in 0..LIST_INSTANCES {
                let req = register(LIST_SERVICE, &format!("10.255.0.{}", i + 1), 8080);
                conn.expect_ok(&req, "preparing the listed instances")
                    .await?;
            }
            let list = get(&format!("{INSTANCE}/list?serviceName={LIST_SERVICE}"));
            conn.expect_ok(&list, "listing the prepared instances")
                .await?;
            let hosts = conn.body().matches("\"ip\"").count() as u64;
            if hosts != LIST_INSTANCES {
                return Err(format!(
                    "the list of {LIST_SERVICE} holds {hosts} instances, not {LIST_INSTANCES}"
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the last response's body lies in `buf`.
    body: (usize, usize),
    /// An exchange failed or was cut short: the stream's state is unknown.
    broken: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect {addr}: timed out"))?
            .map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            body: (0, 0),
            broken: false,
        })
    }

    /// Sends one request and reads one whole response (Content-Length or chunked); the status.
    /// Bounded by `REQUEST_TIMEOUT`; after any error the connection is unusable (a late answer
    /// could be taken for the next one's) and every further call fails.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<u16, String> {
        if self.broken {
            return Err("connection unusable after an error".into());
        }
        self.broken = true;
        let status = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange_once(request))
            .await
            .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
        self.broken = false;
        Ok(status)
    }

    async fn exchange_once(&mut self, request: &[u8]) -> Result<u16, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| e.to_string())?;
        self.buf.clear();
        loop {
            if let Some((status, start, end)) = complete(&self.buf)? {
                self.body = (start, end);
                return Ok(status);
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() > 64 * 1024 * 1024 {
                return Err("response too large".into());
            }
        }
    }

    /// Sends `request`; an error naming `what` unless the answer is 200.
    pub async fn expect_ok(&mut self, request: &str, what: &str) -> Result<(), String> {
        match self.exchange(request.as_bytes()).await? {
            200 => Ok(()),
            status => Err(format!("{what}: HTTP {status}: {}", self.body())),
        }
    }

    /// The last response's body (raw: a chunked body keeps its framing).
    pub fn body(&self) -> String {
        let (start, end) = self.body;
        String::from_utf8_lossy(&self.buf[start..end.min(self.buf.len())]).into_owned()
    }
}

/// If `buf` holds a whole response: its status, and where its body starts and ends.
fn complete(buf: &[u8]) -> Result<Option<(u16, usize, usize)>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| e.to_string())?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let body_start = head_end + 4;
    let lower = head.to_ascii_lowercase();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
    {
        let len: usize = len.trim().parse().map_err(|_| "bad content-length")?;
        let end = body_start + len;
        return Ok((buf.len() >= end).then_some((status, body_start, end)));
    }
    if lower.contains("transfer-encoding: chunked") {
        return Ok(buf[body_start..]
            .windows(5)
            .position(|w| w == b"0\r\n\r\n")
            .map(|p| (status, body_start, body_start + p + 5)));
    }
    Ok(Some((status, body_start, body_start)))
}

#[cfg(test)]
mod tests {
    use super::{complete, instance_addr};

    #[test]
    fn parses_content_length_and_chunked() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue";
        assert_eq!(
            complete(r).expect("valid"),
            Some((200, r.len() - 4, r.len()))
        );
        assert_eq!(complete(&r[..r.len() - 1]).expect("valid"), None);
        let c =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(
            complete(c).expect("valid").map(|(s, _, e)| (s, e)),
            Some((404, c.len()))
        );
    }

    #[test]
    fn instance_addresses_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for n in (0..200_000).chain(14_999_000..15_000_000) {
            assert!(seen.insert(instance_addr(n)), "{n}");
        }
    }
}
