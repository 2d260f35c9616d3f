mod common;

use common::*;
use kindling_aggregate::{AggregateConfig, Aggregator, Direction, Endpoint, LATENCY_RELATIVE_ERROR};
use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};

fn nginx() -> Endpoint {
    ep("systemd_service:nginx", "10.0.0.2")
}

fn curl() -> Endpoint {
    ep("process:curl", "10.0.0.1")
}

fn call(status: &str, d: u64, ts: u64) -> RequestRecord {
    rec(Side::Client, "/", status, d, ts)
}

fn nearest_rank(sorted: &[u64], q: f64) -> f64 {
    let k = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[k - 1] as f64
}

#[test]
fn edge_stats_are_exact() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    for i in 0..10u64 {
        let mut r = call(if i < 2 { "500" } else { "200" }, (i + 1) * MS, (5 + 5 * i) * SEC);
        r.is_error = i < 2;
        r.is_slow = i >= 7;
        r.request_bytes = 100 + i;
        r.response_bytes = 1000;
        a.record(&r, &c, &s, true);
    }
    let py = ep("process:python3 orders_api.py", "10.0.0.3");
    a.record(&call("200", 7 * MS, 30 * SEC), &py, &s, true);
    // Not an edge: not on the map.
    a.record(&rec(Side::Server, "/", "200", MS, 30 * SEC), &c, &ep("process:other", "10.0.0.9"), false);

    let t = a.topology(60 * SEC, 60 * SEC);
    assert_eq!(t.window_s, 60.0);
    assert_eq!(t.edges.len(), 2);
    assert_eq!(
        t.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        vec!["process:curl", "process:python3 orders_api.py", "systemd_service:nginx"]
    );
    let e = t.edges.iter().find(|e| e.src == "process:curl").unwrap();
    assert_eq!((e.dst.as_str(), e.protocol, e.dst_port), ("systemd_service:nginx", Protocol::Http, 8080));
    assert_eq!((e.requests, e.errors, e.slow), (10, 2, 3));
    assert_eq!(e.error_rate, 0.2);
    assert!((e.rps - 10.0 / 60.0).abs() < 1e-12);
    assert_eq!(e.bytes_sent, 1045);
    assert_eq!(e.bytes_received, 10_000);
    assert!((e.avg_ms - 5.5).abs() < 1e-9);
    assert_eq!(e.max_ms, 10.0);
    // Durations 1..=10 ms: nearest-rank p50 = 5 ms, p95 = p99 = 10 ms.
    assert!((e.p50_ms - 5.0).abs() / 5.0 <= LATENCY_RELATIVE_ERROR, "{}", e.p50_ms);
    assert!((e.p95_ms - 10.0).abs() / 10.0 <= LATENCY_RELATIVE_ERROR, "{}", e.p95_ms);
    assert!((e.p99_ms - 10.0).abs() / 10.0 <= LATENCY_RELATIVE_ERROR, "{}", e.p99_ms);
    let n = t.nodes.iter().find(|n| n.id == "process:python3 orders_api.py").unwrap();
    assert_eq!((n.name.as_str(), n.kind.as_str(), n.ip.as_str()), ("python3 orders_api.py", "process", "10.0.0.3"));
}

#[test]
fn percentiles_within_stated_error() {
    let mut rng = Rng(7);
    // Several shapes and sizes, from one sample to many per bucket.
    type Gen = fn(&mut Rng) -> u64;
    let shapes: [(&str, Gen); 4] = [
        ("log-uniform 1us..100s", |r| (10f64.powf(3.0 + 8.0 * r.unit())) as u64),
        ("around 5ms", |r| 4 * MS + (r.unit() * r.unit() * 2e6) as u64),
        ("bimodal", |r| if r.unit() < 0.1 { 800 * MS + r.next() % (50 * MS) } else { 2 * MS + r.next() % MS }),
        ("constant", |_| 12_345_678),
    ];
    for (name, gen) in shapes {
        for n in [1usize, 2, 7, 100, 5000] {
            let mut a = Aggregator::new(AggregateConfig::default());
            let (c, s) = (curl(), nginx());
            let mut ds = Vec::with_capacity(n);
            for i in 0..n {
                let d = gen(&mut rng).max(LATENCY_MIN);
                ds.push(d);
                // Spread over the window's buckets.
                a.record(&call("200", d, SEC + (i as u64 % 59) * SEC), &c, &s, true);
            }
            ds.sort_unstable();
            let t = a.topology(60 * SEC, 60 * SEC);
            let e = &t.edges[0];
            assert_eq!(e.requests as usize, n);
            for (q, got) in [(0.5, e.p50_ms), (0.95, e.p95_ms), (0.99, e.p99_ms), (1.0, e.max_ms)] {
                let want = nearest_rank(&ds, q) / 1e6;
                let err = (got - want).abs() / want;
                assert!(err <= LATENCY_RELATIVE_ERROR, "{name} n={n} q={q}: got {got} want {want} err {err}");
            }
        }
    }
}

const LATENCY_MIN: u64 = kindling_aggregate::LATENCY_MIN_NS;

#[test]
fn window_selects_buckets() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    let py = ep("process:py", "10.0.0.3");
    a.record(&call("200", MS, 100 * SEC), &c, &s, true);
    a.record(&call("200", MS, 500 * SEC), &py, &s, true);
    a.record(&call("200", MS, 503 * SEC), &py, &s, true);

    let t = a.topology(505 * SEC, 60 * SEC);
    assert_eq!(t.edges.len(), 1);
    assert_eq!(t.edges[0].src, "process:py");
    assert_eq!(t.edges[0].requests, 2);
    // Buckets [440 s, 510 s) cover 65 s up to now.
    assert_eq!(t.window_s, 65.0);
    assert_eq!(t.nodes.len(), 2);
    assert!(t.nodes.iter().all(|n| n.id != "process:curl"));

    let t = a.topology(505 * SEC, 15 * 60 * SEC);
    assert_eq!(t.edges.len(), 2);
    assert_eq!(t.nodes.len(), 3);
    // A window longer than the retention is cut to the ring (90 buckets).
    let t = a.topology(505 * SEC, 3600 * SEC);
    assert_eq!(t.window_s, 505.0);
    // Nothing in the window.
    let t = a.topology(900 * SEC, 60 * SEC);
    assert!(t.edges.is_empty() && t.nodes.is_empty());
}

#[test]
fn idle_edges_are_evicted() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    let py = ep("process:py", "10.0.0.3");
    a.record(&call("200", MS, 100 * SEC), &c, &s, true);
    a.record(&call("200", MS, 100 * SEC), &py, &s, true);
    assert_eq!((a.stats().edges, a.stats().nodes), (2, 3));
    // Only py keeps calling; 15 min later curl's edge and node are gone.
    for t in (110..=1011).step_by(10) {
        a.record(&call("200", MS, t * SEC), &py, &s, true);
    }
    assert_eq!((a.stats().edges, a.stats().nodes), (1, 2));
    let t = a.topology(1011 * SEC, 15 * 60 * SEC);
    assert_eq!(t.edges.len(), 1);
    assert_eq!(t.edges[0].requests, 90, "{:?}", t.edges[0]);
    // A returning client starts afresh.
    a.record(&call("200", MS, 1012 * SEC), &c, &s, true);
    let t = a.topology(1012 * SEC, 60 * SEC);
    assert_eq!(t.edges.iter().find(|e| e.src == "process:curl").unwrap().requests, 1);
    a.evict(1012 * SEC + 901 * SEC);
    assert_eq!((a.stats().edges, a.stats().nodes), (0, 0));
}

#[test]
fn late_records() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    a.record(&call("200", MS, 1000 * SEC), &c, &s, true);
    // Older than the ring: metrics only.
    a.record(&call("200", MS, 90 * SEC), &c, &s, true);
    assert_eq!(a.stats().late_records, 1);
    // Late but within the ring: placed in its bucket.
    a.record(&call("500", 3 * MS, 950 * SEC), &c, &s, true);
    a.record(&call("200", 2 * MS, 955 * SEC), &c, &s, true);
    let t = a.topology(1000 * SEC, 15 * 60 * SEC);
    assert_eq!(t.edges[0].requests, 3);
    let t = a.topology(960 * SEC, 10 * SEC);
    assert_eq!(t.edges[0].requests, 2);
    let mut x = String::new();
    a.render_prometheus(&mut x);
    assert_eq!(Exposition::parse(&x).sum("kindling_topology_request_total"), 4.0);
}

#[test]
fn edge_and_node_series() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    let py = ep("process:py", "10.0.0.3");
    // Buckets of 10 s: 2 calls at 105 s, 1 error at 115 s, 3 calls at 135 s.
    a.record(&call("200", MS, 105 * SEC), &c, &s, true);
    a.record(&call("200", 4 * MS, 106 * SEC), &c, &s, true);
    let mut r = call("500", 2 * MS, 115 * SEC);
    r.is_error = true;
    a.record(&r, &c, &s, true);
    for _ in 0..3 {
        a.record(&call("200", 8 * MS, 135 * SEC), &c, &s, true);
    }
    a.record(&call("200", 16 * MS, 135 * SEC), &py, &s, true);

    let p = a.edge_series("process:curl", "systemd_service:nginx", Protocol::Http, 8080, 140 * SEC, 40 * SEC, 10 * SEC);
    let got: Vec<(u64, u64, u64)> = p.iter().map(|p| (p.ts_ns / SEC, p.requests, p.errors)).collect();
    assert_eq!(got, vec![(100, 2, 0), (110, 1, 1), (120, 0, 0), (130, 3, 0), (140, 0, 0)]);
    assert!(p[2].p99_ms.is_none());
    assert!((p[3].p99_ms.unwrap() - 8.0).abs() < 1e-9);
    assert!((p[0].p99_ms.unwrap() - 4.0).abs() / 4.0 <= LATENCY_RELATIVE_ERROR);

    // 20 s steps, aligned to multiples of 20 s.
    let p = a.edge_series("process:curl", "systemd_service:nginx", Protocol::Http, 8080, 140 * SEC, 40 * SEC, 20 * SEC);
    let got: Vec<(u64, u64)> = p.iter().map(|p| (p.ts_ns / SEC, p.requests)).collect();
    assert_eq!(got, vec![(100, 3), (120, 3), (140, 0)]);

    let p = a.node_series("systemd_service:nginx", Direction::Inbound, 140 * SEC, 40 * SEC, 40 * SEC);
    assert_eq!(p.iter().map(|p| p.requests).sum::<u64>(), 7);
    assert_eq!(p.iter().map(|p| p.errors).sum::<u64>(), 1);
    let p = a.node_series("process:py", Direction::Outbound, 140 * SEC, 40 * SEC, 40 * SEC);
    assert_eq!(p.iter().map(|p| p.requests).sum::<u64>(), 1);
    let p = a.node_series("process:py", Direction::Inbound, 140 * SEC, 40 * SEC, 40 * SEC);
    assert_eq!(p.iter().map(|p| p.requests).sum::<u64>(), 0);
    // Unknown edge or node: empty steps.
    let p = a.edge_series("process:nope", "systemd_service:nginx", Protocol::Http, 8080, 140 * SEC, 40 * SEC, 10 * SEC);
    assert_eq!(p.len(), 5);
    assert!(p.iter().all(|p| p.requests == 0));
    assert!(a.node_series("nope", Direction::Inbound, 140 * SEC, 40 * SEC, 10 * SEC).iter().all(|p| p.requests == 0));
}

#[test]
fn edges_are_keyed_by_protocol_and_port() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    a.record(&call("200", MS, SEC), &c, &s, true);
    let mut r = call("OK", MS, SEC);
    r.protocol = Protocol::Redis;
    r.dst = "10.0.0.2:6379".parse().unwrap();
    a.record(&r, &c, &s, true);
    let mut r = call("200", MS, SEC);
    r.dst = "10.0.0.2:8443".parse().unwrap();
    a.record(&r, &c, &s, true);
    let t = a.topology(2 * SEC, 60 * SEC);
    let keys: Vec<(Protocol, u16)> = t.edges.iter().map(|e| (e.protocol, e.dst_port)).collect();
    assert_eq!(keys, vec![(Protocol::Http, 8080), (Protocol::Http, 8443), (Protocol::Redis, 6379)]);
    assert_eq!(t.nodes.len(), 2);
}

#[test]
fn node_display_follows_the_latest_record() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let s = nginx();
    let mut c = curl();
    a.record(&call("200", MS, SEC), &c, &s, true);
    c.name = "curl (renamed)".into();
    c.labels = vec![("pod".into(), "p-1".into())];
    // Display fields are refreshed once per time bucket (10 s).
    a.record(&call("200", MS, 2 * SEC), &c, &s, true);
    assert_eq!(a.topology(3 * SEC, 60 * SEC).nodes.iter().find(|n| n.id == "process:curl").unwrap().name, "curl");
    a.record(&call("200", MS, 12 * SEC), &c, &s, true);
    let t = a.topology(13 * SEC, 60 * SEC);
    let n = t.nodes.iter().find(|n| n.id == "process:curl").unwrap();
    assert_eq!(n.name, "curl (renamed)");
    assert_eq!(n.labels.get("pod").map(String::as_str), Some("p-1"));
}

#[test]
fn max_edges_bounds_the_map() {
    let mut a = Aggregator::new(AggregateConfig { max_edges: 2, ..Default::default() });
    let s = nginx();
    for i in 0..3 {
        a.record(&call("200", MS, SEC), &ep(&format!("process:c{i}"), "10.0.0.1"), &s, true);
    }
    assert_eq!(a.stats().edges, 2);
    assert_eq!(a.stats().edges_dropped, 1);
    assert_eq!(a.topology(2 * SEC, 60 * SEC).edges.len(), 2);
    let mut x = String::new();
    a.render_prometheus(&mut x);
    // Metrics still count the call.
    assert_eq!(Exposition::parse(&x).sum("kindling_topology_request_total"), 3.0);
}

#[test]
fn json_shape() {
    let mut a = Aggregator::new(AggregateConfig::default());
    a.record(&call("200", MS, SEC), &curl(), &nginx(), true);
    let v = serde_json::to_value(a.topology(2 * SEC, 60 * SEC)).unwrap();
    let node = &v["nodes"][0];
    for k in ["id", "name", "kind", "workload_kind", "workload_name", "container_id", "ip"] {
        assert!(node.get(k).is_some(), "node.{k}");
    }
    assert!(node.get("labels").is_none(), "empty labels are skipped");
    let edge = v["edges"][0].as_object().unwrap();
    for k in [
        "src",
        "dst",
        "protocol",
        "dst_port",
        "requests",
        "errors",
        "error_rate",
        "slow",
        "rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "bytes_sent",
        "bytes_received",
    ] {
        assert!(edge.contains_key(k), "edge.{k}");
    }
    for k in ["retransmits", "rtt_ms", "resets", "connect_failures"] {
        assert!(!edge.contains_key(k), "edge.{k} must be skipped when None");
    }
    assert_eq!(edge["protocol"], "http");
    assert_eq!(edge["dst_port"], 8080);
    // And back.
    let t: kindling_aggregate::Topology = serde_json::from_value(v).unwrap();
    assert_eq!(t.edges[0].retransmits, None);
}

#[test]
fn one_bad_timestamp_does_not_evict_everything() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    a.record(&call("200", MS, 100 * SEC), &c, &s, true);
    // A record from the far future, then normal ones again.
    a.record(&call("200", MS, 1_000_000 * SEC), &ep("process:odd", "10.9.9.9"), &s, true);
    a.record(&call("200", MS, 2_000_000 * SEC), &c, &s, true);
    a.record(&call("200", MS, 101 * SEC), &c, &s, true);
    assert_eq!(a.stats().edges, 2);
    assert_eq!(a.stats().late_records, 2);
    // curl's edge is not pushed into the future: its buckets still take records.
    let t = a.topology(102 * SEC, 60 * SEC);
    assert_eq!(t.edges.len(), 1);
    assert_eq!(t.edges[0].requests, 2);
    // A real jump (two records agree) is believed: the idle edges go.
    a.record(&call("200", MS, 5000 * SEC), &ep("process:new", "10.9.9.8"), &s, true);
    assert_eq!(a.stats().edges, 3);
    a.record(&call("200", MS, 5001 * SEC), &ep("process:new", "10.9.9.8"), &s, true);
    assert_eq!(a.stats().edges, 1);
    assert_eq!(a.topology(5002 * SEC, 60 * SEC).edges[0].requests, 1);
}

#[test]
fn aggregator_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Aggregator>();
}

#[test]
fn tiny_windows_have_sane_rates() {
    let mut a = Aggregator::new(AggregateConfig::default());
    a.record(&call("200", MS, 100 * SEC + 1), &curl(), &nginx(), true);
    for w in [0, 1, SEC] {
        let t = a.topology(100 * SEC + 2, w);
        assert_eq!(t.edges[0].requests, 1);
        assert!(t.window_s >= 1.0 && t.edges[0].rps <= 1.0, "{w}: {t:?}");
    }
}
