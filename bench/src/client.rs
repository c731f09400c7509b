//! The keep-alive HTTP/1.1 client loop and the workloads.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::Report;

/// How much load to apply.
pub struct Load {
    pub connections: usize,
    pub duration: Duration,
    pub max_requests: u64,
}

/// What each request is.
#[derive(Clone, Copy)]
pub enum Workload {
    ConfigGet { keys: u64 },
    ConfigPublish { keys: u64 },
    Ceiling,
}

impl Workload {
    fn request(self, conn: usize, seq: u64) -> String {
        match self {
            Workload::ConfigGet { keys } => get(&format!("bench.{}", (conn as u64 + seq) % keys)),
            Workload::Ceiling => get("bench.0"),
            Workload::ConfigPublish { keys } => {
                let body = format!(
                    "dataId=bench.{}&group=bench&content=value-{conn}-{seq}",
                    (conn as u64 * 7919 + seq) % keys
                );
                format!(
                    "POST /nacos/v1/cs/configs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        }
    }
}

fn get(data_id: &str) -> String {
    format!(
        "GET /nacos/v1/cs/configs?dataId={data_id}&group=bench HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
}

/// Publishes the configs a GET workload reads.
async fn prepare(addr: SocketAddr, workload: Workload) -> Result<(), String> {
    let Workload::ConfigGet { keys } = workload else {
        return Ok(());
    };
    let mut conn = Conn::connect(addr).await?;
    for k in 0..keys {
        let body = format!("dataId=bench.{k}&group=bench&content=helloWorld-{k}");
        let req = format!(
            "POST /nacos/v1/cs/configs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let status = conn.exchange(req.as_bytes()).await?;
        if status != 200 {
            return Err(format!("preparing bench.{k}: HTTP {status}"));
        }
    }
    Ok(())
}

/// Runs the load and gathers latencies.
// The load generator measures real elapsed time; it is not engine code.
#[allow(clippy::disallowed_methods)]
pub async fn run_load(
    addr: SocketAddr,
    workload: Workload,
    load: &Load,
    name: &str,
) -> Result<Report, String> {
    prepare(addr, workload).await?;
    let started = Instant::now();
    let deadline = started + load.duration;
    let per_conn = load.max_requests / load.connections as u64 + 1;
    let mut tasks = Vec::new();
    for c in 0..load.connections {
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut conn = match Conn::connect(addr).await {
                Ok(c) => c,
                Err(_) => return (lat, 1),
            };
            for seq in 0..per_conn {
                if Instant::now() >= deadline {
                    break;
                }
                let req = workload.request(c, seq);
                let t = Instant::now();
                match conn.exchange(req.as_bytes()).await {
                    Ok(200) => lat.push(t.elapsed().as_micros() as u32),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match Conn::connect(addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
    }
    Ok(Report::from_latencies(
        name,
        addr,
        load.connections,
        started.elapsed(),
        all,
        errors,
    ))
}

/// One keep-alive connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads one whole response (Content-Length or chunked); the status.
    async fn exchange(&mut self, request: &[u8]) -> Result<u16, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| e.to_string())?;
        self.buf.clear();
        loop {
            if let Some((status, total)) = complete(&self.buf)? {
                self.buf.drain(..total);
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
}

/// If `buf` holds a whole response: its status and length.
fn complete(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
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
        return Ok((buf.len() >= body_start + len).then_some((status, body_start + len)));
    }
    if lower.contains("transfer-encoding: chunked") {
        return Ok(buf[body_start..]
            .windows(5)
            .position(|w| w == b"0\r\n\r\n")
            .map(|p| (status, body_start + p + 5)));
    }
    Ok(Some((status, body_start)))
}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn parses_content_length_and_chunked() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntrue";
        assert_eq!(complete(r).expect("valid"), Some((200, r.len())));
        assert_eq!(complete(&r[..r.len() - 1]).expect("valid"), None);
        let c =
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(complete(c).expect("valid"), Some((404, c.len())));
    }
}
