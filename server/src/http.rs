//! The HTTP Open API adapter (wire reference §2): config publish/read/remove on
//! `/nacos/v1/cs/configs` (§2.4) and the console health probes.
//!
//! Parameters arrive in the query string or a form body, for every method (§2.0.1); the query
//! wins when both name one. Identifiers are checked with the engine's `validate` rules, so the
//! messages are Nacos's. An engine `Reject` becomes an HTTP answer in exactly one function,
//! `reject_response`, through `Reject::nacos_code` (STYLE 5).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nacre_engine::config::validate::{
    normalize_tenant, validate_content, validate_data_id, validate_group, validate_tenant,
};
use nacre_engine::config::CONTENT_BYTES_MAX;
use nacre_engine::config::{ConfigApplied, ConfigCommand, ConfigKey, PublishConfig};
use nacre_engine::cp_node::CpNode;
use nacre_engine::error::Reject;
use nacre_engine::raft::command::{CommandResult, Op};

/// Largest request body: a maximal content, percent-encoded (up to 3 bytes per byte), plus the
/// other fields.
pub const HTTP_BODY_BYTES_MAX: usize = 3 * CONTENT_BYTES_MAX + 1024 * 1024;
/// Most parameters one request may carry.
pub const HTTP_PARAMS_MAX: usize = 256;

const CONFIGS_PATH: &str = "/nacos/v1/cs/configs";
const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";

/// The routes of the HTTP API, serving `node`.
pub fn router(node: Arc<CpNode>) -> Router {
    Router::new()
        .route(
            CONFIGS_PATH,
            get(get_config).post(publish_config).delete(remove_config),
        )
        .route("/nacos/v1/console/health/liveness", get(liveness))
        .route("/nacos/v1/console/health/readiness", get(readiness))
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

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN))],
        body.into(),
    )
        .into_response()
}

/// Request parameters merged from the query string and a form body.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Result<Params, Reject> {
        let mut map = BTreeMap::new();
        let bad = |e: serde_urlencoded::de::Error| Reject::InvalidParam(e.to_string());
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(bad)?;
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            pairs.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).map_err(bad)?);
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

    fn get(&self, name: &str) -> &str {
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
        Ok(ConfigKey::new(
            &tenant,
            self.get("group"),
            self.get("dataId"),
        ))
    }
}

async fn get_config(
    State(node): State<Arc<CpNode>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = match Params::parse(query.as_deref(), &headers, &body).and_then(|p| p.key(true)) {
        Ok(k) => k,
        Err(r) => return reject_response(&r),
    };
    let Some(item) = node.get_local(&key) else {
        return text(StatusCode::NOT_FOUND, "config data not exist\n");
    };
    let mut out = text(StatusCode::OK, item.content);
    let h = out.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put("Content-MD5", &item.md5);
    put("Config-Type", &item.config_type);
    put("Pragma", "no-cache");
    put("Expires", "Thu, 01 Jan 1970 00:00:00 GMT");
    put("Cache-Control", "no-cache,no-store");
    if !item.encrypted_data_key.is_empty() {
        put("Encrypted-Data-Key", &item.encrypted_data_key);
    }
    out
}

fn publish_command(p: &Params, headers: &HeaderMap, src_ip: String) -> Result<Op, Reject> {
    let key = p.key(true)?;
    validate_content(p.get("content"))?;
    let cas_md5 = headers
        .get("casMd5")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Op::Config(ConfigCommand::Publish(PublishConfig {
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
    })))
}

async fn publish_config(
    State(node): State<Arc<CpNode>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let op = Params::parse(query.as_deref(), &headers, &body)
        .and_then(|p| publish_command(&p, &headers, remote.ip().to_string()));
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
    let (key, src_user) = match Params::parse(query.as_deref(), &headers, &body)
        .and_then(|p| Ok((p.key(false)?, p.get("src_user").to_string())))
    {
        Ok(v) => v,
        Err(r) => return reject_response(&r),
    };
    let op = Op::Config(ConfigCommand::Remove {
        key,
        src_user,
        src_ip: remote.ip().to_string(),
    });
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

async fn liveness() -> Response {
    text(StatusCode::OK, "OK")
}

async fn readiness(State(node): State<Arc<CpNode>>) -> Response {
    if node.status().leader.is_some() {
        text(StatusCode::OK, "OK")
    } else {
        text(StatusCode::INTERNAL_SERVER_ERROR, "not ready")
    }
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
    fn rejections_map_to_nacos_status_and_body() {
        let r = reject_response(&Reject::CasMismatch);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = reject_response(&Reject::InvalidParam("invalid dataId : x".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
