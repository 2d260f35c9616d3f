//! The HTTP API of `kindling run` (contract in PRODUCT.md):
//! `/healthz`, `/metrics`, `/api/v1/requests`, `/api/v1/topology`; the web
//! UI and the routes it reads are in [`ui`].
//!
//! Handlers read the pipeline under a short lock; bad parameters are a 400
//! with a JSON `{"error": "..."}` naming the parameter, never a 500.

pub mod flamegraph;
pub mod params;
pub mod ui;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kindling_pipeline::{Pipeline, RequestQuery};
use kindling_telemetry::Telemetry;
use params::{parse_bool, parse_duration, ParamError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use params::parse_duration as duration;

/// What the handlers share.
pub struct ApiState {
    pub pipeline: Arc<Mutex<Pipeline>>,
    pub telemetry: Telemetry,
    /// The embedded store (history, stored requests, kept trace-profiles).
    pub store: Option<Arc<kindling_store::Store>>,
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/requests", get(requests))
        .route("/api/v1/topology", get(topology))
        .route("/api/v1/flamegraph", get(flamegraph::flamegraph))
        .merge(ui::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint; see GET /api for the list") })
        .with_state(state)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

impl IntoResponse for ParamError {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.to_string())
    }
}

async fn index() -> impl IntoResponse {
    "Kindling agent\n\nGET / (the web UI)\nGET /healthz\nGET /metrics\nGET /api/v1/requests?protocol=&side=&slow=&error=&endpoint=&trace_id=&limit=\nGET /api/v1/topology?window=60s\nGET /api/v1/flamegraph?pid=&seconds=&type=&format=\nGET /api/v1/profiles?trace_id=&endpoint=&kept_because=&since=&limit=\nGET /api/v1/profiles/{id}\nGET /api/v1/ui/map?window=\nGET /api/v1/ui/series?src=&dst=&protocol=&dst_port=&window= | ?node=&direction=&window=\nGET /api/v1/ui/requests?protocol=&side=&slow=&error=&endpoint=&trace_id=&src=&dst=&node=&since=&window=&sort=&limit=\nGET /api/v1/ui/requests/{id}\nGET /api/v1/ui/status\n"
}

fn lock(p: &Mutex<Pipeline>) -> std::sync::MutexGuard<'_, Pipeline> {
    // A panic elsewhere must not take the API down with it.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let mut out = String::with_capacity(64 * 1024);
    s.telemetry.render(&mut out);
    lock(&s.pipeline).render_metrics(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

async fn requests(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Vec<std::sync::Arc<kindling_requests::RequestRecord>>>, ParamError> {
    let query = request_query(&q)?;
    Ok(Json(lock(&s.pipeline).requests(&query)))
}

/// Parses and validates `/api/v1/requests` parameters.
pub fn request_query(q: &HashMap<String, String>) -> Result<RequestQuery, ParamError> {
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let protocol = match get("protocol") {
        Some(p) => Some(kindling_protocols::Protocol::from_name(p).ok_or_else(|| {
            ParamError::new("protocol", p, "one of http, http2, grpc, mysql, postgresql, redis, kafka, dns, memcached, tcp")
        })?),
        None => None,
    };
    let side = match get("side") {
        Some("client") => Some(kindling_requests::Side::Client),
        Some("server") => Some(kindling_requests::Side::Server),
        Some(v) => return Err(ParamError::new("side", v, "client or server")),
        None => None,
    };
    let limit = match get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ParamError::new("limit", v, "a number from 1 to 10000"))?,
        None => 100,
    };
    let since_ns = match get("since") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| ParamError::new("since", v, "a Unix time in nanoseconds"))?),
        None => None,
    };
    Ok(RequestQuery {
        protocol,
        side,
        slow: get("slow").map(|v| parse_bool("slow", v)).transpose()?,
        error: get("error").map(|v| parse_bool("error", v)).transpose()?,
        endpoint: get("endpoint").map(str::to_string),
        trace_id: get("trace_id").map(str::to_string),
        since_ns,
        limit,
    })
}

async fn topology(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ParamError> {
    let window = match q.get("window").map(String::as_str).filter(|v| !v.is_empty()) {
        Some(w) => parse_duration(w)
            .ok()
            .filter(|d| d.as_secs() >= 1 && d.as_secs() <= 24 * 3600)
            .ok_or_else(|| ParamError::new("window", w, "a duration from 1s to 24h, e.g. 60s or 5m"))?,
        None => std::time::Duration::from_secs(60),
    };
    let topo = lock(&s.pipeline).topology(window.as_nanos() as u64);
    Ok(Json(topo))
}
