//! The fuzz targets of Nacre's decoders (issue: every wire decoder is fuzzed), as plain
//! functions over bytes. `cargo fuzz` drives them through `fuzz/cargo-fuzz/` (libFuzzer, see
//! docs/fuzzing.md); `tests/replay.rs` runs every file of `corpus/<target>/` through them on
//! the stable toolchain, in the README's test command.
//!
//! Each target decodes with the same function the server uses and must never panic. Where the
//! input decodes, it is encoded again and must decode to the same value (round trip).

use std::collections::BTreeMap;

use nacre_engine::config::listen::{encode_listening_configs, parse_listening_configs};
use nacre_engine::config::validate::validate_content;
use nacre_engine::naming::Instance;
use nacre_engine::raft::journal;
use nacre_engine::raft::state_machine::SnapshotImage;
use nacre_engine::wire::frame::{decode_msg, encode_msg};
use nacre_engine::wire::{PeerRequest, PeerResponse};
use nacre_server::grpc::handlers::{config_key, naming_key, parse_instance};
use nacre_server::grpc::proto::{Metadata, Payload};
use nacre_server::grpc::request_body;
use nacre_server::http::Params;
use nacre_server::http_naming::{parse_metadata, service_key};
use nacre_server::limits;
use nacre_server::settings::parse_cluster_conf;
use prost::Message;
use serde_json::{json, Value};

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
    ("grpc_request", grpc_request),
];

/// The JSON request types of the gRPC SDK protocol, in the order of `grpc_request`'s type
/// byte.
pub const GRPC_REQUEST_TYPES: &[&str] = &[
    "InstanceRequest",
    "BatchInstanceRequest",
    "PersistentInstanceRequest",
    "ServiceQueryRequest",
    "SubscribeServiceRequest",
    "ServiceListRequest",
    "ConfigQueryRequest",
    "ConfigPublishRequest",
    "ConfigRemoveRequest",
    "ConfigBatchListenRequest",
    "ConnectionSetupRequest",
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

/// The nesting depth of a parsed JSON value (a scalar is 0, `[]` is 1).
fn value_depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(value_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// An instance as the SDKs send it (the fields `parse_instance` reads).
fn instance_to_json(i: &Instance) -> Value {
    json!({
        "ip": i.ip,
        "port": i.port,
        "weight": i.weight,
        "healthy": i.healthy,
        "enabled": i.enabled,
        "ephemeral": i.ephemeral,
        "clusterName": i.cluster,
        "metadata": i.metadata,
    })
}

/// An instance parses; its limits are checked as the handlers check them; it encodes to JSON
/// that parses back to the same instance (the weight within float parsing precision).
fn instance_round_trip(v: &Value, ephemeral: bool) {
    let Ok(i) = parse_instance(v, ephemeral) else {
        return;
    };
    let _ = limits::check_metadata(&i.metadata);
    let again = parse_instance(&instance_to_json(&i), ephemeral)
        .unwrap_or_else(|_| panic!("a parsed instance encodes to a valid one: {i:?}"));
    let tolerance = i.weight.abs() * 1e-15;
    assert!(
        (again.weight - i.weight).abs() <= tolerance,
        "weight {} came back as {}",
        i.weight,
        again.weight
    );
    assert_eq!(
        Instance {
            weight: 0.0,
            ..again
        },
        Instance { weight: 0.0, ..i }
    );
}

/// The service a naming request names, and back.
fn naming_round_trip(body: &Value) {
    if let Ok(key) = naming_key(body) {
        let sent =
            json!({"namespace": key.namespace, "groupName": key.group, "serviceName": key.name});
        let again = naming_key(&sent).unwrap_or_else(|_| panic!("{key:?} names a service"));
        assert_eq!(again, key);
    }
}

/// The config a config request names (with the length limits), and back.
fn config_round_trip(body: &Value) {
    if let Ok(key) = config_key(body) {
        let _ = limits::check_config_key(&key);
        let sent = json!({"dataId": key.data_id, "group": key.group, "tenant": key.tenant});
        let again = config_key(&sent).unwrap_or_else(|_| panic!("{key:?} names a config"));
        assert_eq!(again, key);
    }
}

/// A JSON request of every SDK type: the first byte picks the type (`GRPC_REQUEST_TYPES`), the
/// rest is the body. It goes through the payload as the server receives it (prost round trip),
/// the depth bound the handlers apply first (never below the parsed value's depth), the
/// body parser, then the parsers and limits of that type, with round trips of what parses.
///
/// TODO(grpc): the per-type field reads that live inside the handlers (pageNo/pageSize,
/// additionMap, listen flag, the setup's labels) are reached through the pub parsers above
/// only; once `grpc::handlers::parse_request(type_name, &body)` and
/// `grpc::parse_setup(&body)` exist, call them here instead.
pub fn grpc_request(data: &[u8]) {
    let Some((&selector, json)) = data.split_first() else {
        return;
    };
    let type_name = GRPC_REQUEST_TYPES[usize::from(selector) % GRPC_REQUEST_TYPES.len()];
    let payload = Payload {
        metadata: Some(Metadata {
            r#type: type_name.to_string(),
            client_ip: String::new(),
            headers: BTreeMap::new(),
        }),
        body: Some(prost_types::Any {
            type_url: String::new(),
            value: json.to_vec(),
        }),
    };
    let again = Payload::decode(payload.encode_to_vec().as_slice()).expect("a payload decodes");
    assert_eq!(again, payload);

    // The scan sees every container of the text; a parsed object keeps only the last value of
    // a repeated key, so the value may be shallower than the text, never deeper.
    let shallow = limits::check_json_depth(json).is_ok();
    let body = request_body(&payload);
    match &body {
        Ok(v) => assert!(
            limits::json_depth(json) >= value_depth(v),
            "the depth scan missed a level"
        ),
        Err(m) => assert!(
            !shallow || !m.contains("recursion limit"),
            "a body within the depth bound hit the parser's limit: {m}"
        ),
    }
    let Ok(body) = body else {
        return;
    };
    let str_field = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::len);
    match type_name {
        "InstanceRequest" | "PersistentInstanceRequest" => {
            let _ = str_field(&body, "type");
            naming_round_trip(&body);
            let ephemeral = type_name == "InstanceRequest";
            instance_round_trip(body.get("instance").unwrap_or(&Value::Null), ephemeral);
        }
        "BatchInstanceRequest" => {
            naming_round_trip(&body);
            if let Some(Value::Array(items)) = body.get("instances") {
                for i in items {
                    instance_round_trip(i, true);
                }
            }
        }
        "ServiceQueryRequest" | "SubscribeServiceRequest" => {
            naming_round_trip(&body);
            let _ = (str_field(&body, "cluster"), str_field(&body, "clusters"));
        }
        "ServiceListRequest" => {
            let _ = (str_field(&body, "namespace"), str_field(&body, "groupName"));
            let _ = (
                body.get("pageNo").and_then(Value::as_u64),
                body.get("pageSize"),
            );
        }
        "ConfigQueryRequest" | "ConfigRemoveRequest" => config_round_trip(&body),
        "ConfigPublishRequest" => {
            config_round_trip(&body);
            if let Some(content) = body.get("content").and_then(Value::as_str) {
                let _ = validate_content(content);
            }
            let _ = body.get("additionMap").map(|m| str_field(m, "type"));
        }
        "ConfigBatchListenRequest" => {
            if let Some(Value::Array(contexts)) = body.get("configListenContexts") {
                let _ = limits::check_listeners(contexts.len());
                for c in contexts {
                    config_round_trip(c);
                }
            }
        }
        "ConnectionSetupRequest" => {
            let labels = body.get("labels").unwrap_or(&Value::Null);
            let _ = labels.get("module").and_then(Value::as_str) == Some("naming");
            let _ = (str_field(&body, "clientVersion"), body.get("abilityTable"));
        }
        other => unreachable!("type {other} has no parser here"),
    }
}
