//! Gray configs (beta and tag items) against a real standalone `nacre` on 127.0.0.1: over the
//! HTTP API (`betaIps` header, `tag` parameter, `Vipserver-Tag`, `beta=true` query and stop,
//! long polls that only the concerned clients hear) and with the official Rust SDK over gRPC
//! (`publish_config_beta`, the push to the beta client, stop beta). A client's IP is the peer
//! address unless `X-Forwarded-For` names another, as in Nacos; the tests use that header to
//! stand for a second client. Every wait is bounded.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nacos_sdk::api::config::{ConfigChangeListener, ConfigResponse, ConfigServiceBuilder};
use nacos_sdk::api::props::ClientProps;
use nacre_tests::{free_http_port, http, temp_dir, HttpResponse, Nacre};
use tokio::sync::mpsc;

const OTHER: (&str, &str) = ("X-Forwarded-For", "10.9.9.9");
const Q: &str = "dataId=gray.yaml&group=G";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

fn get(port: u16, query: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(
        port,
        "GET",
        &format!("/nacos/v1/cs/configs?{query}"),
        headers,
        "",
    )
    .expect("get")
}

fn publish(port: u16, body: &str, headers: &[(&str, &str)]) {
    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    let r = http(port, "POST", "/nacos/v1/cs/configs", &h, body).expect("publish");
    assert_eq!((r.status, r.body.as_str()), (200, "true"), "publish {body}");
}

fn md5_of(r: &HttpResponse) -> String {
    r.header("Content-MD5").unwrap_or("").to_string()
}

/// A long poll of the gray key holding `md5` (held until a change concerns it, or answered at
/// once with `Long-Pulling-Timeout-No-Hangup`); the body it answers with.
fn poll(port: u16, md5: &str, headers: &[(&str, &str)]) -> String {
    let listening = format!("gray.yaml\u{2}G\u{2}{md5}\u{1}");
    let body = format!(
        "Listening-Configs={}",
        listening.replace('\u{2}', "%02").replace('\u{1}', "%01")
    );
    let mut h = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Long-Pulling-Timeout", "30000"),
    ];
    h.extend_from_slice(headers);
    let r = http(port, "POST", "/nacos/v1/cs/configs/listener", &h, &body).expect("poll");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
#[allow(clippy::disallowed_methods)] // a held long poll needs its own (bounded) thread
fn beta_and_tag_items_over_http() {
    let root = temp_dir("gray-http");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    publish(port, &format!("{Q}&content=main&type=yaml"), &[]);
    publish(
        port,
        &format!("{Q}&content=beta"),
        &[("betaIps", "127.0.0.1,10.0.0.8")],
    );

    // The beta IP is served the beta item, flagged; another client the main item.
    let mine = get(port, Q, &[]);
    assert_eq!((mine.status, mine.body.as_str()), (200, "beta"));
    assert_eq!(mine.header("isBeta"), Some("true"));
    assert_eq!(
        mine.header("Config-Type"),
        Some("yaml"),
        "the main item's type"
    );
    let other = get(port, Q, &[OTHER]);
    assert_eq!(other.body, "main");
    assert_eq!(other.header("isBeta"), None);
    let beta = get(port, &format!("{Q}&beta=true"), &[]);
    let v: serde_json::Value = serde_json::from_str(&beta.body).expect("json");
    assert_eq!(v["data"]["betaIps"], "127.0.0.1,10.0.0.8", "{}", beta.body);
    assert_eq!(v["data"]["content"], "beta");

    // A tag item: asked by `tag` exactly (no fallback), or by `Vipserver-Tag` (falls back).
    publish(port, &format!("{Q}&content=blue&tag=blue"), &[]);
    assert_eq!(get(port, &format!("{Q}&tag=blue"), &[OTHER]).body, "blue");
    assert_eq!(get(port, &format!("{Q}&tag=green"), &[OTHER]).status, 404);
    assert_eq!(
        get(port, Q, &[OTHER, ("Vipserver-Tag", "blue")]).body,
        "blue"
    );
    assert_eq!(
        get(port, Q, &[OTHER, ("Vipserver-Tag", "green")]).body,
        "main"
    );
    assert_eq!(
        get(port, Q, &[("Vipserver-Tag", "blue")]).body,
        "beta",
        "beta wins"
    );

    // Long polls compare with what each client is served: a beta change wakes the held poll
    // of the beta client, and does not concern another client.
    let main_md5 = md5_of(&other);
    let beta_md5 = md5_of(&mine);
    let held_md5 = beta_md5.clone();
    let beta_waiting = std::thread::spawn(move || poll(port, &held_md5, &[]));
    std::thread::sleep(Duration::from_millis(300));
    publish(
        port,
        &format!("{Q}&content=beta2"),
        &[("betaIps", "127.0.0.1")],
    );
    assert!(
        beta_waiting.join().expect("joined").contains("gray.yaml"),
        "the beta client hears the beta change"
    );
    let now = ("Long-Pulling-Timeout-No-Hangup", "true");
    assert_eq!(
        poll(port, &main_md5, &[OTHER, now]),
        "",
        "another client is up to date"
    );
    assert!(poll(port, &beta_md5, &[now]).contains("gray.yaml"));

    // Stop beta: the beta client is served the main item again; the tag item stays.
    let r = http(
        port,
        "DELETE",
        &format!("/nacos/v1/cs/configs?{Q}&beta=true"),
        &[],
        "",
    )
    .expect("stop beta");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("stop beta ok"), "{}", r.body);
    assert_eq!(get(port, Q, &[]).body, "main");
    // Removing with a tag removes that item only.
    let r = http(
        port,
        "DELETE",
        &format!("/nacos/v1/cs/configs?{Q}&tag=blue"),
        &[],
        "",
    )
    .expect("remove tag");
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    assert_eq!(get(port, &format!("{Q}&tag=blue"), &[OTHER]).status, 404);
    assert_eq!(get(port, Q, &[OTHER]).body, "main");
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}

struct Heard(mpsc::UnboundedSender<String>);

impl ConfigChangeListener for Heard {
    fn notify(&self, config_resp: ConfigResponse) {
        let _ = self.0.send(config_resp.content().clone());
    }
}

async fn heard(rx: &mut mpsc::UnboundedReceiver<String>, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(c)) if c == want => return,
            Ok(Some(_)) => continue,
            other => panic!("no push of {want:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_publish_and_stop_with_the_official_sdk() {
    let root = temp_dir("gray-sdk");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    let config = ConfigServiceBuilder::new(
        ClientProps::new()
            .server_addr(format!("127.0.0.1:{port}"))
            .app_name("nacre-gray-test"),
    )
    .build()
    .await
    .expect("config service");
    let (data_id, group) = ("gray.yaml".to_string(), "G".to_string());
    assert!(config
        .publish_config(data_id.clone(), group.clone(), "main".into(), None)
        .await
        .expect("publish"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    config
        .add_listener(data_id.clone(), group.clone(), Arc::new(Heard(tx)))
        .await
        .expect("listen");
    assert!(config
        .publish_config_beta(
            data_id.clone(),
            group.clone(),
            "beta".into(),
            None,
            "127.0.0.1".into()
        )
        .await
        .expect("publish beta"));
    heard(&mut rx, "beta").await;
    let got = config
        .get_config(data_id.clone(), group.clone())
        .await
        .expect("get");
    assert_eq!(got.content(), "beta");
    assert_eq!(
        tokio::task::spawn_blocking(move || get(port, Q, &[OTHER]).body)
            .await
            .expect("joined"),
        "main"
    );
    let r = tokio::task::spawn_blocking(move || {
        http(
            port,
            "DELETE",
            &format!("/nacos/v1/cs/configs?{Q}&beta=true"),
            &[],
            "",
        )
        .expect("stop beta")
    })
    .await
    .expect("joined");
    assert_eq!(r.status, 200, "{}", r.body);
    heard(&mut rx, "main").await;
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
