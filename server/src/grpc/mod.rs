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
//! On a graceful shutdown every connection is sent a `ConnectResetRequest` first, so SDKs move
//! to another member at once.
//!
//! Limits: at most `CONNECTIONS_MAX` connections, `LISTENS_PER_CONNECTION_MAX` config listens per
//! connection, `PAYLOAD_BYTES_MAX` per message; beyond them a typed error answers.

pub mod handlers;
pub mod ledger;
pub mod proto;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nacre_engine::config::ConfigKey;
use nacre_engine::cp_node::CpNode;
use nacre_engine::naming::ServiceKey;
use nacre_engine::ports::Clock;
use nacre_engine::wire::NamingRequest;
use serde_json::{json, Value};
use tokio::sync::mpsc;
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

/// Types only the cluster port accepts (§4.10); the SDK port refuses them.
const CLUSTER_ONLY: &[&str] = &[
    "DistroDataRequest",
    "MemberReportRequest",
    "ConfigChangeClusterSyncRequest",
    "ServerLoaderInfoRequest",
    "ServerReloadRequest",
];

/// One registered SDK connection.
pub struct Conn {
    pub id: String,
    /// The client's IP as the setup reported it (else the peer address).
    pub client_ip: String,
    /// A naming client is bound to it (label `module=naming`).
    pub naming: bool,
    /// The setup's labels and client version, for the ops views.
    pub labels: Value,
    pub version: String,
    tx: mpsc::Sender<Result<Payload, Status>>,
    /// Config listens: normalized key → (tenant as the client sent it, md5 it holds).
    pub listens: Mutex<BTreeMap<ConfigKey, (String, String)>>,
    /// Naming subscriptions: service → requested clusters.
    pub subscriptions: Mutex<BTreeMap<ServiceKey, String>>,
    /// Pushes waiting for their ack.
    pub ledger: Mutex<ledger::Ledger>,
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

/// The JSON object a request payload carries, or the 502 message (§4.4 step f).
pub fn request_body(payload: &Payload) -> Result<Value, String> {
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
    /// The gRPC state of a member.
    pub fn new(naming: Arc<NamingApi>, cp: Arc<CpNode>) -> Arc<Grpc> {
        Arc::new(Grpc {
            naming,
            cp,
            by_addr: Mutex::new(BTreeMap::new()),
            by_id: Mutex::new(BTreeMap::new()),
            checked: Mutex::new(BTreeMap::new()),
            push_seq: AtomicU64::new(1),
        })
    }

    fn started(&self) -> bool {
        self.naming.distro.read(|d| d.loaded())
    }

    fn conn_by_addr(&self, addr: &SocketAddr) -> Option<Arc<Conn>> {
        self.by_addr.lock().expect("conns").get(addr).cloned()
    }

    fn conn_by_id(&self, id: &str) -> Option<Arc<Conn>> {
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
    pub fn push(&self, conn: &Conn, type_name: &str, mut body: Value) -> String {
        let id = self.push_seq.fetch_add(1, Ordering::Relaxed).to_string();
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
        id
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
        let body = match request_body(&payload) {
            Ok(v) => v,
            Err(message) => return failure("ErrorResponse", 502, &message),
        };
        if conn.naming {
            let keepalive = NamingRequest::KeepAlive {
                conn: conn.id.clone(),
            };
            let _ = self.naming.distro.handle(keepalive, 0).await;
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
        let conn = Arc::new(Conn {
            id: id.clone(),
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

    async fn unregister(&self, addr: SocketAddr, conn: &Conn) {
        self.by_addr.lock().expect("conns").remove(&addr);
        self.by_id.lock().expect("conns").remove(&conn.id);
        if conn.naming {
            let disconnect = NamingRequest::Disconnect {
                conn: conn.id.clone(),
            };
            let _ = self.naming.distro.handle(disconnect, 0).await;
        }
        tracing::debug!(conn = %conn.id, "grpc connection closed");
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
            // Acks of pushes arrive here: a response carrying the push's `requestId`.
            while let Some(msg) = inbound.next().await {
                let Ok(p) = msg else { break };
                let ack: Value = p
                    .body
                    .as_ref()
                    .and_then(|a| serde_json::from_slice(&a.value).ok())
                    .unwrap_or(Value::Null);
                if let Some(id) = ack.get("requestId").and_then(Value::as_str) {
                    let ok = ack.get("resultCode").and_then(Value::as_i64) == Some(200);
                    conn.ledger.lock().expect("ledger").acked(id, ok);
                }
            }
            grpc.unregister(addr, &conn).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// `GET /nacos/v1/core/loader/current` (and `/nacos/v2/core/loader/current`): the SDK
/// connections this member holds, keyed by connection id, with their labels.
pub fn ops_router(grpc: Arc<Grpc>) -> axum::Router {
    let current = move || {
        let grpc = grpc.clone();
        async move {
            let mut out = serde_json::Map::new();
            for c in grpc.conns() {
                out.insert(
                    c.id.clone(),
                    json!({
                        "metaInfo": {
                            "connectionId": c.id,
                            "clientIp": c.client_ip,
                            "labels": c.labels,
                            "version": c.version,
                            "connectType": "GRPC",
                        },
                        "listenedConfigs": c.listens.lock().expect("listens").len(),
                        "subscriptions": c.subscriptions.lock().expect("subscriptions").len(),
                        "pendingPushes": c.ledger.lock().expect("ledger").len(),
                    }),
                );
            }
            crate::http::json_response(&Value::Object(out))
        }
    };
    axum::Router::new()
        .route(
            "/nacos/v1/core/loader/current",
            axum::routing::get(current.clone()),
        )
        .route("/nacos/v2/core/loader/current", axum::routing::get(current))
}

/// Serves the SDK port until the process ends, with the push fan-out tasks.
pub async fn serve(grpc: Arc<Grpc>, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tokio::spawn(handlers::naming_pushes(grpc.clone()));
    tokio::spawn(handlers::config_pushes(grpc.clone()));
    tokio::spawn(handlers::push_retries(grpc.clone()));
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
