//! The Nacos 2.x gRPC SDK protocol on the main port + 1000 (wire reference §4): the unary
//! `Request/request` and the `BiRequestStream/requestBiStream` stream, with JSON bodies.
//!
//! Connections. A connection is one HTTP/2 transport, identified by the peer `ip:port` that the
//! unary calls and the stream share. `ServerCheckRequest` names it (`<ms>_<ip>_<port>`); the
//! first stream message, `ConnectionSetupRequest`, registers it (and, when the client sent an
//! `abilityTable`, is answered with a `SetupAckRequest` push advertising persistent instances
//! over gRPC). A unary call on a transport without a registered setup gets `ErrorResponse` 301;
//! while this member is starting (Distro not loaded) every call gets 300. When the stream ends
//! the connection is unregistered at once: its naming client is disconnected in Distro (its
//! instances disappear cluster-wide) and its config listens are dropped.
//!
//! Pushes travel on the stream with a decimal `requestId` from one counter: naming changes come
//! from Distro's push decisions (`NotifySubscriberRequest`), config changes from the applied Raft
//! log (`ConfigChangeNotifyRequest`). A push never blocks: a push that cannot be queued, or is
//! not acknowledged in time (5 s naming, 3 s config), is sent again with the then-current state,
//! up to 50 attempts (`ledger`).
//!
//! Liveness (§4.4 step 7). Every request and every stream message refreshes a connection's last
//! activity. A sweep every 3 s feeds Distro's keepalive for the naming clients of active
//! connections and probes each connection idle for 20 s with a `ClientDetectionRequest`; one
//! not answered successfully within 5 s is expelled: unregistered (its instances leave every
//! member), its stream ended with `UNAVAILABLE`. A stopped or wedged client process therefore
//! loses its instances within about 28 s even while its TCP connection stays open.
//!
//! Server requests that expect an answer (`ClientDetectionRequest`, `ClientConfigMetricRequest`)
//! travel like pushes and are matched with their response by `requestId` (`Grpc::ask`).
//!
//! On a graceful shutdown every connection is sent a `ConnectResetRequest` first, so SDKs move
//! to another member at once; the loader ops endpoints send it to one connection or a count of
//! them (rebalancing).
//!
//! Limits: at most `CONNECTIONS_MAX` connections, `LISTENS_PER_CONNECTION_MAX` config listens per
//! connection, `PAYLOAD_BYTES_MAX` per message; beyond them a typed error answers.

pub mod handlers;
pub mod ledger;
pub mod ops;
pub mod proto;

pub use ops::ops_router;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nacre_engine::config::ConfigKey;
use nacre_engine::cp_node::CpNode;
use nacre_engine::naming::ServiceKey;
use nacre_engine::ports::Clock;
use nacre_engine::wire::NamingRequest;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::http_naming::NamingApi;
use crate::SystemClock;
use proto::bi_request_stream_server::{BiRequestStream, BiRequestStreamServer};
use proto::request_server::RequestServer;
use proto::Payload;

/// Most SDK connections one member holds.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Most config keys one connection may listen to.
pub const LISTENS_PER_CONNECTION_MAX: usize = 10_000;
/// Largest message accepted or sent (Nacos's `max-inbound-message-size`).
pub const PAYLOAD_BYTES_MAX: usize = 10 * 1024 * 1024;
/// Pushes queued per connection before new ones are dropped.
pub const PUSH_QUEUE: usize = 1024;
/// A connection idle this long is probed (`KEEP_ALIVE_TIME`); `nacre.remote.client.idle.ms`.
pub const CLIENT_IDLE_MS: u64 = 20_000;
/// Period of the liveness sweep.
const SWEEP_MS: u64 = 3_000;
/// Time a probed connection has to answer.
const DETECTION_WINDOW_MS: u64 = 5_000;

/// Types only the cluster port accepts (§4.10); the SDK port refuses them.
const CLUSTER_ONLY: &[&str] = &[
    "DistroDataRequest",
    "MemberReportRequest",
    "ConfigChangeClusterSyncRequest",
    "ServerLoaderInfoRequest",
    "ServerReloadRequest",
];

/// One config listen of a connection.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The tenant as the client sent it (echoed in pushes).
    pub tenant: String,
    /// The md5 the client holds.
    pub md5: String,
    /// The `Vipserver-Tag` header of the listen (tag gray items).
    pub tag: Option<String>,
}

/// One registered SDK connection.
pub struct Conn {
    pub id: String,
    /// The transport (peer address) it was registered on.
    addr: SocketAddr,
    /// The client's IP as the setup reported it (else the peer address).
    pub client_ip: String,
    /// A naming client is bound to it (label `module=naming`).
    pub naming: bool,
    /// The setup's labels and client version, for the ops views.
    pub labels: Value,
    pub version: String,
    tx: mpsc::Sender<Result<Payload, Status>>,
    /// Config listens by normalized key.
    pub listens: Mutex<BTreeMap<ConfigKey, Listen>>,
    /// Naming subscriptions: service → requested clusters.
    pub subscriptions: Mutex<BTreeMap<ServiceKey, String>>,
    /// Pushes waiting for their ack.
    pub ledger: Mutex<ledger::Ledger>,
    /// Server requests waiting for their response, by `requestId`.
    replies: Mutex<BTreeMap<String, oneshot::Sender<Value>>>,
    /// Wall-clock ms of the last request or stream message.
    last_active_ms: AtomicU64,
    /// Wall-clock ms of the last keepalive given to Distro for it.
    fed_ms: AtomicU64,
    /// A detection probe is outstanding.
    probing: AtomicBool,
    /// Ends the connection's stream task (expelled).
    closed: Notify,
}

impl Conn {
    fn touch(&self) {
        self.last_active_ms
            .fetch_max(SystemClock.now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the last sign of life.
    pub fn idle_ms(&self) -> u64 {
        SystemClock
            .now_ms()
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed))
    }
}

/// The gRPC side of one member.
pub struct Grpc {
    pub naming: Arc<NamingApi>,
    pub cp: Arc<CpNode>,
    by_addr: Mutex<BTreeMap<SocketAddr, Arc<Conn>>>,
    by_id: Mutex<BTreeMap<String, Arc<Conn>>>,
    /// Ids handed out by `ServerCheckRequest`, used by the setup that follows.
    checked: Mutex<BTreeMap<SocketAddr, String>>,
    push_seq: AtomicU64,
    /// Idle time after which a connection is probed.
    idle_ms: u64,
}

/// Base fields of a successful response.
pub fn success(mut body: Value) -> Value {
    if let Some(o) = body.as_object_mut() {
        o.insert("resultCode".into(), json!(200));
        o.insert("errorCode".into(), json!(0));
        o.insert("success".into(), json!(true));
    }
    body
}

/// A failed response of type `type_name` (`resultCode` 500, a non-zero `errorCode`).
pub fn failure(type_name: &str, code: i64, message: &str) -> Payload {
    Payload::new(
        type_name,
        &json!({
            "resultCode": 500,
            "errorCode": code,
            "success": false,
            "message": message,
        }),
    )
}

/// The JSON object a request payload carries, or the 502 message (§4.4 step f). Bodies nested
/// deeper than `limits::JSON_DEPTH_MAX` are refused before they are parsed.
pub fn request_body(payload: &Payload) -> Result<Value, String> {
    if let Some(a) = &payload.body {
        crate::limits::check_json_depth(&a.value).map_err(|e| e.to_string())?;
    }
    match payload
        .body
        .as_ref()
        .map(|a| serde_json::from_slice(&a.value))
    {
        Some(Ok(v @ Value::Object(_))) => Ok(v),
        Some(Ok(_)) | None => Err("Invalid request".into()),
        Some(Err(e)) => Err(e.to_string()),
    }
}

impl Grpc {
    /// The gRPC state of a member; connections idle `idle_ms` are probed.
    pub fn new(naming: Arc<NamingApi>, cp: Arc<CpNode>, idle_ms: u64) -> Arc<Grpc> {
        Arc::new(Grpc {
            naming,
            cp,
            by_addr: Mutex::new(BTreeMap::new()),
            by_id: Mutex::new(BTreeMap::new()),
            checked: Mutex::new(BTreeMap::new()),
            push_seq: AtomicU64::new(1),
            idle_ms: idle_ms.max(1),
        })
    }

    fn started(&self) -> bool {
        self.naming.distro.read(|d| d.loaded())
    }

    fn conn_by_addr(&self, addr: &SocketAddr) -> Option<Arc<Conn>> {
        self.by_addr.lock().expect("conns").get(addr).cloned()
    }

    /// The connection with id `id`.
    pub fn conn_by_id(&self, id: &str) -> Option<Arc<Conn>> {
        self.by_id.lock().expect("conns").get(id).cloned()
    }

    /// Every registered connection.
    pub fn conns(&self) -> Vec<Arc<Conn>> {
        self.by_id
            .lock()
            .expect("conns")
            .values()
            .cloned()
            .collect()
    }

    /// Sends a server push (a request with a fresh `requestId`) on a connection, never waiting;
    /// returns the `requestId`.
    pub fn push(&self, conn: &Conn, type_name: &str, body: Value) -> String {
        let id = self.push_seq.fetch_add(1, Ordering::Relaxed).to_string();
        self.send(conn, &id, type_name, body);
        id
    }

    /// Sends a server request and waits up to `timeout` for the client's response (the body
    /// of the payload carrying the same `requestId`); `None` when none came.
    pub async fn ask(
        &self,
        conn: &Conn,
        type_name: &str,
        body: Value,
        timeout: Duration,
    ) -> Option<Value> {
        let id = self.push_seq.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        conn.replies.lock().expect("replies").insert(id.clone(), tx);
        self.send(conn, &id, type_name, body);
        let answer = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        conn.replies.lock().expect("replies").remove(&id);
        answer
    }

    fn send(&self, conn: &Conn, id: &str, type_name: &str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.insert("requestId".into(), json!(id));
            o.insert("headers".into(), json!({}));
        }
        if conn
            .tx
            .try_send(Ok(Payload::new(type_name, &body)))
            .is_err()
        {
            tracing::debug!(conn = %conn.id, "push {type_name} dropped: queue full or closed");
        }
    }

    /// Handles one unary call from transport `addr`.
    async fn unary(self: &Arc<Self>, addr: Option<SocketAddr>, payload: Payload) -> Payload {
        let type_name = payload.type_name().to_string();
        if CLUSTER_ONLY.contains(&type_name.as_str()) {
            return failure(
                "ErrorResponse",
                502,
                &format!(" invoke {type_name} from sdk is forbidden"),
            );
        }
        if !self.started() {
            return failure("ErrorResponse", 300, "Server is starting,please try later.");
        }
        let Some(addr) = addr else {
            return failure("ErrorResponse", 500, "no peer address on this transport");
        };
        if type_name == "ServerCheckRequest" {
            let id = format!("{}_{}_{}", SystemClock.now_ms(), addr.ip(), addr.port());
            self.checked
                .lock()
                .expect("checked")
                .insert(addr, id.clone());
            return Payload::new(
                "ServerCheckResponse",
                &success(json!({"connectionId": id, "supportAbilityNegotiation": true})),
            );
        }
        let Some(conn) = self.conn_by_addr(&addr) else {
            return failure("ErrorResponse", 301, "Connection is unregistered.");
        };
        conn.touch();
        let mut body = match request_body(&payload) {
            Ok(v) => v,
            Err(message) => return failure("ErrorResponse", 502, &message),
        };
        // The metadata headers join the request's own (as Nacos's acceptor merges them).
        if let Some(m) = payload.metadata.as_ref().filter(|m| !m.headers.is_empty()) {
            if !body.get("headers").is_some_and(Value::is_object) {
                body["headers"] = json!({});
            }
            for (k, v) in &m.headers {
                body["headers"][k] = json!(v);
            }
        }
        if conn.naming {
            let keepalive = NamingRequest::KeepAlive {
                conn: conn.id.clone(),
            };
            let _ = self.naming.distro.handle(keepalive, 0).await;
            conn.fed_ms.store(SystemClock.now_ms(), Ordering::Relaxed);
        }
        handlers::handle(self, &conn, &type_name, &body).await
    }

    /// Registers the connection of transport `addr` from its setup message.
    async fn register(
        self: &Arc<Self>,
        addr: SocketAddr,
        setup: &Value,
        tx: mpsc::Sender<Result<Payload, Status>>,
    ) -> Result<Arc<Conn>, Status> {
        if self.by_id.lock().expect("conns").len() >= CONNECTIONS_MAX {
            return Err(Status::resource_exhausted(format!(
                "more than {CONNECTIONS_MAX} connections"
            )));
        }
        let id = self
            .checked
            .lock()
            .expect("checked")
            .remove(&addr)
            .unwrap_or_else(|| format!("{}_{}_{}", SystemClock.now_ms(), addr.ip(), addr.port()));
        let labels = setup.get("labels").cloned().unwrap_or(Value::Null);
        let naming = labels.get("module").and_then(Value::as_str) == Some("naming");
        let now = SystemClock.now_ms();
        let conn = Arc::new(Conn {
            id: id.clone(),
            addr,
            client_ip: addr.ip().to_string(),
            naming,
            labels: labels.clone(),
            version: setup
                .get("clientVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            tx,
            listens: Mutex::new(BTreeMap::new()),
            subscriptions: Mutex::new(BTreeMap::new()),
            ledger: Mutex::new(ledger::Ledger::default()),
            replies: Mutex::new(BTreeMap::new()),
            last_active_ms: AtomicU64::new(now),
            fed_ms: AtomicU64::new(now),
            probing: AtomicBool::new(false),
            closed: Notify::new(),
        });
        if naming {
            let connect = NamingRequest::Connect { conn: id.clone() };
            if let Err(e) = self.naming.distro.handle(connect, 0).await {
                return Err(Status::unavailable(e.to_string()));
            }
        }
        self.by_addr
            .lock()
            .expect("conns")
            .insert(addr, conn.clone());
        self.by_id.lock().expect("conns").insert(id, conn.clone());
        if setup.get("abilityTable").is_some() {
            self.push(
                &conn,
                "SetupAckRequest",
                json!({"abilityTable": {"supportPersistentInstanceByGrpc": true}}),
            );
        }
        tracing::debug!(conn = %conn.id, naming, "grpc connection registered");
        Ok(conn)
    }

    /// Forgets a connection (once: a later call for the same connection does nothing).
    async fn unregister(&self, conn: &Conn) {
        {
            let mut by_addr = self.by_addr.lock().expect("conns");
            if by_addr.get(&conn.addr).is_some_and(|c| c.id == conn.id) {
                by_addr.remove(&conn.addr);
            }
        }
        if self.by_id.lock().expect("conns").remove(&conn.id).is_none() {
            return;
        }
        if conn.naming {
            let disconnect = NamingRequest::Disconnect {
                conn: conn.id.clone(),
            };
            let _ = self.naming.distro.handle(disconnect, 0).await;
        }
        tracing::debug!(conn = %conn.id, "grpc connection closed");
    }

    /// Unregisters a connection that failed its liveness check and ends its stream.
    pub async fn expel(&self, conn: &Conn, why: &str) {
        tracing::info!(conn = %conn.id, "connection expelled: {why}");
        let _ = conn.tx.try_send(Err(Status::unavailable(format!(
            "connection expelled: {why}"
        ))));
        conn.closed.notify_one();
        self.unregister(conn).await;
    }

    /// One liveness sweep: feeds Distro's keepalive for recently active naming connections and
    /// probes the idle ones (each probe runs on its own task).
    async fn sweep(self: &Arc<Self>) {
        for conn in self.conns() {
            let last = conn.last_active_ms.load(Ordering::Relaxed);
            if conn.idle_ms() < self.idle_ms {
                if conn.naming && last > conn.fed_ms.load(Ordering::Relaxed) {
                    conn.fed_ms.store(last, Ordering::Relaxed);
                    let keepalive = NamingRequest::KeepAlive {
                        conn: conn.id.clone(),
                    };
                    if self.naming.distro.handle(keepalive, 0).await.is_err() {
                        self.expel(&conn, "its naming client is gone").await;
                    }
                }
                continue;
            }
            if conn.probing.swap(true, Ordering::Relaxed) {
                continue;
            }
            let grpc = self.clone();
            let window = Duration::from_millis(DETECTION_WINDOW_MS.min(self.idle_ms));
            tokio::spawn(async move {
                let answer = grpc
                    .ask(&conn, "ClientDetectionRequest", json!({}), window)
                    .await;
                let ok = answer
                    .as_ref()
                    .and_then(|a| a.get("resultCode"))
                    .and_then(Value::as_i64)
                    == Some(200);
                if ok {
                    conn.touch();
                } else {
                    grpc.expel(&conn, "no answer to ClientDetectionRequest")
                        .await;
                }
                conn.probing.store(false, Ordering::Relaxed);
            });
        }
    }

    /// Runs the liveness sweep until the process ends.
    async fn detect_clients(self: Arc<Self>) {
        let period = Duration::from_millis((self.idle_ms / 2).clamp(100, SWEEP_MS));
        loop {
            tokio::time::sleep(period).await;
            self.sweep().await;
        }
    }
}

/// How long a stopping member gives its SDK connections to take their `ConnectResetRequest`.
const RESET_GRACE_MS: u64 = 300;

impl Grpc {
    /// Asks every SDK connection to reconnect elsewhere (`ConnectResetRequest` with no server,
    /// so the client picks any other member), then waits `RESET_GRACE_MS` for the pushes to
    /// leave. Used on graceful shutdown.
    pub async fn reset_all(&self) {
        let conns = self.conns();
        for c in &conns {
            self.push(
                c,
                "ConnectResetRequest",
                json!({"serverIp": "", "serverPort": "", "connectionId": c.id}),
            );
        }
        if !conns.is_empty() {
            tracing::info!(
                "asked {} SDK connections to reconnect elsewhere",
                conns.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(RESET_GRACE_MS)).await;
        }
    }
}

/// The unary service.
pub struct UnaryService(pub Arc<Grpc>);

#[tonic::async_trait]
impl proto::request_server::Request for UnaryService {
    async fn request(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let addr = request.remote_addr();
        Ok(Response::new(
            self.0.unary(addr, request.into_inner()).await,
        ))
    }
}

/// The bi-directional stream service.
pub struct StreamService(pub Arc<Grpc>);

#[tonic::async_trait]
impl BiRequestStream for StreamService {
    #[allow(non_camel_case_types)]
    type requestBiStreamStream = ReceiverStream<Result<Payload, Status>>;

    async fn request_bi_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Self::requestBiStreamStream>, Status> {
        let Some(addr) = request.remote_addr() else {
            return Err(Status::failed_precondition("no peer address"));
        };
        if !self.0.started() {
            return Err(Status::unavailable("Server is starting,please try later."));
        }
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(PUSH_QUEUE);
        let grpc = self.0.clone();
        tokio::spawn(async move {
            // The first message must be the setup; anything else ends the stream.
            let setup = match inbound.next().await {
                Some(Ok(p)) if p.type_name() == "ConnectionSetupRequest" => p,
                Some(Ok(p)) => {
                    tracing::debug!("stream opened with {} instead of a setup", p.type_name());
                    return;
                }
                _ => return,
            };
            let body: Value = setup
                .body
                .as_ref()
                .and_then(|a| serde_json::from_slice(&a.value).ok())
                .unwrap_or(Value::Null);
            let conn = match grpc.register(addr, &body, tx.clone()).await {
                Ok(c) => c,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            // Responses to pushes and server requests arrive here, carrying their `requestId`.
            loop {
                let msg = tokio::select! {
                    m = inbound.next() => m,
                    () = conn.closed.notified() => break,
                };
                let Some(Ok(p)) = msg else { break };
                conn.touch();
                let answer: Value = p
                    .body
                    .as_ref()
                    .and_then(|a| serde_json::from_slice(&a.value).ok())
                    .unwrap_or(Value::Null);
                let Some(id) = answer.get("requestId").and_then(Value::as_str) else {
                    continue;
                };
                let waiting = conn.replies.lock().expect("replies").remove(id);
                match waiting {
                    Some(reply) => {
                        let _ = reply.send(answer);
                    }
                    None => {
                        let ok = answer.get("resultCode").and_then(Value::as_i64) == Some(200);
                        conn.ledger.lock().expect("ledger").acked(id, ok);
                    }
                }
            }
            grpc.unregister(&conn).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves the SDK port until the process ends, with the push fan-out tasks.
pub async fn serve(grpc: Arc<Grpc>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tokio::spawn(handlers::naming_pushes(grpc.clone()));
    tokio::spawn(handlers::config_pushes(grpc.clone()));
    tokio::spawn(handlers::push_retries(grpc.clone()));
    tokio::spawn(grpc.clone().detect_clients());
    let unary = RequestServer::new(UnaryService(grpc.clone()))
        .max_decoding_message_size(PAYLOAD_BYTES_MAX)
        .max_encoding_message_size(PAYLOAD_BYTES_MAX);
    let stream = BiRequestStreamServer::new(StreamService(grpc))
        .max_decoding_message_size(PAYLOAD_BYTES_MAX)
        .max_encoding_message_size(PAYLOAD_BYTES_MAX);
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| anyhow::anyhow!("grpc listener: {e}"))?;
    tonic::transport::Server::builder()
        .add_service(unary)
        .add_service(stream)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
