//! Black-box test of a standalone `nacre`: the Nacos deployment guide's config commands over
//! HTTP (wire reference §2.4), then SIGKILL and a restart on the same data directory to show
//! an acknowledged publish is durable.

use std::path::Path;

use nacre_tests::{free_http_port, http, temp_dir, Nacre};

const CONFIG: &str = "/nacos/v1/cs/configs?dataId=nacos.cfg.dataId&group=test";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

#[test]
fn publish_get_validate_and_survive_sigkill() {
    let root = temp_dir("http-standalone");
    let data = root.join("data");
    let port = free_http_port();
    let mut nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-1.log"));

    let live = http(port, "GET", "/nacos/v1/console/health/liveness", &[], "").expect("liveness");
    assert_eq!((live.status, live.body.as_str()), (200, "OK"));

    let missing = http(port, "GET", CONFIG, &[], "").expect("get");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.body, "config data not exist\n");

    let published = http(
        port,
        "POST",
        &format!("{CONFIG}&content=helloWorld"),
        &[],
        "",
    )
    .expect("publish");
    assert_eq!((published.status, published.body.as_str()), (200, "true"));

    let got = http(port, "GET", CONFIG, &[], "").expect("get");
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, "helloWorld");
    assert_eq!(
        got.header("Content-MD5"),
        Some("1a833da63a6b7e20098dae06d06602e1")
    );
    assert_eq!(got.header("Config-Type"), Some("text"));

    let bad = http(
        port,
        "POST",
        "/nacos/v1/cs/configs?dataId=bad%20id&group=test&content=x",
        &[],
        "",
    )
    .expect("bad publish");
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(bad.body, "caused: invalid dataId : bad id;");

    // Form body parameters work like query parameters (§2.0.1); a CAS with a wrong md5 fails.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cas = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("casMd5", "00000000000000000000000000000000"),
    ];
    let body = "dataId=form.id&group=test&content=v1&type=yaml";
    let r = http(port, "POST", "/nacos/v1/cs/configs", &form, body).expect("form publish");
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    let r = http(port, "POST", "/nacos/v1/cs/configs", &cas, body).expect("cas publish");
    assert_eq!(r.status, 500, "{r:?}");
    assert_eq!(
        r.body,
        "caused: Cas publish fail, server md5 may have changed.;"
    );
    let r = http(
        port,
        "GET",
        "/nacos/v1/cs/configs?dataId=form.id&group=test",
        &[],
        "",
    )
    .expect("get form");
    assert_eq!((r.status, r.body.as_str()), (200, "v1"));
    assert_eq!(r.header("Config-Type"), Some("yaml"));
    let r = http(
        port,
        "DELETE",
        "/nacos/v1/cs/configs?dataId=form.id&group=test",
        &[],
        "",
    )
    .expect("delete");
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    let r = http(
        port,
        "GET",
        "/nacos/v1/cs/configs?dataId=form.id&group=test",
        &[],
        "",
    )
    .expect("get deleted");
    assert_eq!(r.status, 404);

    // SIGKILL, restart on the same data directory: the acknowledged publish is still there.
    nacre.kill();
    let log = nacre.log_text();
    assert!(log.contains("nacre listening http="), "{log}");
    drop(nacre);
    let nacre = Nacre::spawn(bin(), port, &data, &root.join("nacre-2.log"));
    let got = http(port, "GET", CONFIG, &[], "").expect("get after restart");
    assert_eq!(got.status, 200, "{got:?}\n{}", nacre.log_text());
    assert_eq!(got.body, "helloWorld");
    assert_eq!(
        got.header("Content-MD5"),
        Some("1a833da63a6b7e20098dae06d06602e1")
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
