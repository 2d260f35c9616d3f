//! The web UI (`GET /`, assets under `/ui/`) and the routes it reads beyond
//! the core API:
//!
//! - `GET /api/v1/ui/map?window=` — the service map: live (the pipeline's
//!   buckets) up to 5 minutes, from the store's per-minute rollups beyond;
//! - `GET /api/v1/ui/series?src=&dst=&protocol=&dst_port=&window=` (an edge)
//!   or `?node=&direction=inbound|outbound&window=` — requests, errors, slow
//!   and p99 per step: 10 s steps live up to 5 minutes, minutes from the store beyond;
//! - `GET /api/v1/ui/requests?protocol=&side=&slow=&error=&endpoint=&trace_id=&src=&dst=&node=&since=&window=&sort=recent|slowest&limit=`
//!   — stored (sampled) request records with their edge (`src_node`, `dst_node`) and `id`;
//! - `GET /api/v1/ui/requests/{id}` — one of them;
//! - `GET /api/v1/ui/status` — what the store holds, its limits and losses;
//! - `GET /api/v1/profiles?trace_id=&endpoint=&kept_because=&since=&limit=`
//!   and `GET /api/v1/profiles/{id}` — kept trace-profiles, from the store;
//!   `GET /api/v1/profiles/{id}/flamegraph?format=&type=` — one as a flame graph.
//!
//! Bad parameters are a 400 naming the parameter, like the rest of the API.

// Handlers carry ready error responses in `Err`: once per request, size is no concern.
#![allow(clippy::result_large_err)]

use crate::params::{parse_bool, parse_duration, ParamError};
use crate::{error, lock, ApiState};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get as route_get;
use axum::{Json, Router};
use kindling_aggregate::Direction;
use kindling_protocols::Protocol;
use kindling_store::{Order, ProfileFilter, RequestFilter, Store};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Params = Query<HashMap<String, String>>;

/// Windows served from the pipeline's memory (it keeps 5 minutes).
const LIVE_MAX: Duration = Duration::from_secs(300);
const WINDOW_MAX: Duration = Duration::from_secs(31 * 24 * 3600);
const LIVE_STEP_NS: u64 = 10_000_000_000;

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/", route_get(index))
        .route("/ui/{file}", route_get(asset))
        .route("/api/v1/ui/map", route_get(map))
        .route("/api/v1/ui/series", route_get(series))
        .route("/api/v1/ui/requests", route_get(requests))
        .route("/api/v1/ui/requests/{id}", route_get(request))
        .route("/api/v1/ui/status", route_get(status))
        .route("/api/v1/profiles", route_get(profiles))
        .route("/api/v1/profiles/{id}", route_get(profile))
        .route("/api/v1/profiles/{id}/flamegraph", route_get(profile_flamegraph))
}

async fn index() -> Response {
    let (ctype, body) = kindling_ui::asset("index.html").expect("the UI has an index");
    ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match kindling_ui::asset(&file) {
        Some((ctype, body)) => ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "no-cache")], body).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no UI file {file:?}")),
    }
}

fn get<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

fn window(q: &HashMap<String, String>, default: Duration) -> Result<Duration, ParamError> {
    match get(q, "window") {
        Some(w) => parse_duration(w)
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= WINDOW_MAX)
            .ok_or_else(|| ParamError::new("window", w, "a duration from 1s to 31d, e.g. 5m, 1h or 7d")),
        None => Ok(default),
    }
}

fn protocol(q: &HashMap<String, String>) -> Result<Option<Protocol>, ParamError> {
    get(q, "protocol")
        .map(|p| {
            Protocol::from_name(p).ok_or_else(|| {
                ParamError::new("protocol", p, "one of http, http2, grpc, mysql, postgresql, redis, kafka, dns, memcached, tcp")
            })
        })
        .transpose()
}

fn number<T: std::str::FromStr + PartialOrd>(
    q: &HashMap<String, String>,
    k: &str,
    range: std::ops::RangeInclusive<T>,
    expected: &str,
) -> Result<Option<T>, ParamError> {
    get(q, k)
        .map(|v| v.parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| ParamError::new(k, v, expected)))
        .transpose()
}

fn store(s: &ApiState) -> Result<Arc<Store>, Response> {
    s.store.clone().ok_or_else(|| error(StatusCode::SERVICE_UNAVAILABLE, "the store is not enabled"))
}

/// Runs a store query off the async worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, kindling_store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the store query failed")),
    }
}

fn bad(e: ParamError) -> Response {
    e.into_response()
}

fn now_ns() -> u64 {
    kindling_store::now_ns()
}

async fn map(State(s): State<Arc<ApiState>>, Query(q): Params) -> Response {
    let w = match window(&q, Duration::from_secs(60)) {
        Ok(w) => w,
        Err(e) => return bad(e),
    };
    let (source, topo) = if w <= LIVE_MAX {
        ("live", lock(&s.pipeline).topology(w.as_nanos() as u64))
    } else {
        let st = match store(&s) {
            Ok(st) => st,
            Err(r) => return r,
        };
        let now = now_ns();
        let from = now.saturating_sub(w.as_nanos() as u64);
        match blocking(move || st.reader().topology(from, now)).await {
            Ok(t) => ("store", t),
            Err(r) => return r,
        }
    };
    let mut v = serde_json::to_value(topo).unwrap_or_default();
    v["source"] = json!(source);
    Json(v).into_response()
}

async fn series(State(s): State<Arc<ApiState>>, Query(q): Params) -> Response {
    match series_inner(&s, &q).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// What a series is of.
enum Subject {
    Edge { src: String, dst: String, protocol: Protocol, port: u16 },
    Node { id: String, dir: Direction },
}

fn subject(q: &HashMap<String, String>) -> Result<Subject, ParamError> {
    if let Some(node) = get(q, "node") {
        if get(q, "src").is_some() || get(q, "dst").is_some() {
            return Err(ParamError::new("node", node, "either node or src and dst, not both"));
        }
        let dir = match get(q, "direction") {
            None | Some("inbound") => Direction::Inbound,
            Some("outbound") => Direction::Outbound,
            Some(d) => return Err(ParamError::new("direction", d, "inbound or outbound")),
        };
        return Ok(Subject::Node { id: node.to_string(), dir });
    }
    let src = get(q, "src").ok_or_else(|| ParamError::new("src", "", "the edge's client node id (or give node)"))?;
    let dst = get(q, "dst").ok_or_else(|| ParamError::new("dst", "", "the edge's server node id"))?;
    let protocol = protocol(q)?.ok_or_else(|| ParamError::new("protocol", "", "the edge's protocol"))?;
    let port = number::<u16>(q, "dst_port", 0..=65535, "a port number")?
        .ok_or_else(|| ParamError::new("dst_port", "", "the edge's server port"))?;
    Ok(Subject::Edge { src: src.to_string(), dst: dst.to_string(), protocol, port })
}

async fn series_inner(s: &ApiState, q: &HashMap<String, String>) -> Result<Value, Response> {
    let w = window(q, Duration::from_secs(300)).map_err(bad)?;
    let subject = subject(q).map_err(bad)?;
    let window_ns = w.as_nanos() as u64;
    if w <= LIVE_MAX {
        let p = lock(&s.pipeline);
        let (now, agg) = (p.now_ns(), p.aggregator());
        let points = match &subject {
            Subject::Edge { src, dst, protocol, port } => {
                agg.edge_series(src, dst, *protocol, *port, now, window_ns, LIVE_STEP_NS)
            }
            Subject::Node { id, dir } => agg.node_series(id, *dir, now, window_ns, LIVE_STEP_NS),
        };
        return Ok(json!({ "source": "live", "step_s": LIVE_STEP_NS / 1_000_000_000, "points": points }));
    }
    let st = store(s)?;
    let now = now_ns();
    let from = now.saturating_sub(window_ns);
    // At most ~180 points: whole minutes per step.
    let step = (window_ns / 180).div_ceil(kindling_store::MINUTE_NS).max(1) * kindling_store::MINUTE_NS;
    let points = blocking(move || {
        let r = st.reader();
        match subject {
            Subject::Edge { src, dst, protocol, port } => {
                r.edge_series(&src, &dst, Some(protocol.name()), Some(port), from, now, step)
            }
            Subject::Node { id, dir } => {
                let d = if dir == Direction::Inbound { "inbound" } else { "outbound" };
                r.node_series(&id, d, from, now, step)
            }
        }
    })
    .await?;
    Ok(json!({ "source": "store", "step_s": step / 1_000_000_000, "points": points }))
}

/// Parses the stored-request filters.
pub fn stored_request_filter(q: &HashMap<String, String>) -> Result<RequestFilter, ParamError> {
    let side = match get(q, "side") {
        Some(v @ ("client" | "server")) => Some(v.to_string()),
        Some(v) => return Err(ParamError::new("side", v, "client or server")),
        None => None,
    };
    let order = match get(q, "sort") {
        None | Some("recent") => Order::Recent,
        Some("slowest") => Order::Slowest,
        Some(v) => return Err(ParamError::new("sort", v, "recent or slowest")),
    };
    let mut since_ns = number::<u64>(q, "since", 0..=u64::MAX, "a Unix time in nanoseconds")?;
    if get(q, "window").is_some() {
        let w = window(q, Duration::from_secs(60))?;
        let from = now_ns().saturating_sub(w.as_nanos() as u64);
        since_ns = Some(since_ns.map_or(from, |s| s.max(from)));
    }
    Ok(RequestFilter {
        protocol: protocol(q)?.map(|p| p.name().to_string()),
        side,
        slow: get(q, "slow").map(|v| parse_bool("slow", v)).transpose()?,
        error: get(q, "error").map(|v| parse_bool("error", v)).transpose()?,
        endpoint: get(q, "endpoint").map(str::to_string),
        trace_id: get(q, "trace_id").map(str::to_string),
        src: get(q, "src").map(str::to_string),
        dst: get(q, "dst").map(str::to_string),
        node: get(q, "node").map(str::to_string),
        since_ns,
        until_ns: number::<u64>(q, "until", 0..=u64::MAX, "a Unix time in nanoseconds")?,
        order,
        limit: number::<usize>(q, "limit", 1..=1000, "a number from 1 to 1000")?.unwrap_or(100),
    })
}

async fn requests(State(s): State<Arc<ApiState>>, Query(q): Params) -> Response {
    let f = match stored_request_filter(&q) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let st = match store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    match blocking(move || st.reader().requests(&f)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

async fn request(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return bad(ParamError::new("id", &id, "a stored request's numeric id"));
    };
    let st = match store(&s) {
        Ok(st) => st,
        Err(r) => return r,
    };
    match blocking(move || st.reader().request(id)).await {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no stored request {id} (retention may have removed it)")),
        Err(r) => r,
    }
}

async fn status(State(s): State<Arc<ApiState>>) -> Response {
    let pipeline_now = lock(&s.pipeline).now_ns();
    let mut v = json!({ "now_ns": now_ns(), "pipeline_now_ns": pipeline_now, "store": null });
    if let Some(st) = s.store.clone() {
        let stats = st.stats();
        let cfg = st.config().clone();
        let path = st.path();
        match blocking(move || st.reader().contents()).await {
            Ok(c) => {
                v["store"] = json!({
                    "path": path.display().to_string(),
                    "retention_s": cfg.max_age.as_secs(),
                    "max_size_bytes": cfg.max_size_bytes,
                    "size_bytes": stats.size_bytes,
                    "requests": c.requests,
                    "edge_minutes": c.edge_minutes,
                    "profiles": c.profiles,
                    "first_minute_ns": c.first_minute_ns,
                    "last_minute_ns": c.last_minute_ns,
                    "written": stats.written,
                    "expired": stats.expired,
                    "sampled_out": stats.sampled_out,
                    "queue_full": stats.queue_full,
                    "write_errors": stats.write_errors,
                });
            }
            Err(r) => return r,
        }
    }
    Json(v).into_response()
}

async fn profiles(State(s): State<Arc<ApiState>>, Query(q): Params) -> Response {
    let f = (|| -> Result<ProfileFilter, ParamError> {
        let kept_because = match get(&q, "kept_because") {
            Some(v @ ("error" | "slow" | "baseline")) => Some(v.to_string()),
            Some(v) => return Err(ParamError::new("kept_because", v, "error, slow or baseline")),
            None => None,
        };
        Ok(ProfileFilter {
            trace_id: get(&q, "trace_id").map(str::to_string),
            endpoint: get(&q, "endpoint").map(str::to_string),
            kept_because,
            since_ns: number::<u64>(&q, "since", 0..=u64::MAX, "a Unix time in nanoseconds")?,
            limit: number::<usize>(&q, "limit", 1..=1000, "a number from 1 to 1000")?.unwrap_or(100),
        })
    })();
    let f = match f {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    let Some(st) = s.store.clone() else {
        return Json(Vec::<Value>::new()).into_response();
    };
    match blocking(move || st.reader().profiles(&f)).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/v1/profiles/{id}/flamegraph?format=folded|pprof|speedscope&type=oncpu|offcpu|both`:
/// the kept profile's critical path as a flame graph (on-CPU samples; off-CPU
/// waits weighted by their time under `offcpu:<reason>`). Default: both, folded.
async fn profile_flamegraph(State(s): State<Arc<ApiState>>, Path(id): Path<String>, Query(q): Params) -> Response {
    let (kind, format) = match crate::flamegraph::kind_and_format(&q, kindling_profile::ProfileType::Both) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let v = match stored_profile(&s, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let doc: kindling_traceprof::TraceProfile = match serde_json::from_value(v) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("stored profile {id:?} is unreadable: {e}")),
    };
    let flame = kindling_traceprof::flame::flame(&doc, kind);
    ([(axum::http::header::CONTENT_TYPE, format.content_type())], format.render(&flame)).into_response()
}

async fn profile(State(s): State<Arc<ApiState>>, Path(id): Path<String>) -> Response {
    match stored_profile(&s, &id).await {
        Ok(v) => Json(v).into_response(),
        Err(r) => r,
    }
}

/// A kept trace-profile from the store, or the error response (400, 404, 503).
async fn stored_profile(s: &ApiState, id: &str) -> Result<Value, Response> {
    if id.len() > 200 {
        return Err(bad(ParamError::new("id", id, "a trace-profile id")));
    }
    let st = store(s)?;
    let key = id.to_string();
    match blocking(move || st.reader().profile(&key)).await? {
        Some(v) => Ok(v),
        None => Err(error(StatusCode::NOT_FOUND, format!("no kept trace-profile {id:?}"))),
    }
}
