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

/// `conf/application.properties` in the working directory sets the port and `nacos.home`
/// (data in `<home>/data`); `NACOS_SERVER_PORT` in the environment wins over the file.
#[test]
fn application_properties_and_environment_configure_the_node() {
    let root = temp_dir("properties");
    let conf = root.join("conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let file_port = free_http_port();
    let home = root.join("home");
    std::fs::write(
        conf.join("application.properties"),
        format!(
            "# as shipped by Nacos, plus ours\nserver.port={file_port}\nnacos.home={}\n\
             server.servlet.contextPath=/nacos\nnacos.standalone=true\n",
            home.display()
        ),
    )
    .expect("write properties");
    let run = |env_port: Option<u16>| {
        let log = std::fs::File::create(root.join("nacre.log")).expect("log");
        let mut cmd = std::process::Command::new(bin());
        cmd.current_dir(&root)
            .env_remove("NACOS_SERVER_PORT")
            .env_remove("MODE")
            .env_remove("NACOS_HOME")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(p) = env_port {
            cmd.env("NACOS_SERVER_PORT", p.to_string());
        }
        KillOnDrop(cmd.spawn().expect("spawn nacre"))
    };
    let wait_ready = |port: u16| {
        for _ in 0..400 {
            let r = http(port, "GET", "/nacos/v1/console/health/readiness", &[], "");
            if matches!(r, Ok(ref r) if r.status == 200) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(root.join("nacre.log")).unwrap_or_default();
        panic!("not ready on {port}:\n{log}");
    };
    let child = run(None);
    wait_ready(file_port);
    let r = http(
        file_port,
        "POST",
        &format!("{CONFIG}&content=fromFile"),
        &[],
        "",
    )
    .expect("publish");
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    assert!(home.join("data").is_dir(), "data under nacos.home");
    drop(child);

    let env_port = free_http_port();
    let child = run(Some(env_port));
    wait_ready(env_port);
    let r = http(env_port, "GET", CONFIG, &[], "").expect("get");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "fromFile"),
        "same home, same data"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&root);
}

/// A child process this test started, SIGKILLed and reaped when dropped (also on panic).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
