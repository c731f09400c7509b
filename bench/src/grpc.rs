//! A minimal raw client of the Nacos 2.x gRPC SDK protocol (wire reference §4), the gRPC
//! workloads and an in-process gRPC ceiling.
//!
//! One `GrpcConn` is one HTTP/2 transport, as an SDK client's: `ServerCheckRequest` over the
//! unary `/Request/request`, then the `/BiRequestStream/requestBiStream` stream opened with a
//! `ConnectionSetupRequest` (labels `module`, `source`) and the server's `SetupAckRequest`
//! awaited; after that, unary requests. Server pushes arriving on the stream are answered with
//! their response type (same `requestId`, `resultCode` 200) and handed to the owner, stamped
//! with their arrival time. The messages are the server crate's prost types.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use nacre_server::grpc::proto::request_server::{Request as RequestService, RequestServer};
use nacre_server::grpc::proto::Payload;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::BoxBody;
use tonic::client::Grpc;
use tonic::codec::ProstCodec;
use tonic::codegen::http;
use tonic::codegen::http::uri::PathAndQuery;

use crate::client::instance_addr;
use crate::load::{Failure, Workload, REQUEST_TIMEOUT};
use crate::report::now;

/// The SDK port is the HTTP port plus this (wire reference §1.1).
pub const GRPC_PORT_OFFSET: u16 = 1000;
/// How long the server may take to acknowledge the setup (the Java client's 5 s).
const SETUP_ACK_WAIT: Duration = Duration::from_secs(5);
/// Connecting the transport.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Opening a whole SDK connection: transport, check, stream, setup acknowledgement.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Pushes held for the owner before further ones are dropped (they are still acknowledged).
const PUSH_BACKLOG: usize = 4096;
/// Version the setup reports.
const CLIENT_VERSION: &str = "nacre-bench";

/// The SDK address of the member whose HTTP address is `http`.
pub fn grpc_addr(http: SocketAddr) -> Result<SocketAddr, String> {
    let port = http
        .port()
        .checked_add(GRPC_PORT_OFFSET)
        .ok_or_else(|| format!("{http}: no gRPC port above it"))?;
    Ok(SocketAddr::new(http.ip(), port))
}

/// A server push as it arrived.
pub struct Push {
    pub type_name: String,
    pub body: Value,
    pub at: Instant,
}

/// One SDK connection.
pub struct GrpcConn {
    grpc: Grpc<H2>,
    /// Drives the HTTP/2 connection; aborting it closes the transport.
    driver: JoinHandle<()>,
    pub connection_id: String,
    /// Our side of the bi-stream (kept open while the connection lives).
    stream: Option<mpsc::Sender<Payload>>,
    pushes: Option<mpsc::Receiver<Push>>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for GrpcConn {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.driver.abort();
    }
}

fn payload(type_name: &str, body: &Value) -> Payload {
    let mut p = Payload::new(type_name, body);
    if let Some(m) = p.metadata.as_mut() {
        m.client_ip = "127.0.0.1".into();
    }
    p
}

fn body_json(p: &Payload) -> Value {
    p.body
        .as_ref()
        .and_then(|a| serde_json::from_slice(&a.value).ok())
        .unwrap_or(Value::Null)
}

/// The response type that answers a pushed request type (`XRequest` → `XResponse`).
fn ack_type(request_type: &str) -> Option<String> {
    request_type
        .strip_suffix("Request")
        .map(|base| format!("{base}Response"))
}

/// One HTTP/2 connection driven by hyper directly: a request goes from the caller to the
/// connection task without tonic's `Channel` buffer in between (one task hop fewer).
#[derive(Clone)]
struct H2(http2::SendRequest<BoxBody>);

impl tower_service::Service<http::Request<BoxBody>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<BoxBody>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// Connects one transport; the client and the task that drives the connection.
async fn transport(addr: SocketAddr) -> Result<(Grpc<H2>, JoinHandle<()>), String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP/2 handshake with {addr}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let origin: http::Uri = format!("http://{addr}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    Ok((Grpc::with_origin(H2(send), origin), driver))
}

impl GrpcConn {
    /// A transport only, without check or setup (for the ceiling's trivial server).
    pub async fn plain(addr: SocketAddr) -> Result<GrpcConn, String> {
        let (grpc, driver) = transport(addr).await?;
        Ok(GrpcConn {
            grpc,
            driver,
            connection_id: String::new(),
            stream: None,
            pushes: None,
            reader: None,
        })
    }

    /// An SDK connection of `module` (`naming` or `config`), set up and acknowledged, within
    /// `OPEN_TIMEOUT`.
    pub async fn open(addr: SocketAddr, module: &str) -> Result<GrpcConn, String> {
        tokio::time::timeout(OPEN_TIMEOUT, GrpcConn::open_unbounded(addr, module))
            .await
            .map_err(|_| {
                format!(
                    "{addr}: no connection set up within {} s",
                    OPEN_TIMEOUT.as_secs()
                )
            })?
    }

    async fn open_unbounded(addr: SocketAddr, module: &str) -> Result<GrpcConn, String> {
        let mut conn = GrpcConn::plain(addr).await?;
        let check = conn
            .call("ServerCheckRequest", json!({}))
            .await
            .map_err(|f| format!("ServerCheckRequest: {}", f.kind))?;
        conn.connection_id = check
            .get("connectionId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();

        let (tx, rx) = mpsc::channel::<Payload>(PUSH_BACKLOG);
        let setup = json!({
            "clientVersion": CLIENT_VERSION,
            "tenant": "",
            "labels": {"source": "sdk", "module": module, "AppName": "nacre-bench"},
            "abilityTable": {},
            "headers": {},
        });
        tx.send(payload("ConnectionSetupRequest", &setup))
            .await
            .map_err(|_| "stream closed before the setup".to_string())?;
        conn.grpc.ready().await.map_err(|e| e.to_string())?;
        let mut inbound = conn
            .grpc
            .streaming(
                tonic::Request::new(ReceiverStream::new(rx)),
                PathAndQuery::from_static("/BiRequestStream/requestBiStream"),
                ProstCodec::<Payload, Payload>::default(),
            )
            .await
            .map_err(|s| format!("requestBiStream: {}", s.message()))?
            .into_inner();

        let (push_tx, push_rx) = mpsc::channel::<Push>(PUSH_BACKLOG);
        let (acked_tx, acked_rx) = oneshot::channel::<()>();
        let acks = tx.clone();
        let reader = tokio::spawn(async move {
            let mut acked_tx = Some(acked_tx);
            while let Ok(Some(p)) = inbound.message().await {
                let at = now();
                let type_name = p.type_name().to_string();
                let body = body_json(&p);
                if type_name == "SetupAckRequest" {
                    if let Some(t) = acked_tx.take() {
                        let _ = t.send(());
                    }
                    continue;
                }
                if let (Some(reply), Some(id)) = (
                    ack_type(&type_name),
                    body.get("requestId").and_then(Value::as_str),
                ) {
                    let ack = json!({
                        "requestId": id,
                        "resultCode": 200,
                        "errorCode": 0,
                        "success": true,
                    });
                    if acks.send(payload(&reply, &ack)).await.is_err() {
                        break;
                    }
                }
                // A full backlog drops the push for the owner; the server has its ack anyway.
                let _ = push_tx.try_send(Push {
                    type_name,
                    body,
                    at,
                });
            }
        });
        conn.stream = Some(tx);
        conn.pushes = Some(push_rx);
        conn.reader = Some(reader);
        match tokio::time::timeout(SETUP_ACK_WAIT, acked_rx).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(_)) => Err("the stream ended before SetupAckRequest".into()),
            Err(_) => Err(format!(
                "no SetupAckRequest within {} s of the setup",
                SETUP_ACK_WAIT.as_secs()
            )),
        }
    }

    /// One unary request; the response's JSON when its `resultCode` is 200.
    pub async fn call(&mut self, type_name: &str, mut body: Value) -> Result<Value, Failure> {
        if let Some(o) = body.as_object_mut() {
            o.entry("headers").or_insert_with(|| json!({}));
        }
        self.grpc
            .ready()
            .await
            .map_err(|e| Failure::transport(format!("transport: {e}")))?;
        let call = self.grpc.unary(
            tonic::Request::new(payload(type_name, &body)),
            PathAndQuery::from_static("/Request/request"),
            ProstCodec::<Payload, Payload>::default(),
        );
        let response = tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| {
                Failure::transport(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))
            })?
            .map_err(|s| Failure::transport(format!("status {:?}: {}", s.code(), s.message())))?
            .into_inner();
        let answer = body_json(&response);
        if answer.get("resultCode").and_then(Value::as_i64) == Some(200) {
            return Ok(answer);
        }
        let code = answer.get("errorCode").and_then(Value::as_i64).unwrap_or(0);
        let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
        let kind = format!("{} errorCode {code}: {message}", response.type_name());
        // 301: the server no longer knows this transport's setup; a new connection is needed.
        Err(if code == 301 {
            Failure::transport(kind)
        } else {
            Failure::answer(kind)
        })
    }

    /// The next push that arrives before `until`.
    pub async fn next_push(&mut self, until: Instant) -> Option<Push> {
        let rx = self.pushes.as_mut()?;
        let left = until.saturating_duration_since(now());
        tokio::time::timeout(left, rx.recv()).await.ok().flatten()
    }

    /// Drops the pushes received so far.
    pub fn drain_pushes(&mut self) {
        if let Some(rx) = self.pushes.as_mut() {
            while rx.try_recv().is_ok() {}
        }
    }
}

/// An instance as SDKs send it.
pub fn instance_json(ip: &str, port: u16) -> Value {
    json!({
        "ip": ip,
        "port": port,
        "weight": 1.0,
        "healthy": true,
        "enabled": true,
        "ephemeral": true,
        "clusterName": "DEFAULT",
        "metadata": {},
    })
}

/// `InstanceRequest` registering `ip:port` in `service` (public, DEFAULT_GROUP).
pub fn register_request(service: &str, ip: &str, port: u16) -> Value {
    json!({
        "type": "registerInstance",
        "namespace": "public",
        "groupName": "DEFAULT_GROUP",
        "serviceName": service,
        "instance": instance_json(ip, port),
    })
}

/// `ConfigPublishRequest` of `content` under `data_id` / group `bench`.
pub fn publish_request(data_id: &str, content: &str) -> Value {
    json!({
        "dataId": data_id,
        "group": "bench",
        "tenant": "",
        "content": content,
        "casMd5": "",
        "additionMap": {},
    })
}

/// What each gRPC request is.
#[derive(Clone, Copy)]
pub enum GrpcKind {
    /// `InstanceRequest` registerInstance over `services` services; a connection holds one
    /// instance per service, so each request replaces that connection's instance with a new
    /// address.
    Register { services: u64 },
    /// `ConfigPublishRequest`, a new content each time, over `keys` configs.
    ConfigPublish { keys: u64 },
    /// `ConfigQueryRequest` over `keys` configs (published first).
    ConfigGet { keys: u64 },
    /// `ConfigQueryRequest` against the in-process trivial handler.
    Ceiling,
}

/// A gRPC workload against one SDK port.
pub struct GrpcLoad {
    pub addr: SocketAddr,
    pub kind: GrpcKind,
}

impl GrpcKind {
    /// The report's workload id, its name, and the ceiling it is a fraction of.
    pub fn label(self) -> (&'static str, &'static str, Option<&'static str>) {
        match self {
            GrpcKind::Register { .. } => (
                "grpc-register",
                "gRPC instance register",
                Some("grpc-ceiling"),
            ),
            GrpcKind::ConfigPublish { .. } => (
                "grpc-config-publish",
                "gRPC config publish",
                Some("grpc-ceiling"),
            ),
            GrpcKind::ConfigGet { .. } => {
                ("grpc-config-get", "gRPC config get", Some("grpc-ceiling"))
            }
            GrpcKind::Ceiling => ("grpc-ceiling", "ceiling: trivial tonic unary", None),
        }
    }

    fn request(self, n: u64) -> (&'static str, Value) {
        match self {
            GrpcKind::Register { services } => {
                let (ip, port) = instance_addr(n);
                let service = format!("bench.grpc.{}", n % services);
                ("InstanceRequest", register_request(&service, &ip, port))
            }
            GrpcKind::ConfigPublish { keys } => (
                "ConfigPublishRequest",
                publish_request(&format!("bench.{}", n % keys), &format!("value-{n}")),
            ),
            GrpcKind::ConfigGet { keys } => (
                "ConfigQueryRequest",
                json!({"dataId": format!("bench.{}", n % keys), "group": "bench", "tenant": ""}),
            ),
            GrpcKind::Ceiling => (
                "ConfigQueryRequest",
                json!({"dataId": "bench.0", "group": "bench", "tenant": ""}),
            ),
        }
    }
}

impl Workload for GrpcLoad {
    type Session = GrpcConn;

    fn target(&self) -> String {
        self.addr.to_string()
    }

    async fn open(&self, _conn: usize) -> Result<GrpcConn, String> {
        match self.kind {
            GrpcKind::Ceiling => GrpcConn::plain(self.addr).await,
            GrpcKind::Register { .. } => GrpcConn::open(self.addr, "naming").await,
            GrpcKind::ConfigPublish { .. } | GrpcKind::ConfigGet { .. } => {
                GrpcConn::open(self.addr, "config").await
            }
        }
    }

    async fn send(&self, conn: &mut GrpcConn, n: u64) -> Result<(), Failure> {
        let (type_name, body) = self.kind.request(n);
        conn.call(type_name, body).await.map(|_| ())
    }
}

/// A trivial `Request/request` handler: every call gets the same small config answer.
struct Trivial(Payload);

#[tonic::async_trait]
impl RequestService for Trivial {
    async fn request(
        &self,
        _request: tonic::Request<Payload>,
    ) -> Result<tonic::Response<Payload>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

/// Serves the trivial handler on an ephemeral loopback port; its address and task.
pub async fn trivial_server() -> Result<(SocketAddr, JoinHandle<()>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let incoming = tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
        .map_err(|e| e.to_string())?;
    let answer = payload(
        "ConfigQueryResponse",
        &json!({
            "content": "helloWorld", "contentType": "text", "md5": "", "lastModified": 0,
            "beta": false, "resultCode": 200, "errorCode": 0, "success": true,
        }),
    );
    let service = RequestServer::new(Trivial(answer));
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_are_answered_with_their_response_type() {
        assert_eq!(
            ack_type("NotifySubscriberRequest").as_deref(),
            Some("NotifySubscriberResponse")
        );
        assert_eq!(
            ack_type("ConfigChangeNotifyRequest").as_deref(),
            Some("ConfigChangeNotifyResponse")
        );
        assert_eq!(ack_type("ErrorResponse"), None);
    }

    #[test]
    fn the_sdk_port_is_a_thousand_above() {
        let http: SocketAddr = "127.0.0.1:8848".parse().expect("addr");
        assert_eq!(grpc_addr(http).expect("port").port(), 9848);
        let top: SocketAddr = "127.0.0.1:65000".parse().expect("addr");
        assert!(grpc_addr(top).is_err());
    }

    #[tokio::test]
    async fn the_trivial_server_answers_a_unary_call() {
        let (addr, task) = trivial_server().await.expect("serve");
        let mut conn = GrpcConn::plain(addr).await.expect("connect");
        let answer = conn
            .call("ConfigQueryRequest", json!({"dataId": "x"}))
            .await
            .expect("answer");
        assert_eq!(answer["content"], "helloWorld");
        task.abort();
    }
}
