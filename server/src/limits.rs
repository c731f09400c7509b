//! The request limits of the HTTP and gRPC APIs in one place: the bounds (constants) and small
//! checks that answer a `Reject` with a Nacos-style message. The HTTP handlers and the gRPC
//! handlers call the same functions, so both protocols refuse the same requests with the same
//! words; `Reject::InvalidParam` becomes HTTP 400 (plain text on `/v1/ns`, `caused: …;` on
//! `/v1/cs`) and gRPC `errorCode` 400.
//!
//! | limit | value | checked by |
//! |---|---|---|
//! | metadata of an instance or service | 1024 UTF-16 units of keys + values | `check_metadata` |
//! | raw `metadata` parameter (text) | 16 KiB | `http_naming::parse_metadata` |
//! | instances of one service | 10,000 | `http_naming::NamingApi::check_instance_room` |
//! | configs named by one listen request | 10,000 | `check_listeners` (HTTP: the engine's parser) |
//! | JSON nesting of a request body or JSON parameter | 16 levels | `check_json_depth` |
//! | dataId / group of a config | 256 / 128 UTF-16 units | `check_config_key` |
//!
//! Rules enforced elsewhere, unchanged: the characters of dataId, group, tenant and tag and the
//! tenant's 128 and the tag's 16 characters (`nacre_engine::config::validate`, Nacos's
//! `ParamUtils`); namespace id (64), group (128), service name (512), cluster (64) and ip (128)
//! of the naming APIs (`http_naming::service_key`, `check_namespace`, `check_cluster`,
//! `check_ip`, Nacos's generic parameter checker); a config content of 10 MiB; an HTTP body of
//! `http::HTTP_BODY_BYTES_MAX` and 256 parameters; a gRPC message of 10 MiB, 10,000
//! connections and 10,000 listened configs per connection (`grpc`).

use std::collections::BTreeMap;

use nacre_engine::config::listen::LISTEN_RECORDS_MAX;
use nacre_engine::config::ConfigKey;
use nacre_engine::error::Reject;
use nacre_engine::naming::ServiceKey;

/// Longest metadata of an instance or a service: the Java lengths (UTF-16 units) of its keys
/// and values, summed (Nacos's `maxMetadataLength`, default 1024). Nacos skips blank keys and
/// values in the sum; here every one counts, so a value of spaces cannot pass the bound.
pub const METADATA_CHARS_MAX: usize = 1024;
/// Longest `metadata` parameter accepted for parsing. Its text form (JSON quotes, escapes,
/// blanks) may be longer than what it holds; the content is then held to
/// `METADATA_CHARS_MAX`.
pub const METADATA_PARAM_BYTES_MAX: usize = 16 * 1024;
/// Most instances of one service (Nacos has no bound). With metadata near its bound an
/// instance takes about 1.5 KiB in memory and in a push, so a full service stays near 15 MiB
/// per copy, and a flood of registrations into one service stops there.
pub const INSTANCES_PER_SERVICE_MAX: usize = 10_000;
/// Most configs one listen request may name: the records of an HTTP `Listening-Configs`
/// (Nacos's `MD5Util` bound, enforced by the engine's parser) and the `configListenContexts`
/// of a gRPC `ConfigBatchListenRequest`.
pub const LISTENERS_PER_REQUEST_MAX: usize = LISTEN_RECORDS_MAX;
/// Deepest nesting of arrays and objects in a JSON request body or JSON parameter. Nacos's
/// request types nest at most 3 levels (a request, its instance, its metadata); serde_json
/// refuses more than 128 levels on its own, which protects the stack, but this bound answers
/// with a clear message before anything is parsed and keeps parsed values shallow.
pub const JSON_DEPTH_MAX: usize = 16;
/// Longest dataId (Nacos's generic parameter checker, `maxDataIdLength`).
pub const DATA_ID_CHARS_MAX: usize = 256;
/// Longest config group (Nacos's generic parameter checker, `maxGroupLength`).
pub const GROUP_CHARS_MAX: usize = 128;

/// The length Java's `String.length()` reports: UTF-16 code units.
fn java_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

fn too_long(param: &str, max: usize) -> Reject {
    Reject::InvalidParam(format!(
        "Param '{param}' is illegal, the param length should not exceed {max}."
    ))
}

/// Refuses metadata whose keys and values together exceed `METADATA_CHARS_MAX` (Nacos's
/// message). For instance metadata on register, update, patch, beat and metadata batches, and
/// for service metadata.
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Reject> {
    let mut total = 0usize;
    for (k, v) in metadata {
        total = total
            .saturating_add(java_len(k))
            .saturating_add(java_len(v));
        if total > METADATA_CHARS_MAX {
            return Err(too_long("Metadata", METADATA_CHARS_MAX));
        }
    }
    Ok(())
}

/// Refuses one more instance in `service`, which holds `current` instances now. Call it only
/// for an instance the service does not have yet: re-registering, updating or beating an
/// existing instance of a full service stays possible.
pub fn check_instance_count(service: &ServiceKey, current: usize) -> Result<(), Reject> {
    if current >= INSTANCES_PER_SERVICE_MAX {
        return Err(Reject::InvalidParam(format!(
            "Current service {} has reached the limit of {INSTANCES_PER_SERVICE_MAX} instances, can't register more.",
            service.grouped_name()
        )));
    }
    Ok(())
}

/// Refuses a listen request naming more than `LISTENERS_PER_REQUEST_MAX` configs (Nacos's
/// `MD5Util` wording). `count` is the number of entries as sent.
pub fn check_listeners(count: usize) -> Result<(), Reject> {
    if count > LISTENERS_PER_REQUEST_MAX {
        return Err(Reject::InvalidParam(format!(
            "invalid protocol, too much listener: {count}, at most {LISTENERS_PER_REQUEST_MAX} per request"
        )));
    }
    Ok(())
}

/// Scans JSON text for its deepest nesting of arrays and objects, without parsing it; stops
/// as soon as the depth exceeds `stop_above`. Brackets inside strings (with their escapes) do
/// not count. For valid JSON the result is the deepest nesting a parser goes through (a
/// scalar is 0, `[]` is 1), which the parsed value never exceeds (an object keeps only the
/// last value of a repeated key); for anything else it bounds what a parser would reach.
fn scan_depth(json: &[u8], stop_above: usize) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > stop_above {
                        return deepest;
                    }
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The deepest nesting of arrays and objects in JSON text (see `check_json_depth`).
pub fn json_depth(json: &[u8]) -> usize {
    scan_depth(json, usize::MAX)
}

/// Refuses JSON text nested deeper than `JSON_DEPTH_MAX`, before it is parsed. For gRPC
/// request bodies and the JSON parameters of the HTTP API (`beat`, `instances`, `selector`).
pub fn check_json_depth(json: &[u8]) -> Result<(), Reject> {
    if scan_depth(json, JSON_DEPTH_MAX) > JSON_DEPTH_MAX {
        return Err(Reject::InvalidParam(format!(
            "JSON nested deeper than {JSON_DEPTH_MAX} levels"
        )));
    }
    Ok(())
}

/// Refuses a config key whose dataId or group is longer than Nacos's generic parameter checker
/// allows (Nacos's messages). The characters and the tenant are checked by
/// `nacre_engine::config::validate`.
pub fn check_config_key(key: &ConfigKey) -> Result<(), Reject> {
    if java_len(&key.data_id) > DATA_ID_CHARS_MAX {
        return Err(too_long("dataId", DATA_ID_CHARS_MAX));
    }
    if java_len(&key.group) > GROUP_CHARS_MAX {
        return Err(too_long("group", GROUP_CHARS_MAX));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<(), Reject>) -> String {
        match r {
            Err(Reject::InvalidParam(m)) => m,
            other => panic!("expected an InvalidParam, got {other:?}"),
        }
    }

    #[test]
    fn metadata_counts_keys_and_values_in_java_units() {
        let mut m = BTreeMap::new();
        m.insert("k".repeat(24), "v".repeat(1000));
        assert!(check_metadata(&m).is_ok(), "exactly 1024");
        m.insert("x".into(), String::new());
        assert_eq!(
            message(check_metadata(&m)),
            "Param 'Metadata' is illegal, the param length should not exceed 1024."
        );
        // A character outside the BMP is two Java chars; blanks count too.
        let m = BTreeMap::from([("e".to_string(), "\u{1F600}".repeat(512))]);
        assert!(check_metadata(&m).is_err());
        let m = BTreeMap::from([("e".to_string(), " ".repeat(1024))]);
        assert!(check_metadata(&m).is_err());
        assert!(check_metadata(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn instance_count_refuses_only_beyond_the_bound() {
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "flood");
        assert!(check_instance_count(&key, 0).is_ok());
        assert!(check_instance_count(&key, INSTANCES_PER_SERVICE_MAX - 1).is_ok());
        assert_eq!(
            message(check_instance_count(&key, INSTANCES_PER_SERVICE_MAX)),
            "Current service DEFAULT_GROUP@@flood has reached the limit of 10000 instances, can't register more."
        );
    }

    #[test]
    fn listeners_are_bounded_per_request() {
        assert!(check_listeners(LISTENERS_PER_REQUEST_MAX).is_ok());
        assert!(message(check_listeners(LISTENERS_PER_REQUEST_MAX + 1))
            .starts_with("invalid protocol, too much listener"));
    }

    #[test]
    fn json_depth_ignores_brackets_in_strings() {
        assert_eq!(json_depth(b"1"), 0);
        assert_eq!(json_depth(b"[]"), 1);
        assert_eq!(json_depth(br#"{"a":[{"b":"[[[{"}]}"#), 3);
        assert_eq!(json_depth(br#"["\"[[[", ["\\", [1]]]"#), 3);
        assert_eq!(
            json_depth(b"]]]][[}"),
            2,
            "unbalanced input still gets a bound"
        );
        let ok = format!("{}{}", "[".repeat(16), "]".repeat(16));
        assert!(check_json_depth(ok.as_bytes()).is_ok());
        let deep = "[".repeat(100_000);
        assert_eq!(
            message(check_json_depth(deep.as_bytes())),
            "JSON nested deeper than 16 levels"
        );
    }

    #[test]
    fn json_depth_agrees_with_serde_on_valid_json() {
        let texts = [
            r#"{"namespace":"public","instance":{"ip":"1.2.3.4","metadata":{"k":"v"}}}"#,
            r#"{"configListenContexts":[{"dataId":"d","group":"g","md5":""}]}"#,
            r#"[[[],[[]]],{"a":{"b":{}}}]"#,
        ];
        fn depth(v: &serde_json::Value) -> usize {
            match v {
                serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }
        for t in texts {
            let v: serde_json::Value = serde_json::from_str(t).expect("valid");
            assert_eq!(json_depth(t.as_bytes()), depth(&v), "{t}");
        }
        // A repeated key: the parser went through the first value's levels, the value keeps
        // the last one (found by fuzzing `grpc_request`).
        let t = r#"{"headers":{"a":[]},"headers":0}"#;
        let v: serde_json::Value = serde_json::from_str(t).expect("valid");
        assert_eq!((json_depth(t.as_bytes()), depth(&v)), (3, 1));
    }

    #[test]
    fn config_ids_follow_the_generic_checker_lengths() {
        let key = |d: &str, g: &str| ConfigKey::new("", g, d);
        assert!(check_config_key(&key(&"d".repeat(256), &"g".repeat(128))).is_ok());
        assert_eq!(
            message(check_config_key(&key(&"d".repeat(257), "g"))),
            "Param 'dataId' is illegal, the param length should not exceed 256."
        );
        assert_eq!(
            message(check_config_key(&key("d", &"g".repeat(129)))),
            "Param 'group' is illegal, the param length should not exceed 128."
        );
    }
}
