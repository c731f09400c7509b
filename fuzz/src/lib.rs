//! The fuzz targets of Nacre's decoders (issue: every wire decoder is fuzzed), as plain
//! functions over bytes. `cargo fuzz` drives them through `fuzz/cargo-fuzz/` (libFuzzer, see
//! docs/fuzzing.md); `tests/replay.rs` runs every file of `corpus/<target>/` through them on
//! the stable toolchain, in the README's test command.
//!
//! Each target decodes with the same function the server uses and must never panic. Where the
//! input decodes, it is encoded again and must decode to the same value (round trip).

use nacre_engine::config::listen::{encode_listening_configs, parse_listening_configs};
use nacre_engine::raft::journal;
use nacre_engine::raft::state_machine::SnapshotImage;
use nacre_engine::wire::frame::{decode_msg, encode_msg};
use nacre_engine::wire::{PeerRequest, PeerResponse};
use nacre_server::grpc::handlers::{config_key, naming_key, parse_instance};
use nacre_server::grpc::proto::Payload;
use nacre_server::grpc::request_body;
use nacre_server::http::Params;
use nacre_server::http_naming::{parse_metadata, service_key};
use nacre_server::settings::parse_cluster_conf;
use prost::Message;
use serde_json::Value;

/// A fuzz target: bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("peer_request", peer_request),
    ("peer_response", peer_response),
    ("journal", journal),
    ("snapshot", snapshot),
    ("listening_configs", listening_configs),
    ("cluster_conf", cluster_conf),
    ("properties", properties),
    ("http_params", http_params),
    ("grpc_payload", grpc_payload),
];

/// A framed peer message decodes (or is refused) and re-encodes canonically.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
    if let Ok((value, _used)) = decode_msg::<T>(data) {
        let once = encode_msg(&value);
        let (again, used) = decode_msg::<T>(&once).expect("a re-encoded message decodes");
        assert_eq!(used, once.len(), "the whole re-encoded frame is used");
        assert_eq!(encode_msg(&again), once, "encoding is canonical");
    }
}

/// A request frame from a peer (Raft RPCs, Distro messages, forwards, naming writes).
pub fn peer_request(data: &[u8]) {
    round_trip::<PeerRequest>(data);
}

/// An answer frame from a peer.
pub fn peer_response(data: &[u8]) {
    round_trip::<PeerResponse>(data);
}

/// A Raft journal file as read at startup: recovered, torn tail cut, or refused as corrupt.
pub fn journal(data: &[u8]) {
    if let Ok(recovered) = journal::replay(data) {
        assert!(recovered.valid_len as usize <= data.len());
    }
}

/// A snapshot file or transfer.
pub fn snapshot(data: &[u8]) {
    if let Ok(image) = SnapshotImage::decode(data) {
        let again = SnapshotImage::decode(&image.encode()).expect("a re-encoded snapshot decodes");
        assert_eq!(again.state_digest, image.state_digest);
    }
}

/// The `Listening-Configs` value of a long poll.
pub fn listening_configs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Text without a complete record parses to no entries (as in Nacos: the poll then watches
    // nothing); the empty value itself is refused, so only non-empty results round-trip.
    if let Some(entries) = parse_listening_configs(text).ok().filter(|e| !e.is_empty()) {
        let again = parse_listening_configs(&encode_listening_configs(&entries))
            .expect("re-encoded entries parse");
        assert_eq!(again, entries);
    }
}

/// A `cluster.conf` (or a `-c` member list).
pub fn cluster_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(members) = parse_cluster_conf(text, 8848) {
        let rendered: Vec<String> = members
            .iter()
            .map(|m| format!("{}:{}?raft_port={}", m.host, m.port, m.raft_port))
            .collect();
        let again = parse_cluster_conf(&rendered.join("\n"), 8848).expect("rendered list parses");
        let key = |m: &nacre_server::settings::ConfMember| (m.host.clone(), m.port, m.raft_port);
        assert_eq!(
            again.iter().map(key).collect::<Vec<_>>(),
            members.iter().map(key).collect::<Vec<_>>()
        );
    }
}

/// An `application.properties` file.
pub fn properties(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nacre_server::properties::parse(text);
    }
}

/// HTTP parameters: a query string, a 0 byte, then a form body; then the naming parsers that
/// every `/v1/ns` request goes through.
pub fn http_params(data: &[u8]) {
    let (query, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let Ok(p) = Params::parse(Some(query), &headers, body) else {
        return;
    };
    let _ = service_key(
        p.get("namespaceId"),
        p.get("groupName"),
        p.get("serviceName"),
    );
    let _ = parse_metadata(p.get("metadata"));
}

/// A gRPC `Payload` and the JSON parsers of the request types.
pub fn grpc_payload(data: &[u8]) {
    let Ok(payload) = Payload::decode(data) else {
        return;
    };
    let _ = payload.type_name();
    let Ok(body) = request_body(&payload) else {
        return;
    };
    let _ = naming_key(&body);
    let _ = config_key(&body);
    for key in ["instance", "instances"] {
        match body.get(key) {
            Some(Value::Array(items)) => {
                for i in items {
                    let _ = parse_instance(i, true);
                }
            }
            Some(v) => {
                let _ = parse_instance(v, false);
            }
            None => {}
        }
    }
    if let Some(Value::Array(contexts)) = body.get("configListenContexts") {
        for c in contexts {
            let _ = config_key(c);
        }
    }
}
