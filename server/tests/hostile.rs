//! Hostile input against a running standalone `nacre`: oversized bodies, invalid UTF-8, bad
//! numbers, missing parameters, path-like names, a slow client, many connections opened and
//! dropped, garbage on the peer and gRPC ports. Every bad request gets a 4xx (never a 500 or a
//! crash), and afterwards the node still serves and has lost nothing. Bounded in count and time;
//! everything stays on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use nacre_tests::{free_http_port, http, temp_dir, Nacre, RAFT_PORT_OFFSET};

/// One bad request: method, target, headers, body.
type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], String);

/// Connections opened and dropped at once.
const CONNECTION_CHURN: usize = 2_000;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_nacre"))
}

fn status(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    http(port, method, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
        .status
}

/// Sends raw bytes and returns what came back before the peer closed or 5 s passed.
fn raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn bad_requests_get_4xx_and_the_node_keeps_serving() {
    let root = temp_dir("hostile");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    let cfg = "/nacos/v1/cs/configs?dataId=keep&group=g";
    assert_eq!(
        status(port, "POST", &format!("{cfg}&content=precious"), &[], ""),
        200
    );

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cases: Vec<Case> = vec![
        // Missing and malformed parameters.
        (
            "POST",
            "/nacos/v1/cs/configs?group=g&content=x".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/cs/configs?dataId=d&group=g".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=notanumber".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=-1".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=80&weight=NaN".into(),
            &[],
            String::new(),
        ),
        (
            "GET",
            "/nacos/v1/ns/service/list?pageNo=x&pageSize=1".into(),
            &[],
            String::new(),
        ),
        (
            "GET",
            "/nacos/v1/cs/history?dataId=d&group=g&nid=99999999999999999999999".into(),
            &[],
            String::new(),
        ),
        // Path-like and odd names.
        (
            "POST",
            "/nacos/v1/cs/configs?dataId=..%2F..%2Fetc%2Fpasswd&group=g&content=x".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/cs/configs?dataId=d&group=%2Ftmp&content=x".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=..%2Fx%20y&ip=127.0.0.1&port=80".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/cs/configs?dataId=d&group=g&tenant=..%2F..&content=x".into(),
            &[],
            String::new(),
        ),
        // Invalid UTF-8 (percent-encoded) in query and form.
        (
            "POST",
            "/nacos/v1/cs/configs?dataId=%FF%FE&group=g&content=x".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/cs/configs".into(),
            &form,
            "dataId=d&group=g&content=%C3%28".into(),
        ),
        // Malformed metadata and listener records.
        (
            "POST",
            "/nacos/v1/ns/instance?serviceName=s&ip=127.0.0.1&port=80&metadata=%7B%7B%7B".into(),
            &[],
            String::new(),
        ),
        (
            "POST",
            "/nacos/v1/cs/configs/listener".into(),
            &form,
            "Listening-Configs=a%02b%02c%02d%02e%01".into(),
        ),
    ];
    for (method, target, headers, body) in &cases {
        let s = status(port, method, target, headers, body);
        assert!(
            (400..500).contains(&s),
            "{method} {target} {body:?} answered {s}"
        );
    }

    // An oversized body is refused before it is buffered whole.
    let huge = "x".repeat(40 * 1024 * 1024);
    let r = http(port, "POST", "/nacos/v1/cs/configs", &form, &huge);
    match r {
        Ok(r) => assert!(
            (400..500).contains(&r.status),
            "oversized body: {}",
            r.status
        ),
        // The server may also close the connection while the body is still being sent.
        Err(e) => println!("oversized body: connection closed ({e})"),
    }
    // A content over the 10 MiB limit in a well-formed form.
    let big_content = format!(
        "dataId=big&group=g&content={}",
        "y".repeat(10 * 1024 * 1024 + 1)
    );
    let s = status(port, "POST", "/nacos/v1/cs/configs", &form, &big_content);
    assert!((400..500).contains(&s), "content over the limit: {s}");

    // A slow client that sends half a request and stalls does not block others.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("slow connect");
    slow.write_all(
        b"POST /nacos/v1/cs/configs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nda",
    )
    .expect("slow write");
    assert_eq!(status(port, "GET", cfg, &[], ""), 200);

    // Connections opened and dropped without a request.
    let mut held = Vec::with_capacity(CONNECTION_CHURN);
    for _ in 0..CONNECTION_CHURN {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            held.push(c);
        }
    }
    println!("{} connections opened", held.len());
    drop(held);
    drop(slow);

    // Garbage on the Raft and gRPC ports closes those connections only.
    let junk = b"\x00\x01\x02garbage that is not a frame\xff\xff\xff\xff";
    let _ = raw(port - RAFT_PORT_OFFSET, junk);
    let _ = raw(port + 1000, junk);
    let _ = raw(port + 1001, &[0xffu8; 64]);

    // Still serving, nothing lost.
    let r = http(port, "GET", cfg, &[], "").expect("get after the abuse");
    assert_eq!((r.status, r.body.as_str()), (200, "precious"));
    assert_eq!(
        status(port, "GET", "/nacos/v1/console/health/readiness", &[], ""),
        200
    );
    assert_eq!(
        status(port, "POST", &format!("{cfg}2&content=after"), &[], ""),
        200
    );
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
