//! Black-box test of the naming HTTP API of a standalone `nacre` (wire reference §2.1–2.3):
//! the four commands of the Nacos cluster deployment guide verbatim, then services, persistent
//! and ephemeral instances, update/patch/detail, beats, Nacos's refusals, and the persistent
//! naming data surviving SIGKILL and a restart.
//!
//! The instance addresses are never contacted: the server does not probe ephemeral instances
//! and has no active health check of persistent ones.

use std::path::Path;

use nacre_tests::{free_http_port, http, temp_dir, HttpResponse, Nacre};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

fn call(port: u16, method: &str, target: &str) -> HttpResponse {
    http(port, method, target, &[], "").unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

fn expect(port: u16, method: &str, target: &str, status: u16, body: &str) {
    let r = call(port, method, target);
    assert_eq!(
        (r.status, r.body.as_str()),
        (status, body),
        "{method} {target}"
    );
}

fn json(port: u16, target: &str) -> Value {
    let r = call(port, "GET", target);
    assert_eq!(r.status, 200, "GET {target}: {r:?}");
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {target}: {e}: {}", r.body))
}

/// `ip:port healthy ephemeral` of each listed host.
fn hosts(port: u16, service: &str, extra: &str) -> Vec<String> {
    let v = json(
        port,
        &format!("/nacos/v1/ns/instance/list?serviceName={service}{extra}"),
    );
    let mut out: Vec<String> = v["hosts"]
        .as_array()
        .expect("hosts array")
        .iter()
        .map(|h| {
            format!(
                "{}:{} {} {}",
                h["ip"].as_str().unwrap_or("?"),
                h["port"],
                h["healthy"],
                h["ephemeral"]
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn deployment_guide_commands_verbatim() {
    let root = temp_dir("http-naming-guide");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=nacos.naming.serviceName&ip=20.18.7.10&port=8080",
        200,
        "ok",
    );
    let list = json(
        port,
        "/nacos/v1/ns/instance/list?serviceName=nacos.naming.serviceName",
    );
    assert_eq!(list["name"], "DEFAULT_GROUP@@nacos.naming.serviceName");
    assert_eq!(list["groupName"], "DEFAULT_GROUP");
    assert_eq!(list["cacheMillis"], 10000);
    assert_eq!(list["valid"], true);
    assert_eq!(list["reachProtectionThreshold"], false);
    let host = &list["hosts"][0];
    assert_eq!(host["ip"], "20.18.7.10");
    assert_eq!(host["port"], 8080);
    assert_eq!(host["healthy"], true);
    assert_eq!(host["ephemeral"], true);
    assert_eq!(host["clusterName"], "DEFAULT");
    assert_eq!(
        host["instanceId"],
        "20.18.7.10#8080#DEFAULT#DEFAULT_GROUP@@nacos.naming.serviceName"
    );
    assert_eq!(list["hosts"].as_array().map(Vec::len), Some(1));
    expect(
        port,
        "POST",
        "/nacos/v1/cs/configs?dataId=nacos.cfg.dataId&group=test&content=helloWorld",
        200,
        "true",
    );
    expect(
        port,
        "GET",
        "/nacos/v1/cs/configs?dataId=nacos.cfg.dataId&group=test",
        200,
        "helloWorld",
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn services_instances_and_refusals() {
    let root = temp_dir("http-naming");
    let data = root.join("data");
    let port = free_http_port();
    let mut nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-1.log"));
    let status = json(port, "/nacos/v1/ns/operator/metrics");
    assert_eq!(status["status"], "UP");
    let switches = json(port, "/nacos/v1/ns/operator/switches");
    assert_eq!(switches["defaultPushCacheMillis"], 10000);
    assert_eq!(switches["clientBeatInterval"], 5000);

    // A persistent service with metadata, through Raft.
    let svc = "/nacos/v1/ns/service?serviceName=orders&groupName=shop";
    expect(
        port,
        "POST",
        &format!("{svc}&protectThreshold=0.5&metadata=team%3Dpay"),
        200,
        "ok",
    );
    expect(
        port,
        "POST",
        svc,
        400,
        "specified service shop@@orders already exists!",
    );
    let got = json(port, svc);
    assert_eq!(got["name"], "orders");
    assert_eq!(got["groupName"], "shop");
    assert_eq!(got["namespaceId"], "public");
    assert_eq!(got["protectThreshold"], 0.5);
    assert_eq!(got["metadata"]["team"], "pay");
    assert_eq!(got["selector"]["type"], "none");
    // An ephemeral instance is refused by a persistent service; a persistent one is taken.
    let inst = "/nacos/v1/ns/instance?serviceName=shop%40%40orders&ip=127.0.0.21&port=9000";
    expect(
        port,
        "POST",
        inst,
        400,
        "Current service shop@@orders is persistent service, can't register ephemeral instance.",
    );
    expect(
        port,
        "POST",
        &format!("{inst}&ephemeral=false&clusterName=east&weight=2"),
        200,
        "ok",
    );
    assert_eq!(
        hosts(port, "orders&groupName=shop", ""),
        ["127.0.0.21:9000 true false"]
    );
    expect(
        port,
        "DELETE",
        svc,
        400,
        "Service shop@@orders is not empty, can't be delete. Please unregister instance first",
    );
    // Update and detail.
    expect(
        port,
        "PUT",
        &format!("{svc}&protectThreshold=0.7&metadata=%7B%22team%22%3A%22ops%22%7D"),
        200,
        "ok",
    );
    assert_eq!(json(port, svc)["metadata"]["team"], "ops");
    let detail = json(
        port,
        "/nacos/v1/ns/instance?serviceName=shop%40%40orders&ip=127.0.0.21&port=9000&clusterName=east",
    );
    assert_eq!(detail["service"], "shop@@orders");
    assert_eq!(detail["weight"], 2.0);
    assert_eq!(detail["clusterName"], "east");
    expect(
        port,
        "GET",
        "/nacos/v1/ns/instance?serviceName=shop%40%40orders&ip=127.0.0.99&port=9000&clusterName=east",
        404,
        "no matched ip found!",
    );
    expect(
        port,
        "GET",
        "/nacos/v1/ns/instance?serviceName=shop%40%40orders&ip=127.0.0.21&port=9000",
        404,
        "no ips found for cluster DEFAULT in service shop@@orders",
    );
    let list = json(
        port,
        "/nacos/v1/ns/service/list?pageNo=1&pageSize=10&groupName=shop",
    );
    assert_eq!(list["count"], 1);
    assert_eq!(list["doms"][0], "orders");

    // Ephemeral instances: register (form body), update, patch, statuses, beats.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = http(
        port,
        "POST",
        "/nacos/v1/ns/instance",
        &form,
        "serviceName=web&ip=127.0.0.31&port=80&metadata=k%3Dv",
    )
    .expect("form register");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.32&port=80",
        200,
        "ok",
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.33&port=80&ephemeral=false",
        400,
        "Current service DEFAULT_GROUP@@web is ephemeral service, can't register persistent instance.",
    );
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.31&port=80&weight=3&metadata=k%3Dw",
        200,
        "ok",
    );
    let d = json(
        port,
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.31&port=80",
    );
    assert_eq!(
        (d["weight"].as_f64(), d["metadata"]["k"].as_str()),
        (Some(3.0), Some("w"))
    );
    expect(
        port,
        "PATCH",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.32&port=80&enabled=false",
        200,
        "ok",
    );
    assert_eq!(hosts(port, "web", ""), ["127.0.0.31:80 true true"]);
    let statuses = json(
        port,
        "/nacos/v1/ns/instance/statuses?key=DEFAULT_GROUP%40%40web",
    );
    assert_eq!(
        statuses["ips"].as_array().map(Vec::len),
        Some(2),
        "{statuses}"
    );
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.39&port=80",
        400,
        "instance not exist: 127.0.0.39#80#DEFAULT#DEFAULT_GROUP@@web",
    );
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/instance/beat?serviceName=web&ip=127.0.0.31&port=80",
        200,
        r#"{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}"#,
    );
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/instance/beat?serviceName=web&ip=127.0.0.34&port=80",
        200,
        r#"{"clientBeatInterval":5000,"code":20404,"lightBeatEnabled":true}"#,
    );
    // A full beat registers the instance it describes (the 1.x client's beat body).
    let beat = "beat=%7B%22ip%22%3A%22127.0.0.34%22%2C%22port%22%3A80%2C%22cluster%22%3A%22DEFAULT%22%2C%22serviceName%22%3A%22DEFAULT_GROUP%40%40web%22%7D";
    let r = http(
        port,
        "PUT",
        "/nacos/v1/ns/instance/beat?serviceName=DEFAULT_GROUP%40%40web",
        &form,
        beat,
    )
    .expect("full beat");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"code\":10200"), "{}", r.body);
    assert_eq!(
        hosts(port, "web", ""),
        ["127.0.0.31:80 true true", "127.0.0.34:80 true true"]
    );
    // The service of ephemeral instances gets a metadata record on update.
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/service?serviceName=web&protectThreshold=0.3",
        200,
        "ok",
    );
    assert_eq!(
        json(port, "/nacos/v1/ns/service?serviceName=web")["protectThreshold"],
        0.3f32 as f64
    );
    let r = http(
        port,
        "DELETE",
        "/nacos/v1/ns/instance",
        &form,
        "serviceName=web&ip=127.0.0.34&port=80",
    )
    .expect("form deregister");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(hosts(port, "web", ""), ["127.0.0.31:80 true true"]);

    // Refusals with Nacos's messages.
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&port=80",
        400,
        "Param 'ip' is required.",
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.35&port=80&weight=10001",
        400,
        "instance format invalid: The weights range from 0.0 to 10000.0",
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.35&port=80&metadata=oops",
        400,
        "metadata format incorrect:oops",
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.35&port=80&clusterName=a_b",
        400,
        "Instance 'clusterName' should be characters with only 0-9a-zA-Z-. (current: a_b)",
    );
    let r = call(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.35&port=99999",
    );
    assert_eq!(r.status, 400, "{r:?}");
    expect(
        port,
        "GET",
        "/nacos/v1/ns/service?serviceName=nope",
        400,
        "service not found, namespace: public, serviceName: DEFAULT_GROUP@@nope",
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/service?serviceName=sel&selector=%7B%22type%22%3A%22x%22%7D",
        400,
        "not match any type of selector!",
    );

    // SIGKILL and restart: the service record and the persistent instance are durable.
    nacre.kill();
    drop(nacre);
    let nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-2.log"));
    assert_eq!(json(port, svc)["metadata"]["team"], "ops");
    assert_eq!(
        hosts(port, "orders&groupName=shop", ""),
        ["127.0.0.21:9000 true false"]
    );
    expect(
        port,
        "DELETE",
        "/nacos/v1/ns/instance?serviceName=shop%40%40orders&ip=127.0.0.21&port=9000&ephemeral=false",
        200,
        "ok",
    );
    expect(port, "DELETE", svc, 200, "ok");
    let r = call(port, "GET", svc);
    assert_eq!(r.status, 400, "{r:?}");
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn health_updates_and_metadata_batches() {
    let root = temp_dir("http-naming-batch");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    // Persistent instances take manual health updates; ephemeral ones refuse them.
    for ip in ["127.0.0.81", "127.0.0.82"] {
        expect(
            port,
            "POST",
            &format!("/nacos/v1/ns/instance?serviceName=db&ip={ip}&port=5432&ephemeral=false"),
            200,
            "ok",
        );
    }
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/health?serviceName=db&ip=127.0.0.81&port=5432&healthy=false",
        200,
        "ok",
    );
    assert_eq!(
        hosts(port, "db", ""),
        ["127.0.0.81:5432 false false", "127.0.0.82:5432 true false"]
    );
    assert_eq!(
        hosts(port, "db", "&healthyOnly=true"),
        ["127.0.0.82:5432 true false"]
    );
    expect(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=web&ip=127.0.0.83&port=80",
        200,
        "ok",
    );
    expect(
        port,
        "PUT",
        "/nacos/v1/ns/health?serviceName=web&ip=127.0.0.83&port=80&healthy=false",
        400,
        "health check is still working, service: DEFAULT_GROUP@@web, cluster: DEFAULT",
    );
    // Metadata batch on the persistent instances: one listed, then all, then a key removed.
    let one = "instances=%5B%7B%22ip%22%3A%22127.0.0.81%22%2C%22port%22%3A5432%7D%5D";
    let r = call(
        port,
        "PUT",
        &format!("/nacos/v1/ns/instance/metadata/batch?serviceName=db&consistencyType=persist&metadata=zone%3Da&{one}"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body,
        r#"{"updated":["127.0.0.81:5432:unknown:DEFAULT:persist"]}"#
    );
    let r = call(
        port,
        "PUT",
        "/nacos/v1/ns/instance/metadata/batch?serviceName=db&consistencyType=persist&metadata=tier%3D1",
    );
    let v: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["updated"].as_array().map(Vec::len), Some(2), "{v}");
    let d = json(
        port,
        "/nacos/v1/ns/instance?serviceName=db&ip=127.0.0.81&port=5432",
    );
    assert_eq!(
        (
            d["metadata"]["zone"].as_str(),
            d["metadata"]["tier"].as_str()
        ),
        (Some("a"), Some("1"))
    );
    let r = call(
        port,
        "DELETE",
        "/nacos/v1/ns/instance/metadata/batch?serviceName=db&consistencyType=persist&metadata=zone%3D",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let d = json(
        port,
        "/nacos/v1/ns/instance?serviceName=db&ip=127.0.0.81&port=5432",
    );
    assert!(d["metadata"].get("zone").is_none(), "{d}");
    assert_eq!(d["metadata"]["tier"], "1");
    // Ephemeral batches touch only ephemeral instances.
    let r = call(
        port,
        "PUT",
        "/nacos/v1/ns/instance/metadata/batch?serviceName=web&metadata=v%3D2",
    );
    assert_eq!(
        r.body,
        r#"{"updated":["127.0.0.83:80:unknown:DEFAULT:ephemeral"]}"#
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
