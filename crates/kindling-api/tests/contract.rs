//! API contract: every endpoint of PRODUCT.md answers with the documented
//! shape, and bad parameters are a 400 naming the parameter, never a 500.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kindling_api::{router, ApiState};
use kindling_events::model::*;
use kindling_pipeline::{Pipeline, PipelineConfig};
use kindling_telemetry::Telemetry;
use kindling_workloads::NoLookup;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// A pipeline that has seen one HTTP exchange from both ends.
fn state() -> Arc<ApiState> {
    let mut p = Pipeline::new(PipelineConfig::default(), Box::new(NoLookup));
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
    let req = b"GET /users/7 HTTP/1.1\r\nHost: x\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    let resp = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
    let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8080");
    let t0 = 1_700_000_000_000_000_000;
    for mut e in [
        ev(2, SocketOp::Accept, 22, s, c, Role::Server, t0 - 1000, b""),
        ev(1, SocketOp::Send, 11, c, s, Role::Client, t0, req),
        ev(2, SocketOp::Recv, 22, s, c, Role::Server, t0 + 10_000, req),
        ev(2, SocketOp::Send, 22, s, c, Role::Server, t0 + 900_000_000, resp),
        ev(1, SocketOp::Recv, 11, c, s, Role::Client, t0 + 900_100_000, resp),
    ] {
        p.process(&mut e);
    }
    Arc::new(ApiState { pipeline: Arc::new(Mutex::new(p)), telemetry: Telemetry::new(), store: None })
}

async fn get(path: &str) -> (StatusCode, String) {
    let app = router(state());
    let resp = app.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn health_and_metrics() {
    assert_eq!(get("/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (code, text) = get("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(text.contains("kindling_entity_request_total{"), "{text}");
    assert!(text.contains("kindling_topology_request_total{"), "{text}");
    assert!(text.contains("kindling_entity_request_duration_seconds_bucket{"), "{text}");
}

#[tokio::test]
async fn requests_shape_and_filters() {
    let (code, body) = get("/api/v1/requests").await;
    assert_eq!(code, StatusCode::OK);
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let r = &all[0];
    for field in [
        "start_ts_ns", "end_ts_ns", "protocol", "side", "pid", "tid", "comm", "src", "dst", "method", "endpoint",
        "status", "is_error", "is_slow", "duration_ns", "breakdown", "request_bytes", "response_bytes", "trace_id",
        "trace_type",
    ] {
        assert!(r.get(field).is_some(), "field {field} missing: {r}");
    }
    for b in ["connect_ns", "request_sent_ns", "waiting_ttfb_ns", "content_download_ns"] {
        assert!(r["breakdown"].get(b).is_some(), "breakdown.{b} missing");
    }
    let (_, body) = get("/api/v1/requests?side=server&protocol=http&slow=true&limit=5").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["side"], "server");
    assert_eq!(v[0]["endpoint"], "/users/{id}");
    assert_eq!(v[0]["status"], "500");
    assert_eq!(v[0]["is_slow"], true);
    assert_eq!(v[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let (_, body) = get("/api/v1/requests?protocol=redis").await;
    assert_eq!(body, "[]");
}

#[tokio::test]
async fn topology_shape() {
    let (code, body) = get("/api/v1/topology?window=60s").await;
    assert_eq!(code, StatusCode::OK);
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    let edges = t["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "one call seen from both ends is one edge: {t}");
    for f in ["src", "dst", "protocol", "dst_port", "requests", "errors", "rps", "p50_ms", "p95_ms", "p99_ms", "bytes_sent", "bytes_received"] {
        assert!(edges[0].get(f).is_some(), "edge field {f} missing: {t}");
    }
    assert_eq!(edges[0]["requests"], 1);
    assert_eq!(edges[0]["errors"], 1);
    for n in t["nodes"].as_array().unwrap() {
        for f in ["id", "name", "kind"] {
            assert!(n.get(f).is_some(), "node field {f} missing: {n}");
        }
    }
}

#[tokio::test]
async fn bad_parameters_are_400_with_the_parameter_named() {
    for (path, param) in [
        ("/api/v1/requests?side=sideways", "side"),
        ("/api/v1/requests?protocol=gopher", "protocol"),
        ("/api/v1/requests?slow=maybe", "slow"),
        ("/api/v1/requests?error=2", "error"),
        ("/api/v1/requests?limit=0", "limit"),
        ("/api/v1/requests?limit=abc", "limit"),
        ("/api/v1/requests?limit=99999999999999999999999", "limit"),
        ("/api/v1/requests?since=yesterday", "since"),
        ("/api/v1/topology?window=forever", "window"),
        ("/api/v1/topology?window=0s", "window"),
        ("/api/v1/topology?window=100h", "window"),
    ] {
        let (code, body) = get(path).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: {body}"));
        assert!(v["error"].as_str().unwrap().contains(&format!("`{param}`")), "{path}: {body}");
    }
    let (code, body) = get("/api/v1/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
}
