//! Console and auth endpoints of the HTTP API: namespaces (`/nacos/v1/console/namespaces`,
//! wire reference §2.5, replicated through Raft), the server state map (§2.7), and the login
//! endpoints (§2.6) as they answer while authentication is disabled — Nacos then hands out the
//! literal token `AUTH_DISABLED`, which SDKs configured with a username accept. Switching
//! authentication on is refused at startup until the auth issue implements it (`properties`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use nacre_engine::config::CONTENT_BYTES_MAX;
use nacre_engine::cp_node::CpNode;
use nacre_engine::namespace::{check_id, check_name, NamespaceApplied, NamespaceCommand};
use nacre_engine::raft::command::{CommandResult, Op};
use serde_json::{json, Value};

use crate::http::{json_response, text, Params};

/// Seconds a token lives (`nacos.core.auth.plugin.nacos.token.expire.seconds` default).
const TOKEN_TTL_S: u64 = 18_000;
/// Quota shown for every namespace (Nacos's default).
const NAMESPACE_QUOTA: u64 = 200;
/// The version this server reports.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the console endpoints serve from.
pub struct ConsoleApi {
    pub cp: Arc<CpNode>,
    pub standalone: bool,
    pub http_port: u16,
}

/// The routes of the console and auth endpoints.
pub fn router(api: Arc<ConsoleApi>) -> Router {
    Router::new()
        .route(
            "/nacos/v1/console/namespaces",
            get(get_namespaces)
                .post(create_namespace)
                .put(update_namespace)
                .delete(delete_namespace),
        )
        .route("/nacos/v1/console/server/state", get(server_state))
        .route("/nacos/v1/auth/login", post(login))
        .route("/nacos/v1/auth/users/login", post(login))
        .with_state(api)
}

fn bad_params(r: &nacre_engine::error::Reject) -> Response {
    text(StatusCode::BAD_REQUEST, format!("caused: {r};"))
}

fn namespace_json(id: &str, name: &str, desc: &str, count: usize, kind: u8) -> Value {
    json!({
        "namespace": id,
        "namespaceShowName": name,
        "namespaceDesc": desc,
        "quota": NAMESPACE_QUOTA,
        "configCount": count,
        "type": kind,
    })
}

async fn get_namespaces(
    State(api): State<Arc<ConsoleApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return bad_params(&r),
    };
    let state = api.cp.state();
    let state = state.read().expect("state lock poisoned");
    if p.get("checkNamespaceIdExist") == "true" {
        let id = p.get("customNamespaceId");
        let exists = state.namespaces.namespaces.contains_key(id);
        return text(StatusCode::OK, exists.to_string());
    }
    if p.get("show") == "all" {
        let id = p.get("namespaceId");
        if id.is_empty() || id == "public" {
            return json_response(&namespace_json(
                "",
                "public",
                "Default Namespace",
                state.configs.count_in(""),
                0,
            ));
        }
        return match state.namespaces.namespaces.get(id) {
            Some(ns) => json_response(&namespace_json(
                id,
                &ns.name,
                &ns.desc,
                state.configs.count_in(id),
                2,
            )),
            None => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("caused: namespaceId [ {id} ] not exist;"),
            ),
        };
    }
    let mut all = vec![namespace_json(
        "",
        "public",
        "Default Namespace",
        state.configs.count_in(""),
        0,
    )];
    for (id, ns) in state.namespaces.listed() {
        all.push(namespace_json(
            id,
            &ns.name,
            &ns.desc,
            state.configs.count_in(id),
            2,
        ));
    }
    json_response(&json!({"code": 200, "message": null, "data": all}))
}

/// Replicates a namespace command: `true`, `false` when refused (Nacos answers 200 either way).
async fn namespace_write(api: &ConsoleApi, cmd: NamespaceCommand) -> Response {
    match api.cp.write(Op::Namespace(cmd)).await {
        Ok(w) => match w.result {
            CommandResult::Namespace(NamespaceApplied::Done) => text(StatusCode::OK, "true"),
            CommandResult::Namespace(NamespaceApplied::Refused(m)) => {
                tracing::info!("namespace change refused: {m}");
                text(StatusCode::OK, "false")
            }
            other => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("caused: unexpected apply result {other:?};"),
            ),
        },
        Err(r) => {
            let status =
                StatusCode::from_u16(r.nacos_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, format!("caused: {r};"))
        }
    }
}

async fn create_namespace(
    State(api): State<Arc<ConsoleApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return bad_params(&r),
    };
    let id = match p.get("customNamespaceId").trim() {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    let name = p.get("namespaceName").to_string();
    if check_id(&id).and_then(|()| check_name(&name)).is_err() {
        return text(StatusCode::OK, "false");
    }
    let cmd = NamespaceCommand::Create {
        id,
        name,
        desc: p.get("namespaceDesc").to_string(),
    };
    namespace_write(&api, cmd).await
}

async fn update_namespace(
    State(api): State<Arc<ConsoleApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return bad_params(&r),
    };
    let cmd = NamespaceCommand::Update {
        id: p.get("namespace").to_string(),
        name: p.get("namespaceShowName").to_string(),
        desc: p.get("namespaceDesc").to_string(),
    };
    namespace_write(&api, cmd).await
}

async fn delete_namespace(
    State(api): State<Arc<ConsoleApi>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return bad_params(&r),
    };
    let cmd = NamespaceCommand::Delete {
        id: p.get("namespaceId").to_string(),
    };
    namespace_write(&api, cmd).await
}

async fn server_state(State(api): State<Arc<ConsoleApi>>) -> Response {
    json_response(&json!({
        "version": VERSION,
        "standalone_mode": if api.standalone { "standalone" } else { "cluster" },
        "function_mode": null,
        "server_port": api.http_port.to_string(),
        "auth_enabled": "false",
        "login_page_enabled": "false",
        "auth_system_type": "nacos",
        "auth_admin_request": "false",
        "datasource_platform": "embedded",
        "config_retention_days": "30",
        "maxContent": CONTENT_BYTES_MAX.to_string(),
    }))
}

/// Login while authentication is disabled: any user gets the `AUTH_DISABLED` token.
async fn login(RawQuery(query): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p,
        Err(r) => return bad_params(&r),
    };
    let username = match p.get("username") {
        "" => "nacos",
        u => u,
    };
    let mut out = json_response(&json!({
        "accessToken": "AUTH_DISABLED",
        "tokenTtl": TOKEN_TTL_S,
        "globalAdmin": true,
        "username": username,
    }));
    out.headers_mut().insert(
        "Authorization",
        HeaderValue::from_static("Bearer AUTH_DISABLED"),
    );
    out
}
