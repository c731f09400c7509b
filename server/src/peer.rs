//! The peer transport over TCP: `TcpTransport` (the engine's `PeerTransport` port) and
//! `serve_peers`, the listener that hands requests to the local `CpNode`.
//!
//! Every message is one frame of `nacre_engine::wire::frame` (12-byte header with length and
//! CRC, postcard body). The length is checked against `FRAME_BYTES_MAX` before the body is
//! read, so a peer cannot make us allocate more. A malformed frame closes only its connection.
//! Calls reuse connections: after a complete exchange the connection goes back to a small pool
//! per peer address, and a call takes a pooled connection if one is still open (a connection the
//! peer closed meanwhile is noticed before the request is written, and discarded). A failure to
//! connect is `Unreachable` (certainly undelivered); a failure after writing is `BadResponse`,
//! a deadline `Timeout` — the engine never retries those (DESIGN §2), and the connection is
//! dropped, so a late answer can never be read as the answer to another call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::constants::FRAME_BYTES_MAX;
use nacre_engine::member::Member;
use nacre_engine::ports::{BoxFuture, PeerTransport, TransportError};
use nacre_engine::wire::frame::{decode_msg, encode_msg, FRAME_HEADER_BYTES};
use nacre_engine::wire::{PeerRequest, PeerResponse};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest wait for a TCP connection to a peer.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Most peer connections served at once; further ones wait in the accept backlog.
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// How long a served connection may stay idle between requests.
pub const PEER_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Idle connections kept per peer address.
pub const PEER_POOL_PER_ADDR: usize = 16;
/// Connections open at once to one peer address, per transport: further calls wait for one
/// (within their deadline) instead of opening more. Without this bound a burst of Distro syncs
/// (one call per client) opened hundreds of connections at once, overflowed the peer's accept
/// queue and made unrelated forwards fail with connect timeouts.
pub const PEER_CALLS_PER_ADDR: usize = 32;
/// A pooled connection idle longer than this is not reused (well under the serving side's
/// `PEER_IDLE_TIMEOUT_MS`, so the two never race).
pub const PEER_POOL_IDLE_MS: u64 = 20_000;

/// Why reading a frame from a stream stopped.
#[derive(Debug)]
pub enum FrameReadError {
    /// The peer closed the connection cleanly before a new frame.
    Closed,
    /// I/O failed or the frame was malformed.
    Bad(String),
}

/// Reads exactly one frame from `stream` and decodes its body.
pub async fn read_frame<T, R>(stream: &mut R) -> Result<T, FrameReadError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_BYTES];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(FrameReadError::Closed)
        }
        Err(e) => return Err(FrameReadError::Bad(e.to_string())),
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameReadError::Bad(format!(
            "frame of {len} bytes over {FRAME_BYTES_MAX}"
        )));
    }
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + len);
    buf.extend_from_slice(&header);
    buf.resize(FRAME_HEADER_BYTES + len, 0);
    stream
        .read_exact(&mut buf[FRAME_HEADER_BYTES..])
        .await
        .map_err(|e| FrameReadError::Bad(e.to_string()))?;
    let (value, _) = decode_msg::<T>(&buf).map_err(|e| FrameReadError::Bad(e.to_string()))?;
    Ok(value)
}

/// Peer calls over TCP, on pooled connections.
#[derive(Debug, Default, Clone)]
pub struct TcpTransport {
    pool: Arc<Pool>,
}

/// Idle connections by peer address, with the instant they were returned.
#[derive(Debug, Default)]
struct Pool {
    idle: Mutex<BTreeMap<String, Vec<(TcpStream, tokio::time::Instant)>>>,
    /// The calls in progress per address, bounded by `PEER_CALLS_PER_ADDR`.
    slots: Mutex<BTreeMap<String, Arc<Semaphore>>>,
}

impl Pool {
    /// The call slots of `addr`.
    fn slots(&self, addr: &str) -> Arc<Semaphore> {
        self.slots
            .lock()
            .expect("peer slots")
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PEER_CALLS_PER_ADDR)))
            .clone()
    }

    /// A pooled connection to `addr` that is still open, if any.
    fn take(&self, addr: &str) -> Option<TcpStream> {
        let mut pool = self.idle.lock().expect("peer pool");
        let idle = pool.get_mut(addr)?;
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() > Duration::from_millis(PEER_POOL_IDLE_MS) {
                continue;
            }
            // Open and quiet: a read would block. End of stream or stray bytes: discard.
            let mut probe = [0u8; 1];
            match stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(stream),
                _ => continue,
            }
        }
        None
    }

    /// Returns a connection after a complete exchange.
    fn put(&self, addr: String, stream: TcpStream) {
        let mut pool = self.idle.lock().expect("peer pool");
        let idle = pool.entry(addr).or_default();
        if idle.len() < PEER_POOL_PER_ADDR {
            idle.push((stream, tokio::time::Instant::now()));
        }
    }

    async fn connect(
        target: u64,
        addr: &str,
        deadline: tokio::time::Instant,
    ) -> Result<TcpStream, TransportError> {
        let connect_deadline = deadline
            .min(tokio::time::Instant::now() + Duration::from_millis(PEER_CONNECT_TIMEOUT_MS));
        match tokio::time::timeout_at(connect_deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(s)
            }
            Ok(Err(e)) => Err(TransportError::Unreachable(format!(
                "member {target} at {addr}: {e}"
            ))),
            Err(_) => Err(TransportError::Unreachable(format!(
                "member {target} at {addr}: connect timeout"
            ))),
        }
    }
}

impl PeerTransport for TcpTransport {
    fn call(
        &self,
        target: u64,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerResponse, TransportError>> {
        let addr = addr.to_string();
        let pool = self.pool.clone();
        Box::pin(async move {
            // One deadline for the whole call: connecting must not extend the caller's budget.
            let deadline = tokio::time::Instant::now() + timeout;
            let slots = pool.slots(&addr);
            let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, slots.acquire_owned()).await
            else {
                return Err(TransportError::Unreachable(format!(
                    "member {target} at {addr}: {PEER_CALLS_PER_ADDR} calls already in progress"
                )));
            };
            let mut stream = match pool.take(&addr) {
                Some(s) => s,
                None => Pool::connect(target, &addr, deadline).await?,
            };
            let exchange = async {
                stream
                    .write_all(&encode_msg(&request))
                    .await
                    .map_err(|e| TransportError::BadResponse(format!("write: {e}")))?;
                read_frame::<PeerResponse, _>(&mut stream)
                    .await
                    .map_err(|e| TransportError::BadResponse(format!("{e:?}")))
            };
            match tokio::time::timeout_at(deadline, exchange).await {
                Ok(Ok(response)) => {
                    pool.put(addr, stream);
                    Ok(response)
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(TransportError::Timeout),
            }
        })
    }
}

/// Accepts peer connections forever, serving each on its own task.
pub async fn serve_peers(listener: TcpListener, node: Arc<Member>) {
    let slots = Arc::new(Semaphore::new(PEER_CONNECTIONS_MAX));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let (stream, remote) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("peer accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, node).await;
            tracing::trace!(%remote, "peer connection closed");
        });
    }
}

/// Serves request frames on one connection until it closes or misbehaves.
async fn serve_connection(mut stream: TcpStream, node: Arc<Member>) {
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_millis(PEER_IDLE_TIMEOUT_MS);
    loop {
        let request =
            match tokio::time::timeout(idle, read_frame::<PeerRequest, _>(&mut stream)).await {
                Ok(Ok(r)) => r,
                Ok(Err(FrameReadError::Closed)) | Err(_) => return,
                Ok(Err(FrameReadError::Bad(e))) => {
                    tracing::warn!("peer sent a malformed frame, closing: {e}");
                    return;
                }
            };
        let response = node.handle_peer(request).await;
        if let Err(e) = stream.write_all(&encode_msg(&response)).await {
            tracing::debug!("peer write: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nacre_engine::cp_node::CpNode;
    use nacre_engine::naming::distro::DistroTimings;
    use nacre_engine::naming::runner::{DistroRunner, PeerAddr};

    #[tokio::test]
    async fn a_frame_round_trips_over_a_stream() {
        let bytes = encode_msg(&PeerRequest::Ping);
        let mut reader: &[u8] = &bytes;
        let got: PeerRequest = read_frame(&mut reader).await.expect("valid frame");
        assert!(matches!(got, PeerRequest::Ping));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let mut bytes = encode_msg(&PeerRequest::Ping);
        let huge = u32::try_from(FRAME_BYTES_MAX + 1).expect("fits u32");
        bytes[4..8].copy_from_slice(&huge.to_le_bytes());
        let mut reader: &[u8] = &bytes;
        let got = read_frame::<PeerRequest, _>(&mut reader).await;
        assert!(matches!(got, Err(FrameReadError::Bad(_))));
    }

    #[tokio::test]
    async fn a_clean_close_is_not_an_error() {
        let mut reader: &[u8] = &[];
        let got = read_frame::<PeerRequest, _>(&mut reader).await;
        assert!(matches!(got, Err(FrameReadError::Closed)));
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_reported_as_unreachable() {
        // Bind then drop a listener so the port is very likely closed.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let got = TcpTransport::default()
            .call(2, &addr, PeerRequest::Ping, Duration::from_millis(500))
            .await;
        assert!(
            matches!(got, Err(TransportError::Unreachable(_))),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn calls_to_one_peer_share_a_bounded_number_of_connections() {
        // A peer that accepts and never answers: every call holds its connection until its
        // deadline, so the calls beyond the bound find no slot and open nothing.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
        let transport = TcpTransport::default();
        let call = |ms: u64| {
            tokio::spawn(transport.call(2, &addr, PeerRequest::Ping, Duration::from_millis(ms)))
        };
        let holding: Vec<_> = (0..PEER_CALLS_PER_ADDR).map(|_| call(2_000)).collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let extra: Vec<_> = (0..8).map(|_| call(300)).collect();
        for c in extra {
            let r = c.await.expect("joined");
            assert!(
                matches!(&r, Err(TransportError::Unreachable(m)) if m.contains("in progress")),
                "{r:?}"
            );
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            PEER_CALLS_PER_ADDR,
            "the extra calls opened no connection"
        );
        for c in holding {
            let r = c.await.expect("joined");
            assert!(matches!(r, Err(TransportError::Timeout)), "{r:?}");
        }
        server.abort();
    }

    struct FixedClock;

    impl nacre_engine::ports::Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            1
        }
    }

    #[tokio::test]
    async fn serve_peers_answers_ping_and_survives_a_malformed_frame() {
        let dir = std::env::temp_dir().join(format!("nacre-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let disk = crate::storage::FileDisk::open(dir.clone()).expect("open disk");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let members = std::collections::BTreeMap::from([(1, addr.clone())]);
        let opts = nacre_engine::cp_node::CpOptions::new(1, addr.clone(), members);
        let node = CpNode::start(
            opts,
            Arc::new(disk),
            Arc::new(TcpTransport::default()),
            Arc::new(FixedClock),
        )
        .await
        .expect("start");
        let naming = DistroRunner::start(
            &addr,
            std::collections::BTreeMap::from([(
                addr.clone(),
                PeerAddr {
                    id: 1,
                    addr: addr.clone(),
                },
            )]),
            DistroTimings::default(),
            Arc::new(TcpTransport::default()),
        );
        let member = Arc::new(Member {
            cp: node.clone(),
            naming,
        });
        let server = tokio::spawn(serve_peers(listener, member));

        let mut garbage = TcpStream::connect(&addr).await.expect("connect");
        garbage
            .write_all(b"not a frame at all")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let closed = garbage.read_to_end(&mut rest).await;
        assert!(matches!(closed, Ok(0)) || closed.is_err(), "{closed:?}");

        let transport = TcpTransport::default();
        for _ in 0..3 {
            let got = transport
                .call(1, &addr, PeerRequest::Ping, Duration::from_secs(5))
                .await;
            assert!(matches!(got, Ok(PeerResponse::Pong { .. })), "{got:?}");
        }
        assert_eq!(
            transport
                .pool
                .idle
                .lock()
                .expect("pool")
                .get(&addr)
                .map(Vec::len),
            Some(1),
            "three sequential calls share one connection"
        );

        server.abort();
        node.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
