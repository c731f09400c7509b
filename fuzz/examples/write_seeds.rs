//! Writes the checked-in seed corpus of every fuzz target into `fuzz/corpus/<target>/`:
//! valid encodings (so the fuzzers start from inputs that reach deep into the decoders) and a
//! few near-misses. Run from the repository root:
//! `cargo run -p nacre-fuzz --example write_seeds`.

use std::collections::BTreeMap;
use std::path::Path;

use nacre_engine::config::ConfigKey;
use nacre_engine::naming::distro::{ClientData, ClientKind, DistroMsg, IpPortWrite, SyncItem};
use nacre_engine::naming::{Instance, ServiceKey};
use nacre_engine::raft::journal::JournalRecord;
use nacre_engine::raft::state_machine::{CpState, SnapshotImage, SNAPSHOT_VERSION};
use nacre_engine::raft::type_config::{SnapshotMeta, StoredMembership};
use nacre_engine::wire::frame::encode_msg;
use nacre_engine::wire::{ClientRequest, NamingRequest, NamingResponse, PeerRequest, PeerResponse};
use nacre_server::grpc::proto::Payload;
use prost::Message;
use serde_json::json;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let service = ServiceKey::new("public", "DEFAULT_GROUP", "svc");
    let client = ClientData {
        id: "10.0.0.1:80#true".into(),
        kind: ClientKind::IpPort,
        revision: 3,
        instances: nacre_engine::vec_map::VecMap::from([(
            service.clone(),
            Instance::new("10.0.0.1", 80),
        )]),
        batches: BTreeMap::new(),
    };
    let requests = [
        PeerRequest::Ping,
        PeerRequest::Distro {
            from: "127.0.0.1:8848".into(),
            msg: DistroMsg::Sync(client.clone()),
        },
        PeerRequest::Distro {
            from: "127.0.0.1:8848".into(),
            msg: DistroMsg::Delete {
                client: client.id.clone(),
                age_ms: 5,
            },
        },
        PeerRequest::Distro {
            from: "127.0.0.1:8848".into(),
            msg: DistroMsg::Batch(vec![
                SyncItem::Sync(client.clone()),
                SyncItem::Delete {
                    client: "10.0.0.3:80#true".into(),
                    age_ms: 7,
                },
            ]),
        },
        PeerRequest::Naming {
            hops: 1,
            request: NamingRequest::IpPort(IpPortWrite::Register {
                service: service.clone(),
                instance: Instance::new("10.0.0.2", 8080),
            }),
        },
        PeerRequest::Forward {
            hops: 0,
            request: ClientRequest::GetLocal(ConfigKey::new("", "g", "d")),
        },
    ];
    for (i, r) in requests.iter().enumerate() {
        write("peer_request", &format!("seed-{i}"), &encode_msg(r));
    }
    let responses = [
        PeerResponse::Pong { initialized: true },
        PeerResponse::Naming(Ok(NamingResponse::Instances(vec![Instance::new(
            "10.0.0.3", 1,
        )]))),
    ];
    for (i, r) in responses.iter().enumerate() {
        write("peer_response", &format!("seed-{i}"), &encode_msg(r));
    }
    let mut journal = Vec::new();
    for r in [JournalRecord::Committed(None), JournalRecord::Truncate(4)] {
        journal.extend(encode_msg(&r));
    }
    write("journal", "seed-0", &journal);
    journal.truncate(journal.len() - 3);
    write("journal", "seed-torn", &journal);
    let image = SnapshotImage {
        version: SNAPSHOT_VERSION,
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "seed".into(),
        },
        state_digest: CpState::default().digest(),
        state: CpState::default(),
    };
    write("snapshot", "seed-0", &image.encode());
    write(
        "listening_configs",
        "seed-0",
        "app.yaml\x02DEFAULT_GROUP\x02d41d8cd98f00b204e9800998ecf8427e\x01".as_bytes(),
    );
    write(
        "listening_configs",
        "seed-1",
        "a\x02g\x02\x02dev\x01b%2B1\x02g\x02abc\x01".as_bytes(),
    );
    write(
        "cluster_conf",
        "seed-0",
        b"# members\n10.0.0.1:8848\n10.0.0.2:8848 # two\n10.0.0.3\n",
    );
    write(
        "cluster_conf",
        "seed-1",
        b"127.0.0.1:8848?raft_port=7000,127.0.0.1:8858\n",
    );
    write(
        "properties",
        "seed-0",
        b"server.port=8848\nnacos.home : /opt/nacos\nmulti=a,\\\n  b\nuni=\\u00e9\n! comment\n",
    );
    write("http_params", "seed-0", b"serviceName=svc&ip=10.0.0.1&port=80&metadata=%7B%22a%22%3A%221%22%7D\0groupName=G&namespaceId=dev");
    write(
        "http_params",
        "seed-1",
        b"serviceName=g%40%40svc&metadata=k1%3Dv1%2Ck2%3Dv2",
    );
    let payloads = [
        Payload::new(
            "InstanceRequest",
            &json!({"namespace": "public", "groupName": "G", "serviceName": "s", "type": "registerInstance",
                    "instance": {"ip": "10.0.0.1", "port": 80, "weight": 1.0, "clusterName": "DEFAULT", "metadata": {"k": "v"}}}),
        ),
        Payload::new(
            "ConfigBatchListenRequest",
            &json!({"listen": true, "configListenContexts": [{"dataId": "d", "group": "g", "tenant": "", "md5": ""}]}),
        ),
        Payload::new(
            "ConfigPublishRequest",
            &json!({"dataId": "d", "group": "g", "tenant": "", "content": "x", "additionMap": {"type": "yaml"}}),
        ),
    ];
    for (i, p) in payloads.iter().enumerate() {
        write("grpc_payload", &format!("seed-{i}"), &p.encode_to_vec());
    }
    // One body of every SDK request type, as the Java client sends it, behind its type byte.
    let instance = json!({"ip": "10.0.0.1", "port": 8080, "weight": 1.0, "healthy": true,
        "enabled": true, "ephemeral": true, "clusterName": "DEFAULT", "serviceName": "svc",
        "metadata": {"version": "1.0", "preserved.register.source": "SPRING_CLOUD"}});
    let naming = |extra: serde_json::Value| {
        let mut body = json!({"headers": {}, "namespace": "public", "serviceName": "svc",
            "groupName": "DEFAULT_GROUP", "module": "naming"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let config = |extra: serde_json::Value| {
        let mut body = json!({"headers": {}, "dataId": "app.yaml", "group": "DEFAULT_GROUP",
            "tenant": "", "module": "config"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    let bodies = [
        naming(json!({"type": "registerInstance", "instance": instance})),
        naming(json!({"type": "batchRegisterInstance", "instances": [instance, instance]})),
        naming(
            json!({"type": "registerInstance", "instance": {"ip": "10.0.0.2", "port": 9090,
            "ephemeral": false, "clusterName": "c1", "metadata": {}}}),
        ),
        naming(json!({"cluster": "DEFAULT,c1", "healthyOnly": true, "udpPort": 0})),
        naming(json!({"subscribe": true, "clusters": ""})),
        naming(json!({"pageNo": 1, "pageSize": 10, "selector": ""})),
        config(json!({"tag": ""})),
        config(
            json!({"content": "a: 1", "casMd5": "", "additionMap": {"type": "yaml",
            "appName": "app", "config_tags": "", "desc": "", "src_user": "nacos"}}),
        ),
        config(json!({"tag": ""})),
        json!({"headers": {}, "listen": true, "module": "config", "configListenContexts": [
            {"dataId": "app.yaml", "group": "DEFAULT_GROUP", "tenant": "", "md5": ""},
            {"dataId": "db.properties", "group": "G", "tenant": "dev",
             "md5": "d41d8cd98f00b204e9800998ecf8427e"}]}),
        json!({"clientVersion": "Nacos-Java-Client:v2.5.1", "tenant": "", "module": "internal",
            "labels": {"source": "sdk", "module": "naming", "AppName": "app"},
            "abilityTable": {"supportPersistentInstanceByGrpc": true}}),
    ];
    assert_eq!(bodies.len(), nacre_fuzz::GRPC_REQUEST_TYPES.len());
    for (i, (body, type_name)) in bodies
        .iter()
        .zip(nacre_fuzz::GRPC_REQUEST_TYPES)
        .enumerate()
    {
        let mut input = vec![u8::try_from(i).expect("few types")];
        input.extend(body.to_string().into_bytes());
        write("grpc_request", &format!("seed-{type_name}"), &input);
    }
    println!("seed corpus written under fuzz/corpus/");
}
