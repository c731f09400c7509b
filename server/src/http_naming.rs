//! The naming HTTP Open API v1 (wire reference §2.0.3, §2.1–2.3) and the member views of
//! §2.7: instances, services, operator switches/metrics/servers, naming health, cluster nodes,
//! and the readiness probe.
//!
//! Ephemeral instances go to Distro: a write is applied at the member responsible for its
//! `ip:port` (this one, or one forward over the peer port — Nacos's `DistroFilter` proxies the
//! HTTP request instead; the outcome is the same). Service metadata and persistent instances go
//! through Raft (`NamingCommand`). Reads merge the local Distro view and the local replica of
//! the CP tables, then apply `naming::select`.
//!
//! Parameters are read as Nacos's `WebUtils` reads them: trimmed, a blank optional value is
//! absent, a blank required one is `400 Param '<name>' is required.`. Errors are plain text
//! with the status Nacos uses (§2.0.2). While this member has not loaded its Distro snapshot
//! every `/v1/ns` request is answered `503 server is STARTINGnow, please try again later!`, as
//! Nacos's traffic filter does before the server is UP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::Router;
use nacre_engine::cp_node::CpNode;
use nacre_engine::error::Reject;
use nacre_engine::naming::distro::{
    ip_port_client_id, IpPortOutcome, IpPortWrite, MemberState, NamingError,
};
use nacre_engine::naming::persistent::{NamingApplied, NamingCommand, WEIGHT_MAX};
use nacre_engine::naming::runner::DistroRunner;
use nacre_engine::naming::{
    select, Instance, Query, Selector, ServiceKey, ServiceMeta, DEFAULT_CLUSTER, DEFAULT_GROUP,
    DEFAULT_NAMESPACE, GROUP_SEPARATOR, META_BEAT_INTERVAL, META_BEAT_TIMEOUT, META_DELETE_TIMEOUT,
    META_ID_GENERATOR,
};
use nacre_engine::ports::Clock;
use nacre_engine::raft::command::{CommandResult, Op};
use serde_json::{json, Map, Value};

use crate::http::{json_response, text, Params};
use crate::limits::{
    check_instance_count, check_json_depth, check_metadata, METADATA_PARAM_BYTES_MAX,
};
use crate::SystemClock;

/// Nacos's `cacheMillis` of a v1 instance list (switch `defaultPushCacheMillis`).
const PUSH_CACHE_MILLIS: u64 = 10_000;
/// Switch `clientBeatInterval`: the beat period answered to HTTP clients.
const CLIENT_BEAT_INTERVAL_MS: u64 = nacre_engine::constants::CLIENT_BEAT_INTERVAL_MS;
/// Beat answer codes (`ResponseCode.OK`, `NamingResponseCode.RESOURCE_NOT_FOUND`).
const BEAT_OK: u32 = 10_200;
const BEAT_NOT_FOUND: u32 = 20_404;
/// Length limits of the generic parameter checker (§1.3.1).
const SERVICE_NAME_CHARS_MAX: usize = 512;
const GROUP_CHARS_MAX: usize = 128;
const NAMESPACE_CHARS_MAX: usize = 64;
const CLUSTER_CHARS_MAX: usize = 64;
const IP_CHARS_MAX: usize = 128;
/// Most entries of a `/v1/ns/service/list` page.
const SERVICE_PAGE_SIZE_MAX: usize = 10_000;
/// The version this server reports where Nacos reports its own.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the naming API serves from.
pub struct NamingApi {
    pub cp: Arc<CpNode>,
    pub distro: Arc<DistroRunner>,
    /// This member's Distro name (`ip:port`).
    pub me: String,
    /// The data directory, probed for writability by readiness.
    pub data_dir: std::path::PathBuf,
    /// Rendered `hosts` of recent instance lists.
    pub list_cache: ListCache,
}

/// Services whose rendered instance lists are kept.
const LIST_CACHE_SERVICES_MAX: usize = 1_024;
/// Query variants (clusters, healthyOnly) kept per service.
const LIST_CACHE_VIEWS_MAX: usize = 8;
/// Rendered bytes kept in all; a list longer than a tenth of this is not kept.
const LIST_CACHE_BYTES_MAX: usize = 16 << 20;

/// The rendered `hosts` of recent v1 instance lists, per service and query. An entry is used
/// only while everything the list is made of is unchanged: the Distro generation of the
/// service (`Distro::generation_of`), its metadata record and its persistent instances
/// (compared whole: both are small, and reading them is cheap next to rendering).
#[derive(Default)]
pub struct ListCache(Mutex<CachedLists>);

#[derive(Default)]
struct CachedLists {
    services: BTreeMap<ServiceKey, CachedService>,
    bytes: usize,
}

struct CachedService {
    generation: u64,
    meta: Option<ServiceMeta>,
    persistent: Vec<Instance>,
    views: Vec<CachedView>,
}

struct CachedView {
    query: Query,
    hosts: Arc<[u8]>,
    reach_protection_threshold: bool,
}

impl CachedService {
    fn bytes(&self) -> usize {
        self.views.iter().map(|v| v.hosts.len()).sum()
    }
}

impl ListCache {
    fn get(
        &self,
        key: &ServiceKey,
        generation: u64,
        meta: &Option<ServiceMeta>,
        persistent: &[Instance],
        query: &Query,
    ) -> Option<(Arc<[u8]>, bool)> {
        let lists = self.0.lock().expect("list cache lock poisoned");
        let s = lists.services.get(key)?;
        if s.generation != generation || s.meta != *meta || s.persistent != persistent {
            return None;
        }
        s.views
            .iter()
            .find(|v| v.query == *query)
            .map(|v| (v.hosts.clone(), v.reach_protection_threshold))
    }

    fn put(&self, key: &ServiceKey, made_of: CachedService, view: CachedView) {
        if view.hosts.len() > LIST_CACHE_BYTES_MAX / 10 {
            return;
        }
        let mut lists = self.0.lock().expect("list cache lock poisoned");
        let lists = &mut *lists;
        if let Some(old) = lists.services.get_mut(key) {
            if old.generation == made_of.generation
                && old.meta == made_of.meta
                && old.persistent == made_of.persistent
            {
                if let Some(at) = old.views.iter().position(|v| v.query == view.query) {
                    lists.bytes -= old.views.remove(at).hosts.len();
                } else if old.views.len() >= LIST_CACHE_VIEWS_MAX {
                    lists.bytes -= old.views.remove(0).hosts.len();
                }
                lists.bytes += view.hosts.len();
                old.views.push(view);
                return;
            }
        }
        if let Some(old) = lists.services.remove(key) {
            lists.bytes -= old.bytes();
        }
        if lists.services.len() >= LIST_CACHE_SERVICES_MAX
            || lists.bytes + view.hosts.len() > LIST_CACHE_BYTES_MAX
        {
            lists.services.clear();
            lists.bytes = 0;
        }
        lists.bytes += view.hosts.len();
        lists.services.insert(
            key.clone(),
            CachedService {
                views: vec![view],
                ..made_of
            },
        );
    }
}

/// A refusal: status and plain-text body.
#[derive(Debug)]
pub struct Fail(pub StatusCode, pub String);

impl Fail {
    fn bad(msg: impl Into<String>) -> Fail {
        Fail(StatusCode::BAD_REQUEST, msg.into())
    }

    fn not_found(msg: impl Into<String>) -> Fail {
        Fail(StatusCode::NOT_FOUND, msg.into())
    }
}

impl From<Reject> for Fail {
    fn from(r: Reject) -> Fail {
        let status =
            StatusCode::from_u16(r.nacos_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Fail(status, r.to_string())
    }
}

impl From<NamingError> for Fail {
    fn from(e: NamingError) -> Fail {
        match e {
            NamingError::Invalid(m) => Fail::bad(m),
            NamingError::UnknownConnection(_) => Fail::bad(e.to_string()),
            NamingError::ForwardFailed(_) => Fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

type Answer = Result<Response, Fail>;

fn answer(a: Answer) -> Response {
    a.unwrap_or_else(|Fail(status, body)| text(status, body))
}

fn ok() -> Answer {
    Ok(text(StatusCode::OK, "ok"))
}

/// The routes of the naming API and the member views.
pub fn router(api: Arc<NamingApi>) -> Router {
    let ns = Router::new()
        .route(
            "/instance",
            get(instance_detail)
                .post(register_instance)
                .delete(deregister_instance)
                .put(update_instance)
                .patch(patch_instance),
        )
        .route("/instance/list", get(list_instances))
        .route("/instance/beat", put(beat))
        .route("/instance/statuses", get(instance_statuses))
        .route(
            "/instance/metadata/batch",
            put(batch_metadata_update).delete(batch_metadata_delete),
        )
        .route("/health", put(update_health))
        .route("/health/instance", put(update_health))
        .route(
            "/service",
            get(get_service)
                .post(create_service)
                .delete(delete_service)
                .put(update_service),
        )
        .route("/service/list", get(list_services))
        .route("/operator/switches", get(switches))
        .route("/ops/switches", get(switches))
        .route("/operator/metrics", get(metrics))
        .route("/ops/metrics", get(metrics))
        .route("/operator/servers", get(servers))
        .route("/ops/servers", get(servers))
        .route("/operator/distro/client", get(distro_client))
        .route("/ops/distro/client", get(distro_client))
        .route("/health/server", any(health_server));
    Router::new()
        .nest("/nacos/v1/ns", ns)
        .route("/nacos/v1/core/cluster/self", get(cluster_self))
        .route("/nacos/v1/core/cluster/nodes", get(cluster_nodes))
        .route(
            "/nacos/v1/core/cluster/simple/nodes",
            get(cluster_simple_nodes),
        )
        .route("/nacos/v1/core/cluster/health", get(cluster_health))
        .route("/nacos/v1/console/health/readiness", get(readiness))
        .with_state(api)
}

/// Request parameters as the naming handlers read them.
struct NamingParams(Params);

impl NamingParams {
    /// A trimmed value, `None` when absent or blank.
    fn opt(&self, name: &str) -> Option<&str> {
        Some(self.0.get(name).trim()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> Result<&str, Fail> {
        self.opt(name)
            .ok_or_else(|| Fail::bad(format!("Param '{name}' is required.")))
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.opt(name)
            .map_or(default, |v| v.eq_ignore_ascii_case("true"))
    }

    fn namespace(&self) -> Result<String, Fail> {
        let ns = self.opt("namespaceId").unwrap_or(DEFAULT_NAMESPACE);
        check_namespace(ns)?;
        Ok(ns.to_string())
    }

    /// The service named by `serviceName` (`svc` or `group@@svc`) and `groupName`.
    fn service_key(&self) -> Result<ServiceKey, Fail> {
        let namespace = self.namespace()?;
        let raw = self.required("serviceName")?;
        let group = self.opt("groupName").unwrap_or(DEFAULT_GROUP);
        service_key(&namespace, group, raw)
    }

    fn port(&self) -> Result<u16, Fail> {
        let raw = self.required("port")?;
        raw.parse::<u16>().map_err(|_| {
            Fail::bad(format!(
                "Param 'port' is illegal, the param should be an integer in 0..65535: {raw}"
            ))
        })
    }

    fn ip(&self) -> Result<&str, Fail> {
        let ip = self.required("ip")?;
        check_ip(ip)?;
        Ok(ip)
    }

    /// `clusterName`, falling back to `cluster`, then `DEFAULT`.
    fn cluster(&self) -> Result<String, Fail> {
        let c = self
            .opt("clusterName")
            .or_else(|| self.opt("cluster"))
            .unwrap_or(DEFAULT_CLUSTER);
        check_cluster(c)?;
        Ok(c.to_string())
    }

    fn weight(&self) -> Result<Option<f64>, Fail> {
        let Some(raw) = self.opt("weight") else {
            return Ok(None);
        };
        match raw.parse::<f64>() {
            Ok(w) if (0.0..=WEIGHT_MAX).contains(&w) => Ok(Some(w)),
            _ => Err(Fail::bad(
                "instance format invalid: The weights range from 0.0 to 10000.0",
            )),
        }
    }

    fn metadata(&self) -> Result<Option<BTreeMap<String, String>>, Fail> {
        self.opt("metadata").map(parse_metadata).transpose()
    }

    /// An instance from the register parameters (`HttpRequestInstanceBuilder`).
    fn instance(&self) -> Result<Instance, Fail> {
        let metadata = self.metadata()?.unwrap_or_default();
        let enabled = match self.opt("enabled").or_else(|| self.opt("enable")) {
            Some(v) => v.eq_ignore_ascii_case("true"),
            None => true,
        };
        let instance = Instance {
            ip: self.ip()?.to_string(),
            port: self.port()?,
            weight: self.weight()?.unwrap_or(1.0),
            healthy: self.flag("healthy", true),
            enabled,
            ephemeral: self.flag("ephemeral", true),
            cluster: self.cluster()?,
            metadata,
        };
        check_beat_metadata(&instance)?;
        Ok(instance)
    }
}

impl NamingApi {
    /// Parses the parameters, answering 503 while the member is not UP.
    fn params(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<NamingParams, Fail> {
        if !self.distro.read(|d| d.loaded()) {
            return Err(Fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "server is STARTINGnow, please try again later!".into(),
            ));
        }
        Params::parse(query, headers, body)
            .map(NamingParams)
            .map_err(|r| Fail::bad(r.to_string()))
    }

    /// The service metadata record, if the service has one.
    pub(crate) fn meta(&self, key: &ServiceKey) -> Option<ServiceMeta> {
        let state = self.cp.state();
        let state = state.read().expect("state lock poisoned");
        state.naming.services.get(key).cloned()
    }

    /// The metadata record and the persistent instances of a service, read together.
    fn cp_view(&self, key: &ServiceKey) -> (Option<ServiceMeta>, Vec<Instance>) {
        let state = self.cp.state();
        let state = state.read().expect("state lock poisoned");
        let meta = state.naming.services.get(key).cloned();
        (meta, state.naming.instances(key))
    }

    pub(crate) fn persistent_instances(&self, key: &ServiceKey) -> Vec<Instance> {
        let state = self.cp.state();
        let state = state.read().expect("state lock poisoned");
        state.naming.instances(key)
    }

    pub(crate) fn ephemeral_instances(&self, key: &ServiceKey) -> Vec<Instance> {
        self.distro.read(|d| d.instances(key))
    }

    /// Every instance of a service (persistent first), enabled or not.
    pub(crate) fn instances(&self, key: &ServiceKey) -> Vec<Instance> {
        let mut all = self.persistent_instances(key);
        all.extend(self.ephemeral_instances(key));
        all
    }

    /// True when the service exists: a metadata record or any instance.
    pub(crate) fn exists(&self, key: &ServiceKey) -> bool {
        self.meta(key).is_some() || !self.instances(key).is_empty()
    }

    /// Replicates a naming command; a refusal is a 400 with Nacos's message.
    pub(crate) async fn cp_write(&self, cmd: NamingCommand) -> Result<(), Fail> {
        let written = self.cp.write(Op::Naming(cmd)).await?;
        match written.result {
            CommandResult::Naming(NamingApplied::Done) => Ok(()),
            CommandResult::Naming(NamingApplied::Refused(m)) => Err(Fail::bad(m)),
            other => Err(Fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("unexpected apply result {other:?}"),
            )),
        }
    }

    /// Refuses ephemeral instances in a persistent service (Nacos's message).
    pub(crate) fn check_ephemeral_allowed(&self, key: &ServiceKey) -> Result<(), Fail> {
        let persistent = self.meta(key).is_some_and(|m| !m.ephemeral)
            || !self.persistent_instances(key).is_empty();
        if persistent {
            return Err(Fail::bad(format!(
                "Current service {} is persistent service, can't register ephemeral instance.",
                key.grouped_name()
            )));
        }
        Ok(())
    }

    /// Writes an instance where its kind lives, after the ephemeral/persistent service check.
    pub(crate) async fn put_instance(
        &self,
        key: &ServiceKey,
        instance: Instance,
    ) -> Result<(), Fail> {
        check_metadata(&instance.metadata)?;
        if instance.ephemeral {
            self.check_ephemeral_allowed(key)?;
            self.check_instance_room(key, &ip_port_client_id(&instance.ip, instance.port))?;
            let write = IpPortWrite::Register {
                service: key.clone(),
                instance,
            };
            self.distro.ip_port_write(write, 0).await?;
            Ok(())
        } else {
            if !self.ephemeral_instances(key).is_empty() {
                return Err(Fail::bad(format!(
                    "Current service {} is ephemeral service, can't register persistent instance.",
                    key.grouped_name()
                )));
            }
            let present = {
                let state = self.cp.state();
                let state = state.read().expect("state lock poisoned");
                state.naming.instances.get(key).is_some_and(|m| {
                    m.values().any(|i| {
                        i.ip == instance.ip
                            && i.port == instance.port
                            && i.cluster == instance.cluster
                    })
                })
            };
            if !present {
                self.admit_new_instances(key, 1)?;
            }
            self.cp_write(NamingCommand::RegisterPersistent {
                service: key.clone(),
                instance,
            })
            .await
        }
    }

    /// How many instances `key` has here (persistent ones and those the Distro clients
    /// publish, a copy per client), without copying them.
    pub fn instance_count(&self, key: &ServiceKey) -> usize {
        let persistent = {
            let state = self.cp.state();
            let state = state.read().expect("state lock poisoned");
            state.naming.instances.get(key).map_or(0, BTreeMap::len)
        };
        persistent + self.distro.read(|d| d.instance_count(key))
    }

    /// Refuses a new instance in a full service (`limits::INSTANCES_PER_SERVICE_MAX`). The
    /// Distro client `client_id` (`ip:port#true` of an HTTP client, or a gRPC connection id)
    /// that already publishes an instance in the service may always re-register it.
    pub fn check_instance_room(&self, key: &ServiceKey, client_id: &str) -> Result<(), Reject> {
        self.check_batch_room(key, client_id, 1)
    }

    /// Refuses a list of `wanted` instances of `key` from the Distro client `client_id` (a gRPC
    /// `BatchInstanceRequest`, which replaces what the client publishes there) when the
    /// instances beyond those it publishes now do not fit in the service.
    pub fn check_batch_room(
        &self,
        key: &ServiceKey,
        client_id: &str,
        wanted: usize,
    ) -> Result<(), Reject> {
        let already = self.distro.read(|d| {
            d.client(client_id)
                .map_or(0, |c| c.instances_of(key).count())
        });
        match wanted.checked_sub(already) {
            Some(more) if more > 0 => self.admit_new_instances(key, more),
            _ => Ok(()),
        }
    }

    /// Admits `more` new instances into `key` unless the service cannot take them. The count
    /// is exact and cheap (kept per service, by the state machine and by Distro); the bound
    /// is soft only by the registrations admitted at the same time and not yet applied, and by
    /// those arriving through Distro syncs from other members.
    fn admit_new_instances(&self, key: &ServiceKey, more: usize) -> Result<(), Reject> {
        // `check_instance_count` asks whether one more fits; the last of `more` is that one.
        check_instance_count(key, self.instance_count(key) + more.saturating_sub(1))
    }

    /// The instance of `ip:port` in `cluster`, with Nacos's 404 messages.
    fn find(&self, key: &ServiceKey, ip: &str, port: u16, cluster: &str) -> Result<Instance, Fail> {
        let in_cluster: Vec<Instance> = self
            .instances(key)
            .into_iter()
            .filter(|i| i.cluster == cluster)
            .collect();
        if in_cluster.is_empty() {
            return Err(Fail::not_found(format!(
                "no ips found for cluster {cluster} in service {}",
                key.grouped_name()
            )));
        }
        in_cluster
            .into_iter()
            .find(|i| i.ip == ip && i.port == port)
            .ok_or_else(|| Fail::not_found("no matched ip found!"))
    }

    fn member_states(&self) -> Vec<(String, &'static str)> {
        let (me, states) = self
            .distro
            .read(|d| (d.me().to_string(), d.member_states()));
        let mut all: Vec<(String, &'static str)> = states
            .into_iter()
            .map(|(m, s)| {
                let s = match s {
                    MemberState::Up => "UP",
                    MemberState::Suspicious => "SUSPICIOUS",
                    MemberState::Down => "DOWN",
                };
                (m, s)
            })
            .collect();
        all.push((me, "UP"));
        all.sort();
        all
    }
}

// ----- checks and parsing ----------------------------------------------------------------------

fn illegal_chars(name: &str) -> Fail {
    Fail::bad(format!(
        "Param '{name}' is illegal, illegal characters should not appear in the param."
    ))
}

fn too_long(name: &str, max: usize) -> Fail {
    Fail::bad(format!(
        "Param '{name}' is illegal, the param length should not exceed {max}."
    ))
}

fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FA5}').contains(&c)
}

pub(crate) fn check_namespace(ns: &str) -> Result<(), Fail> {
    if ns.chars().count() > NAMESPACE_CHARS_MAX {
        return Err(too_long("namespaceId", NAMESPACE_CHARS_MAX));
    }
    if !ns
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(illegal_chars("namespaceId"));
    }
    Ok(())
}

fn check_group(group: &str) -> Result<(), Fail> {
    if group.chars().count() > GROUP_CHARS_MAX {
        return Err(too_long("group", GROUP_CHARS_MAX));
    }
    if !group
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
    {
        return Err(illegal_chars("group"));
    }
    Ok(())
}

fn check_service_name(name: &str) -> Result<(), Fail> {
    if name.chars().count() > SERVICE_NAME_CHARS_MAX {
        return Err(too_long("serviceName", SERVICE_NAME_CHARS_MAX));
    }
    if name.starts_with('@')
        || name.contains(GROUP_SEPARATOR)
        || name.chars().any(|c| c.is_whitespace() || is_cjk(c))
    {
        return Err(illegal_chars("serviceName"));
    }
    Ok(())
}

pub(crate) fn check_ip(ip: &str) -> Result<(), Fail> {
    if ip.chars().count() > IP_CHARS_MAX {
        return Err(too_long("ip", IP_CHARS_MAX));
    }
    if ip.chars().any(|c| c.is_whitespace() || is_cjk(c)) {
        return Err(illegal_chars("ip"));
    }
    Ok(())
}

pub(crate) fn check_cluster(cluster: &str) -> Result<(), Fail> {
    if cluster.chars().count() > CLUSTER_CHARS_MAX {
        return Err(too_long("clusterName", CLUSTER_CHARS_MAX));
    }
    if !cluster
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Fail::bad(format!(
            "Instance 'clusterName' should be characters with only 0-9a-zA-Z-. (current: {cluster})"
        )));
    }
    Ok(())
}

/// The key of `raw` (`svc` or `group@@svc`) with `group` as the default group.
pub fn service_key(namespace: &str, group: &str, raw: &str) -> Result<ServiceKey, Fail> {
    let (group, name) = match raw.split_once(GROUP_SEPARATOR) {
        Some((g, n)) => {
            if g.is_empty() {
                return Err(Fail::bad(
                    "Param 'serviceName' is illegal, groupName can't be empty",
                ));
            }
            if n.is_empty() {
                return Err(Fail::bad(
                    "Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'",
                ));
            }
            (g, n)
        }
        None => (group, raw),
    };
    check_group(group)?;
    check_service_name(name)?;
    Ok(ServiceKey::new(namespace, group, name))
}

/// Instance or service metadata: a JSON object, or `k1=v1,k2=v2`.
/// The text may be up to `METADATA_PARAM_BYTES_MAX` long; what it holds is then held to
/// `limits::METADATA_CHARS_MAX`. Nested JSON values (and so any deep JSON) are refused.
pub fn parse_metadata(raw: &str) -> Result<BTreeMap<String, String>, Fail> {
    let incorrect = || Fail::bad(format!("metadata format incorrect:{raw}"));
    if raw.len() > METADATA_PARAM_BYTES_MAX {
        return Err(too_long("metadata", METADATA_PARAM_BYTES_MAX));
    }
    let map: BTreeMap<String, String> = if raw.starts_with('{') {
        let Ok(Value::Object(map)) = serde_json::from_str::<Value>(raw) else {
            return Err(incorrect());
        };
        map.into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                Value::Number(n) => Ok((k, n.to_string())),
                Value::Bool(b) => Ok((k, b.to_string())),
                _ => Err(incorrect()),
            })
            .collect::<Result<_, _>>()?
    } else {
        raw.split(',')
            .filter(|e| !e.is_empty())
            .map(|entry| match entry.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.contains('=') => {
                    Ok((k.to_string(), v.to_string()))
                }
                _ => Err(incorrect()),
            })
            .collect::<Result<_, _>>()?
    };
    check_metadata(&map)?;
    Ok(map)
}

/// A JSON parameter (`beat`, `instances`, `selector`), refused with Nacos's wording for an
/// illegal parameter when it is nested deeper than `limits::JSON_DEPTH_MAX` or does not parse.
fn json_param<T: serde::de::DeserializeOwned>(name: &str, raw: &str) -> Result<T, Fail> {
    check_json_depth(raw.as_bytes())
        .map_err(|r| Fail::bad(format!("Param '{name}' is illegal: {r}")))?;
    serde_json::from_str(raw).map_err(|e| Fail::bad(format!("Param '{name}' is illegal: {e}")))
}

/// Beat interval below both timeouts (§1.3).
pub(crate) fn check_beat_metadata(i: &Instance) -> Result<(), Fail> {
    let interval = i.meta_ms(META_BEAT_INTERVAL, CLIENT_BEAT_INTERVAL_MS);
    let timeout = i.meta_ms(
        META_BEAT_TIMEOUT,
        nacre_engine::constants::CLIENT_BEAT_UNHEALTHY_MS,
    );
    let delete = i.meta_ms(
        META_DELETE_TIMEOUT,
        nacre_engine::constants::CLIENT_BEAT_DELETE_MS,
    );
    if timeout < interval || delete < interval {
        return Err(Fail::bad(
            "Instance 'heart beat interval' must less than 'heart beat timeout' and 'ip delete timeout'.",
        ));
    }
    Ok(())
}

/// A service selector parameter: blank, `{"type":"none"}` or `{"type":"label","expression":…}`.
fn parse_selector(raw: Option<&str>) -> Result<Selector, Fail> {
    let Some(raw) = raw else {
        return Ok(Selector::None);
    };
    let bad = || Fail::bad("not match any type of selector!");
    check_json_depth(raw.as_bytes()).map_err(|_| bad())?;
    let v: Value = serde_json::from_str(raw).map_err(|_| bad())?;
    match v.get("type").and_then(Value::as_str) {
        Some("none") => Ok(Selector::None),
        Some("label") => Ok(Selector::Label(
            v.get("expression")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )),
        _ => Err(bad()),
    }
}

fn selector_json(s: &Selector) -> Value {
    match s {
        Selector::None => json!({"type": "none"}),
        Selector::Label(e) => json!({"type": "label", "expression": e}),
    }
}

fn protect_threshold(raw: &str) -> Result<f32, Fail> {
    raw.parse::<f32>()
        .ok()
        .filter(|t| t.is_finite())
        .ok_or_else(|| Fail::bad(format!("Param 'protectThreshold' is illegal: {raw}")))
}

// ----- JSON shapes -----------------------------------------------------------------------------

/// An instance as the v1 list shows it (`Instance`, NON_NULL).
pub(crate) fn instance_json(key: &ServiceKey, i: &Instance) -> Value {
    json!({
        "instanceId": i.instance_id(key),
        "ip": i.ip,
        "port": i.port,
        "weight": i.weight,
        "healthy": i.healthy,
        "enabled": i.enabled,
        "ephemeral": i.ephemeral,
        "clusterName": i.cluster,
        "serviceName": key.grouped_name(),
        "metadata": i.metadata,
        "instanceHeartBeatInterval": i.meta_ms(META_BEAT_INTERVAL, CLIENT_BEAT_INTERVAL_MS),
        "instanceHeartBeatTimeOut":
            i.meta_ms(META_BEAT_TIMEOUT, nacre_engine::constants::CLIENT_BEAT_UNHEALTHY_MS),
        "ipDeleteTimeout":
            i.meta_ms(META_DELETE_TIMEOUT, nacre_engine::constants::CLIENT_BEAT_DELETE_MS),
        "instanceIdGenerator": i.metadata.get(META_ID_GENERATOR).map_or("simple", String::as_str),
    })
}

/// A `Member` as the core cluster API shows it (§2.7).
fn member_json(address: &str, state: &str) -> Value {
    let (ip, port) = address.rsplit_once(':').unwrap_or((address, "0"));
    let port: u32 = port.parse().unwrap_or(0);
    json!({
        "ip": ip,
        "port": port,
        "state": state,
        "extendInfo": {
            "raftPort": port.saturating_sub(1000).to_string(),
            "readyToUpgrade": true,
            "version": VERSION,
        },
        "address": address,
        "failAccessCnt": 0,
        "abilities": {
            "remoteAbility": {"supportRemoteConnection": true, "grpcReportEnabled": true},
            "configAbility": {"supportRemoteMetrics": true},
            "namingAbility": {"supportJraft": true},
        },
        "grpcReportEnabled": true,
    })
}

fn rest_result(data: Value) -> Response {
    json_response(&json!({"code": 200, "message": null, "data": data}))
}

// ----- instance handlers -----------------------------------------------------------------------

async fn register_instance(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let instance = p.instance()?;
            api.put_instance(&key, instance).await?;
            ok()
        }
        .await,
    )
}

async fn deregister_instance(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let ip = p.ip()?.to_string();
            let port = p.port()?;
            p.cluster()?;
            if p.flag("ephemeral", true) {
                let write = IpPortWrite::Deregister {
                    service: key,
                    ip,
                    port,
                };
                api.distro.ip_port_write(write, 0).await?;
            } else {
                api.cp_write(NamingCommand::DeregisterPersistent {
                    service: key,
                    ip,
                    port,
                })
                .await?;
            }
            ok()
        }
        .await,
    )
}

/// `PUT /v1/ns/instance`: replaces weight, enabled and metadata of an existing instance.
async fn update_instance(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let wanted = p.instance()?;
            if !api.exists(&key) {
                return Err(Fail::bad(format!(
                    "service not found, namespace: {}, service: {}",
                    key.namespace,
                    key.grouped_name()
                )));
            }
            let current = api
                .instances(&key)
                .into_iter()
                .find(|i| {
                    i.ip == wanted.ip
                        && i.port == wanted.port
                        && i.cluster == wanted.cluster
                        && i.ephemeral == wanted.ephemeral
                })
                .ok_or_else(|| {
                    Fail::bad(format!("instance not exist: {}", wanted.instance_id(&key)))
                })?;
            let updated = Instance {
                weight: wanted.weight,
                enabled: wanted.enabled,
                metadata: wanted.metadata,
                ..current
            };
            api.put_instance(&key, updated).await?;
            ok()
        }
        .await,
    )
}

/// `PATCH /v1/ns/instance`: changes only the given fields.
async fn patch_instance(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let (ip, port, cluster) = (p.ip()?.to_string(), p.port()?, p.cluster()?);
            let mut instance = api.find(&key, &ip, port, &cluster)?;
            if let Some(m) = p.metadata()? {
                instance.metadata = m;
            }
            if let Some(w) = p.weight()? {
                instance.weight = w;
            }
            if let Some(e) = p.opt("enabled").or_else(|| p.opt("enable")) {
                instance.enabled = e.eq_ignore_ascii_case("true");
            }
            check_beat_metadata(&instance)?;
            api.put_instance(&key, instance).await?;
            ok()
        }
        .await,
    )
}

async fn instance_detail(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let (ip, port, cluster) = (p.ip()?.to_string(), p.port()?, p.cluster()?);
            let i = api.find(&key, &ip, port, &cluster)?;
            Ok(json_response(&json!({
                "service": key.grouped_name(),
                "ip": i.ip,
                "port": i.port,
                "clusterName": i.cluster,
                "weight": i.weight,
                "healthy": i.healthy,
                "instanceId": i.instance_id(&key),
                "metadata": i.metadata,
            })))
        }
        .await,
    )
}

async fn list_instances(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let clusters = p.opt("clusters").unwrap_or("");
            let q = Query {
                clusters: clusters
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect(),
                healthy_only: p.flag("healthyOnly", false),
            };
            let (meta, persistent) = api.cp_view(&key);
            let generation = api.distro.read(|d| d.generation_of(&key));
            let (hosts, reach) = match api.list_cache.get(&key, generation, &meta, &persistent, &q)
            {
                Some(hit) => hit,
                None => {
                    let (generation, ephemeral) = api
                        .distro
                        .read(|d| (d.generation_of(&key), d.instances(&key)));
                    let mut all = persistent.clone();
                    all.extend(ephemeral);
                    let selection = select(&all, meta.as_ref(), &q);
                    let mut hosts = Vec::new();
                    write_hosts_json(&mut hosts, &key, &selection.hosts);
                    let hosts: Arc<[u8]> = hosts.into();
                    let reach = selection.reach_protection_threshold;
                    api.list_cache.put(
                        &key,
                        CachedService {
                            generation,
                            meta,
                            persistent,
                            views: Vec::new(),
                        },
                        CachedView {
                            query: q,
                            hosts: hosts.clone(),
                            reach_protection_threshold: reach,
                        },
                    );
                    (hosts, reach)
                }
            };
            // The fields in the order `json!` gives them (sorted), as the other answers.
            let mut body = Vec::with_capacity(hosts.len() + 256);
            body.extend_from_slice(br#"{"allIPs":false,"cacheMillis":"#);
            write_json(&mut body, &PUSH_CACHE_MILLIS);
            body.extend_from_slice(br#","checksum":"","clusters":"#);
            write_json(&mut body, clusters);
            body.extend_from_slice(br#","groupName":"#);
            write_json(&mut body, &key.group);
            body.extend_from_slice(br#","hosts":"#);
            body.extend_from_slice(&hosts);
            body.extend_from_slice(br#","lastRefTime":"#);
            write_json(&mut body, &SystemClock.now_ms());
            body.extend_from_slice(br#","name":"#);
            write_json(&mut body, &key.grouped_name());
            body.extend_from_slice(br#","reachProtectionThreshold":"#);
            write_json(&mut body, &reach);
            body.extend_from_slice(br#","valid":true}"#);
            Ok(json_bytes_response(body))
        }
        .await,
    )
}

/// Appends the JSON of `value` (as `Value::to_string` writes it).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec fails only for values that cannot be JSON (none are given here).
    let _ = serde_json::to_writer(&mut *out, value);
}

/// A JSON answer from its bytes.
fn json_bytes_response(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json;charset=UTF-8"),
        )],
        body,
    )
        .into_response()
}

/// Appends the JSON array of `hosts`, each as `instance_json` shows it (byte for byte).
fn write_hosts_json(out: &mut Vec<u8>, key: &ServiceKey, hosts: &[Instance]) {
    let service = key.grouped_name();
    out.push(b'[');
    for (n, i) in hosts.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_instance_json(out, key, &service, i);
    }
    out.push(b']');
}

/// `instance_json(key, i)` written straight into `out` (`service` is `key.grouped_name()`);
/// the keys in `json!`'s (sorted) order.
fn write_instance_json(out: &mut Vec<u8>, key: &ServiceKey, service: &str, i: &Instance) {
    out.extend_from_slice(br#"{"clusterName":"#);
    write_json(out, &i.cluster);
    out.extend_from_slice(br#","enabled":"#);
    write_json(out, &i.enabled);
    out.extend_from_slice(br#","ephemeral":"#);
    write_json(out, &i.ephemeral);
    out.extend_from_slice(br#","healthy":"#);
    write_json(out, &i.healthy);
    out.extend_from_slice(br#","instanceHeartBeatInterval":"#);
    write_json(out, &i.meta_ms(META_BEAT_INTERVAL, CLIENT_BEAT_INTERVAL_MS));
    out.extend_from_slice(br#","instanceHeartBeatTimeOut":"#);
    write_json(
        out,
        &i.meta_ms(
            META_BEAT_TIMEOUT,
            nacre_engine::constants::CLIENT_BEAT_UNHEALTHY_MS,
        ),
    );
    out.extend_from_slice(br#","instanceId":"#);
    write_json(out, &i.instance_id(key));
    out.extend_from_slice(br#","instanceIdGenerator":"#);
    write_json(
        out,
        i.metadata
            .get(META_ID_GENERATOR)
            .map_or("simple", String::as_str),
    );
    out.extend_from_slice(br#","ip":"#);
    write_json(out, &i.ip);
    out.extend_from_slice(br#","ipDeleteTimeout":"#);
    write_json(
        out,
        &i.meta_ms(
            META_DELETE_TIMEOUT,
            nacre_engine::constants::CLIENT_BEAT_DELETE_MS,
        ),
    );
    out.extend_from_slice(br#","metadata":"#);
    write_json(out, &i.metadata);
    out.extend_from_slice(br#","port":"#);
    write_json(out, &i.port);
    out.extend_from_slice(br#","serviceName":"#);
    write_json(out, service);
    out.extend_from_slice(br#","weight":"#);
    write_json(out, &i.weight);
    out.push(b'}');
}

/// The fields of a 1.x client's beat JSON (`RsInfo`) that the server reads.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct BeatInfo {
    ip: Option<String>,
    port: Option<u16>,
    cluster: Option<String>,
    weight: Option<f64>,
    metadata: Option<BTreeMap<String, String>>,
    ephemeral: Option<bool>,
}

async fn beat(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let info: Option<BeatInfo> = p
                .opt("beat")
                .map(|raw| json_param("beat", raw))
                .transpose()?;
            if let Some(m) = info.as_ref().and_then(|b| b.metadata.as_ref()) {
                check_metadata(m)?;
            }
            let ip = match (p.opt("ip"), info.as_ref().and_then(|b| b.ip.clone())) {
                (Some(ip), _) => ip.to_string(),
                (None, Some(ip)) => ip,
                (None, None) => return Err(Fail::bad("Param 'ip' is required.")),
            };
            check_ip(&ip)?;
            let port = match (p.opt("port"), info.as_ref().and_then(|b| b.port)) {
                (Some(_), _) => p.port()?,
                (None, Some(port)) => port,
                (None, None) => 0,
            };
            let write = IpPortWrite::Beat {
                service: key.clone(),
                ip: ip.clone(),
                port,
            };
            let code = match api.distro.ip_port_write(write, 0).await? {
                IpPortOutcome::Done { .. } => BEAT_OK,
                IpPortOutcome::BeatNotFound { .. } => match info {
                    // A full beat re-registers the instance it describes.
                    Some(b) => {
                        let cluster = b
                            .cluster
                            .filter(|c| !c.is_empty())
                            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
                        check_cluster(&cluster)?;
                        let instance = Instance {
                            weight: b.weight.unwrap_or(1.0).clamp(0.0, WEIGHT_MAX),
                            ephemeral: b.ephemeral.unwrap_or(true),
                            cluster,
                            metadata: b.metadata.unwrap_or_default(),
                            ..Instance::new(&ip, port)
                        };
                        api.put_instance(&key, instance).await?;
                        BEAT_OK
                    }
                    None => BEAT_NOT_FOUND,
                },
            };
            Ok(json_response(&json!({
                "clientBeatInterval": CLIENT_BEAT_INTERVAL_MS,
                "code": code,
                "lightBeatEnabled": true,
            })))
        }
        .await,
    )
}

/// `GET /v1/ns/instance/statuses?key=[ns##]group@@svc`.
async fn instance_statuses(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let raw = p.required("key")?;
            let (ns, grouped) = raw.split_once("##").unwrap_or((DEFAULT_NAMESPACE, raw));
            check_namespace(ns)?;
            let key = service_key(ns, DEFAULT_GROUP, grouped)?;
            let ips: Vec<String> = api
                .instances(&key)
                .iter()
                .map(|i| format!("{}:{}_{}", i.ip, i.port, i.healthy))
                .collect();
            Ok(json_response(&json!({ "ips": ips })))
        }
        .await,
    )
}

// ----- service handlers ------------------------------------------------------------------------

async fn create_service(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let meta = ServiceMeta {
                protect_threshold: p
                    .opt("protectThreshold")
                    .map_or(Ok(0.0), protect_threshold)?,
                selector: parse_selector(p.opt("selector"))?,
                metadata: p.metadata()?.unwrap_or_default(),
                ephemeral: false,
            };
            if !api.ephemeral_instances(&key).is_empty() {
                return Err(Fail::bad(format!(
                    "specified service {} already exists!",
                    key.grouped_name()
                )));
            }
            api.cp_write(NamingCommand::CreateService { key, meta })
                .await?;
            ok()
        }
        .await,
    )
}

async fn delete_service(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            if !api.ephemeral_instances(&key).is_empty() {
                return Err(Fail::bad(format!(
                    "Service {} is not empty, can't be delete. Please unregister instance first",
                    key.grouped_name()
                )));
            }
            api.cp_write(NamingCommand::DeleteService { key }).await?;
            ok()
        }
        .await,
    )
}

async fn update_service(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let threshold = protect_threshold(p.required("protectThreshold")?)?;
            // A service that exists only through ephemeral instances gets its first record.
            let ephemeral_only =
                api.meta(&key).is_none() && !api.ephemeral_instances(&key).is_empty();
            let meta = ServiceMeta {
                protect_threshold: threshold,
                selector: parse_selector(p.opt("selector"))?,
                metadata: p.metadata()?.unwrap_or_default(),
                ephemeral: ephemeral_only,
            };
            api.cp_write(NamingCommand::UpdateService { key, meta })
                .await?;
            ok()
        }
        .await,
    )
}

async fn get_service(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            if !api.exists(&key) {
                return Err(Fail::bad(format!(
                    "service not found, namespace: {}, serviceName: {}",
                    key.namespace,
                    key.grouped_name()
                )));
            }
            let meta = api.meta(&key).unwrap_or_default();
            let clusters: BTreeSet<String> =
                api.instances(&key).into_iter().map(|i| i.cluster).collect();
            let clusters: Vec<Value> = clusters
                .iter()
                .map(|c| json!({"name": c, "healthChecker": {"type": "TCP"}, "metadata": {}}))
                .collect();
            Ok(json_response(&json!({
                "namespaceId": key.namespace,
                "groupName": key.group,
                "name": key.name,
                "protectThreshold": meta.protect_threshold,
                "metadata": meta.metadata,
                "selector": selector_json(&meta.selector),
                "clusters": clusters,
            })))
        }
        .await,
    )
}

fn page_number(p: &NamingParams, name: &str) -> Result<usize, Fail> {
    let raw = p.required(name)?;
    raw.parse::<usize>()
        .map_err(|_| Fail::bad(format!("Param '{name}' is illegal: {raw}")))
}

/// Every service of a namespace known here: records, persistent and ephemeral instances.
pub(crate) fn all_services(api: &NamingApi) -> BTreeSet<ServiceKey> {
    let mut all: BTreeSet<ServiceKey> = api.distro.read(|d| d.services()).into_iter().collect();
    let state = api.cp.state();
    let state = state.read().expect("state lock poisoned");
    all.extend(state.naming.services.keys().cloned());
    all.extend(state.naming.instances.keys().cloned());
    all
}

/// One page (1-based `page_no`) of the bare names of the services of a namespace and group,
/// with the total count.
pub(crate) fn service_page(
    api: &NamingApi,
    namespace: &str,
    group: &str,
    page_no: usize,
    page_size: usize,
) -> (usize, Vec<String>) {
    let names: Vec<String> = all_services(api)
        .into_iter()
        .filter(|k| k.namespace == namespace && k.group == group)
        .map(|k| k.name)
        .collect();
    let page = names
        .iter()
        .skip(page_no.max(1).saturating_sub(1).saturating_mul(page_size))
        .take(page_size)
        .cloned()
        .collect();
    (names.len(), page)
}

async fn list_services(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let page_no = page_number(&p, "pageNo")?.max(1);
            let page_size = page_number(&p, "pageSize")?.min(SERVICE_PAGE_SIZE_MAX);
            let namespace = p.namespace()?;
            let group = p.opt("groupName").unwrap_or(DEFAULT_GROUP);
            let (count, doms) = service_page(&api, &namespace, group, page_no, page_size);
            Ok(json_response(&json!({"count": count, "doms": doms})))
        }
        .await,
    )
}

// ----- operator and health ---------------------------------------------------------------------

async fn switches(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(api.params(query.as_deref(), &headers, &body).map(|_| {
        json_response(&json!({
            "name": "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00",
            "masters": null,
            "adWeightMap": {},
            "defaultPushCacheMillis": PUSH_CACHE_MILLIS,
            "clientBeatInterval": CLIENT_BEAT_INTERVAL_MS,
            "defaultCacheMillis": 3000,
            "distroThreshold": 0.7,
            "healthCheckEnabled": true,
            "autoChangeHealthCheckEnabled": true,
            "distroEnabled": true,
            "enableStandalone": true,
            "pushEnabled": true,
            "checkTimes": 3,
            "httpHealthParams": {"max": 5000, "min": 500, "factor": 0.85},
            "tcpHealthParams": {"max": 5000, "min": 1000, "factor": 0.75},
            "mysqlHealthParams": {"max": 3000, "min": 2000, "factor": 0.65},
            "incrementalList": [],
            "serverStatusSynchronizationPeriodMillis": 2000,
            "serviceStatusSynchronizationPeriodMillis": 5000,
            "disableAddIP": false,
            "sendBeatOnly": false,
            "lightBeatEnabled": true,
            "limitedUrlMap": {},
            "distroServerExpiredMillis": 10000,
            "pushGoVersion": "0.1.0",
            "pushJavaVersion": "0.1.0",
            "pushPythonVersion": "0.4.3",
            "pushCVersion": "1.0.12",
            "pushCSharpVersion": "0.9.0",
            "enableAuthentication": false,
            "overriddenServerStatus": null,
            "defaultInstanceEphemeral": true,
            "healthCheckWhiteList": [],
            "checksum": null,
        }))
    }))
}

async fn metrics(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            if p.flag("onlyStatus", true) {
                return Ok(json_response(&json!({"status": "UP"})));
            }
            let services = all_services(&api);
            let instances: usize = services.iter().map(|k| api.instances(k).len()).sum();
            let (clients, owned, connections) = api.distro.read(|d| {
                let ids = d.client_ids();
                let conns = ids.iter().filter(|id| !id.contains('#')).count();
                (ids.len(), d.owned_count(), conns)
            });
            let persistent_clients = {
                let state = api.cp.state();
                let state = state.read().expect("state lock poisoned");
                state
                    .naming
                    .instances
                    .values()
                    .flat_map(|m| m.values().map(Instance::address))
                    .collect::<BTreeSet<String>>()
                    .len()
            };
            let mut out = Map::new();
            out.insert("status".into(), json!("UP"));
            out.insert("serviceCount".into(), json!(services.len()));
            out.insert("instanceCount".into(), json!(instances));
            out.insert("subscribeCount".into(), json!(0));
            out.insert("clientCount".into(), json!(clients + persistent_clients));
            out.insert("connectionBasedClientCount".into(), json!(connections));
            out.insert(
                "ephemeralIpPortClientCount".into(),
                json!(clients - connections),
            );
            out.insert(
                "persistentIpPortClientCount".into(),
                json!(persistent_clients),
            );
            out.insert("responsibleClientCount".into(), json!(owned));
            Ok(json_response(&Value::Object(out)))
        }
        .await,
    )
}

async fn servers(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(api.params(query.as_deref(), &headers, &body).map(|_| {
        let servers: Vec<Value> = api
            .member_states()
            .iter()
            .map(|(m, s)| member_json(m, s))
            .collect();
        json_response(&json!({ "servers": servers }))
    }))
}

async fn distro_client(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let tag = format!("{}:{}", p.ip()?, p.port()?);
            let server = api.distro.read(|d| d.responsible_for(&tag));
            Ok(json_response(&json!({ "responsibleServer": server })))
        }
        .await,
    )
}

async fn health_server(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(api.params(query.as_deref(), &headers, &body).map(|_| {
        let port = api.me.rsplit_once(':').map_or("", |(_, p)| p);
        json_response(&json!({
            "msg": format!(
                "Hello! I am Nacos-Naming and healthy! total services: {}, local port:{port}",
                all_services(&api).len()
            )
        }))
    }))
}

// ----- core cluster views and readiness --------------------------------------------------------

async fn cluster_self(State(api): State<Arc<NamingApi>>) -> Response {
    rest_result(member_json(&api.me, "UP"))
}

async fn cluster_nodes(State(api): State<Arc<NamingApi>>, RawQuery(query): RawQuery) -> Response {
    let keyword: String =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "keyword")
            .map(|(_, v)| v)
            .unwrap_or_default();
    let nodes: Vec<Value> = api
        .member_states()
        .iter()
        .filter(|(m, _)| m.starts_with(&keyword))
        .map(|(m, s)| member_json(m, s))
        .collect();
    rest_result(Value::Array(nodes))
}

async fn cluster_simple_nodes(State(api): State<Arc<NamingApi>>) -> Response {
    rest_result(json!(api.distro.read(|d| d.healthy_members())))
}

async fn cluster_health(State(_api): State<Arc<NamingApi>>) -> Response {
    rest_result(json!("UP"))
}

/// Ready when a Raft leader is known, the Distro snapshot is loaded and storage is writable
/// (Raft has not stopped on a storage error, and the data directory takes a file).
async fn readiness(State(api): State<Arc<NamingApi>>) -> Response {
    let (leader, raft_running) = {
        let m = api.cp.raft().metrics();
        let m = m.borrow();
        (m.current_leader.is_some(), m.running_state.is_ok())
    };
    let loaded = api.distro.read(|d| d.loaded());
    let probe = api.data_dir.join(".readiness-probe");
    let writable = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
    let reason = match (raft_running, &writable, leader, loaded) {
        (false, _, _, _) => "Raft stopped on a storage error",
        (_, Err(_), _, _) => "data directory not writable",
        (_, _, false, _) => "no Raft leader known",
        (_, _, _, false) => "Distro snapshot not loaded yet",
        _ => return text(StatusCode::OK, "OK"),
    };
    text(StatusCode::INTERNAL_SERVER_ERROR, reason)
}

// ----- health updates and metadata batches -----------------------------------------------------

/// `PUT /v1/ns/health`: sets the health of a persistent instance (Nacre runs no health checker
/// for them, Nacos's `NONE` type); ephemeral instances take their health from beats.
async fn update_health(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let healthy = p
                .opt("healthy")
                .or_else(|| p.opt("valid"))
                .ok_or_else(|| Fail::bad("Param 'healthy' is required."))?
                .eq_ignore_ascii_case("true");
            let (ip, port, cluster) = (p.ip()?.to_string(), p.port()?, p.cluster()?);
            let found = api
                .instances(&key)
                .into_iter()
                .find(|i| i.ip == ip && i.port == port && i.cluster == cluster);
            match found {
                None => ok(), // unknown instance: a no-op, as in Nacos
                Some(i) if i.ephemeral => Err(Fail::bad(format!(
                    "health check is still working, service: {}, cluster: {cluster}",
                    key.grouped_name()
                ))),
                Some(i) => {
                    api.cp_write(NamingCommand::RegisterPersistent {
                        service: key,
                        instance: Instance { healthy, ..i },
                    })
                    .await?;
                    ok()
                }
            }
        }
        .await,
    )
}

/// `ip`, `port` and `clusterName` of one entry of a metadata batch.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct InstanceRef {
    ip: String,
    port: u16,
    #[serde(default)]
    cluster_name: Option<String>,
}

async fn batch_metadata_update(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    batch_metadata(api, query, headers, body, false).await
}

async fn batch_metadata_delete(
    State(api): State<Arc<NamingApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    batch_metadata(api, query, headers, body, true).await
}

/// `PUT|DELETE /v1/ns/instance/metadata/batch`: merges (or removes the keys of) `metadata` on
/// the listed instances of one kind (`consistencyType=persist` or ephemeral), all when the list
/// is empty. Answers `{"updated":["ip:port:unknown:cluster:ephemeral|persist",…]}`.
async fn batch_metadata(
    api: Arc<NamingApi>,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
    remove: bool,
) -> Response {
    answer(
        async {
            let p = api.params(query.as_deref(), &headers, &body)?;
            let key = p.service_key()?;
            let metadata = parse_metadata(p.required("metadata")?)?;
            let persistent = p.opt("consistencyType") == Some("persist");
            let refs: Vec<InstanceRef> = match p.opt("instances") {
                Some(raw) => json_param("instances", raw)?,
                None => Vec::new(),
            };
            let chosen: Vec<Instance> = api
                .instances(&key)
                .into_iter()
                .filter(|i| i.ephemeral != persistent)
                .filter(|i| {
                    refs.is_empty()
                        || refs.iter().any(|r| {
                            r.ip == i.ip
                                && r.port == i.port
                                && r.cluster_name.as_deref().unwrap_or(&i.cluster) == i.cluster
                        })
                })
                .collect();
            // Every merged instance is checked before any is written: a merge that would take
            // one instance over a bound changes none.
            let mut merged = Vec::with_capacity(chosen.len());
            for mut i in chosen {
                if remove {
                    i.metadata.retain(|k, _| !metadata.contains_key(k));
                } else {
                    i.metadata
                        .extend(metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                check_beat_metadata(&i)?;
                check_metadata(&i.metadata)?;
                merged.push(i);
            }
            let mut updated = Vec::new();
            for i in merged {
                let kind = if persistent { "persist" } else { "ephemeral" };
                updated.push(format!("{}:{}:unknown:{}:{kind}", i.ip, i.port, i.cluster));
                api.put_instance(&key, i).await?;
            }
            Ok(json_response(&json!({ "updated": updated })))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_hosts_are_byte_for_byte_the_json_of_instance_json() {
        let key = ServiceKey::new("ns-1", "G\"q", "svc\u{7}é");
        let plain = Instance::new("10.0.0.1", 8080);
        let odd = Instance {
            ip: "a\"b\\c\n\u{1}/ü".into(),
            port: 65535,
            weight: 0.25,
            healthy: false,
            enabled: false,
            ephemeral: false,
            cluster: "C-1".into(),
            metadata: BTreeMap::from([
                ("k\t".to_string(), "v\u{1f}\"".to_string()),
                (META_BEAT_INTERVAL.to_string(), "1000".to_string()),
                (META_BEAT_TIMEOUT.to_string(), " 3000 ".to_string()),
                (META_DELETE_TIMEOUT.to_string(), "x".to_string()),
                (META_ID_GENERATOR.to_string(), "snowflake".to_string()),
            ]),
        };
        let heavy = Instance {
            weight: 10_000.0,
            ..Instance::new("::1", 0)
        };
        for hosts in [vec![], vec![plain.clone()], vec![plain, odd, heavy]] {
            let mut out = Vec::new();
            write_hosts_json(&mut out, &key, &hosts);
            let expected = Value::Array(hosts.iter().map(|i| instance_json(&key, i)).collect());
            assert_eq!(String::from_utf8(out).unwrap(), expected.to_string());
        }
    }

    #[test]
    fn list_cache_answers_only_for_the_same_generation_metadata_and_query() {
        let cache = ListCache::default();
        let key = ServiceKey::new("public", "G", "svc");
        let q = Query::default();
        let view = |q: &Query, body: &[u8]| CachedView {
            query: q.clone(),
            hosts: body.into(),
            reach_protection_threshold: false,
        };
        let made_of = |generation| CachedService {
            generation,
            meta: None,
            persistent: Vec::new(),
            views: Vec::new(),
        };
        cache.put(&key, made_of(3), view(&q, b"[1]"));
        assert_eq!(&*cache.get(&key, 3, &None, &[], &q).unwrap().0, b"[1]");
        assert!(cache.get(&key, 4, &None, &[], &q).is_none());
        assert!(cache
            .get(&key, 3, &Some(ServiceMeta::default()), &[], &q)
            .is_none());
        let healthy = Query {
            healthy_only: true,
            ..Query::default()
        };
        assert!(cache.get(&key, 3, &None, &[], &healthy).is_none());
        cache.put(&key, made_of(3), view(&healthy, b"[2]"));
        assert_eq!(&*cache.get(&key, 3, &None, &[], &q).unwrap().0, b"[1]");
        assert_eq!(
            &*cache.get(&key, 3, &None, &[], &healthy).unwrap().0,
            b"[2]"
        );
        // A new generation replaces every view of the service.
        cache.put(&key, made_of(5), view(&q, b"[3]"));
        assert!(cache.get(&key, 5, &None, &[], &healthy).is_none());
        assert_eq!(cache.0.lock().unwrap().bytes, 3);
    }

    #[test]
    fn service_names_take_the_group_from_the_name_or_the_parameter() {
        let k = service_key("public", "G", "svc").unwrap();
        assert_eq!(k, ServiceKey::new("public", "G", "svc"));
        let k = service_key("public", "G", "other@@svc").unwrap();
        assert_eq!(k, ServiceKey::new("public", "other", "svc"));
        assert_eq!(
            service_key("public", "G", "@@svc").unwrap_err().1,
            "Param 'serviceName' is illegal, groupName can't be empty"
        );
        assert!(service_key("public", "G", "g@@").is_err());
        assert!(service_key("public", "G", "g@@a@@b").is_err());
        assert!(service_key("public", "G", "has space").is_err());
        assert!(service_key("public", "G", "中文").is_err());
        assert!(service_key("public", "bad/group", "svc").is_err());
        let long = "s".repeat(SERVICE_NAME_CHARS_MAX + 1);
        assert_eq!(
            service_key("public", "G", &long).unwrap_err().1,
            "Param 'serviceName' is illegal, the param length should not exceed 512."
        );
    }

    #[test]
    fn metadata_is_json_or_comma_separated_pairs() {
        let m = parse_metadata(r#"{"a":"1","b":2,"c":true}"#).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "2");
        assert_eq!(m["c"], "true");
        let m = parse_metadata("k1=v1,k2=v2").unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["k2"], "v2");
        // The content is bounded, not the text: JSON quoting may take it over 1024 bytes.
        let at_bound = format!(r#"{{"k": "{}"}}"#, "v".repeat(1023));
        assert_eq!(parse_metadata(&at_bound).unwrap()["k"].len(), 1023);
        let over = format!("k={}", "v".repeat(1024));
        assert_eq!(
            parse_metadata(&over).unwrap_err().1,
            "Param 'Metadata' is illegal, the param length should not exceed 1024."
        );
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(parse_metadata(&deep).is_err());
        let huge = format!("k={}", "v".repeat(METADATA_PARAM_BYTES_MAX));
        assert_eq!(
            parse_metadata(&huge).unwrap_err().1,
            "Param 'metadata' is illegal, the param length should not exceed 16384."
        );
        for bad in ["novalue", "{not json", r#"{"a":{"nested":1}}"#, "a=b=c"] {
            let e = parse_metadata(bad).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST);
            assert_eq!(e.1, format!("metadata format incorrect:{bad}"));
        }
    }

    #[test]
    fn beat_timeouts_must_exceed_the_interval() {
        let mut i = Instance::new("127.0.0.1", 80);
        assert!(check_beat_metadata(&i).is_ok());
        i.metadata.insert(META_BEAT_INTERVAL.into(), "20000".into());
        assert!(check_beat_metadata(&i).is_err());
        i.metadata.insert(META_BEAT_TIMEOUT.into(), "30000".into());
        i.metadata
            .insert(META_DELETE_TIMEOUT.into(), "60000".into());
        assert!(check_beat_metadata(&i).is_ok());
    }

    #[test]
    fn clusters_and_selectors_are_checked() {
        assert!(check_cluster("DEFAULT").is_ok());
        assert!(check_cluster("a-b-1").is_ok());
        assert!(check_cluster("a_b").is_err());
        assert_eq!(parse_selector(None).unwrap(), Selector::None);
        assert_eq!(
            parse_selector(Some(
                r#"{"type":"label","expression":"CONSUMER.label.a = PROVIDER.label.a"}"#
            ))
            .unwrap(),
            Selector::Label("CONSUMER.label.a = PROVIDER.label.a".into())
        );
        assert_eq!(
            parse_selector(Some(r#"{"type":"nope"}"#)).unwrap_err().1,
            "not match any type of selector!"
        );
        let deep = format!(
            r#"{{"type":"none","x":{}{}}}"#,
            "[".repeat(17),
            "]".repeat(17)
        );
        assert!(parse_selector(Some(&deep)).is_err());
        let e = json_param::<Value>("beat", &"[".repeat(10_000)).unwrap_err();
        assert_eq!(
            e.1,
            "Param 'beat' is illegal: JSON nested deeper than 16 levels"
        );
    }

    #[test]
    fn instance_json_carries_the_derived_fields() {
        let key = ServiceKey::new("public", "DEFAULT_GROUP", "svc");
        let v = instance_json(&key, &Instance::new("127.0.0.1", 8080));
        assert_eq!(v["instanceId"], "127.0.0.1#8080#DEFAULT#DEFAULT_GROUP@@svc");
        assert_eq!(v["serviceName"], "DEFAULT_GROUP@@svc");
        assert_eq!(v["weight"], json!(1.0));
        assert_eq!(v["instanceHeartBeatTimeOut"], 15000);
        assert_eq!(v["ipDeleteTimeout"], 30000);
        assert_eq!(v["instanceIdGenerator"], "simple");
    }
}
