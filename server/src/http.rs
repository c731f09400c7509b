//! The HTTP Open API adapter (wire reference §2): config publish/read/remove on
//! `/nacos/v1/cs/configs` (§2.4) with its `search=accurate|blur` and `show=all` variants, the
//! listener long poll `/nacos/v1/cs/configs/listener`, config history `/nacos/v1/cs/history`,
//! and the liveness probe (readiness, which also needs Distro, is in `http_naming`).
//!
//! A long poll subscribes to the node's applied config changes before it compares md5s, so no
//! change can fall between the comparison and the wait; it answers at once when something
//! differs, else holds until a watched key changes or the hold time passes (empty body). At
//! most `LONG_POLLS_HELD_MAX` polls are held at once; more are refused with 503.
//!
//! Parameters arrive in the query string or a form body, for every method (§2.0.1); the query
//! wins when both name one. Identifiers are checked with the engine's `validate` rules, so the
//! messages are Nacos's. An engine `Reject` becomes an HTTP answer in exactly one function,
//! `reject_response`, through `Reject::nacos_code` (STYLE 5). The request bounds (dataId and
//! group lengths, configs per listen request) are those of `limits`, shared with gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use nacre_engine::config::listen::{self, ListenEntry, Watch};
use nacre_engine::config::validate::{
    normalize_tenant, validate_content, validate_data_id, validate_group, validate_tenant,
};
use nacre_engine::config::CONTENT_BYTES_MAX;
use nacre_engine::config::{
    ConfigApplied, ConfigCommand, ConfigItem, ConfigKey, GrayName, GrayRule, HistoryEntry, Page,
    PublishConfig, SearchMode, SearchQuery, TagQuery,
};
use nacre_engine::cp_node::CpNode;
use nacre_engine::error::Reject;
use nacre_engine::raft::command::{CommandResult, Op};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

/// Largest request body: a maximal content, percent-encoded (up to 3 bytes per byte), plus the
/// other fields.
pub const HTTP_BODY_BYTES_MAX: usize = 3 * CONTENT_BYTES_MAX + 1024 * 1024;
/// Most parameters one request may carry.
pub const HTTP_PARAMS_MAX: usize = 256;

/// Most long polls held at once by this member; one more is refused with 503.
pub const LONG_POLLS_HELD_MAX: usize = 10_000;
/// Default page size of a config search (Nacos requires the parameter; we default it).
const SEARCH_PAGE_SIZE_DEFAULT: u64 = 10;
/// Default page size of a history search (§2.4: 100, at most 500).
const HISTORY_PAGE_SIZE_DEFAULT: u64 = 100;

const CONFIGS_PATH: &str = "/nacos/v1/cs/configs";
const LISTENER_PATH: &str = "/nacos/v1/cs/configs/listener";
const HISTORY_PATH: &str = "/nacos/v1/cs/history";
const HISTORY_PREVIOUS_PATH: &str = "/nacos/v1/cs/history/previous";
const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";

/// The routes of the HTTP API, serving `node`.
pub fn router(node: Arc<CpNode>) -> Router {
    Router::new()
        .route(
            CONFIGS_PATH,
            get(get_configs).post(publish_config).delete(remove_config),
        )
        .route(LISTENER_PATH, post(listen_configs))
        .route(HISTORY_PATH, get(get_history))
        .route(HISTORY_PREVIOUS_PATH, get(get_history_previous))
        .route("/nacos/v1/console/health/liveness", get(liveness))
        .layer(Extension(Arc::new(LongPollGate::default())))
        .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
        .with_state(node)
}

/// The one mapping from an engine rejection to an HTTP answer (config module style:
/// `caused: <message>;`, wire reference §2.0.2).
fn reject_response(reject: &Reject) -> Response {
    let status =
        StatusCode::from_u16(reject.nacos_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, format!("caused: {reject};"))
}

pub(crate) fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
        body.into(),
    )
        .into_response()
}

/// Decodes `application/x-www-form-urlencoded` pairs strictly: `+` is a space, `%XX` a byte,
/// and the decoded bytes must be UTF-8. A malformed escape or invalid UTF-8 is refused (Java's
/// `URLDecoder` throws on the first; silently replacing bytes would store corrupted data).
fn decode_pairs(input: &[u8]) -> Result<Vec<(String, String)>, Reject> {
    fn decode(part: &[u8]) -> Result<String, Reject> {
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            match part[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = part
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            Reject::InvalidParam("malformed percent-encoding in a parameter".into())
                        })?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out)
            .map_err(|_| Reject::InvalidParam("a parameter is not valid UTF-8".into()))
    }
    input
        .split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &[][..]),
            };
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Request parameters merged from the query string and a form body.
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, Reject> {
        let mut map = BTreeMap::new();
        let mut pairs = decode_pairs(query.unwrap_or("").as_bytes())?;
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            pairs.extend(decode_pairs(body)?);
        }
        if pairs.len() > HTTP_PARAMS_MAX {
            return Err(Reject::InvalidParam(format!(
                "more than {HTTP_PARAMS_MAX} parameters"
            )));
        }
        for (k, v) in pairs {
            map.entry(k).or_insert(v);
        }
        Ok(Params(map))
    }

    /// Every parameter, by name.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }

    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// The validated key; `tenant` is normalized for reads and publishes only (§2.4 DELETE quirk).
    fn key(&self, normalize: bool) -> Result<ConfigKey, Reject> {
        let raw_tenant = self.get("tenant");
        validate_tenant(raw_tenant.trim())?;
        let tenant = if normalize {
            normalize_tenant(raw_tenant)
        } else {
            raw_tenant.to_string()
        };
        validate_data_id(self.get("dataId"))?;
        validate_group(self.get("group"))?;
        let key = ConfigKey::new(&tenant, self.get("group"), self.get("dataId"));
        crate::limits::check_config_key(&key)?;
        Ok(key)
    }
}

/// `GET /v1/cs/configs`: a search, the full record (`show=all`), or the content.
async fn get_configs(
    State(node): State<Arc<CpNode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return reject_response(&r),
    };
    let client_ip = client_ip(&headers, remote);
    match (p.get("search"), p.get("show"), p.get("beta")) {
        ("accurate", _, _) => search_configs(&node, &p, SearchMode::Accurate),
        ("blur", _, _) => search_configs(&node, &p, SearchMode::Blur),
        (_, "all", _) => show_all(&node, &p),
        (_, _, "true") => query_beta(&node, &p),
        _ => get_config(&node, &p, &client_ip, &headers),
    }
}

/// The client's IP as Nacos takes it: `X-Forwarded-For` (first entry), `X-Real-IP`, else the
/// peer address. It decides which beta item a client is served.
fn client_ip(headers: &HeaderMap, remote: SocketAddr) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    header("X-Forwarded-For")
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .or_else(|| header("X-Real-IP"))
        .map_or_else(|| remote.ip().to_string(), str::to_string)
}

/// The `Vipserver-Tag` header, if non-empty.
fn vipserver_tag(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("Vipserver-Tag")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// `GET /v1/cs/configs?beta=true`: the beta item with its IPs, in Nacos's `RestResult`.
fn query_beta(node: &CpNode, p: &Params) -> Response {
    let key = match p.key(true) {
        Ok(k) => k,
        Err(r) => return reject_response(&r),
    };
    let data = node.get_gray_local(&key, &GrayName::Beta).map(|g| {
        let ips = match &g.rule {
            GrayRule::Beta { ips } => ips.clone(),
            GrayRule::Tag { .. } => String::new(),
        };
        json!({
            "id": g.item.id, "dataId": key.data_id, "group": key.group, "tenant": key.tenant,
            "appName": g.item.app_name, "content": g.item.content, "md5": g.item.md5,
            "betaIps": ips, "encryptedDataKey": g.item.encrypted_data_key,
            "lastModified": g.item.modified_ms,
        })
    });
    json_response(&json!({"code": 200, "message": "query beta ok", "data": data}))
}

// The headers of a config answer, parsed once (HTTP/1 writes names in lower case anyway).
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
const CONFIG_TYPE: HeaderName = HeaderName::from_static("config-type");
const ENCRYPTED_DATA_KEY: HeaderName = HeaderName::from_static("encrypted-data-key");
const IS_BETA: HeaderName = HeaderName::from_static("isbeta");

/// The content this client is served: the beta item when its IP is in the beta list, a tag's
/// item when it asks with `tag` (or `Vipserver-Tag`), else the main item.
fn get_config(node: &CpNode, p: &Params, client_ip: &str, headers: &HeaderMap) -> Response {
    let key = match p.key(true) {
        Ok(k) => k,
        Err(r) => return reject_response(&r),
    };
    let tag = TagQuery::from_query(Some(p.get("tag")), vipserver_tag(headers));
    node.with_effective_local(&key, client_ip, tag, |served| {
        let Some(served) = served else {
            return text(StatusCode::NOT_FOUND, "config data not exist\n");
        };
        let item = served.item;
        let mut out = text(StatusCode::OK, item.content.clone());
        let h = out.headers_mut();
        h.reserve(8);
        let mut put = |name: HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(CONTENT_MD5, &item.md5);
        put(CONFIG_TYPE, served.config_type);
        if !item.encrypted_data_key.is_empty() {
            put(ENCRYPTED_DATA_KEY, &item.encrypted_data_key);
        }
        let mut fixed = |name: HeaderName, value: &'static str| {
            h.insert(name, HeaderValue::from_static(value));
        };
        if served.is_beta() {
            fixed(IS_BETA, "true");
        }
        fixed(header::PRAGMA, "no-cache");
        fixed(header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT");
        fixed(header::CACHE_CONTROL, "no-cache,no-store");
        out
    })
}

fn publish_command(p: &Params, headers: &HeaderMap, src_ip: String) -> Result<Op, Reject> {
    let key = p.key(true)?;
    validate_content(p.get("content"))?;
    let cas_md5 = headers
        .get("casMd5")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let publish = PublishConfig {
        key,
        content: p.get("content").to_string(),
        cas_md5,
        config_type: p.get("type").to_string(),
        desc: p.get("desc").to_string(),
        tags: p.get("config_tags").to_string(),
        app_name: p.get("appName").to_string(),
        encrypted_data_key: p.get("encryptedDataKey").to_string(),
        src_user: p.get("src_user").to_string(),
        src_ip,
    };
    // Nacos reads `betaIps` from a header and `tag` from the parameters.
    let beta_ips = headers.get("betaIps").and_then(|v| v.to_str().ok());
    Ok(Op::Config(ConfigCommand::publish_with(
        publish,
        beta_ips,
        Some(p.get("tag")),
    )))
}

async fn publish_config(
    State(node): State<Arc<CpNode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Params::parse(query.as_deref(), &headers, &body)
        .and_then(|p| publish_command(&p, &headers, client_ip(&headers, remote)));
    match op {
        Ok(op) => write(&node, op).await,
        Err(r) => reject_response(&r),
    }
}

async fn remove_config(
    State(node): State<Arc<CpNode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return reject_response(&r),
    };
    let key = match p.key(false) {
        Ok(k) => k,
        Err(r) => return reject_response(&r),
    };
    let src_ip = client_ip(&headers, remote);
    if p.get("beta") == "true" {
        // "Stop beta": the beta item goes, in Nacos's `RestResult`.
        let op = Op::Config(ConfigCommand::stop_beta(key, p.get("src_user"), src_ip));
        return match node.write(op).await {
            Ok(_) => json_response(&json!({"code": 200, "message": "stop beta ok", "data": true})),
            Err(r) => reject_response(&r),
        };
    }
    let op = Op::Config(ConfigCommand::remove_with(
        key,
        Some(p.get("tag")),
        p.get("src_user"),
        src_ip,
    ));
    write(&node, op).await
}

/// Replicates a config command and answers `true`, or the rejection.
async fn write(node: &CpNode, op: Op) -> Response {
    let outcome = match node.write(op).await {
        Ok(w) => match w.result {
            CommandResult::Config(ConfigApplied::CasMismatch { .. }) => Err(Reject::CasMismatch),
            CommandResult::Config(_) => Ok(()),
            other => Err(Reject::Unavailable(format!(
                "unexpected apply result {other:?}"
            ))),
        },
        Err(r) => Err(r),
    };
    match outcome {
        Ok(()) => text(StatusCode::OK, "true"),
        Err(r) => reject_response(&r),
    }
}

/// Counts held long polls against `LONG_POLLS_HELD_MAX`.
#[derive(Default)]
struct LongPollGate {
    held: AtomicUsize,
}

/// One held long poll; releases its place on drop (also when the client goes away).
struct HeldPoll(Arc<LongPollGate>);

impl LongPollGate {
    fn try_hold(self: &Arc<Self>) -> Option<HeldPoll> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < LONG_POLLS_HELD_MAX).then_some(n + 1)
            })
            .ok()
            .map(|_| HeldPoll(self.clone()))
    }
}

impl Drop for HeldPoll {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The watched entries whose md5 differs from what this replica serves the watch's client.
fn changed_now(node: &CpNode, watch: &Watch) -> Vec<ListenEntry> {
    let (ip, tag) = watch.client();
    listen::changed(&watch.entries(), |k| node.effective_md5_local(k, ip, tag))
}

/// `POST /v1/cs/configs/listener` (§2.4): answers the changed keys, at once or after a hold.
async fn listen_configs(
    State(node): State<Arc<CpNode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Extension(gate): Extension<Arc<LongPollGate>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return reject_response(&r),
    };
    // The parser stops at `limits::LISTENERS_PER_REQUEST_MAX` records (its own bound, the same
    // value), before a larger request is held in memory.
    let entries = match listen::parse_listening_configs(p.get("Listening-Configs")) {
        Ok(e) => e,
        Err(r) => {
            // Nacos's controller reports every parse failure as `invalid probeModify`.
            tracing::debug!("listener rejected: {r}");
            let r = Reject::InvalidParam(listen::INVALID_PROBE_MODIFY.into());
            return reject_response(&r);
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let watch = Watch::for_client(
        &entries,
        &client_ip(&headers, remote),
        vipserver_tag(&headers),
    );
    // Subscribe before comparing: a change applied after the comparison is then still heard.
    let mut changes = node.subscribe_config_changes();
    let changed = changed_now(&node, &watch);
    let no_hangup = header("Long-Pulling-Timeout-No-Hangup") == Some("true");
    let hold = listen::hold_ms(header("Long-Pulling-Timeout"));
    let Some(hold) = hold.filter(|_| changed.is_empty() && !no_hangup) else {
        return listener_answer(&changed);
    };
    let Some(_held) = gate.try_hold() else {
        return reject_response(&Reject::Overloaded(format!(
            "too many long polls held, limit {LONG_POLLS_HELD_MAX}"
        )));
    };
    let answer = hold_poll(&node, &watch, &mut changes, hold).await;
    listener_answer(&answer)
}

/// Waits up to `hold_ms` for a change of a watched key; the entries to answer (empty on
/// timeout). After missing changes (`Lagged`) it re-checks every key against the state.
async fn hold_poll(
    node: &CpNode,
    watch: &Watch,
    changes: &mut Receiver<listen::ConfigChange>,
    hold_ms: u64,
) -> Vec<ListenEntry> {
    let timeout = tokio::time::sleep(Duration::from_millis(hold_ms));
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            () = &mut timeout => return Vec::new(),
            received = changes.recv() => match received {
                Ok(change) => {
                    let (ip, tag) = watch.client();
                    let served = |k: &ConfigKey| node.effective_md5_local(k, ip, tag);
                    if let Some(entry) = watch.on_change_with(&change, served) {
                        return vec![entry];
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "long poll lagged; re-checking its keys");
                    let changed = changed_now(node, watch);
                    if !changed.is_empty() {
                        return changed;
                    }
                }
                Err(RecvError::Closed) => {
                    (&mut timeout).await;
                    return Vec::new();
                }
            },
        }
    }
}

fn listener_answer(changed: &[ListenEntry]) -> Response {
    let mut out = text(StatusCode::OK, listen::encode_changed(changed));
    let h = out.headers_mut();
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert("Expires", HeaderValue::from_static("0"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache,no-store"),
    );
    out
}

pub(crate) fn json_response(value: &Value) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        )],
        value.to_string(),
    )
        .into_response()
}

fn page_json<T>(page: &Page<T>, item: impl Fn(&T) -> Value) -> Value {
    json!({
        "totalCount": page.total_count,
        "pageNumber": page.page_number,
        "pagesAvailable": page.pages_available,
        "pageItems": page.page_items.iter().map(item).collect::<Vec<Value>>(),
    })
}

/// Nacos `ConfigInfo` (ids are strings, §1.4).
fn config_info_json(i: &ConfigItem) -> Value {
    json!({
        "id": i.id.to_string(),
        "dataId": i.key.data_id,
        "group": i.key.group,
        "content": i.content,
        "md5": i.md5,
        "encryptedDataKey": i.encrypted_data_key,
        "tenant": i.key.tenant,
        "appName": i.app_name,
        "type": i.config_type,
    })
}

/// Nacos `ConfigHistoryInfo`; times as ISO-8601 strings (§1.4).
fn history_json(h: &HistoryEntry) -> Value {
    json!({
        "id": h.nid.to_string(),
        "lastId": -1,
        "dataId": h.key.data_id,
        "group": h.key.group,
        "tenant": h.key.tenant,
        "appName": h.app_name,
        "md5": h.md5,
        "content": h.content,
        "srcIp": h.src_ip,
        "srcUser": h.src_user,
        "opType": h.op_type.as_str(),
        "publishType": "formal",
        "grayName": Value::Null,
        "extInfo": Value::Null,
        "createdTime": iso8601_utc(h.modified_ms),
        "lastModifiedTime": iso8601_utc(h.modified_ms),
        "encryptedDataKey": h.encrypted_data_key,
    })
}

/// Milliseconds since the epoch as ISO-8601 with milliseconds, in UTC (`+00:00`).
fn iso8601_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let day_secs = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        ms % 1000
    )
}

fn page_param(p: &Params, name: &str, default: u64) -> Result<u64, Reject> {
    match p.get(name) {
        "" => Ok(default),
        v => v
            .parse()
            .map_err(|_| Reject::InvalidParam(format!("invalid {name} : {v}"))),
    }
}

/// `GET /v1/cs/configs?search=accurate|blur`: a `Page<ConfigInfo>` of one namespace.
fn search_configs(node: &CpNode, p: &Params, mode: SearchMode) -> Response {
    let query = (|| {
        Ok::<_, Reject>(SearchQuery {
            tenant: normalize_tenant(p.get("tenant")),
            data_id: p.get("dataId").to_string(),
            group: p.get("group").to_string(),
            app_name: Some(p.get("appName").to_string()),
            mode,
            page_no: page_param(p, "pageNo", 1)?,
            page_size: page_param(p, "pageSize", SEARCH_PAGE_SIZE_DEFAULT)?,
        })
    })();
    let query = match query {
        Ok(q) => q,
        Err(r) => return reject_response(&r),
    };
    let state = node.state();
    let page = state
        .read()
        .expect("state lock poisoned")
        .configs
        .search(&query);
    json_response(&page_json(&page, config_info_json))
}

/// `GET /v1/cs/configs?show=all`: Nacos `ConfigAllInfo`, or an empty body if absent.
fn show_all(node: &CpNode, p: &Params) -> Response {
    let key = match p.key(true) {
        Ok(k) => k,
        Err(r) => return reject_response(&r),
    };
    let Some(i) = node.get_local(&key) else {
        return text(StatusCode::OK, "");
    };
    let mut v = config_info_json(&i);
    let empty_null = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let extra = json!({
        "createTime": i.created_ms,
        "modifyTime": i.modified_ms,
        "createUser": empty_null(&i.src_user),
        "createIp": empty_null(&i.src_ip),
        "desc": empty_null(&i.desc),
        "use": Value::Null,
        "effect": Value::Null,
        "schema": Value::Null,
        "configTags": empty_null(&i.tags),
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
        base.extend(more);
    }
    json_response(&v)
}

/// `GET /v1/cs/history`: `search=accurate` lists a config's history (newest first); `nid`
/// reads one row (empty body if absent or of another config).
async fn get_history(
    State(node): State<Arc<CpNode>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return reject_response(&r),
    };
    let result = if p.get("search") == "accurate" {
        history_page(&node, &p)
    } else {
        history_row(&node, &p, "nid", |store, key, nid| {
            store
                .history_get(nid)
                .filter(|h| key.is_none_or(|k| h.key == *k))
        })
    };
    result.unwrap_or_else(|r| reject_response(&r))
}

/// `GET /v1/cs/history/previous`: the row before `id` of the same config.
async fn get_history_previous(
    State(node): State<Arc<CpNode>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return reject_response(&r),
    };
    history_row(&node, &p, "id", |store, key, nid| {
        key.and_then(|k| store.history_previous(k, nid))
    })
    .unwrap_or_else(|r| reject_response(&r))
}

fn history_page(node: &CpNode, p: &Params) -> Result<Response, Reject> {
    let key = p.key(true)?;
    let page_no = page_param(p, "pageNo", 1)?;
    let page_size = page_param(p, "pageSize", HISTORY_PAGE_SIZE_DEFAULT)?;
    let state = node.state();
    let page = state
        .read()
        .expect("state lock poisoned")
        .configs
        .history_list(&key, page_no, page_size);
    Ok(json_response(&page_json(&page, history_json)))
}

/// One history row chosen by `find` from the row id in parameter `id_param`; the key is
/// checked only when `dataId` is given (1.x clients send the id alone).
fn history_row(
    node: &CpNode,
    p: &Params,
    id_param: &str,
    find: impl for<'a> Fn(
        &'a nacre_engine::config::ConfigStore,
        Option<&ConfigKey>,
        u64,
    ) -> Option<&'a HistoryEntry>,
) -> Result<Response, Reject> {
    let id = p.get(id_param);
    let nid: u64 = id
        .parse()
        .map_err(|_| Reject::InvalidParam(format!("invalid {id_param} : {id}")))?;
    let key = if p.get("dataId").is_empty() {
        None
    } else {
        Some(p.key(true)?)
    };
    let state = node.state();
    let state = state.read().expect("state lock poisoned");
    Ok(match find(&state.configs, key.as_ref(), nid) {
        Some(h) => json_response(&history_json(h)),
        None => text(StatusCode::OK, ""),
    })
}

async fn liveness() -> Response {
    text(StatusCode::OK, "OK")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h
    }

    #[test]
    fn form_decoding_is_strict() {
        let ok = decode_pairs(b"a=1+2&b=%E2%9C%93&c&=e").expect("valid");
        assert_eq!(
            ok,
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "\u{2713}".into()),
                ("c".into(), String::new()),
                (String::new(), "e".into())
            ]
        );
        for bad in [&b"a=%C3%28"[..], b"a=%G1", b"a=%4", b"%FF=x"] {
            assert!(
                decode_pairs(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn query_and_form_are_merged_query_first() {
        let p = Params::parse(
            Some("dataId=a&group=g"),
            &form_headers(),
            b"group=other&content=hello%20world",
        )
        .expect("valid");
        assert_eq!(p.get("dataId"), "a");
        assert_eq!(p.get("group"), "g");
        assert_eq!(p.get("content"), "hello world");
    }

    #[test]
    fn a_body_without_form_content_type_is_ignored() {
        let p = Params::parse(None, &HeaderMap::new(), b"dataId=a").expect("valid");
        assert_eq!(p.get("dataId"), "");
    }

    #[test]
    fn keys_use_nacos_messages_and_tenant_rules() {
        let p = Params::parse(Some("dataId=a%20b&group=g"), &HeaderMap::new(), b"").expect("ok");
        assert_eq!(
            p.key(true),
            Err(Reject::InvalidParam("invalid dataId : a b".into()))
        );
        let p = Params::parse(
            Some("dataId=a&group=g&tenant=public"),
            &HeaderMap::new(),
            b"",
        )
        .expect("ok");
        assert_eq!(p.key(true).expect("valid").tenant, "");
        assert_eq!(p.key(false).expect("valid").tenant, "public");
    }

    #[test]
    fn iso8601_matches_the_reference_instant() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000+00:00");
        // The reference's `2024-03-01T14:12:26.800+08:00`, in UTC.
        assert_eq!(
            iso8601_utc(1_709_273_546_800),
            "2024-03-01T06:12:26.800+00:00"
        );
        assert_eq!(
            iso8601_utc(951_782_400_000),
            "2000-02-29T00:00:00.000+00:00"
        );
    }

    #[test]
    fn long_poll_gate_is_bounded_and_released_on_drop() {
        let gate = Arc::new(LongPollGate::default());
        let held: Vec<HeldPoll> = (0..LONG_POLLS_HELD_MAX)
            .map(|_| gate.try_hold().expect("below the bound"))
            .collect();
        assert!(gate.try_hold().is_none());
        drop(held);
        assert!(gate.try_hold().is_some());
    }

    #[test]
    fn rejections_map_to_nacos_status_and_body() {
        let r = reject_response(&Reject::CasMismatch);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = reject_response(&Reject::InvalidParam("invalid dataId : x".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
