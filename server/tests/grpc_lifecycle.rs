//! The server side of the gRPC connection lifecycle, driven by a raw protocol client (the
//! generated tonic stubs, JSON bodies) against a real standalone `nacre` on 127.0.0.1 whose idle
//! threshold is shortened to 1 s through `nacre.remote.client.idle.ms`:
//! - an idle connection that answers `ClientDetectionRequest` stays, with its instance;
//! - a connection whose client stops answering (a wedged process keeping its TCP connection) is
//!   expelled: its instance disappears and its stream ends with `UNAVAILABLE`;
//! - `ClientConfigMetricRequest` through `/nacos/v1/cs/metrics/ip`, and `ConnectResetRequest`
//!   through the loader endpoints.
//!
//! Every wait is bounded.

use std::path::Path;
use std::time::Duration;

use nacre_server::grpc::proto::bi_request_stream_client::BiRequestStreamClient;
use nacre_server::grpc::proto::request_client::RequestClient;
use nacre_server::grpc::proto::Payload;
use nacre_tests::{free_http_port, http, temp_dir, Nacre};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Streaming;

/// The shortened idle threshold of these tests.
const IDLE_MS: u64 = 1_000;
/// Longest wait for anything in these tests.
const WAIT: Duration = Duration::from_secs(15);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

/// A standalone member probing connections idle for `IDLE_MS`.
fn start(label: &str) -> Nacre {
    let root = temp_dir(label);
    let props = root.join("application.properties");
    std::fs::write(&props, format!("nacre.remote.client.idle.ms={IDLE_MS}\n")).expect("props");
    let mut nacre = Nacre::start(
        bin(),
        free_http_port(),
        &root.join("data"),
        &root.join("nacre.log"),
        &[
            "-m",
            "standalone",
            "--properties",
            props.to_str().expect("utf-8"),
        ],
        "info,openraft=warn",
    );
    nacre
        .wait_ready_within(Duration::from_secs(20))
        .expect("ready");
    nacre
}

/// Stops a member started by `start` and removes its directory.
fn finish(nacre: Nacre) {
    let root = nacre.data_dir.parent().map(Path::to_path_buf);
    drop(nacre);
    if let Some(root) = root {
        let _ = std::fs::remove_dir_all(root);
    }
}

fn body(p: &Payload) -> Value {
    p.body
        .as_ref()
        .and_then(|a| serde_json::from_slice(&a.value).ok())
        .unwrap_or(Value::Null)
}

/// One raw SDK connection: the unary client and both sides of the stream, on one transport.
struct Raw {
    unary: RequestClient<Channel>,
    out: mpsc::Sender<Payload>,
    inbound: Streaming<Payload>,
    id: String,
}

impl Raw {
    async fn connect(http_port: u16, module: &str) -> Raw {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", http_port + 1000))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut unary = RequestClient::new(channel.clone());
        let check = unary
            .request(Payload::new("ServerCheckRequest", &json!({})))
            .await
            .expect("server check")
            .into_inner();
        let id = body(&check)["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_string();
        let (out, rx) = mpsc::channel(16);
        out.send(Payload::new(
            "ConnectionSetupRequest",
            &json!({"clientVersion": "raw-test", "tenant": "", "labels": {"module": module}}),
        ))
        .await
        .expect("setup");
        let inbound = BiRequestStreamClient::new(channel)
            .request_bi_stream(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        let mut raw = Raw {
            unary,
            out,
            inbound,
            id,
        };
        // The setup is handled asynchronously: wait until a request is no longer refused (301).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = raw.call("HealthCheckRequest", json!({})).await;
            if r.0 == "HealthCheckResponse" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "setup not registered: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        raw
    }

    async fn call(&mut self, type_name: &str, b: Value) -> (String, Value) {
        let p = self
            .unary
            .request(Payload::new(type_name, &b))
            .await
            .expect("unary call")
            .into_inner();
        (p.type_name().to_string(), body(&p))
    }

    /// The next server request on the stream, `None` when the stream ended (with its status).
    async fn next(&mut self) -> Result<Option<Payload>, tonic::Status> {
        match tokio::time::timeout(WAIT, self.inbound.next()).await {
            Ok(Some(Ok(p))) => Ok(Some(p)),
            Ok(Some(Err(status))) => Err(status),
            Ok(None) => Ok(None),
            Err(_) => panic!("nothing on the stream within {WAIT:?}"),
        }
    }

    async fn answer(&mut self, type_name: &str, request: &Payload, mut b: Value) {
        b["requestId"] = body(request)["requestId"].clone();
        b["resultCode"] = json!(200);
        b["errorCode"] = json!(0);
        b["success"] = json!(true);
        self.out
            .send(Payload::new(type_name, &b))
            .await
            .expect("answer");
    }

    async fn register(&mut self, service: &str, ip: &str) {
        let r = self
            .call(
                "InstanceRequest",
                json!({
                    "type": "registerInstance",
                    "namespace": "public",
                    "groupName": "DEFAULT_GROUP",
                    "serviceName": service,
                    "instance": {"ip": ip, "port": 8080, "ephemeral": true},
                }),
            )
            .await;
        assert_eq!(r.1["resultCode"], 200, "register: {r:?}");
    }
}

/// How many instances the member on `port` lists for `service`.
fn listed(port: u16, service: &str) -> usize {
    nacre_tests::listed(port, service).expect("list").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_probed_and_silent_ones_expelled() {
    let nacre = start("grpc-detection");
    let port = nacre.port;
    let mut alive = Raw::connect(port, "naming").await;
    alive.register("probed", "127.0.0.11").await;
    let mut wedged = Raw::connect(port, "naming").await;
    wedged.register("wedged", "127.0.0.12").await;
    assert_eq!(listed(port, "probed"), 1);
    assert_eq!(listed(port, "wedged"), 1);

    // The live client answers every probe, on its own task, while the wedged one reads its
    // stream but never answers: it is expelled.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let answering = tokio::spawn(async move {
        let mut probes = 0;
        loop {
            tokio::select! {
                _ = &mut stopped => return (alive, probes),
                p = alive.next() => {
                    let p = p.expect("stream open").expect("a probe");
                    assert_eq!(p.type_name(), "ClientDetectionRequest");
                    alive.answer("ClientDetectionResponse", &p, json!({})).await;
                    probes += 1;
                }
            }
        }
    });
    let started = tokio::time::Instant::now();
    let ended = loop {
        match wedged.next().await {
            Ok(Some(p)) => assert_eq!(p.type_name(), "ClientDetectionRequest"),
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let status = ended.expect("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while listed(port, "wedged") != 0 {
        assert!(tokio::time::Instant::now() < deadline, "instance stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "wedged connection expelled and its instance gone {} ms after it went quiet",
        started.elapsed().as_millis()
    );
    // Its transport is unregistered: a request now gets 301.
    let r = wedged.call("HealthCheckRequest", json!({})).await;
    assert_eq!(
        (r.0.as_str(), &r.1["errorCode"]),
        ("ErrorResponse", &json!(301))
    );

    // Idle as long, the answering client keeps its connection and instance.
    tokio::time::sleep(Duration::from_millis(3 * IDLE_MS)).await;
    stop.send(()).expect("stop");
    let (mut alive, probes) = answering.await.expect("joined");
    println!("the answering client was probed {probes} times");
    assert!(probes >= 2, "probed {probes} times");
    assert_eq!(
        listed(port, "probed"),
        1,
        "an answering client keeps its instance"
    );
    let r = alive.call("HealthCheckRequest", json!({})).await;
    assert_eq!(r.0, "HealthCheckResponse");
    let current = http(port, "GET", "/nacos/v1/core/loader/current", &[], "").expect("current");
    let v: Value = serde_json::from_str(&current.body).expect("json");
    assert!(v.get(&alive.id).is_some(), "{}", current.body);
    assert!(v.get(&wedged.id).is_none(), "{}", current.body);
    finish(nacre);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_metrics_and_connection_resets() {
    let nacre = start("grpc-ops");
    let port = nacre.port;
    let mut raw = Raw::connect(port, "config").await;

    // Metrics: the server asks the connection and relays what it answers.
    let ask = tokio::task::spawn_blocking(move || {
        http(
            port,
            "GET",
            "/nacos/v1/cs/metrics/ip?ip=127.0.0.1&dataId=app.yaml&group=G",
            &[],
            "",
        )
        .expect("metrics")
    });
    let request = next_request(&mut raw).await;
    assert_eq!(request.type_name(), "ClientConfigMetricRequest");
    let keys = body(&request)["metricsKeys"].clone();
    assert_eq!(
        keys,
        json!([{"type": "cacheData", "key": "app.yaml+G"}, {"type": "snapshotData", "key": "app.yaml+G"}])
    );
    raw.answer(
        "ClientConfigMetricResponse",
        &request,
        json!({"metrics": {"app.yaml+G": "md5-of-cache"}}),
    )
    .await;
    let metrics = ask.await.expect("joined");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let v: Value = serde_json::from_str(&metrics.body).expect("json");
    assert_eq!(v, json!({"app.yaml+G": "md5-of-cache"}));

    // A missing ip is a 400; an unknown connection a 404.
    let r = http(port, "GET", "/nacos/v1/cs/metrics/ip", &[], "").expect("no ip");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(
        port,
        "GET",
        "/nacos/v1/core/loader/reloadClient?connectionId=nope",
        &[],
        "",
    )
    .expect("unknown");
    assert_eq!(r.status, 404, "{}", r.body);

    // Reset one connection towards a named member, then a count of them towards any.
    let r = http(
        port,
        "GET",
        &format!(
            "/nacos/v1/core/loader/reloadClient?connectionId={}&redirectAddress=127.0.0.9:8848",
            raw.id
        ),
        &[],
        "",
    )
    .expect("reload client");
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    let reset = next_request(&mut raw).await;
    assert_eq!(reset.type_name(), "ConnectResetRequest");
    let b = body(&reset);
    assert_eq!(
        (b["serverIp"].as_str(), b["serverPort"].as_str()),
        (Some("127.0.0.9"), Some("8848"))
    );
    assert_eq!(b["connectionId"].as_str(), Some(raw.id.as_str()));
    let r = http(
        port,
        "GET",
        "/nacos/v2/core/loader/reloadCurrent?count=1",
        &[],
        "",
    )
    .expect("reload current");
    assert_eq!((r.status, r.body.as_str()), (200, "success"));
    let reset = next_request(&mut raw).await;
    assert_eq!(reset.type_name(), "ConnectResetRequest");
    assert_eq!(body(&reset)["serverIp"], "");
    let r = http(
        port,
        "GET",
        "/nacos/v1/core/loader/reloadCurrent?count=x",
        &[],
        "",
    )
    .expect("bad count");
    assert_eq!(r.status, 400, "{}", r.body);
    finish(nacre);
}

/// The next server request that is not a liveness probe (probes are answered).
async fn next_request(raw: &mut Raw) -> Payload {
    loop {
        let p = raw.next().await.expect("open").expect("a request");
        if p.type_name() == "ClientDetectionRequest" {
            raw.answer("ClientDetectionResponse", &p, json!({})).await;
            continue;
        }
        return p;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_typed_errors_and_the_connection_stays() {
    let nacre = start("grpc-limits");
    let port = nacre.port;
    let mut raw = Raw::connect(port, "naming").await;
    // A body nested deeper than the bound: refused before parsing, as a 502 ErrorResponse.
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let r = raw
        .call(
            "ServiceQueryRequest",
            json!({"serviceName": "s", "x": deep}),
        )
        .await;
    assert_eq!(r.0, "ErrorResponse", "{r:?}");
    assert_eq!(r.1["errorCode"], 502, "{r:?}");
    assert!(
        r.1["message"].as_str().unwrap_or("").contains("nest"),
        "{r:?}"
    );
    // Metadata over 1024 characters: the instance is refused with 400.
    let big: String = "m".repeat(1_100);
    let r = raw
        .call(
            "InstanceRequest",
            json!({
                "type": "registerInstance",
                "serviceName": "limited",
                "instance": {"ip": "127.0.0.21", "port": 80, "metadata": {"k": big}},
            }),
        )
        .await;
    assert_eq!(
        (r.0.as_str(), &r.1["errorCode"]),
        ("InstanceResponse", &json!(400)),
        "{r:?}"
    );
    assert_eq!(listed(port, "limited"), 0);
    // A batch listen naming more configs than one request may.
    let contexts: Vec<Value> = (0..=nacre_server::limits::LISTENERS_PER_REQUEST_MAX)
        .map(|i| json!({"dataId": format!("d{i}"), "group": "G", "md5": ""}))
        .collect();
    let r = raw
        .call(
            "ConfigBatchListenRequest",
            json!({"listen": true, "configListenContexts": contexts}),
        )
        .await;
    assert_eq!(
        (r.0.as_str(), &r.1["errorCode"]),
        ("ConfigChangeBatchListenResponse", &json!(400)),
        "{r:?}"
    );
    // A batch larger than a service may hold.
    let instances: Vec<Value> = (0..=nacre_server::limits::INSTANCES_PER_SERVICE_MAX)
        .map(|i| json!({"ip": format!("127.1.{}.{}", i / 250, i % 250), "port": 80}))
        .collect();
    let r = raw
        .call(
            "BatchInstanceRequest",
            json!({"type": "batchRegisterInstance", "serviceName": "flood", "instances": instances}),
        )
        .await;
    assert_eq!(
        (r.0.as_str(), &r.1["errorCode"]),
        ("BatchInstanceResponse", &json!(400)),
        "{r:?}"
    );
    assert_eq!(listed(port, "flood"), 0);
    // The connection still works.
    raw.register("fine", "127.0.0.22").await;
    assert_eq!(listed(port, "fine"), 1);
    finish(nacre);
}
