//! Black-box test of the console endpoints of a standalone `nacre` (wire reference §2.5–2.7):
//! namespaces created, listed (default first), checked, updated and deleted through Raft and
//! surviving a SIGKILL; configs and instances isolated per namespace; the login answer while
//! authentication is disabled; the server state map.

use std::path::Path;

use nacre_tests::{free_http_port, http, temp_dir, Nacre};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

fn call(port: u16, method: &str, target: &str) -> (u16, String) {
    let r =
        http(port, method, target, &[], "").unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    (r.status, r.body)
}

fn json(port: u16, target: &str) -> Value {
    let (status, body) = call(port, "GET", target);
    assert_eq!(status, 200, "GET {target}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {target}: {e}: {body}"))
}

const NAMESPACES: &str = "/nacos/v1/console/namespaces";

#[test]
fn namespaces_login_and_server_state() {
    let root = temp_dir("http-console");
    let data = root.join("data");
    let port = free_http_port();
    let mut nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-1.log"));

    let list = json(port, NAMESPACES);
    assert_eq!(list["code"], 200);
    assert_eq!(list["data"][0]["namespace"], "");
    assert_eq!(list["data"][0]["namespaceShowName"], "public");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));

    let create = format!(
        "{NAMESPACES}?customNamespaceId=dev&namespaceName=Development&namespaceDesc=team%20dev"
    );
    assert_eq!(call(port, "POST", &create), (200, "true".into()));
    assert_eq!(
        call(port, "POST", &create),
        (200, "false".into()),
        "duplicate id"
    );
    let bad = format!("{NAMESPACES}?customNamespaceId=x&namespaceName=bad%23name");
    assert_eq!(call(port, "POST", &bad), (200, "false".into()));
    // A blank id gets a generated UUID.
    let anon = format!("{NAMESPACES}?namespaceName=Generated");
    assert_eq!(call(port, "POST", &anon), (200, "true".into()));
    let list = json(port, NAMESPACES);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|n| n["namespace"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids.len(), 3, "{list}");
    assert_eq!(ids[1], "dev");
    assert_eq!(ids[2].len(), 36, "uuid id: {}", ids[2]);
    assert_eq!(
        call(
            port,
            "GET",
            &format!("{NAMESPACES}?checkNamespaceIdExist=true&customNamespaceId=dev")
        ),
        (200, "true".into())
    );

    // Configs and instances of the namespace are its own.
    let (s, b) = call(
        port,
        "POST",
        "/nacos/v1/cs/configs?dataId=app&group=g&tenant=dev&content=inDev",
    );
    assert_eq!((s, b.as_str()), (200, "true"));
    let one = json(port, &format!("{NAMESPACES}?show=all&namespaceId=dev"));
    assert_eq!(one["namespaceShowName"], "Development");
    assert_eq!(one["namespaceDesc"], "team dev");
    assert_eq!(one["configCount"], 1);
    assert_eq!(one["type"], 2);
    assert_eq!(
        call(port, "GET", "/nacos/v1/cs/configs?dataId=app&group=g").0,
        404,
        "not in public"
    );
    let (s, _) = call(
        port,
        "POST",
        "/nacos/v1/ns/instance?serviceName=svc&ip=127.0.0.61&port=80&namespaceId=dev",
    );
    assert_eq!(s, 200);
    let dev = json(
        port,
        "/nacos/v1/ns/instance/list?serviceName=svc&namespaceId=dev",
    );
    assert_eq!(dev["hosts"].as_array().map(Vec::len), Some(1));
    let public = json(port, "/nacos/v1/ns/instance/list?serviceName=svc");
    assert_eq!(public["hosts"].as_array().map(Vec::len), Some(0));

    let update = format!("{NAMESPACES}?namespace=dev&namespaceShowName=Dev2&namespaceDesc=renamed");
    assert_eq!(call(port, "PUT", &update), (200, "true".into()));
    let (s, b) = call(
        port,
        "GET",
        &format!("{NAMESPACES}?show=all&namespaceId=nope"),
    );
    assert_eq!(
        (s, b.as_str()),
        (500, "caused: namespaceId [ nope ] not exist;")
    );

    // Login while auth is disabled.
    let r = http(
        port,
        "POST",
        "/nacos/v1/auth/login?username=nacos",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "password=nacos",
    )
    .expect("login");
    assert_eq!(r.status, 200, "{r:?}");
    let login: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(login["accessToken"], "AUTH_DISABLED");
    assert_eq!(login["tokenTtl"], 18000);
    assert_eq!(login["username"], "nacos");
    let state = json(port, "/nacos/v1/console/server/state");
    assert_eq!(state["standalone_mode"], "standalone");
    assert_eq!(state["auth_enabled"], "false");

    // Durable through Raft: the renamed namespace survives SIGKILL; deletion takes effect.
    nacre.kill();
    drop(nacre);
    let nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-2.log"));
    let one = json(port, &format!("{NAMESPACES}?show=all&namespaceId=dev"));
    assert_eq!(one["namespaceShowName"], "Dev2");
    assert_eq!(
        call(port, "DELETE", &format!("{NAMESPACES}?namespaceId=dev")),
        (200, "true".into())
    );
    assert_eq!(
        json(port, NAMESPACES)["data"].as_array().map(Vec::len),
        Some(2)
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
