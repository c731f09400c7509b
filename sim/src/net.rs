//! The peer transport over madsim's network, and each member's serving loop.
//!
//! Messages travel as the same postcard frames the server sends over TCP (`wire::frame`), so
//! the simulator exercises the real codec. A call binds a fresh endpoint, sends one framed
//! request and waits for one framed response until the deadline. A call to a member whose
//! process is down (host up) fails fast as `Unreachable`, as a TCP connect to a closed port
//! does; a call across a partition times out.

// Runs only under madsim, where `Instant::now` is simulated time.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::Endpoint;
use nacre_engine::member::Member;
use nacre_engine::ports::{BoxFuture, PeerTransport, TransportError};
use nacre_engine::wire::{decode_msg, encode_msg, PeerRequest, PeerResponse};

const TAG_REQUEST: u64 = 1;
const TAG_RESPONSE: u64 = 2;

/// Addresses whose member process is running.
pub type Alive = Arc<Mutex<BTreeSet<String>>>;

/// The simulated transport, shared by members and clients.
#[derive(Clone)]
pub struct SimTransport {
    pub alive: Alive,
}

/// Request ids: a response is accepted only by the call that sent the matching request. An
/// ephemeral port is reused after its call ends, so without ids a late answer to a timed-out
/// call would be taken as the answer to a newer one (found by sim seed 1567).
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

impl SimTransport {
    async fn call_inner(
        alive: Alive,
        addr: String,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, TransportError> {
        let dst: SocketAddr = addr
            .parse()
            .map_err(|_| TransportError::Unreachable(format!("bad address {addr}")))?;
        if !alive.lock().expect("alive lock").contains(&addr) {
            tokio::time::sleep(Duration::from_millis(2)).await;
            return Err(TransportError::Unreachable(format!(
                "{addr}: connection refused"
            )));
        }
        let ep = Endpoint::bind("0.0.0.0:0")
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed);
        let bytes = encode_msg(&request);
        ep.send_to_raw(dst, TAG_REQUEST, Box::new((id, bytes)))
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let answer = tokio::select! {
                biased;
                r = ep.recv_from_raw(TAG_RESPONSE) => r,
                _ = tokio::time::sleep_until(deadline) => return Err(TransportError::Timeout),
            };
            let (payload, _) = answer.map_err(|e| TransportError::BadResponse(e.to_string()))?;
            let Ok(envelope) = payload.downcast::<(u64, Vec<u8>)>() else {
                return Err(TransportError::BadResponse(
                    "not a response envelope".into(),
                ));
            };
            let (got, bytes) = *envelope;
            if got != id {
                continue; // a late answer to an earlier call on a reused port
            }
            let (response, _) = decode_msg::<PeerResponse>(&bytes)
                .map_err(|e| TransportError::BadResponse(e.to_string()))?;
            return Ok(response);
        }
    }
}

impl PeerTransport for SimTransport {
    fn call(
        &self,
        _target: u64,
        addr: &str,
        request: PeerRequest,
        timeout: Duration,
    ) -> BoxFuture<Result<PeerResponse, TransportError>> {
        Box::pin(Self::call_inner(
            self.alive.clone(),
            addr.to_string(),
            request,
            timeout,
        ))
    }
}

/// Serves peer and client requests for one member until the member is killed.
pub async fn serve(addr: String, node: Arc<Member>) {
    let ep = Arc::new(
        Endpoint::bind(addr.as_str())
            .await
            .expect("a member's address is free in its own node"),
    );
    loop {
        // A receive error is transient (e.g. while the node is cut off); keep serving.
        let Ok((payload, from)) = ep.recv_from_raw(TAG_REQUEST).await else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        let node = node.clone();
        let ep = ep.clone();
        tokio::spawn(async move {
            let Ok(envelope) = payload.downcast::<(u64, Vec<u8>)>() else {
                return;
            };
            let (id, bytes) = *envelope;
            // A malformed frame is dropped: only that exchange fails.
            let Ok((request, _)) = decode_msg::<PeerRequest>(&bytes) else {
                return;
            };
            let response = node.handle_peer(request).await;
            let _ = ep
                .send_to_raw(from, TAG_RESPONSE, Box::new((id, encode_msg(&response))))
                .await;
        });
    }
}
