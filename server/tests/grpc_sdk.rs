//! The gRPC SDK protocol (wire reference §4) against the official Rust SDK, `nacos-sdk` from
//! crates.io, talking to a real standalone `nacre` on 127.0.0.1: config publish/get/listen with
//! the server push, unicode, multi-line and >100 KB content, a non-default namespace, removal;
//! naming register, subscribe with the server push, query, deregister, and the HTTP view of a
//! gRPC-registered instance. Every wait is bounded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nacos_sdk::api::config::{ConfigChangeListener, ConfigResponse, ConfigServiceBuilder};
use nacos_sdk::api::naming::{
    NamingChangeEvent, NamingEventListener, NamingServiceBuilder, ServiceInstance,
};
use nacos_sdk::api::props::ClientProps;
use nacre_tests::{free_http_port, http, temp_dir, Nacre};
use tokio::sync::mpsc;

/// Longest wait for a push.
const PUSH_WAIT: Duration = Duration::from_secs(10);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

fn props(port: u16, namespace: &str) -> ClientProps {
    ClientProps::new()
        .server_addr(format!("127.0.0.1:{port}"))
        .namespace(namespace)
        .app_name("nacre-grpc-test")
}

struct ConfigEvents(mpsc::UnboundedSender<String>);

impl ConfigChangeListener for ConfigEvents {
    fn notify(&self, config_resp: ConfigResponse) {
        let _ = self.0.send(config_resp.content().clone());
    }
}

struct NamingEvents(mpsc::UnboundedSender<Vec<String>>);

impl NamingEventListener for NamingEvents {
    fn event(&self, event: Arc<NamingChangeEvent>) {
        let mut ips: Vec<String> = event
            .instances
            .iter()
            .flatten()
            .map(|i| format!("{}:{}", i.ip, i.port))
            .collect();
        ips.sort();
        let _ = self.0.send(ips);
    }
}

fn instance(ip: &str, port: i32) -> ServiceInstance {
    ServiceInstance {
        ip: ip.to_string(),
        port,
        weight: 1.0,
        healthy: true,
        enabled: true,
        ephemeral: true,
        ..Default::default()
    }
}

/// Waits for the first value from `rx` that satisfies `want`.
async fn wait_for<T: std::fmt::Debug>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    what: &str,
    want: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + PUSH_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(v)) if want(&v) => return v,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("{what}: channel closed"),
            Err(_) => panic!("{what}: nothing within {PUSH_WAIT:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_rust_sdk_config_and_naming() {
    let root = temp_dir("grpc-sdk");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));

    // ----- config -----
    let config = ConfigServiceBuilder::new(props(port, ""))
        .build()
        .await
        .expect("config service");
    let (tx, mut changes) = mpsc::unbounded_channel();
    let (data_id, group) = ("grpc.props".to_string(), "GRPC".to_string());
    assert!(config
        .publish_config(
            data_id.clone(),
            group.clone(),
            "v=1".into(),
            Some("properties".into())
        )
        .await
        .expect("publish"));
    let got = config
        .get_config(data_id.clone(), group.clone())
        .await
        .expect("get");
    assert_eq!(got.content(), "v=1");
    assert_eq!(got.content_type(), "properties");
    config
        .add_listener(data_id.clone(), group.clone(), Arc::new(ConfigEvents(tx)))
        .await
        .expect("listen");
    let published = tokio::time::Instant::now();
    let content = "v=2\nname=nácar ✓ 真珠\n".to_string();
    assert!(config
        .publish_config(data_id.clone(), group.clone(), content.clone(), None)
        .await
        .expect("publish 2"));
    let heard = wait_for(&mut changes, "config push", |c| *c == content).await;
    println!(
        "config push heard {} ms after the publish started",
        published.elapsed().as_millis()
    );
    assert_eq!(heard, content);
    // The same config through HTTP.
    let r = http(
        port,
        "GET",
        "/nacos/v1/cs/configs?dataId=grpc.props&group=GRPC",
        &[],
        "",
    )
    .expect("http get");
    assert_eq!(r.body, content);
    // Large content.
    let big: String = (0..5000)
        .map(|i| format!("line {i:05} of a big config\n"))
        .collect();
    assert!(big.len() > 100 * 1024);
    assert!(config
        .publish_config("grpc.big".into(), group.clone(), big.clone(), None)
        .await
        .expect("publish big"));
    let got = config
        .get_config("grpc.big".into(), group.clone())
        .await
        .expect("get big");
    assert_eq!(got.content(), &big);
    assert!(config
        .remove_config("grpc.big".into(), group.clone())
        .await
        .expect("remove"));
    assert!(config
        .get_config("grpc.big".into(), group.clone())
        .await
        .is_err());
    // A non-default namespace is its own.
    let dev = ConfigServiceBuilder::new(props(port, "dev"))
        .build()
        .await
        .expect("dev config service");
    assert!(dev
        .publish_config(data_id.clone(), group.clone(), "dev-only".into(), None)
        .await
        .expect("publish dev"));
    let in_dev = dev
        .get_config(data_id.clone(), group.clone())
        .await
        .expect("get dev");
    assert_eq!(in_dev.content(), "dev-only");
    let in_public = config
        .get_config(data_id.clone(), group.clone())
        .await
        .expect("get");
    assert_eq!(in_public.content(), &content);

    // ----- naming -----
    // Empty pushes are ignored by default (push-empty protection); this subscriber wants them.
    let naming = NamingServiceBuilder::new(props(port, "").naming_push_empty_protection(false))
        .build()
        .await
        .expect("naming service");
    let (tx, mut events) = mpsc::unbounded_channel();
    let service = "grpc.svc".to_string();
    let grp = Some("GRPC_GROUP".to_string());
    naming
        .subscribe(
            service.clone(),
            grp.clone(),
            vec![],
            Arc::new(NamingEvents(tx)),
        )
        .await
        .expect("subscribe");
    let registered = tokio::time::Instant::now();
    naming
        .register_instance(service.clone(), grp.clone(), instance("127.0.0.91", 8080))
        .await
        .expect("register");
    wait_for(&mut events, "register push", |ips| {
        ips == &["127.0.0.91:8080".to_string()]
    })
    .await;
    println!(
        "naming push heard {} ms after the registration started",
        registered.elapsed().as_millis()
    );
    let all = naming
        .get_all_instances(service.clone(), grp.clone(), vec![], false)
        .await
        .expect("query");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].ip, "127.0.0.91");
    let r = http(
        port,
        "GET",
        "/nacos/v1/ns/instance/list?serviceName=grpc.svc&groupName=GRPC_GROUP",
        &[],
        "",
    )
    .expect("http list");
    assert!(r.body.contains("127.0.0.91"), "{}", r.body);
    let (names, count) = naming
        .get_service_list(1, 10, grp.clone())
        .await
        .expect("service list");
    assert_eq!((names, count), (vec![service.clone()], 1));
    naming
        .deregister_instance(service.clone(), grp.clone(), instance("127.0.0.91", 8080))
        .await
        .expect("deregister");
    wait_for(&mut events, "deregister push", |ips| ips.is_empty()).await;
    // A batch: three instances of the service on one connection, then two replacing them.
    let three: Vec<ServiceInstance> = (1..=3)
        .map(|i| instance(&format!("127.0.0.10{i}"), 8080))
        .collect();
    naming
        .batch_register_instance(service.clone(), grp.clone(), three)
        .await
        .expect("batch register");
    wait_for(&mut events, "batch push", |ips| ips.len() == 3).await;
    let listed = naming
        .get_all_instances(service.clone(), grp.clone(), Vec::new(), false)
        .await
        .expect("query batch");
    assert_eq!(listed.len(), 3, "{listed:?}");
    let two: Vec<ServiceInstance> = (4..=5)
        .map(|i| instance(&format!("127.0.0.10{i}"), 8080))
        .collect();
    naming
        .batch_register_instance(service.clone(), grp.clone(), two)
        .await
        .expect("batch replace");
    let ips = wait_for(&mut events, "batch replaced push", |ips| ips.len() == 2).await;
    assert_eq!(ips, vec!["127.0.0.104:8080", "127.0.0.105:8080"]);
    let r = http(
        port,
        "GET",
        &format!("/nacos/v1/ns/instance/list?serviceName={service}&groupName=GRPC_GROUP"),
        &[],
        "",
    )
    .expect("http list of the batch");
    assert!(
        r.body.contains("127.0.0.104") && !r.body.contains("127.0.0.101"),
        "{}",
        r.body
    );
    naming
        .deregister_instance(service.clone(), grp.clone(), instance("127.0.0.104", 8080))
        .await
        .expect("deregister the batch");
    wait_for(&mut events, "batch withdrawn push", |ips| ips.is_empty()).await;
    // Every push was acknowledged by the SDK: nothing is pending on any connection.
    let mut pending = String::new();
    for _ in 0..40 {
        let r = http(port, "GET", "/nacos/v1/core/loader/current", &[], "").expect("loader");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        let counts: Vec<u64> = v
            .as_object()
            .expect("connections")
            .values()
            .map(|c| c["pendingPushes"].as_u64().unwrap_or(u64::MAX))
            .collect();
        assert!(
            counts.len() >= 3,
            "config, dev config and naming connections: {v}"
        );
        if counts.iter().all(|c| *c == 0) {
            pending.clear();
            break;
        }
        pending = r.body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pending.is_empty(), "unacknowledged pushes: {pending}");

    // A client process registers an instance and is SIGKILLed: the instance goes with its
    // connection, and the subscriber hears it.
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--ignored", "--exact", "client_process", "--nocapture"])
        .env("NACRE_GRPC_TEST_PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn client process");
    wait_for(&mut events, "child registration push", |ips| {
        ips == &["127.0.0.92:8080".to_string()]
    })
    .await;
    child.kill().expect("kill client process");
    let killed = tokio::time::Instant::now();
    let _ = child.wait();
    wait_for(&mut events, "push after the client died", |ips| {
        ips.is_empty()
    })
    .await;
    let gone_after = killed.elapsed();
    println!(
        "instance of the killed client gone (push heard) {} ms after SIGKILL",
        gone_after.as_millis()
    );
    let r = http(
        port,
        "GET",
        "/nacos/v1/ns/instance/list?serviceName=grpc.svc&groupName=GRPC_GROUP",
        &[],
        "",
    )
    .expect("http list");
    assert!(!r.body.contains("127.0.0.92"), "{}", r.body);
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}

/// Run as a separate process by the test above: registers 127.0.0.92:8080 and waits to be
/// killed (at most 60 s).
#[tokio::test]
#[ignore = "started as a child process by official_rust_sdk_config_and_naming"]
async fn client_process() {
    let port: u16 = std::env::var("NACRE_GRPC_TEST_PORT")
        .expect("port")
        .parse()
        .expect("port number");
    let naming = NamingServiceBuilder::new(props(port, ""))
        .build()
        .await
        .expect("naming service");
    naming
        .register_instance(
            "grpc.svc".into(),
            Some("GRPC_GROUP".into()),
            instance("127.0.0.92", 8080),
        )
        .await
        .expect("register");
    tokio::time::sleep(Duration::from_secs(60)).await;
}
