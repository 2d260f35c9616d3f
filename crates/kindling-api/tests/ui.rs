//! API contract of the UI's routes and the trace-profile routes (crates/kindling-api/src/ui.rs):
//! every endpoint answers with its documented shape from a pipeline and a real
//! store; bad parameters are a 400 naming the parameter, never a 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kindling_api::{router, ApiState};
use kindling_events::model::*;
use kindling_pipeline::{Pipeline, PipelineConfig};
use kindling_store::{Store, StoreConfig, MINUTE_NS};
use kindling_telemetry::Telemetry;
use kindling_workloads::NoLookup;
use serde_json::Value;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

const PROFILE: &str = include_str!("../../../tests/browser/fixtures/profile.json");

/// A pipeline that has seen HTTP exchanges from both ends two minutes ago,
/// and a store fed from it (records, one rolled-up minute, one kept profile).
fn state() -> Arc<ApiState> {
    static STATE: OnceLock<(Arc<ApiState>, tempfile::TempDir)> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = StoreConfig::new(dir.path());
            cfg.max_age = Duration::from_secs(3650 * 86400);
            let store = Arc::new(Store::open(cfg).unwrap());
            let mut p = Pipeline::new(PipelineConfig::default(), Box::new(NoLookup));
            p.track_edges(true);
            let mut feed = store.feed();
            let t0 = (kindling_store::now_ns() / MINUTE_NS - 2) * MINUTE_NS + 10_000_000_000;
            feed.tick(p.aggregator(), t0);
            let ev = |pid: u32, op: SocketOp, sock_id: u64, src: &str, dst: &str, role: Role, ts: u64, payload: &[u8]| Event {
                ts_ns: ts,
                pid,
                tid: pid,
                cpu: 0,
                comm: Comm::from(if pid == 1 { "client" } else { "server" }),
                body: EventBody::Socket(SocketEvent {
                    op,
                    syscall: if op == SocketOp::Send { Syscall::Write } else { Syscall::Read },
                    fd: 3,
                    sock_id,
                    proto: L4Proto::Tcp,
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    bytes: payload.len() as u32,
                    latency_ns: 1000,
                    ret: payload.len() as i64,
                    msg_index: 0,
                    payload: payload.to_vec(),
                    role,
                }),
            };
            let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8080");
            let mut t = t0;
            let mut events = vec![ev(2, SocketOp::Accept, 22, s, c, Role::Server, t - 1000, b"")];
            for (i, (status, delay_ms)) in [("200 OK", 5u64), ("500 Oops", 900), ("200 OK", 20)].into_iter().enumerate() {
                let req = format!(
                    "GET /users/{i} HTTP/1.1\r\nHost: x\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e473{i}-00f067aa0ba902b7-01\r\n\r\n"
                );
                let resp = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let d = delay_ms * 1_000_000;
                events.push(ev(1, SocketOp::Send, 11, c, s, Role::Client, t, req.as_bytes()));
                events.push(ev(2, SocketOp::Recv, 22, s, c, Role::Server, t + 10_000, req.as_bytes()));
                events.push(ev(2, SocketOp::Send, 22, s, c, Role::Server, t + d, resp.as_bytes()));
                events.push(ev(1, SocketOp::Recv, 11, c, s, Role::Client, t + d + 100_000, resp.as_bytes()));
                t += d + 1_000_000_000;
            }
            for mut e in events {
                p.process(&mut e);
                for (r, src, dst) in p.emitted_edges() {
                    feed.record(r, src, dst);
                }
            }
            p.tick(t + 2_000_000_000);
            for (r, src, dst) in p.emitted_edges() {
                feed.record(r, src, dst);
            }
            feed.tick(p.aggregator(), t0 + 2 * MINUTE_NS);
            let profile: Value = serde_json::from_str(PROFILE).unwrap();
            assert!(store.handle().profile(&profile));
            store.flush();
            let state = ApiState { pipeline: Arc::new(Mutex::new(p)), telemetry: Telemetry::new(), store: Some(store) };
            (Arc::new(state), dir)
        })
        .0
        .clone()
}

async fn get(path: &str) -> (StatusCode, String, String) {
    let app = router(state());
    let resp = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let code = resp.status();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, ctype, String::from_utf8_lossy(&body).into_owned())
}

async fn json(path: &str) -> Value {
    let (code, _, body) = get(path).await;
    assert_eq!(code, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[tokio::test]
async fn the_ui_is_served_from_the_binary() {
    let (code, ctype, body) = get("/").await;
    assert_eq!(code, StatusCode::OK);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(body.contains("<title>Kindling"), "{body}");
    for f in ["app.js", "util.js", "map.js", "requests.js", "profile.js", "app.css", "favicon.svg"] {
        let (code, ctype, body) = get(&format!("/ui/{f}")).await;
        assert_eq!(code, StatusCode::OK, "{f}");
        assert!(!body.is_empty() && !ctype.is_empty(), "{f}");
    }
    let (code, _, body) = get("/ui/nope.js").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("error"));
    let (code, _, body) = get("/api").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("/api/v1/ui/map"), "{body}");
}

#[tokio::test]
async fn map_live_and_from_the_store() {
    let live = json("/api/v1/ui/map?window=5m").await;
    assert_eq!(live["source"], "live");
    let hist = json("/api/v1/ui/map?window=1h").await;
    assert_eq!(hist["source"], "store");
    for t in [&live, &hist] {
        let e = &t["edges"][0];
        for f in ["src", "dst", "protocol", "dst_port", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "bytes_sent"] {
            assert!(e.get(f).is_some(), "edge field {f} missing: {t}");
        }
        assert_eq!(e["requests"], 3, "{t}");
        assert_eq!(e["errors"], 1, "{t}");
        assert!(t["nodes"].as_array().unwrap().iter().all(|n| n["id"].is_string() && n["name"].is_string()), "{t}");
    }
}

#[tokio::test]
async fn series_of_edges_and_nodes() {
    let topo = json("/api/v1/ui/map?window=1h").await;
    let e = &topo["edges"][0];
    let (src, dst, port) = (e["src"].as_str().unwrap(), e["dst"].as_str().unwrap(), e["dst_port"].as_u64().unwrap());
    let q = |w: &str| format!("/api/v1/ui/series?src={src}&dst={dst}&protocol=http&dst_port={port}&window={w}").replace(' ', "%20");
    let stored = json(&q("1h")).await;
    assert_eq!(stored["source"], "store");
    assert_eq!(stored["step_s"], 60);
    let pts = stored["points"].as_array().unwrap();
    assert!(pts.len() >= 60, "{stored}");
    assert_eq!(pts.iter().map(|p| p["requests"].as_u64().unwrap()).sum::<u64>(), 3);
    assert!(pts.iter().any(|p| p["p99_ms"].as_f64().is_some_and(|v| v > 800.0)), "{stored}");
    let live = json(&q("5m")).await;
    assert_eq!(live["source"], "live");
    assert_eq!(live["step_s"], 10);
    assert_eq!(live["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum::<u64>(), 3);
    for w in ["5m", "24h"] {
        let n = json(&format!("/api/v1/ui/series?node={dst}&direction=inbound&window={w}").replace(' ', "%20")).await;
        let total: u64 = n["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(total, 3, "{w}: {n}");
    }
}

#[tokio::test]
async fn stored_requests_with_their_edge() {
    let all = json("/api/v1/ui/requests").await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 6, "3 calls seen from both ends: {all:?}");
    let r = &all[0];
    for f in ["id", "src_node", "dst_node", "start_ts_ns", "end_ts_ns", "protocol", "side", "endpoint", "status", "is_error", "is_slow", "duration_ns", "breakdown", "trace_id"] {
        assert!(r.get(f).is_some(), "field {f} missing: {r}");
    }
    assert!(all.windows(2).all(|w| w[0]["end_ts_ns"].as_u64() >= w[1]["end_ts_ns"].as_u64()), "newest first");
    let (src, dst) = (r["src_node"].as_str().unwrap(), r["dst_node"].as_str().unwrap());
    assert!(src.contains(':') && dst.contains(':') && src != dst, "the pipeline names the edge: {src} -> {dst}");
    let topo = json("/api/v1/ui/map?window=5m").await;
    assert_eq!((topo["edges"][0]["src"].as_str(), topo["edges"][0]["dst"].as_str()), (Some(src), Some(dst)), "the map's edge");
    let edge = json(&format!("/api/v1/ui/requests?src={src}&dst={dst}&sort=slowest&limit=2").replace(' ', "%20")).await;
    assert_eq!(edge.as_array().unwrap().len(), 2);
    assert_eq!(edge[0]["status"], "500", "slowest first: {edge}");
    let errs = json("/api/v1/ui/requests?error=true&side=client").await;
    assert_eq!(errs.as_array().unwrap().len(), 1);
    let slow = json("/api/v1/ui/requests?slow=true&protocol=http").await;
    assert_eq!(slow.as_array().unwrap().len(), 2, "the 900 ms call, both ends: {slow}");
    let by_trace = json("/api/v1/ui/requests?trace_id=4bf92f3577b34da6a3ce929d0e0e4731").await;
    assert_eq!(by_trace.as_array().unwrap().len(), 2);
    let by_endpoint = json("/api/v1/ui/requests?endpoint=USERS").await;
    assert_eq!(by_endpoint.as_array().unwrap().len(), 6);
    let node = json(&format!("/api/v1/ui/requests?node={dst}&window=1h").replace(' ', "%20")).await;
    assert_eq!(node.as_array().unwrap().len(), 6);
    let none = json("/api/v1/ui/requests?window=1s&since=1").await;
    assert_eq!(none.as_array().unwrap().len(), 0, "the window bounds `since`");
    let id = r["id"].as_i64().unwrap();
    let one = json(&format!("/api/v1/ui/requests/{id}")).await;
    assert_eq!(one["id"], id);
    assert_eq!(one["endpoint"], r["endpoint"]);
    let (code, _, body) = get("/api/v1/ui/requests/999999").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn status_names_the_store_and_its_contents() {
    let s = json("/api/v1/ui/status").await;
    let st = &s["store"];
    assert_eq!(st["requests"], 6, "{s}");
    assert_eq!(st["edge_minutes"], 1, "{s}");
    assert_eq!(st["profiles"], 1, "{s}");
    for f in ["path", "size_bytes", "max_size_bytes", "retention_s", "queue_full", "sampled_out", "write_errors", "written"] {
        assert!(st.get(f).is_some(), "{f}: {s}");
    }
    assert!(s["now_ns"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn kept_trace_profiles() {
    let fixture: Value = serde_json::from_str(PROFILE).unwrap();
    let list = json("/api/v1/profiles").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let p = &list[0];
    for f in ["id", "trace_id", "endpoint", "duration_ns", "kept_because", "start_ts_ns"] {
        assert!(p.get(f).is_some(), "{f}: {p}");
    }
    assert_eq!(p["endpoint"], "/orders/{id}");
    let tid = fixture["trace_id"].as_str().unwrap();
    assert_eq!(json(&format!("/api/v1/profiles?trace_id={tid}")).await.as_array().unwrap().len(), 1);
    assert_eq!(json("/api/v1/profiles?trace_id=nope").await.as_array().unwrap().len(), 0);
    assert_eq!(json("/api/v1/profiles?kept_because=error").await.as_array().unwrap().len(), 0);
    assert_eq!(json("/api/v1/profiles?kept_because=slow&endpoint=/orders/%7Bid%7D").await.as_array().unwrap().len(), 1);
    assert_eq!(json("/api/v1/profiles?since=18446744073709551615").await.as_array().unwrap().len(), 0);
    let full = json("/api/v1/profiles/prof-1").await;
    assert_eq!(full, fixture, "kept as given");
    let (code, _, body) = get("/api/v1/profiles/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("nope"));
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_parameter_named() {
    for (path, param) in [
        ("/api/v1/ui/map?window=forever", "window"),
        ("/api/v1/ui/map?window=0s", "window"),
        ("/api/v1/ui/map?window=90d", "window"),
        ("/api/v1/ui/series?node=a&src=b", "node"),
        ("/api/v1/ui/series?node=a&direction=up", "direction"),
        ("/api/v1/ui/series?src=a", "dst"),
        ("/api/v1/ui/series?dst=a", "src"),
        ("/api/v1/ui/series?src=a&dst=b", "protocol"),
        ("/api/v1/ui/series?src=a&dst=b&protocol=gopher&dst_port=1", "protocol"),
        ("/api/v1/ui/series?src=a&dst=b&protocol=http", "dst_port"),
        ("/api/v1/ui/series?src=a&dst=b&protocol=http&dst_port=70000", "dst_port"),
        ("/api/v1/ui/series?node=a&window=-5m", "window"),
        ("/api/v1/ui/requests?side=up", "side"),
        ("/api/v1/ui/requests?protocol=gopher", "protocol"),
        ("/api/v1/ui/requests?slow=maybe", "slow"),
        ("/api/v1/ui/requests?error=2", "error"),
        ("/api/v1/ui/requests?sort=fastest", "sort"),
        ("/api/v1/ui/requests?limit=0", "limit"),
        ("/api/v1/ui/requests?limit=5000", "limit"),
        ("/api/v1/ui/requests?since=yesterday", "since"),
        ("/api/v1/ui/requests?until=-1", "until"),
        ("/api/v1/ui/requests?window=soon", "window"),
        ("/api/v1/ui/requests/abc", "id"),
        ("/api/v1/ui/requests/99999999999999999999999", "id"),
        ("/api/v1/profiles?kept_because=boredom", "kept_because"),
        ("/api/v1/profiles?limit=0", "limit"),
        ("/api/v1/profiles?since=now", "since"),
    ] {
        let (code, _, body) = get(path).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert!(v["error"].as_str().unwrap().contains(&format!("`{param}`")), "{path}: {body}");
    }
    let long = format!("/api/v1/profiles/{}", "x".repeat(300));
    let (code, _, body) = get(&long).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn without_a_store_the_ui_routes_say_so() {
    let p = Pipeline::new(PipelineConfig::default(), Box::new(NoLookup));
    let state = Arc::new(ApiState { pipeline: Arc::new(Mutex::new(p)), telemetry: Telemetry::new(), store: None });
    let app = router(state);
    for (path, code) in [
        ("/api/v1/ui/requests", StatusCode::SERVICE_UNAVAILABLE),
        ("/api/v1/ui/map?window=1h", StatusCode::SERVICE_UNAVAILABLE),
        ("/api/v1/ui/map?window=1m", StatusCode::OK),
        ("/api/v1/profiles", StatusCode::OK),
        ("/api/v1/ui/status", StatusCode::OK),
    ] {
        let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), code, "{path}");
    }
}
