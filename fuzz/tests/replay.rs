//! Replays the checked-in corpus of every fuzz target (`fuzz/corpus/<target>/`, seeds plus any
//! input a fuzzing run found worth keeping) on the stable toolchain: none may panic. Part of the
//! README's test command; the fuzzers themselves run under `cargo fuzz` (docs/fuzzing.md).

use std::path::Path;

#[test]
fn every_corpus_input_is_handled_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut total = 0;
    for (name, target) in nacre_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus of {name} at {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "target {name} has no seed corpus");
        for f in &files {
            let data = std::fs::read(f).expect("read corpus file");
            target(&data);
        }
        total += files.len();
        println!("{name}: {} inputs", files.len());
    }
    println!("{total} corpus inputs replayed");
}

/// The seeds are valid inputs, so the fuzzers start deep inside each decoder.
#[test]
fn the_seeds_decode() {
    use nacre_engine::raft::journal;
    use nacre_engine::raft::state_machine::SnapshotImage;
    use nacre_engine::wire::frame::decode_msg;
    use nacre_engine::wire::{PeerRequest, PeerResponse};
    use prost::Message;

    let seed = |target: &str, name: &str| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target)
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    // One seed per gRPC request type: the type byte names it and the body gets through the
    // depth bound, the body parser and the parser of its type.
    for (i, type_name) in nacre_fuzz::GRPC_REQUEST_TYPES.iter().enumerate() {
        let data = seed("grpc_request", &format!("seed-{type_name}"));
        assert_eq!(usize::from(data[0]), i, "{type_name}");
        nacre_server::limits::check_json_depth(&data[1..]).expect("shallow");
        let body: serde_json::Value = serde_json::from_slice(&data[1..]).expect("json");
        use nacre_server::grpc::handlers::{config_key, naming_key, parse_instance};
        match *type_name {
            "InstanceRequest" | "PersistentInstanceRequest" => {
                assert!(naming_key(&body).is_ok(), "service");
                assert!(parse_instance(&body["instance"], true).is_ok(), "instance");
            }
            "BatchInstanceRequest" => {
                assert!(
                    parse_instance(&body["instances"][1], true).is_ok(),
                    "instance"
                );
            }
            "ServiceQueryRequest" | "SubscribeServiceRequest" | "ServiceListRequest" => {
                assert!(naming_key(&body).is_ok(), "service");
            }
            "ConfigBatchListenRequest" => {
                assert!(
                    config_key(&body["configListenContexts"][1]).is_ok(),
                    "config"
                );
            }
            "ConnectionSetupRequest" => assert_eq!(body["labels"]["module"], "naming"),
            _ => {
                assert!(config_key(&body).is_ok(), "config");
            }
        }
    }
    for i in 0..5 {
        decode_msg::<PeerRequest>(&seed("peer_request", &format!("seed-{i}"))).expect("request");
    }
    decode_msg::<PeerResponse>(&seed("peer_response", "seed-0")).expect("response");
    let r = journal::replay(&seed("journal", "seed-0")).expect("journal");
    assert!(!r.torn_tail);
    let r = journal::replay(&seed("journal", "seed-torn")).expect("torn journal");
    assert!(r.torn_tail);
    SnapshotImage::decode(&seed("snapshot", "seed-0")).expect("snapshot");
    for i in 0..3 {
        let p = nacre_server::grpc::proto::Payload::decode(
            seed("grpc_payload", &format!("seed-{i}")).as_slice(),
        )
        .expect("payload");
        nacre_server::grpc::request_body(&p).expect("json body");
    }
    let text = String::from_utf8(seed("cluster_conf", "seed-0")).expect("utf-8");
    assert_eq!(
        nacre_server::settings::parse_cluster_conf(&text, 8848)
            .expect("conf")
            .len(),
        3
    );
}

mod round_trips {
    use nacre_engine::config::listen::{
        encode_listening_configs, parse_listening_configs, ListenEntry,
    };
    use nacre_engine::config::ConfigKey;
    use proptest::prelude::*;

    fn ident() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:+%-]{1,12}"
    }

    proptest! {
        /// Any listen entries encode to a `Listening-Configs` value that parses back to them.
        #[test]
        fn listening_configs(entries in proptest::collection::vec(
            (ident(), ident(), "[0-9a-f]{0,32}", proptest::option::of(ident())), 1..8)
        ) {
            // One entry per key; the parser's order is its own, so compare sorted.
            let mut by_key = std::collections::BTreeMap::new();
            for (d, g, md5, t) in entries {
                by_key.insert(ConfigKey::new(t.as_deref().unwrap_or(""), &g, &d), md5);
            }
            let entries: Vec<ListenEntry> = by_key
                .into_iter()
                .map(|(key, md5)| ListenEntry { key, md5 })
                .collect();
            let text = encode_listening_configs(&entries);
            let mut parsed = parse_listening_configs(&text).expect("parses");
            parsed.sort_by(|a, b| a.key.cmp(&b.key));
            prop_assert_eq!(parsed, entries);
        }

        /// Any `host:port` list renders to a cluster.conf that parses back to it.
        #[test]
        fn cluster_conf(ports in proptest::collection::btree_set(2000u16..60000, 1..6)) {
            let text: Vec<String> = ports.iter().map(|p| format!("10.0.0.1:{p}")).collect();
            let parsed = nacre_server::settings::parse_cluster_conf(&text.join("\n"), 8848);
            // Neighbouring ports may collide (HTTP vs Raft port); then the refusal is the answer.
            if let Ok(members) = parsed {
                let got: Vec<u16> = members.iter().map(|m| m.port).collect();
                prop_assert_eq!(got, ports.into_iter().collect::<Vec<_>>());
            }
        }
    }
}
