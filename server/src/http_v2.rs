//! The HTTP Open API v2 (`/nacos/v2/...`, wire reference §3) as a bridge onto the v1 routes:
//! each v2 endpoint renames its parameters to their v1 names (`namespaceId` → `tenant` for
//! config, …), calls the v1 handler in-process, and wraps the answer in the v2 envelope
//! `{"code":0,"message":"success","data":…}`. A refusal keeps the v1 status and carries a v2
//! error code with the v1 message as `data`. One implementation of every rule serves both
//! versions, so they cannot drift apart.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, RawQuery};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::http::{json_response, Params, HTTP_BODY_BYTES_MAX};

/// How the v1 answer becomes the v2 `data`.
#[derive(Debug, Clone, Copy)]
enum Data {
    /// The body text (`"ok"`, config content).
    Text,
    /// v1 `true` is `data: true`; v1 `false` (a refused namespace change) is an error.
    Bool,
    /// The body parsed as JSON.
    Json,
    /// The body parsed as JSON with one field renamed (`doms` → `services`).
    Rename(&'static str, &'static str),
    /// The `data` of a v1 `RestResult`.
    Unwrap,
    /// The v1 answer as is (the beat answer is not enveloped in v2 either).
    Raw,
}

/// One v2 endpoint: the v1 route it calls and how parameters and answers are mapped.
#[derive(Debug, Clone, Copy)]
struct Bridge {
    v1_path: &'static str,
    /// `(v2 name, v1 name)`.
    renames: &'static [(&'static str, &'static str)],
    /// Set when absent.
    defaults: &'static [(&'static str, &'static str)],
    /// Always set.
    fixed: &'static [(&'static str, &'static str)],
    data: Data,
}

const fn bridge(v1_path: &'static str, data: Data) -> Bridge {
    Bridge {
        v1_path,
        renames: &[],
        defaults: &[],
        fixed: &[],
        data,
    }
}

const CONFIG_RENAMES: &[(&str, &str)] = &[
    ("namespaceId", "tenant"),
    ("srcUser", "src_user"),
    ("configTags", "config_tags"),
];

/// The v2 routes.
pub fn router(v1: Router) -> Router {
    let routes: Vec<(&str, MethodFilter, Bridge)> = vec![
        (
            "/nacos/v2/cs/config",
            MethodFilter::GET,
            Bridge {
                renames: CONFIG_RENAMES,
                ..bridge("/nacos/v1/cs/configs", Data::Text)
            },
        ),
        (
            "/nacos/v2/cs/config",
            MethodFilter::POST.or(MethodFilter::DELETE),
            Bridge {
                renames: CONFIG_RENAMES,
                ..bridge("/nacos/v1/cs/configs", Data::Bool)
            },
        ),
        (
            "/nacos/v2/cs/history/list",
            MethodFilter::GET,
            Bridge {
                renames: CONFIG_RENAMES,
                fixed: &[("search", "accurate")],
                ..bridge("/nacos/v1/cs/history", Data::Json)
            },
        ),
        (
            "/nacos/v2/cs/history",
            MethodFilter::GET,
            Bridge {
                renames: CONFIG_RENAMES,
                ..bridge("/nacos/v1/cs/history", Data::Json)
            },
        ),
        (
            "/nacos/v2/cs/history/previous",
            MethodFilter::GET,
            Bridge {
                renames: CONFIG_RENAMES,
                ..bridge("/nacos/v1/cs/history/previous", Data::Json)
            },
        ),
        (
            "/nacos/v2/ns/instance",
            MethodFilter::POST
                .or(MethodFilter::PUT)
                .or(MethodFilter::DELETE)
                .or(MethodFilter::PATCH),
            bridge("/nacos/v1/ns/instance", Data::Text),
        ),
        (
            "/nacos/v2/ns/instance",
            MethodFilter::GET,
            bridge("/nacos/v1/ns/instance", Data::Json),
        ),
        (
            "/nacos/v2/ns/instance/list",
            MethodFilter::GET,
            Bridge {
                renames: &[("clusterName", "clusters")],
                ..bridge("/nacos/v1/ns/instance/list", Data::Json)
            },
        ),
        (
            "/nacos/v2/ns/instance/beat",
            MethodFilter::PUT,
            bridge("/nacos/v1/ns/instance/beat", Data::Raw),
        ),
        (
            "/nacos/v2/ns/service",
            MethodFilter::POST
                .or(MethodFilter::PUT)
                .or(MethodFilter::DELETE),
            bridge("/nacos/v1/ns/service", Data::Text),
        ),
        (
            "/nacos/v2/ns/service",
            MethodFilter::GET,
            bridge("/nacos/v1/ns/service", Data::Json),
        ),
        (
            "/nacos/v2/ns/service/list",
            MethodFilter::GET,
            Bridge {
                defaults: &[("pageNo", "1"), ("pageSize", "20")],
                ..bridge(
                    "/nacos/v1/ns/service/list",
                    Data::Rename("doms", "services"),
                )
            },
        ),
        (
            "/nacos/v2/ns/operator/switches",
            MethodFilter::GET,
            bridge("/nacos/v1/ns/operator/switches", Data::Json),
        ),
        (
            "/nacos/v2/ns/operator/metrics",
            MethodFilter::GET,
            bridge("/nacos/v1/ns/operator/metrics", Data::Json),
        ),
        (
            "/nacos/v2/console/namespace/list",
            MethodFilter::GET,
            bridge("/nacos/v1/console/namespaces", Data::Unwrap),
        ),
        (
            "/nacos/v2/console/namespace",
            MethodFilter::GET,
            Bridge {
                fixed: &[("show", "all")],
                ..bridge("/nacos/v1/console/namespaces", Data::Json)
            },
        ),
        (
            "/nacos/v2/console/namespace",
            MethodFilter::POST,
            Bridge {
                renames: &[("namespaceId", "customNamespaceId")],
                ..bridge("/nacos/v1/console/namespaces", Data::Bool)
            },
        ),
        (
            "/nacos/v2/console/namespace",
            MethodFilter::PUT,
            Bridge {
                renames: &[
                    ("namespaceId", "namespace"),
                    ("namespaceName", "namespaceShowName"),
                ],
                ..bridge("/nacos/v1/console/namespaces", Data::Bool)
            },
        ),
        (
            "/nacos/v2/console/namespace",
            MethodFilter::DELETE,
            bridge("/nacos/v1/console/namespaces", Data::Bool),
        ),
        (
            "/nacos/v2/core/cluster/node/self",
            MethodFilter::GET,
            bridge("/nacos/v1/core/cluster/self", Data::Unwrap),
        ),
        (
            "/nacos/v2/core/cluster/node/list",
            MethodFilter::GET,
            Bridge {
                renames: &[("address", "keyword")],
                ..bridge("/nacos/v1/core/cluster/nodes", Data::Unwrap)
            },
        ),
        (
            "/nacos/v2/core/cluster/node/self/health",
            MethodFilter::GET,
            bridge("/nacos/v1/core/cluster/health", Data::Unwrap),
        ),
        (
            "/nacos/v2/console/health/liveness",
            MethodFilter::GET,
            bridge("/nacos/v1/console/health/liveness", Data::Text),
        ),
        (
            "/nacos/v2/console/health/readiness",
            MethodFilter::GET,
            bridge("/nacos/v1/console/health/readiness", Data::Text),
        ),
    ];
    let mut out = Router::new();
    // Routes sharing a path are merged into one method router per path.
    let mut paths: Vec<&str> = routes.iter().map(|(p, _, _)| *p).collect();
    paths.dedup();
    for path in paths {
        let mut method_router = axum::routing::MethodRouter::new();
        for (_, filter, b) in routes.iter().filter(|(p, _, _)| *p == path) {
            let (v1, b) = (v1.clone(), *b);
            method_router = method_router.merge(on(
                *filter,
                move |connect: Option<ConnectInfo<SocketAddr>>,
                      method: Method,
                      RawQuery(query): RawQuery,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    call(v1, b, connect, method, query, headers, body).await
                },
            ));
        }
        out = out.route(path, method_router);
    }
    out.layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
}

/// The v2 error code and message for a v1 refusal (wire reference §3 error table).
fn error_code(status: StatusCode, message: &str) -> (u32, &'static str) {
    let m = message.to_ascii_lowercase();
    match status.as_u16() {
        400 if m.contains("is required") || m.contains("is missing") => {
            (10000, "parameter missing")
        }
        400 if m.contains("already exist") => (21007, "resource conflict"),
        400 | 404
            if m.contains("service") && (m.contains("not found") || m.contains("not exist")) =>
        {
            (21008, "service not exist")
        }
        400 | 404
            if (m.contains("instance") && m.contains("not exist"))
                || (m.contains("ip") && m.contains("found")) =>
        {
            (21003, "instance not found")
        }
        404 => (20004, "resource not found"),
        400 => (20002, "parameter validate error"),
        403 => (10001, "access denied"),
        _ => (30000, "server error"),
    }
}

fn envelope(status: StatusCode, code: u32, message: &str, data: Value) -> Response {
    let mut r = json_response(&json!({"code": code, "message": message, "data": data}));
    *r.status_mut() = status;
    r
}

fn failure(status: StatusCode, detail: &str) -> Response {
    let detail = detail.trim_end();
    let detail = detail
        .strip_prefix("caused: ")
        .and_then(|d| d.strip_suffix(';'))
        .unwrap_or(detail);
    let (code, message) = error_code(status, detail);
    envelope(status, code, message, json!(detail))
}

async fn call(
    v1: Router,
    b: Bridge,
    connect: Option<ConnectInfo<SocketAddr>>,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::parse(query.as_deref(), &headers, &body) {
        Ok(p) => p.into_map(),
        Err(r) => return failure(StatusCode::BAD_REQUEST, &r.to_string()),
    };
    let mut mapped = std::collections::BTreeMap::new();
    for (k, v) in params {
        let name = b
            .renames
            .iter()
            .find(|(from, _)| *from == k)
            .map_or(k, |(_, to)| to.to_string());
        mapped.insert(name, v);
    }
    for (k, v) in b.defaults {
        mapped.entry(k.to_string()).or_insert_with(|| v.to_string());
    }
    for (k, v) in b.fixed {
        mapped.insert(k.to_string(), v.to_string());
    }
    let query = match serde_urlencoded::to_string(&mapped) {
        Ok(q) => q,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}?{query}", b.v1_path));
    for (name, value) in headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let mut request = match request.body(Body::empty()) {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(c) = connect {
        request.extensions_mut().insert(c);
    }
    let answer = match v1.oneshot(request).await {
        Ok(a) => a,
        Err(never) => match never {},
    };
    if let Data::Raw = b.data {
        return answer;
    }
    let status = answer.status();
    let bytes = match axum::body::to_bytes(answer.into_body(), HTTP_BODY_BYTES_MAX).await {
        Ok(b) => b,
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return failure(status, &text);
    }
    let data = match b.data {
        Data::Text | Data::Raw => json!(text),
        Data::Bool => match text.as_ref() {
            "true" => json!(true),
            _ => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "refused: invalid or conflicting parameters",
                )
            }
        },
        Data::Json | Data::Rename(..) | Data::Unwrap => {
            let mut v: Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            };
            match b.data {
                Data::Rename(from, to) => {
                    if let Some(obj) = v.as_object_mut() {
                        if let Some(x) = obj.remove(from) {
                            obj.insert(to.to_string(), x);
                        }
                    }
                    v
                }
                Data::Unwrap => v.get("data").cloned().unwrap_or(Value::Null),
                _ => v,
            }
        }
    };
    envelope(StatusCode::OK, 0, "success", data).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_v2_codes() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(error_code(bad, "Param 'ip' is required.").0, 10000);
        assert_eq!(
            error_code(bad, "specified service g@@s already exists!").0,
            21007
        );
        assert_eq!(
            error_code(
                bad,
                "service not found, namespace: public, serviceName: g@@s"
            )
            .0,
            21008
        );
        assert_eq!(
            error_code(StatusCode::NOT_FOUND, "no matched ip found!").0,
            21003
        );
        assert_eq!(
            error_code(StatusCode::NOT_FOUND, "config data not exist").0,
            20004
        );
        assert_eq!(error_code(bad, "invalid dataId : a b").0, 20002);
        assert_eq!(
            error_code(
                bad,
                "instance format invalid: The weights range from 0.0 to 10000.0"
            )
            .0,
            20002
        );
        assert_eq!(
            error_code(bad, "instance not exist: 1.2.3.4#80#DEFAULT#g@@s").0,
            21003
        );
        assert_eq!(
            error_code(StatusCode::SERVICE_UNAVAILABLE, "no leader").0,
            30000
        );
    }
}
