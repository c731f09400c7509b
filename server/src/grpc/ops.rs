//! The HTTP views and actions over the SDK connections of this member: the loader endpoints
//! (`/nacos/v{1,2}/core/loader/*`: list, reset one connection, reset a count of them) and the
//! config client metrics (`/nacos/v1/cs/metrics/ip`), which asks each connection of a client IP
//! with a `ClientConfigMetricRequest`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{Conn, Grpc};
use crate::http::{json_response, text, Params};

/// How long a client has to answer a metrics request.
const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

fn params(query: Option<String>) -> Result<Params, nacre_engine::error::Reject> {
    Params::parse(query.as_deref(), &HeaderMap::new(), &[])
}

fn bad_params(r: &nacre_engine::error::Reject) -> Response {
    text(StatusCode::BAD_REQUEST, format!("caused: {r};"))
}

/// `GET …/loader/current`: the connections, keyed by id, with their labels.
fn current(grpc: &Grpc) -> Response {
    let mut out = serde_json::Map::new();
    for c in grpc.conns() {
        out.insert(
            c.id.clone(),
            json!({
                "metaInfo": {
                    "connectionId": c.id,
                    "clientIp": c.client_ip,
                    "labels": c.labels,
                    "version": c.version,
                    "connectType": "GRPC",
                },
                "idleMillis": c.idle_ms(),
                "listenedConfigs": c.listens.lock().expect("listens").len(),
                "subscriptions": c.subscriptions.lock().expect("subscriptions").len(),
                "pendingPushes": c.ledger.lock().expect("ledger").len(),
            }),
        );
    }
    json_response(&Value::Object(out))
}

/// The `ConnectResetRequest` body: the member to move to (`ip:port`, main port) or any.
fn reset_body(conn: &Conn, redirect: &str) -> Value {
    let (ip, port) = redirect.rsplit_once(':').unwrap_or(("", ""));
    json!({"serverIp": ip, "serverPort": port, "connectionId": conn.id})
}

/// `GET …/loader/reloadClient?connectionId=&redirectAddress=`: asks one connection to
/// reconnect (to `redirectAddress` when given).
fn reload_client(grpc: &Grpc, p: &Params) -> Response {
    let id = p.get("connectionId");
    if id.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Param 'connectionId' is required.");
    }
    let Some(conn) = grpc.conn_by_id(id) else {
        return text(StatusCode::NOT_FOUND, format!("connection {id} not found"));
    };
    grpc.push(
        &conn,
        "ConnectResetRequest",
        reset_body(&conn, p.get("redirectAddress")),
    );
    text(StatusCode::OK, "success")
}

/// `GET …/loader/reloadCurrent?count=&redirectAddress=`: asks `count` connections to
/// reconnect elsewhere (the longest idle first), to shed load from this member.
fn reload_current(grpc: &Grpc, p: &Params) -> Response {
    let Ok(count) = p.get("count").parse::<usize>() else {
        return text(
            StatusCode::BAD_REQUEST,
            "Param 'count' must be a non-negative integer.",
        );
    };
    let mut conns = grpc.conns();
    conns.sort_by_key(|c| std::cmp::Reverse(c.idle_ms()));
    for conn in conns.iter().take(count) {
        grpc.push(
            conn,
            "ConnectResetRequest",
            reset_body(conn, p.get("redirectAddress")),
        );
    }
    text(StatusCode::OK, "success")
}

/// `GET /nacos/v1/cs/metrics/ip?ip=&dataId=&group=&tenant=`: the config metrics the SDK
/// connections from `ip` report (their cache and snapshot of the key when one is named),
/// merged into one object.
async fn client_metrics(grpc: &Grpc, p: &Params) -> Response {
    let ip = p.get("ip");
    if ip.is_empty() {
        return text(StatusCode::BAD_REQUEST, "Param 'ip' is required.");
    }
    let mut keys = Vec::new();
    if !p.get("dataId").is_empty() {
        let key = nacre_engine::config::ConfigKey::new(
            &nacre_engine::config::validate::normalize_tenant(p.get("tenant")),
            p.get("group"),
            p.get("dataId"),
        )
        .group_key();
        keys.push(json!({"type": "cacheData", "key": key}));
        keys.push(json!({"type": "snapshotData", "key": key}));
    }
    let conns: Vec<Arc<Conn>> = grpc
        .conns()
        .into_iter()
        .filter(|c| c.client_ip == ip)
        .collect();
    let mut merged = serde_json::Map::new();
    for conn in conns {
        let answer = grpc
            .ask(
                &conn,
                "ClientConfigMetricRequest",
                json!({ "metricsKeys": keys }),
                METRICS_TIMEOUT,
            )
            .await;
        match answer {
            Some(a) if a.get("resultCode").and_then(Value::as_i64) == Some(200) => {
                if let Some(Value::Object(m)) = a.get("metrics") {
                    merged.extend(m.clone());
                }
            }
            _ => tracing::debug!(conn = %conn.id, "no config metrics from the client"),
        }
    }
    json_response(&Value::Object(merged))
}

/// The routes above, in their v1 and v2 spellings.
pub fn ops_router(grpc: Arc<Grpc>) -> Router {
    let g = grpc.clone();
    let current = move || {
        let g = g.clone();
        async move { current(&g) }
    };
    let g = grpc.clone();
    let reload_client = move |RawQuery(q): RawQuery| {
        let g = g.clone();
        async move { params(q).map_or_else(|r| bad_params(&r), |p| reload_client(&g, &p)) }
    };
    let g = grpc.clone();
    let reload_current = move |RawQuery(q): RawQuery| {
        let g = g.clone();
        async move { params(q).map_or_else(|r| bad_params(&r), |p| reload_current(&g, &p)) }
    };
    let metrics = move |RawQuery(q): RawQuery| {
        let g = grpc.clone();
        async move {
            match params(q) {
                Ok(p) => client_metrics(&g, &p).await,
                Err(r) => bad_params(&r),
            }
        }
    };
    let mut router = Router::new();
    for v in ["v1", "v2"] {
        router = router
            .route(
                &format!("/nacos/{v}/core/loader/current"),
                get(current.clone()),
            )
            .route(
                &format!("/nacos/{v}/core/loader/reloadClient"),
                get(reload_client.clone()),
            )
            .route(
                &format!("/nacos/{v}/core/loader/reloadCurrent"),
                get(reload_current.clone()),
            );
    }
    router.route("/nacos/v1/cs/metrics/ip", get(metrics))
}
