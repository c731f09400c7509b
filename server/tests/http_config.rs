//! Black-box tests of the config listener long poll, search and history against the real
//! `nacre` binary (wire reference §2.4): a stale md5 answers at once with the exact body, a held
//! poll answers soon after a publish of its key, an up-to-date poll answers an empty body after
//! its hold (max(10000, timeout − 500) ms), malformed `Listening-Configs` is a 400 with Nacos's
//! message, and the search/history JSON has Nacos's `Page` shape.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nacre_tests::{free_http_port, http, temp_dir, HttpResponse, Nacre};

const LISTENER: &str = "/nacos/v1/cs/configs/listener";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
/// Read timeout of a long poll in these tests: longer than any hold they ask for.
const POLL_READ_TIMEOUT_MS: u64 = 40_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

/// One request with a read timeout long enough for a held poll (the shared helper's is 10 s).
fn slow_http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(POLL_READ_TIMEOUT_MS)))
        .expect("timeout");
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    HttpResponse::parse(&raw).expect("parse")
}

fn publish(port: u16, query: &str) {
    let r = http(
        port,
        "POST",
        &format!("/nacos/v1/cs/configs?{query}"),
        &[],
        "",
    )
    .expect("publish");
    assert_eq!((r.status, r.body.as_str()), (200, "true"), "{query}");
}

fn md5_of(port: u16, query: &str) -> String {
    let r = http(
        port,
        "GET",
        &format!("/nacos/v1/cs/configs?{query}"),
        &[],
        "",
    )
    .expect("get");
    assert_eq!(r.status, 200, "{r:?}");
    r.header("Content-MD5").expect("md5 header").to_string()
}

fn poll(port: u16, listening: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![FORM];
    all.extend_from_slice(headers);
    slow_http(
        port,
        "POST",
        LISTENER,
        &all,
        &format!("Listening-Configs={listening}"),
    )
}

fn json(r: &HttpResponse) -> serde_json::Value {
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.body).expect("json body")
}

#[test]
// Black-box tests measure the real process's latency on the real clock.
#[allow(clippy::disallowed_methods)]
fn long_poll_answers_changes_and_rejects_malformed() {
    let root = temp_dir("http-config");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));

    publish(port, "dataId=app.yaml&group=test&content=v1&appName=shop");
    publish(port, "dataId=db&group=test&tenant=ns1&content=x");
    let md5 = md5_of(port, "dataId=app.yaml&group=test");

    // Stale md5s answer at once, naming the changed keys in the exact Nacos encoding.
    let started = Instant::now();
    let r = poll(
        port,
        "app.yaml%02test%02bogus%01db%02test%02%02ns1%01",
        &[("Long-Pulling-Timeout", "30000")],
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "app.yaml%02test%01db%02test%02ns1%01\n");
    assert_eq!(r.header("Cache-Control"), Some("no-cache,no-store"));
    assert!(started.elapsed() < Duration::from_secs(1));

    // Up to date (a missing config has md5 ""): no header or No-Hangup answer an empty body now.
    let current = format!("app.yaml%02test%02{md5}%01missing%02test%02%01");
    let r = poll(port, &current, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let no_hangup = [
        ("Long-Pulling-Timeout", "30000"),
        ("Long-Pulling-Timeout-No-Hangup", "true"),
    ];
    let r = poll(port, &current, &no_hangup);
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(started.elapsed() < Duration::from_secs(2));

    // A held poll answers with only the published key, soon after the publish.
    let held = std::thread::spawn(move || {
        let r = poll(port, &current, &[("Long-Pulling-Timeout", "30000")]);
        (r, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(500));
    let published_at = Instant::now();
    publish(port, "dataId=app.yaml&group=test&content=v2");
    let acked_at = Instant::now();
    let (r, answered_at) = held.join().expect("poll thread");
    assert_eq!((r.status, r.body.as_str()), (200, "app.yaml%02test%01\n"));
    let latency = answered_at.duration_since(published_at);
    println!(
        "long-poll notify latency: {} us after publish sent, {} us after publish acknowledged",
        latency.as_micros(),
        answered_at.saturating_duration_since(acked_at).as_micros()
    );
    assert!(latency < Duration::from_secs(1), "latency {latency:?}");

    // Malformed `Listening-Configs`: Nacos's controller answers `invalid probeModify`.
    for bad in ["", "a%02b%02c%02d%02e%01", "a%02b%01"] {
        let r = poll(port, bad, &[("Long-Pulling-Timeout", "30000")]);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        assert_eq!(r.body, "caused: invalid probeModify;", "{bad}");
    }

    // Search: Nacos `Page<ConfigInfo>` with string ids.
    publish(port, "dataId=app.json&group=test&content=j");
    let page = json(
        &http(
            port,
            "GET",
            "/nacos/v1/cs/configs?search=blur&dataId=app.*&group=&pageNo=1&pageSize=10",
            &[],
            "",
        )
        .expect("blur search"),
    );
    assert_eq!(page["totalCount"], 2);
    assert_eq!(page["pageNumber"], 1);
    assert_eq!(page["pagesAvailable"], 1);
    assert_eq!(page["pageItems"][0]["dataId"], "app.json");
    let item = &page["pageItems"][1];
    assert!(item["id"].is_string(), "{item}");
    assert_eq!(item["content"], "v2");
    assert_eq!(item["appName"], "");
    assert_eq!(item["type"], "text");
    let page = json(
        &http(
            port,
            "GET",
            "/nacos/v1/cs/configs?search=accurate&dataId=db&group=test&tenant=ns1&pageNo=1&pageSize=10",
            &[],
            "",
        )
        .expect("accurate search"),
    );
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["pageItems"][0]["tenant"], "ns1");
    let all = json(
        &http(
            port,
            "GET",
            "/nacos/v1/cs/configs?show=all&dataId=app.yaml&group=test",
            &[],
            "",
        )
        .expect("show all"),
    );
    assert_eq!(all["content"], "v2");
    assert!(
        all["createTime"].is_u64() && all["modifyTime"].is_u64(),
        "{all}"
    );

    // History: newest first, ISO-8601 times, single rows by nid and the previous row.
    let hist = json(
        &http(
            port,
            "GET",
            "/nacos/v1/cs/history?search=accurate&dataId=app.yaml&group=test",
            &[],
            "",
        )
        .expect("history"),
    );
    assert_eq!(hist["totalCount"], 2);
    let newest = &hist["pageItems"][0];
    assert_eq!(
        (&newest["opType"], &hist["pageItems"][1]["opType"]),
        (&"U".into(), &"I".into())
    );
    let created = newest["createdTime"].as_str().expect("iso time");
    assert!(
        created.len() == 29 && created.as_bytes()[10] == b'T' && created.ends_with("+00:00"),
        "{created}"
    );
    let nid = newest["id"].as_str().expect("string id");
    let row = json(
        &http(
            port,
            "GET",
            &format!("/nacos/v1/cs/history?dataId=app.yaml&group=test&nid={nid}"),
            &[],
            "",
        )
        .expect("history row"),
    );
    assert_eq!(
        (&row["content"], &row["md5"]),
        (&"v2".into(), &newest["md5"])
    );
    let prev = json(
        &http(
            port,
            "GET",
            &format!("/nacos/v1/cs/history/previous?dataId=app.yaml&group=test&id={nid}"),
            &[],
            "",
        )
        .expect("previous row"),
    );
    assert_eq!(
        (&prev["content"], &prev["md5"]),
        (&"v1".into(), &md5.as_str().into())
    );

    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
// Black-box tests measure the real process's hold time on the real clock.
#[allow(clippy::disallowed_methods)]
fn up_to_date_poll_answers_empty_after_its_hold() {
    let root = temp_dir("http-config-hold");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    publish(port, "dataId=held&group=test&content=v1");
    let md5 = md5_of(port, "dataId=held&group=test");

    // Hold = max(10000, 10500 − 500) = 10000 ms.
    let started = Instant::now();
    let r = poll(
        port,
        &format!("held%02test%02{md5}%01"),
        &[("Long-Pulling-Timeout", "10500")],
    );
    let held = started.elapsed();
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    println!("up-to-date poll held {} ms", held.as_millis());
    assert!(
        held >= Duration::from_secs(9) && held <= Duration::from_secs(12),
        "{held:?}"
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
