//! Black-box test of the HTTP Open API v2 of a standalone `nacre` (wire reference §3): config
//! publish/get/delete with `namespaceId`, instances and services with separate `groupName`,
//! namespaces, cluster nodes, and the `{"code","message","data"}` envelope with v2 error codes.

use std::path::Path;

use nacre_tests::{free_http_port, http, temp_dir, Nacre};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

/// The status and the parsed envelope of one call.
fn v2(port: u16, method: &str, target: &str) -> (u16, Value) {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    // Writes send their parameters as a form body, as v2 clients do.
    let (path, body) = match (method, target.split_once('?')) {
        ("GET", _) | (_, None) => (target, ""),
        (_, Some((path, query))) => (path, query),
    };
    let r = http(port, method, path, &form, body).unwrap_or_else(|e| panic!("{target}: {e}"));
    let v = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{target}: {e}: {}", r.body));
    (r.status, v)
}

fn ok(port: u16, method: &str, target: &str) -> Value {
    let (status, v) = v2(port, method, target);
    assert_eq!(status, 200, "{method} {target}: {v}");
    assert_eq!(v["code"], 0, "{method} {target}: {v}");
    assert_eq!(v["message"], "success");
    v["data"].clone()
}

#[test]
fn v2_config_naming_namespaces_and_envelope() {
    let root = temp_dir("http-v2");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));

    // Config in a namespace.
    assert_eq!(
        ok(
            port,
            "POST",
            "/nacos/v2/console/namespace?namespaceId=prod&namespaceName=Prod"
        ),
        true
    );
    let cfg = "/nacos/v2/cs/config?dataId=db.url&group=app&namespaceId=prod";
    assert_eq!(
        ok(
            port,
            "POST",
            &format!("{cfg}&content=jdbc%3Apg%3A%2F%2Fh&type=text")
        ),
        true
    );
    assert_eq!(ok(port, "GET", cfg), "jdbc:pg://h");
    let (status, v) = v2(port, "GET", "/nacos/v2/cs/config?dataId=db.url&group=app");
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["code"], 20004);
    assert_eq!(v["data"], "config data not exist");
    let history = ok(
        port,
        "GET",
        "/nacos/v2/cs/history/list?dataId=db.url&group=app&namespaceId=prod",
    );
    assert_eq!(history["totalCount"], 1, "{history}");
    assert_eq!(ok(port, "DELETE", cfg), true);
    let (status, _) = v2(port, "GET", cfg);
    assert_eq!(status, 404);
    let (status, v) = v2(
        port,
        "POST",
        "/nacos/v2/cs/config?dataId=a%20b&group=app&content=x",
    );
    assert_eq!((status, v["code"].as_u64()), (400, Some(20002)), "{v}");

    // Naming with a separate groupName.
    let inst =
        "/nacos/v2/ns/instance?serviceName=pay&groupName=shop&ip=127.0.0.71&port=8080&weight=2";
    assert_eq!(ok(port, "POST", inst), "ok");
    let list = ok(
        port,
        "GET",
        "/nacos/v2/ns/instance/list?serviceName=pay&groupName=shop",
    );
    assert_eq!(list["hosts"][0]["ip"], "127.0.0.71", "{list}");
    assert_eq!(list["hosts"][0]["weight"], 2.0);
    let detail = ok(
        port,
        "GET",
        "/nacos/v2/ns/instance?serviceName=pay&groupName=shop&ip=127.0.0.71&port=8080",
    );
    assert_eq!(detail["service"], "shop@@pay");
    let services = ok(port, "GET", "/nacos/v2/ns/service/list?groupName=shop");
    assert_eq!(services["count"], 1, "{services}");
    assert_eq!(services["services"][0], "pay");
    let (status, v) = v2(
        port,
        "GET",
        "/nacos/v2/ns/service?serviceName=none&groupName=shop",
    );
    assert_eq!((status, v["code"].as_u64()), (400, Some(21008)), "{v}");
    let (status, v) = v2(port, "POST", "/nacos/v2/ns/instance?serviceName=pay&port=1");
    assert_eq!((status, v["code"].as_u64()), (400, Some(10000)), "{v}");
    assert_eq!(v["data"], "Param 'ip' is required.");
    let beat = http(
        port,
        "PUT",
        "/nacos/v2/ns/instance/beat?serviceName=pay&groupName=shop&ip=127.0.0.71&port=8080",
        &[],
        "",
    )
    .expect("beat");
    assert_eq!(
        beat.body, r#"{"clientBeatInterval":5000,"code":10200,"lightBeatEnabled":true}"#,
        "the beat answer is not enveloped"
    );
    assert_eq!(ok(port, "DELETE", inst), "ok");

    // Namespaces and nodes.
    let namespaces = ok(port, "GET", "/nacos/v2/console/namespace/list");
    assert_eq!(namespaces.as_array().map(Vec::len), Some(2), "{namespaces}");
    let one = ok(port, "GET", "/nacos/v2/console/namespace?namespaceId=prod");
    assert_eq!(one["namespaceShowName"], "Prod");
    let (status, v) = v2(
        port,
        "POST",
        "/nacos/v2/console/namespace?namespaceId=prod&namespaceName=Again",
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        ok(
            port,
            "PUT",
            "/nacos/v2/console/namespace?namespaceId=prod&namespaceName=Production"
        ),
        true
    );
    assert_eq!(
        ok(
            port,
            "DELETE",
            "/nacos/v2/console/namespace?namespaceId=prod"
        ),
        true
    );
    let nodes = ok(port, "GET", "/nacos/v2/core/cluster/node/list");
    assert_eq!(nodes[0]["state"], "UP", "{nodes}");
    assert_eq!(
        ok(port, "GET", "/nacos/v2/core/cluster/node/self/health"),
        "UP"
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
