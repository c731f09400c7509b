//! The request handlers of the gRPC SDK protocol (wire reference §4.6–4.8) and the two push
//! fan-outs. Each handler answers with the exact response type its request pairs with; a
//! refusal is that type with `resultCode` 500 and Nacos's `errorCode`.

use std::collections::BTreeMap;
use std::sync::Arc;

use nacre_engine::config::validate::{
    normalize_tenant, validate_content, validate_data_id, validate_group, validate_tenant,
};
use nacre_engine::config::{ConfigApplied, ConfigCommand, ConfigKey, PublishConfig, TagQuery};
use nacre_engine::error::Reject;
use nacre_engine::naming::persistent::{NamingCommand, WEIGHT_MAX};
use nacre_engine::naming::{select, Instance, Query, ServiceKey, DEFAULT_CLUSTER};
use nacre_engine::ports::Clock;
use nacre_engine::raft::command::{CommandResult, Op};
use nacre_engine::wire::NamingRequest;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::ledger::Subject;
use super::proto::Payload;
use super::{failure, success, Conn, Grpc, Listen, LISTENS_PER_CONNECTION_MAX};
use crate::http_naming::{
    check_beat_metadata, check_cluster, check_ip, check_namespace, instance_json, service_key,
    service_page, Fail,
};
use crate::limits::{check_config_key, check_instance_count, check_listeners, check_metadata};
use crate::SystemClock;

/// Nacos error codes used on the gRPC path (§4.3).
const INVALID_PARAM: i64 = 400;
const NOT_FOUND_CONFIG: i64 = 300;
const NO_HANDLER: i64 = 302;
const SERVER_ERROR: i64 = 500;
/// `cacheMillis` of a service info.
const CACHE_MILLIS: u64 = 10_000;

/// A handler's refusal: Nacos error code and message.
pub struct Refusal(pub i64, pub String);

impl From<Fail> for Refusal {
    fn from(f: Fail) -> Refusal {
        Refusal(i64::from(f.0.as_u16()), f.1)
    }
}

impl From<Reject> for Refusal {
    fn from(r: Reject) -> Refusal {
        Refusal(i64::from(r.nacos_code()), r.to_string())
    }
}

fn bad(msg: impl Into<String>) -> Refusal {
    Refusal(INVALID_PARAM, msg.into())
}

fn str_field<'a>(body: &'a Value, name: &str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The `Vipserver-Tag` header of a request, if non-empty.
fn vipserver_tag(body: &Value) -> Option<&str> {
    body.get("headers")
        .and_then(|h| h.get("Vipserver-Tag"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// Dispatches one request of a registered connection.
pub async fn handle(grpc: &Arc<Grpc>, conn: &Arc<Conn>, type_name: &str, body: &Value) -> Payload {
    let (response_type, outcome) = match type_name {
        "HealthCheckRequest" => ("HealthCheckResponse", Ok(json!({}))),
        "InstanceRequest" => ("InstanceResponse", instance(grpc, conn, body).await),
        "PersistentInstanceRequest" => ("InstanceResponse", persistent_instance(grpc, body).await),
        "BatchInstanceRequest" => (
            "BatchInstanceResponse",
            batch_instance(grpc, conn, body).await,
        ),
        "ServiceQueryRequest" => ("QueryServiceResponse", query_service(grpc, body)),
        "SubscribeServiceRequest" => (
            "SubscribeServiceResponse",
            subscribe(grpc, conn, body).await,
        ),
        "ServiceListRequest" => ("ServiceListResponse", list_services(grpc, body)),
        "ConfigQueryRequest" => ("ConfigQueryResponse", query_config(grpc, conn, body)),
        "ConfigPublishRequest" => (
            "ConfigPublishResponse",
            publish_config(grpc, conn, body).await,
        ),
        "ConfigRemoveRequest" => (
            "ConfigRemoveResponse",
            remove_config(grpc, conn, body).await,
        ),
        "ConfigBatchListenRequest" => (
            "ConfigChangeBatchListenResponse",
            listen_configs(grpc, conn, body),
        ),
        _ => {
            return failure("ErrorResponse", NO_HANDLER, "RequestHandler Not Found");
        }
    };
    match outcome {
        Ok(v) => Payload::new(response_type, &success(v)),
        Err(Refusal(code, message)) => failure(response_type, code, &message),
    }
}

// ----- naming ----------------------------------------------------------------------------------

/// The service a naming request names: `namespace`, `groupName`, `serviceName` as sent.
pub fn naming_key(body: &Value) -> Result<ServiceKey, Refusal> {
    let namespace = str_field(body, "namespace");
    let namespace = if namespace.is_empty() {
        "public"
    } else {
        namespace
    };
    check_namespace(namespace)?;
    let name = str_field(body, "serviceName");
    if name.is_empty() {
        return Err(bad("Param 'serviceName' is required."));
    }
    let group = str_field(body, "groupName");
    let group = if group.is_empty() {
        "DEFAULT_GROUP"
    } else {
        group
    };
    Ok(service_key(namespace, group, name)?)
}

/// An instance as SDKs send it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct InstanceJson {
    ip: String,
    port: i64,
    weight: Option<f64>,
    healthy: Option<bool>,
    enabled: Option<bool>,
    ephemeral: Option<bool>,
    cluster_name: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

pub fn parse_instance(v: &Value, ephemeral: bool) -> Result<Instance, Refusal> {
    let j: InstanceJson =
        serde_json::from_value(v.clone()).map_err(|e| bad(format!("instance invalid: {e}")))?;
    check_ip(&j.ip)?;
    if j.ip.is_empty() {
        return Err(bad("Param 'ip' is required."));
    }
    let port =
        u16::try_from(j.port).map_err(|_| bad(format!("port {} is out of range", j.port)))?;
    let weight = j.weight.unwrap_or(1.0);
    if !(0.0..=WEIGHT_MAX).contains(&weight) {
        return Err(bad(
            "instance format invalid: The weights range from 0.0 to 10000.0",
        ));
    }
    let cluster = j
        .cluster_name
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    check_cluster(&cluster)?;
    let instance = Instance {
        ip: j.ip,
        port,
        weight,
        healthy: j.healthy.unwrap_or(true),
        enabled: j.enabled.unwrap_or(true),
        ephemeral: j.ephemeral.unwrap_or(ephemeral) && ephemeral,
        cluster,
        metadata: j.metadata.unwrap_or_default(),
    };
    check_beat_metadata(&instance)?;
    check_metadata(&instance.metadata)?;
    Ok(instance)
}

/// The refusal of an ephemeral write on a connection without a naming client.
fn disconnected(conn: &Conn) -> Refusal {
    Refusal(
        SERVER_ERROR,
        format!(
            "Client [{}] connection already disconnect, can't register ephemeral instance.",
            conn.id
        ),
    )
}

async fn instance(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let op = str_field(body, "type").to_string();
    let key = naming_key(body)?;
    if !conn.naming {
        return Err(disconnected(conn));
    }
    let request = match op.as_str() {
        "registerInstance" => {
            let instance = parse_instance(body.get("instance").unwrap_or(&Value::Null), true)?;
            grpc.naming.check_ephemeral_allowed(&key)?;
            grpc.naming.check_instance_room(&key, &conn.id)?;
            NamingRequest::Register {
                conn: conn.id.clone(),
                service: key,
                instance,
            }
        }
        "deregisterInstance" => NamingRequest::Deregister {
            conn: conn.id.clone(),
            service: key,
        },
        other => return Err(bad(format!("Unsupported request type {other}"))),
    };
    grpc.naming
        .distro
        .handle(request, 0)
        .await
        .map_err(|e| Refusal(SERVER_ERROR, e.to_string()))?;
    Ok(json!({ "type": op }))
}

async fn persistent_instance(grpc: &Grpc, body: &Value) -> Result<Value, Refusal> {
    let op = str_field(body, "type").to_string();
    let key = naming_key(body)?;
    let instance = parse_instance(body.get("instance").unwrap_or(&Value::Null), false)?;
    match op.as_str() {
        "registerInstance" => grpc.naming.put_instance(&key, instance).await?,
        "deregisterInstance" => {
            grpc.naming
                .cp_write(NamingCommand::DeregisterPersistent {
                    service: key,
                    ip: instance.ip,
                    port: instance.port,
                })
                .await?
        }
        other => return Err(bad(format!("Unsupported request type {other}"))),
    }
    Ok(json!({ "type": op }))
}

/// `batchRegisterInstance`: the connection's instances of the service become exactly the
/// list (replacing a single registration or an earlier batch; an empty list withdraws them).
async fn batch_instance(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let op = str_field(body, "type").to_string();
    if op != "batchRegisterInstance" {
        return Err(bad(format!("Unsupported request type {op}")));
    }
    let key = naming_key(body)?;
    if !conn.naming {
        return Err(disconnected(conn));
    }
    let instances = body
        .get("instances")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|i| parse_instance(i, true))
        .collect::<Result<Vec<Instance>, Refusal>>()?;
    grpc.naming.check_ephemeral_allowed(&key)?;
    if let Some(last) = instances.len().checked_sub(1) {
        // The batch alone must fit, and what it adds to the service must find room.
        check_instance_count(&key, last)?;
        grpc.naming
            .check_batch_room(&key, &conn.id, instances.len())?;
    }
    let request = NamingRequest::RegisterBatch {
        conn: conn.id.clone(),
        service: key,
        instances,
    };
    grpc.naming
        .distro
        .handle(request, 0)
        .await
        .map_err(|e| Refusal(SERVER_ERROR, e.to_string()))?;
    Ok(json!({ "type": op }))
}

/// A `ServiceInfo` of the gRPC flavour: bare `name`, grouped `serviceName` on hosts.
pub fn service_info(grpc: &Grpc, key: &ServiceKey, clusters: &str, healthy_only: bool) -> Value {
    let q = Query {
        clusters: clusters
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
        healthy_only,
    };
    let meta = grpc.naming.meta(key);
    let s = select(&grpc.naming.instances(key), meta.as_ref(), &q);
    let hosts: Vec<Value> = s.hosts.iter().map(|i| instance_json(key, i)).collect();
    json!({
        "name": key.name,
        "groupName": key.group,
        "clusters": clusters,
        "cacheMillis": CACHE_MILLIS,
        "hosts": hosts,
        "lastRefTime": SystemClock.now_ms(),
        "checksum": "",
        "allIPs": false,
        "reachProtectionThreshold": s.reach_protection_threshold,
        "valid": true,
    })
}

fn query_service(grpc: &Grpc, body: &Value) -> Result<Value, Refusal> {
    let key = naming_key(body)?;
    let healthy_only = body
        .get("healthyOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(json!({
        "serviceInfo": service_info(grpc, &key, str_field(body, "cluster"), healthy_only)
    }))
}

async fn subscribe(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let key = naming_key(body)?;
    let clusters = str_field(body, "clusters").to_string();
    let on = body
        .get("subscribe")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if on {
        conn.subscriptions
            .lock()
            .expect("subscriptions")
            .insert(key.clone(), clusters.clone());
        if conn.naming {
            let request = NamingRequest::Subscribe {
                conn: conn.id.clone(),
                service: key.clone(),
            };
            grpc.naming
                .distro
                .handle(request, 0)
                .await
                .map_err(|e| Refusal(SERVER_ERROR, e.to_string()))?;
        }
    } else {
        conn.subscriptions
            .lock()
            .expect("subscriptions")
            .remove(&key);
    }
    Ok(json!({
        "message": "success",
        "serviceInfo": service_info(grpc, &key, &clusters, false),
    }))
}

fn list_services(grpc: &Grpc, body: &Value) -> Result<Value, Refusal> {
    let namespace = match str_field(body, "namespace") {
        "" => "public",
        ns => ns,
    };
    let group = match str_field(body, "groupName") {
        "" => "DEFAULT_GROUP",
        g => g,
    };
    let page_no = body
        .get("pageNo")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .max(1) as usize;
    let page_size = body
        .get("pageSize")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .min(10_000) as usize;
    let (count, page) = service_page(&grpc.naming, namespace, group, page_no, page_size);
    Ok(json!({"message": "success", "count": count, "serviceNames": page}))
}

/// Sends the push about `subject` (its current state) and records it for its ack; a service
/// no longer subscribed or a key no longer listened is not pushed.
pub fn push_subject(grpc: &Grpc, conn: &Conn, subject: Subject, attempts: u32) {
    let (type_name, body) = match &subject {
        Subject::Service(service) => {
            let clusters = conn
                .subscriptions
                .lock()
                .expect("subscriptions")
                .get(service)
                .cloned();
            let Some(clusters) = clusters else { return };
            let info = service_info(grpc, service, &clusters, false);
            ("NotifySubscriberRequest", json!({ "serviceInfo": info }))
        }
        Subject::Config(key, tenant) => {
            if !conn.listens.lock().expect("listens").contains_key(key) {
                return;
            }
            ("ConfigChangeNotifyRequest", notify_json(key, tenant))
        }
    };
    let id = grpc.push(conn, type_name, body);
    conn.ledger
        .lock()
        .expect("ledger")
        .sent(&id, subject, SystemClock.now_ms(), attempts);
}

/// Pushes Distro's naming changes to the subscribed connections.
pub async fn naming_pushes(grpc: Arc<Grpc>) {
    let mut rx = grpc.naming.distro.subscribe_pushes();
    loop {
        match rx.recv().await {
            Ok(push) => {
                if let Some(conn) = grpc.conn_by_id(&push.subscriber) {
                    push_subject(&grpc, &conn, Subject::Service(push.service), 1);
                }
            }
            // Missed pushes: send every subscription's current state.
            Err(RecvError::Lagged(_)) => {
                for conn in grpc.conns() {
                    let subs: Vec<ServiceKey> = conn
                        .subscriptions
                        .lock()
                        .expect("subscriptions")
                        .keys()
                        .cloned()
                        .collect();
                    for service in subs {
                        push_subject(&grpc, &conn, Subject::Service(service), 1);
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Every second, re-sends the pushes whose ack is overdue; a connection that let a push run
/// out of attempts is expelled (its client reconnects and starts over).
pub async fn push_retries(grpc: Arc<Grpc>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        let now = SystemClock.now_ms();
        for conn in grpc.conns() {
            let (due, gave_up) = conn.ledger.lock().expect("ledger").due(now);
            if gave_up {
                grpc.expel(&conn, "a push was never acknowledged").await;
                continue;
            }
            for (subject, attempts) in due {
                tracing::debug!(conn = %conn.id, attempts, "push retried: {subject:?}");
                push_subject(&grpc, &conn, subject, attempts);
            }
        }
    }
}

// ----- config ----------------------------------------------------------------------------------

/// The config key of a request, validated, with the tenant normalized (§1.3).
pub fn config_key(body: &Value) -> Result<ConfigKey, Refusal> {
    let tenant = str_field(body, "tenant");
    validate_tenant(tenant.trim())?;
    validate_data_id(str_field(body, "dataId"))?;
    validate_group(str_field(body, "group"))?;
    let key = ConfigKey::new(
        &normalize_tenant(tenant),
        str_field(body, "group"),
        str_field(body, "dataId"),
    );
    check_config_key(&key)?;
    Ok(key)
}

/// The item this client is served: the beta item when its IP is in the beta list, a tag's
/// item when it asks with `tag` (or the `Vipserver-Tag` header), else the main item.
fn query_config(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let key = config_key(body)?;
    let tag = TagQuery::from_query(Some(str_field(body, "tag")), vipserver_tag(body));
    let Some(served) = grpc.cp.get_effective_local(&key, &conn.client_ip, tag) else {
        return Err(Refusal(NOT_FOUND_CONFIG, "config data not exist".into()));
    };
    let mut answer = json!({
        "content": served.item.content,
        "encryptedDataKey": served.item.encrypted_data_key,
        "contentType": served.config_type,
        "md5": served.item.md5,
        "lastModified": served.item.modified_ms,
        "beta": served.is_beta(),
    });
    if let Some(tag) = served.tag() {
        answer["tag"] = json!(tag);
    }
    Ok(answer)
}

/// A publish of the main item, or of the beta item (`additionMap.betaIps`) or a tag's item
/// (`additionMap.tag`), as Nacos dispatches it; CAS applies to the item written.
async fn publish_config(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let key = config_key(body)?;
    let content = str_field(body, "content");
    validate_content(content)?;
    let extra = body.get("additionMap").cloned().unwrap_or(Value::Null);
    let field = |name: &str| str_field(&extra, name).to_string();
    let cas = str_field(body, "casMd5");
    let publish = PublishConfig {
        key,
        content: content.to_string(),
        cas_md5: (!cas.is_empty()).then(|| cas.to_string()),
        config_type: field("type"),
        desc: field("desc"),
        tags: field("config_tags"),
        app_name: field("appName"),
        encrypted_data_key: field("encryptedDataKey"),
        src_user: field("src_user"),
        src_ip: conn.client_ip.clone(),
    };
    let command =
        ConfigCommand::publish_with(publish, Some(&field("betaIps")), Some(&field("tag")));
    let written = grpc.cp.write(Op::Config(command)).await?;
    match written.result {
        CommandResult::Config(ConfigApplied::CasMismatch { .. }) => Err(Refusal(
            SERVER_ERROR,
            "Cas publish fail, server md5 may have changed.".into(),
        )),
        _ => Ok(json!({})),
    }
}

/// Removes the main item, or with `tag` that tag's item only.
async fn remove_config(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let key = config_key(body)?;
    let remove = ConfigCommand::remove_with(
        key,
        Some(str_field(body, "tag")),
        "",
        conn.client_ip.clone(),
    );
    grpc.cp.write(Op::Config(remove)).await?;
    Ok(json!({}))
}

/// Listens (or stops listening) and answers the keys whose md5 differs from this member's.
/// Keys are matched with the tenant normalized, and echoed with the tenant as sent.
fn listen_configs(grpc: &Grpc, conn: &Conn, body: &Value) -> Result<Value, Refusal> {
    let listen = body.get("listen").and_then(Value::as_bool).unwrap_or(true);
    let contexts = body
        .get("configListenContexts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    check_listeners(contexts.len())?;
    let tag = vipserver_tag(body).map(str::to_string);
    let mut changed = Vec::new();
    let mut listens = conn.listens.lock().expect("listens");
    for c in &contexts {
        let key = config_key(c)?;
        let sent_tenant = str_field(c, "tenant").to_string();
        if !listen {
            listens.remove(&key);
            continue;
        }
        if !listens.contains_key(&key) && listens.len() >= LISTENS_PER_CONNECTION_MAX {
            return Err(bad(format!(
                "more than {LISTENS_PER_CONNECTION_MAX} listened configs on one connection"
            )));
        }
        let md5 = str_field(c, "md5").to_string();
        let current = grpc
            .cp
            .effective_md5_local(&key, &conn.client_ip, tag.as_deref());
        if current != md5 {
            changed.push(json!({"group": key.group, "dataId": key.data_id, "tenant": sent_tenant}));
        }
        listens.insert(
            key,
            Listen {
                tenant: sent_tenant,
                md5,
                tag: tag.clone(),
            },
        );
    }
    Ok(json!({ "changedConfigs": changed }))
}

fn notify_json(key: &ConfigKey, tenant_as_sent: &str) -> Value {
    let mut v = json!({"dataId": key.data_id, "group": key.group});
    if !tenant_as_sent.is_empty() {
        v["tenant"] = json!(tenant_as_sent);
    }
    v
}

/// Pushes applied config changes to the listening connections a change concerns (every
/// listener of the key for the main item; the beta IPs, or the listeners with the tag, for a
/// gray item).
pub async fn config_pushes(grpc: Arc<Grpc>) {
    let mut rx = grpc.cp.subscribe_config_changes();
    loop {
        match rx.recv().await {
            Ok(change) => {
                for conn in grpc.conns() {
                    let listen = conn
                        .listens
                        .lock()
                        .expect("listens")
                        .get(&change.key)
                        .cloned();
                    if let Some(l) = listen {
                        if change.concerns(&conn.client_ip, l.tag.as_deref()) {
                            let subject = Subject::Config(change.key.clone(), l.tenant);
                            push_subject(&grpc, &conn, subject, 1);
                        }
                    }
                }
            }
            // Missed changes: compare every listen with what this member serves its client.
            Err(RecvError::Lagged(_)) => {
                for conn in grpc.conns() {
                    let listens = conn.listens.lock().expect("listens").clone();
                    for (key, l) in listens {
                        let current =
                            grpc.cp
                                .effective_md5_local(&key, &conn.client_ip, l.tag.as_deref());
                        if current != l.md5 {
                            push_subject(&grpc, &conn, Subject::Config(key, l.tenant), 1);
                        }
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
