//! Hostile input against a running standalone `nacre`: oversized bodies, invalid UTF-8, bad
//! numbers, missing parameters, path-like names, deep and oversized JSON, too many listeners,
//! a flood of instances, a slow client, 10,000 connections opened and dropped, garbage on the
//! peer and gRPC ports. Every bad request gets a 4xx (never a 500 or a crash) with Nacos's
//! message where `server::limits` sets one, and afterwards the node still serves and has lost
//! nothing. Bounded in count and time; everything stays on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nacre_server::limits::{
    INSTANCES_PER_SERVICE_MAX, JSON_DEPTH_MAX, LISTENERS_PER_REQUEST_MAX, METADATA_CHARS_MAX,
};
use nacre_tests::{free_http_port, http, temp_dir, HttpResponse, Nacre, RAFT_PORT_OFFSET};

/// One bad request: method, target, headers, body.
type Case<'a> = (&'a str, String, &'a [(&'a str, &'a str)], String);

/// Connections opened and dropped in all.
const CONNECTION_CHURN: usize = 10_000;
/// Most connections held open at once (fewer when the file-descriptor limit is low).
const CHURN_WAVE_MAX: usize = 2_500;
/// Connections opened between two requests of the check: the request waits until the server
/// has accepted the connections before it, so the accept queue never overflows (an overflow
/// costs a 1 s SYN retransmission).
const CHURN_BURST: usize = 100;
/// Descriptors left for everything else of the test and the server.
const FD_RESERVE: usize = 512;
/// The whole churn must be over within this.
const CHURN_DEADLINE: Duration = Duration::from_secs(120);
/// Threads registering the instance flood, each on its own keep-alive connection.
const FLOOD_THREADS: usize = 4;
/// The flood must reach the bound within this.
const FLOOD_DEADLINE: Duration = Duration::from_secs(240);

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

/// The soft limit of open files of this process (the server inherits it), from
/// `/proc/self/limits`; 1024 where that cannot be read.
fn open_files_soft_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse().ok())
        })
        .unwrap_or(1024)
}

fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A status and body checked against the bound's message.
fn expect_refusal(r: &HttpResponse, what: &str, message: &str) {
    assert!(
        (400..500).contains(&r.status) && r.body.contains(message),
        "{what}: answered {} {:?}, expected a 4xx with {message:?}",
        r.status,
        r.body
    );
}

/// One request on a keep-alive connection; the status and body.
fn keep_alive(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    target: &str,
) -> Result<(u16, String), String> {
    let req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    conn.get_mut()
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    conn.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).map_err(|e| e.to_string())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| format!("bad length {v}"))?;
            }
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn connect_keep_alive(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    BufReader::new(s)
}

/// The JSON nesting that every JSON input of the API refuses.
fn deep_json(levels: usize) -> String {
    format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
}

/// Deep and oversized JSON, oversized metadata, too many listeners and over-long config ids
/// get a 4xx with the bound's message, and change nothing.
fn limits_are_refused_with_nacos_messages(port: u16) {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let instance = "/nacos/v1/ns/instance?serviceName=limits&ip=127.0.0.9&port=80";
    let meta_at_bound = format!("k={}", "v".repeat(METADATA_CHARS_MAX - 1));
    let r = http(
        port,
        "POST",
        &format!("{instance}&metadata={}", enc(&meta_at_bound)),
        &[],
        "",
    )
    .expect("register at the bound");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));

    let too_big = "Param 'Metadata' is illegal, the param length should not exceed 1024.";
    let deeper = format!("JSON nested deeper than {JSON_DEPTH_MAX} levels");
    let beat_of = |meta: &str| {
        format!(
            "/nacos/v1/ns/instance/beat?serviceName=limits&beat={}",
            enc(&format!(
                r#"{{"ip":"127.0.0.10","port":80,"metadata":{meta}}}"#
            ))
        )
    };
    let big_map = format!(r#"{{"k":"{}"}}"#, "v".repeat(METADATA_CHARS_MAX));
    let listeners = |n: usize| {
        let records: String = (0..n).map(|i| format!("d{i}%02g%02%01")).collect();
        format!("Listening-Configs={records}")
    };
    let cases: Vec<(&str, &str, String, String, &str)> = vec![
        // Deep JSON: metadata, a beat, a metadata batch's instance list, a selector.
        (
            "deep metadata",
            "POST",
            format!("{instance}&metadata={}", enc(&format!(r#"{{"a":{}}}"#, deep_json(200)))),
            String::new(),
            "metadata format incorrect:",
        ),
        (
            "deep metadata in a form body",
            "POST",
            instance.to_string(),
            format!("metadata={}", enc(&format!(r#"{{"a":{}}}"#, deep_json(10_000)))),
            "the param length should not exceed 16384",
        ),
        ("deep beat", "PUT", beat_of(&deep_json(100)), String::new(), &deeper),
        (
            "deep instance list",
            "PUT",
            format!(
                "/nacos/v1/ns/instance/metadata/batch?serviceName=limits&metadata=a%3Db&instances={}",
                enc(&deep_json(1_000))
            ),
            String::new(),
            &deeper,
        ),
        (
            "deep selector",
            "POST",
            format!(
                "/nacos/v1/ns/service?serviceName=deep-sel&selector={}",
                enc(&format!(r#"{{"type":"none","x":{}}}"#, deep_json(300)))
            ),
            String::new(),
            "not match any type of selector!",
        ),
        // Oversized metadata: on register, on a beat, on a service, and grown by a batch merge.
        (
            "metadata over the bound",
            "POST",
            format!("{instance}&metadata={}", enc(&format!("k={}", "v".repeat(METADATA_CHARS_MAX)))),
            String::new(),
            too_big,
        ),
        ("beat metadata over the bound", "PUT", beat_of(&big_map), String::new(), too_big),
        (
            "service metadata over the bound",
            "POST",
            format!("/nacos/v1/ns/service?serviceName=big-meta&metadata={}", enc(&big_map)),
            String::new(),
            too_big,
        ),
        (
            "metadata batch growing an instance over the bound",
            "PUT",
            "/nacos/v1/ns/instance/metadata/batch?serviceName=limits&metadata=x%3Dyy".into(),
            String::new(),
            too_big,
        ),
        // One listener too many in a long poll.
        (
            "too many listeners",
            "POST",
            "/nacos/v1/cs/configs/listener".into(),
            listeners(LISTENERS_PER_REQUEST_MAX + 1),
            "caused: invalid probeModify;",
        ),
        // Config ids over the generic checker's lengths.
        (
            "long dataId",
            "POST",
            format!("/nacos/v1/cs/configs?dataId={}&group=g&content=x", "d".repeat(257)),
            String::new(),
            "caused: Param 'dataId' is illegal, the param length should not exceed 256.;",
        ),
        (
            "long group",
            "POST",
            format!("/nacos/v1/cs/configs?dataId=d&group={}&content=x", "g".repeat(129)),
            String::new(),
            "caused: Param 'group' is illegal, the param length should not exceed 128.;",
        ),
    ];
    for (what, method, target, body, message) in &cases {
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &form };
        let r = http(port, method, target, headers, body).unwrap_or_else(|e| panic!("{what}: {e}"));
        expect_refusal(&r, what, message);
    }

    // Exactly the bound of listeners is answered at once (all differ: none of them exist).
    let r = http(
        port,
        "POST",
        "/nacos/v1/cs/configs/listener",
        &form,
        &listeners(LISTENERS_PER_REQUEST_MAX).replace("%02%01", "%02x%01"),
    )
    .expect("listeners at the bound");
    assert_eq!(r.status, 200, "{}", r.body);
    // The refused writes changed nothing: the instance keeps its metadata, nothing else exists.
    let r = http(
        port,
        "GET",
        "/nacos/v1/ns/instance/list?serviceName=limits",
        &[],
        "",
    )
    .expect("list");
    let list: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    let hosts = list["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{}", r.body);
    assert_eq!(
        hosts[0]["metadata"]["k"].as_str().map(str::len),
        Some(METADATA_CHARS_MAX - 1)
    );
    assert!(hosts[0]["metadata"].get("x").is_none());
    for svc in ["deep-sel", "big-meta"] {
        let r = http(
            port,
            "GET",
            &format!("/nacos/v1/ns/service?serviceName={svc}"),
            &[],
            "",
        )
        .expect("service");
        assert_eq!(r.status, 400, "{svc} must not exist: {}", r.body);
    }
}

/// Opens and drops `CONNECTION_CHURN` connections in waves that fit the descriptor limit,
/// checking between waves that the node still answers.
#[allow(clippy::disallowed_methods)] // the churn is bounded by the wall clock
fn churn_connections(port: u16, check: &str) {
    let soft = open_files_soft_limit();
    let wave = CHURN_WAVE_MAX.min(soft.saturating_sub(FD_RESERVE)).max(64);
    let start = Instant::now();
    let (mut opened, mut refused) = (0usize, 0usize);
    while opened + refused < CONNECTION_CHURN {
        let n = wave.min(CONNECTION_CHURN - opened - refused);
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(c) => held.push(c),
                Err(_) => refused += 1,
            }
            if i % CHURN_BURST == CHURN_BURST - 1 {
                let s = status(port, "GET", check, &[], "");
                assert_eq!(s, 200, "serving during the churn");
            }
        }
        opened += held.len();
        drop(held);
        assert!(
            start.elapsed() < CHURN_DEADLINE,
            "churn of {CONNECTION_CHURN} took over {CHURN_DEADLINE:?}"
        );
    }
    println!(
        "{opened} connections opened and dropped ({refused} refused) in waves of {wave} \
         (open-files soft limit {soft}) in {:?}",
        start.elapsed()
    );
    assert!(
        opened >= CONNECTION_CHURN * 9 / 10,
        "only {opened} connections opened"
    );
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

    // The bounds of `server::limits`.
    limits_are_refused_with_nacos_messages(port);

    // Connections opened and dropped without a request.
    churn_connections(port, cfg);
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

/// Metadata that keeps an HTTP instance without beats for 10 minutes (the flood outlasts the
/// default 30 s).
const LONG_LIVED: &str =
    "preserved.heart.beat.timeout%3D600000%2Cpreserved.ip.delete.timeout%3D600000";

/// Registers `count` instances `10.a.b.c:8080` of `service`, starting at number `first`, on
/// one keep-alive connection; the answers that were not 200.
fn register_range(port: u16, service: &str, first: usize, count: usize) -> Vec<(u16, String)> {
    let mut conn = connect_keep_alive(port);
    let mut failed = Vec::new();
    for i in first..first + count {
        let target = format!(
            "/nacos/v1/ns/instance?serviceName={service}&ip=10.{}.{}.{}&port=8080&metadata={LONG_LIVED}",
            i >> 16,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let (status, body) =
            keep_alive(&mut conn, "POST", &target).unwrap_or_else(|e| panic!("register {i}: {e}"));
        if status != 200 {
            failed.push((status, body));
        }
    }
    failed
}

fn instance_count(port: u16, service: &str) -> usize {
    nacre_tests::listed(port, service).expect("list").len()
}

/// A flood of registrations into one service stops at `INSTANCES_PER_SERVICE_MAX` with a 400;
/// the instances already there can still re-register, other services still take new ones, and
/// the node stays ready with its data.
#[test]
#[allow(clippy::disallowed_methods)] // the flood is bounded by the wall clock
fn a_flood_of_instances_stops_at_the_bound() {
    let root = temp_dir("hostile-flood");
    let port = free_http_port();
    let nacre = Nacre::spawn(bin(), port, &root.join("data"), &root.join("nacre.log"));
    let cfg = "/nacos/v1/cs/configs?dataId=keep&group=g";
    assert_eq!(
        status(port, "POST", &format!("{cfg}&content=precious"), &[], ""),
        200
    );

    let start = Instant::now();
    let per_thread = INSTANCES_PER_SERVICE_MAX.div_ceil(FLOOD_THREADS);
    let failed: Vec<(u16, String)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..FLOOD_THREADS)
            .map(|t| {
                let first = t * per_thread;
                let count = per_thread.min(INSTANCES_PER_SERVICE_MAX - first);
                scope.spawn(move || register_range(port, "flood", first, count))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("flood thread"))
            .collect()
    });
    println!(
        "{INSTANCES_PER_SERVICE_MAX} instances registered in {:?}",
        start.elapsed()
    );
    assert!(
        failed.is_empty(),
        "refused below the bound: {:?}",
        &failed[..failed.len().min(3)]
    );
    assert!(
        start.elapsed() < FLOOD_DEADLINE,
        "flood took {:?}",
        start.elapsed()
    );

    // One more is refused, with the bound in the message; so is a beat that would re-register.
    let more = register_range(port, "flood", INSTANCES_PER_SERVICE_MAX, 1);
    let expected = format!(
        "Current service DEFAULT_GROUP@@flood has reached the limit of \
         {INSTANCES_PER_SERVICE_MAX} instances, can't register more."
    );
    assert_eq!(more, vec![(400, expected.clone())]);
    let beat = format!(
        "/nacos/v1/ns/instance/beat?serviceName=flood&beat={}",
        enc(r#"{"ip":"10.255.255.255","port":8080}"#)
    );
    let r = http(port, "PUT", &beat, &[], "").expect("beat");
    expect_refusal(&r, "beat re-registering into a full service", &expected);
    // Instances already there re-register and update; another service takes new instances.
    assert!(register_range(port, "flood", 0, 10).is_empty());
    let update = "/nacos/v1/ns/instance?serviceName=flood&ip=10.0.0.5&port=8080&weight=2";
    assert_eq!(status(port, "PUT", update, &[], ""), 200);
    assert!(register_range(port, "other", 0, 10).is_empty());
    // A persistent service is bounded the same way (checked here on its first instance only).
    let persistent = "/nacos/v1/ns/instance?serviceName=kept&ip=10.9.9.9&port=80&ephemeral=false";
    assert_eq!(status(port, "POST", persistent, &[], ""), 200);

    // The bound is soft by the registrations in flight when the count is refreshed.
    let flood = instance_count(port, "flood");
    assert!(
        (INSTANCES_PER_SERVICE_MAX..=INSTANCES_PER_SERVICE_MAX + FLOOD_THREADS).contains(&flood),
        "{flood} instances"
    );
    assert_eq!(instance_count(port, "other"), 10);
    assert_eq!(
        status(port, "GET", "/nacos/v1/console/health/readiness", &[], ""),
        200
    );
    let r = http(port, "GET", cfg, &[], "").expect("config after the flood");
    assert_eq!((r.status, r.body.as_str()), (200, "precious"));
    drop(nacre);
    let _ = std::fs::remove_dir_all(&root);
}
