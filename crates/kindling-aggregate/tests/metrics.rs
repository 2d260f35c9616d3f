mod common;

use common::*;
use kindling_aggregate::{AggregateConfig, Aggregator, ConfigError, Endpoint, OVERFLOW};
use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};
use std::io::Write;
use std::process::{Command, Stdio};

fn render(a: &Aggregator) -> Exposition {
    let mut s = String::new();
    a.render_prometheus(&mut s);
    Exposition::parse(&s)
}

fn nginx() -> Endpoint {
    ep("systemd_service:nginx", "10.0.0.2")
}

fn curl() -> Endpoint {
    ep("process:curl", "10.0.0.1")
}

fn entity(req: &str, resp: &str, extra: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    let mut l = labels(&[
        ("protocol", "http"),
        ("ip", "10.0.0.2"),
        ("port", "8080"),
        ("workload_kind", "systemd_service"),
        ("workload_name", "nginx"),
        ("container_id", ""),
        ("request_content", req),
    ]);
    if !resp.is_empty() {
        l.insert("response_content".into(), resp.into());
    }
    for (k, v) in extra {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

fn topo(status: &str, extra: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    let mut l = labels(&[
        ("src_workload_kind", "process"),
        ("src_workload_name", "curl"),
        ("src_container_id", ""),
        ("src_ip", "10.0.0.1"),
        ("dst_workload_kind", "systemd_service"),
        ("dst_workload_name", "nginx"),
        ("dst_container_id", ""),
        ("dst_ip", "10.0.0.2"),
        ("dst_port", "8080"),
        ("protocol", "http"),
    ]);
    if !status.is_empty() {
        l.insert("status_code".into(), status.into());
    }
    for (k, v) in extra {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

fn server(endpoint: &str, status: &str, d: u64, ts: u64, slow: bool) -> RequestRecord {
    let mut r = rec(Side::Server, endpoint, status, d, ts);
    r.is_slow = slow;
    r
}

#[test]
fn entity_counters_and_histogram_are_exact() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    let mut r = server("/users/{id}", "200", 2 * MS, SEC, false);
    r.request_bytes = 120;
    r.response_bytes = 3000;
    a.record(&r, &c, &s, false);
    a.record(&server("/users/{id}", "200", 3 * MS, SEC, true), &c, &s, false);
    a.record(&server("/users/{id}", "500", 10 * MS, SEC, false), &c, &s, false);
    a.record(&server("/health", "200", 500_000, SEC, false), &c, &s, false);
    // Client-side records never reach the entity families.
    a.record(&rec(Side::Client, "/users/{id}", "200", 4 * MS, SEC), &c, &s, false);

    let x = render(&a);
    let total = "kindling_entity_request_total";
    let with_slow = |req, resp, slow| entity(req, resp, &[("is_slow", slow)]);
    assert_eq!(x.get(total, &with_slow("/users/{id}", "200", "false")), Some(1.0));
    assert_eq!(x.get(total, &with_slow("/users/{id}", "200", "true")), Some(1.0));
    assert_eq!(x.get(total, &with_slow("/users/{id}", "500", "false")), Some(1.0));
    assert_eq!(x.get(total, &with_slow("/users/{id}", "500", "true")), None);
    assert_eq!(x.get(total, &with_slow("/health", "200", "false")), Some(1.0));
    assert_eq!(x.series(total).len(), 4);
    assert_eq!(x.sum(total), 4.0);

    let dur = "kindling_entity_request_duration_nanoseconds_total";
    assert_eq!(x.get(dur, &entity("/users/{id}", "200", &[])), Some(5_000_000.0));
    assert_eq!(x.get(dur, &entity("/users/{id}", "500", &[])), Some(10_000_000.0));
    assert_eq!(x.get(dur, &entity("/health", "200", &[])), Some(500_000.0));
    let send = "kindling_entity_request_send_bytes_total";
    let recv = "kindling_entity_request_receive_bytes_total";
    assert_eq!(x.get(send, &entity("/users/{id}", "200", &[])), Some(4000.0));
    assert_eq!(x.get(recv, &entity("/users/{id}", "200", &[])), Some(220.0));
    assert_eq!(x.get(send, &entity("/users/{id}", "500", &[])), Some(1000.0));
    assert_eq!(x.get(recv, &entity("/health", "200", &[])), Some(100.0));

    let h = "kindling_entity_request_duration_seconds";
    let b = |req, le| x.get(&format!("{h}_bucket"), &entity(req, "", &[("le", le)]));
    // /users/{id}: 2 ms, 3 ms, 10 ms.
    for (le, want) in [("0.001", 0.0), ("0.0025", 1.0), ("0.005", 2.0), ("0.01", 3.0), ("10", 3.0), ("+Inf", 3.0)] {
        assert_eq!(b("/users/{id}", le), Some(want), "le={le}");
    }
    for (le, want) in [("0.001", 1.0), ("0.0025", 1.0), ("+Inf", 1.0)] {
        assert_eq!(b("/health", le), Some(want), "le={le}");
    }
    assert_eq!(x.get(&format!("{h}_count"), &entity("/users/{id}", "", &[])), Some(3.0));
    let sum = x.get(&format!("{h}_sum"), &entity("/users/{id}", "", &[])).unwrap();
    assert!((sum - 0.015).abs() < 1e-12, "{sum}");
    assert_eq!(x.series(&format!("{h}_count")).len(), 2);

    // No topology series: no record was an edge.
    assert!(x.series("kindling_topology_request_total").is_empty());
    assert_eq!(a.series_overflow(), 0);
    assert_eq!(a.stats().records, 5);
}

#[test]
fn histogram_bucket_boundaries() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    for d in [0, MS, MS + 1, 20 * SEC, 10 * SEC] {
        a.record(&server("/", "200", d, SEC, false), &c, &s, false);
    }
    let x = render(&a);
    let h = "kindling_entity_request_duration_seconds";
    let b = |le| x.get(&format!("{h}_bucket"), &entity("/", "", &[("le", le)])).unwrap();
    // le is inclusive: exactly 1 ms is in the 0.001 bucket, 10 s in the 10 bucket.
    assert_eq!(b("0.001"), 2.0);
    assert_eq!(b("0.0025"), 3.0);
    assert_eq!(b("5"), 3.0);
    assert_eq!(b("10"), 4.0);
    assert_eq!(b("+Inf"), 5.0);
    let sum = x.get(&format!("{h}_sum"), &entity("/", "", &[])).unwrap();
    assert!((sum - 30.002000001).abs() < 1e-9, "{sum}");
}

#[test]
fn topology_counters_count_edges_only() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let (c, s) = (curl(), nginx());
    // The call seen from the client (an edge) and from the server (not one).
    let mut cl = rec(Side::Client, "/users/{id}", "200", 4 * MS, SEC);
    cl.request_bytes = 150;
    cl.response_bytes = 2500;
    a.record(&cl, &c, &s, true);
    a.record(&server("/users/{id}", "200", 3 * MS, SEC, false), &c, &s, false);
    // A server-side record whose client is not observed counts as an edge too.
    a.record(&server("/users/{id}", "404", MS, SEC, false), &c, &s, true);
    a.record(&rec(Side::Client, "/users/{id}", "200", 6 * MS, SEC), &c, &s, true);

    let x = render(&a);
    let t = "kindling_topology_request_total";
    assert_eq!(x.get(t, &topo("200", &[])), Some(2.0));
    assert_eq!(x.get(t, &topo("404", &[])), Some(1.0));
    assert_eq!(x.series(t).len(), 2);
    assert_eq!(x.get("kindling_topology_request_duration_nanoseconds_total", &topo("200", &[])), Some(10e6));
    assert_eq!(x.get("kindling_topology_request_request_bytes_total", &topo("200", &[])), Some(250.0));
    assert_eq!(x.get("kindling_topology_request_response_bytes_total", &topo("200", &[])), Some(3500.0));
    assert_eq!(x.get("kindling_topology_request_response_bytes_total", &topo("404", &[])), Some(1000.0));
    let h = "kindling_topology_request_duration_seconds";
    assert_eq!(x.get(&format!("{h}_count"), &topo("", &[])), Some(3.0));
    assert_eq!(x.get(&format!("{h}_bucket"), &topo("", &[("le", "0.001")])), Some(1.0));
    assert_eq!(x.get(&format!("{h}_bucket"), &topo("", &[("le", "0.005")])), Some(2.0));
    assert_eq!(x.get(&format!("{h}_bucket"), &topo("", &[("le", "0.01")])), Some(3.0));
    // The entity side saw the two server records.
    assert_eq!(x.sum("kindling_entity_request_total"), 2.0);

    let map = a.topology(2 * SEC, 60 * SEC);
    assert_eq!(map.edges.len(), 1);
    assert_eq!(map.edges[0].requests, 3);
}

#[test]
fn overflow_folds_and_keeps_totals_exact() {
    let cfg = AggregateConfig { max_series: 3, max_overflow_series: 2, ..AggregateConfig::default() };
    let mut a = Aggregator::new(cfg);
    let c = curl();
    let s = nginx();
    for i in 0..10 {
        a.record(&server(&format!("/p{i}"), "200", MS, SEC, false), &c, &s, false);
    }
    // 3 exact series, then everything folds into nginx's {overflow} series.
    let x = render(&a);
    let t = "kindling_entity_request_total";
    assert_eq!(x.series(t).len(), 4);
    assert_eq!(x.get(t, &entity(OVERFLOW, OVERFLOW, &[("is_slow", "false")])), Some(7.0));
    assert_eq!(x.sum(t), 10.0);
    assert_eq!(x.get("kindling_entity_request_duration_seconds_count", &entity(OVERFLOW, "", &[])), Some(7.0));
    assert_eq!(a.series_overflow(), 7);
    // Known series still count where they belong.
    a.record(&server("/p1", "200", MS, SEC, false), &c, &s, false);
    assert_eq!(a.series_overflow(), 7);

    // Other servers: one more {overflow} series (the second), then the catch-all.
    for (i, ip) in ["10.0.1.1", "10.0.1.2", "10.0.1.3"].iter().enumerate() {
        let other = ep(&format!("process:srv{i}"), ip);
        a.record(&server("/q", "200", MS, SEC, true), &c, &other, false);
    }
    let x = render(&a);
    assert_eq!(a.series_overflow(), 10);
    assert_eq!(x.sum(t), 14.0);
    let catch_all = labels(&[
        ("protocol", "http"),
        ("ip", OVERFLOW),
        ("port", OVERFLOW),
        ("workload_kind", OVERFLOW),
        ("workload_name", OVERFLOW),
        ("container_id", OVERFLOW),
        ("request_content", OVERFLOW),
        ("response_content", OVERFLOW),
        ("is_slow", "true"),
    ]);
    assert_eq!(x.get(t, &catch_all), Some(2.0));
    let st = a.stats();
    assert_eq!(st.entity_series, 3 + 2 + 1);
    assert_eq!(st.entity_histogram_series, 3 + 2 + 1);
    assert_eq!(x.sum("kindling_entity_request_duration_nanoseconds_total"), 14e6);
    assert_eq!(x.sum("kindling_entity_request_duration_seconds_count"), 14.0);

    // Topology: past the cap, calls fold into (any client -> server, {overflow} status).
    let mut b = Aggregator::new(AggregateConfig { max_series: 2, max_overflow_series: 1, ..Default::default() });
    for i in 0..6 {
        let client = ep(&format!("process:c{i}"), &format!("10.0.2.{i}"));
        b.record(&rec(Side::Client, "/", "200", MS, SEC), &client, &s, true);
    }
    let x = render(&b);
    let t = "kindling_topology_request_total";
    assert_eq!(x.series(t).len(), 3);
    assert_eq!(x.sum(t), 6.0);
    let folded = x.series(t).into_iter().find(|s| s.labels["src_ip"] == OVERFLOW).unwrap();
    assert_eq!(folded.value, 4.0);
    assert_eq!(folded.labels["dst_ip"], "10.0.0.2");
    assert_eq!(folded.labels["status_code"], OVERFLOW);
    assert_eq!(b.series_overflow(), 4);
    // The service map is not capped by max_series.
    assert_eq!(b.topology(SEC, 60 * SEC).edges.len(), 6);
}

#[test]
fn escaping_and_extra_labels() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let mut s = nginx();
    s.labels = vec![
        ("namespace".into(), "prod".into()),
        ("app.kubernetes.io/name".into(), "we\"ird\\".into()),
        ("ip".into(), "shadow".into()),
    ];
    let mut c = curl();
    c.labels = vec![("pod".into(), "curl-1\nx".into())];
    let weird = "/a\"b\\c\nd \u{e9}";
    a.record(&server(weird, "4\"0\\4", MS, SEC, false), &c, &s, true);
    let mut text = String::new();
    a.render_prometheus(&mut text);
    assert!(text.contains(r#"request_content="/a\"b\\c\nd é""#), "{text}");
    let x = Exposition::parse(&text);
    let e = &x.series("kindling_entity_request_total")[0].labels;
    assert_eq!(e["request_content"], weird);
    assert_eq!(e["response_content"], "4\"0\\4");
    assert_eq!(e["namespace"], "prod");
    assert_eq!(e["app_kubernetes_io_name"], "we\"ird\\");
    assert_eq!(e["ip"], "10.0.0.2");
    let t = &x.series("kindling_topology_request_total")[0].labels;
    assert_eq!(t["src_pod"], "curl-1\nx");
    assert_eq!(t["dst_namespace"], "prod");
    assert_eq!(t["dst_ip"], "10.0.0.2");
    assert_eq!(t["dst_app_kubernetes_io_name"], "we\"ird\\");
    assert_eq!(t["status_code"], "4\"0\\4");
}

/// A realistic mix for format checks.
fn busy() -> Aggregator {
    let mut a = Aggregator::new(AggregateConfig { max_series: 40, max_overflow_series: 4, ..Default::default() });
    let mut rng = Rng(42);
    let servers: Vec<Endpoint> = (0..5)
        .map(|i| {
            let mut e = ep(&format!("container:{i:012x}"), &format!("10.1.0.{i}"));
            e.container_id = format!("{i:012x}");
            e.labels = vec![("namespace".into(), "default".into()), ("pod".into(), format!("svc-{i}"))];
            e
        })
        .collect();
    let clients: Vec<Endpoint> = (0..4).map(|i| ep(&format!("process:client{i}"), &format!("10.2.0.{i}"))).collect();
    for n in 0..3000u64 {
        let s = &servers[(rng.next() % 5) as usize];
        let c = &clients[(rng.next() % 4) as usize];
        let status = ["200", "404", "500", "timeout"][(rng.next() % 4) as usize];
        let mut r = rec(Side::Server, &format!("/api/{}", rng.next() % 7), status, rng.next() % (3 * SEC), n * MS);
        r.protocol = [Protocol::Http, Protocol::Redis, Protocol::Mysql][(rng.next() % 3) as usize];
        r.is_slow = rng.unit() < 0.2;
        a.record(&r, c, s, n % 2 == 0);
        r.side = Side::Client;
        a.record(&r, c, s, true);
    }
    a
}

#[test]
fn format_is_valid_exposition() {
    let a = busy();
    let mut text = String::new();
    a.render_prometheus(&mut text);
    let x = Exposition::parse(&text);
    let want_types = [
        ("kindling_entity_request_total", "counter"),
        ("kindling_entity_request_duration_nanoseconds_total", "counter"),
        ("kindling_entity_request_send_bytes_total", "counter"),
        ("kindling_entity_request_receive_bytes_total", "counter"),
        ("kindling_entity_request_duration_seconds", "histogram"),
        ("kindling_topology_request_total", "counter"),
        ("kindling_topology_request_duration_nanoseconds_total", "counter"),
        ("kindling_topology_request_request_bytes_total", "counter"),
        ("kindling_topology_request_response_bytes_total", "counter"),
        ("kindling_topology_request_duration_seconds", "histogram"),
    ];
    assert_eq!(x.types.len(), want_types.len());
    for (n, t) in want_types {
        assert_eq!(x.types.get(n).map(String::as_str), Some(t), "{n}");
    }
    // 3000 server records, 4500 edges, whatever got folded.
    assert_eq!(x.sum("kindling_entity_request_total"), 3000.0);
    assert_eq!(x.sum("kindling_entity_request_duration_seconds_count"), 3000.0);
    assert_eq!(x.sum("kindling_topology_request_total"), 4500.0);
    assert_eq!(x.sum("kindling_topology_request_duration_seconds_count"), 4500.0);
    assert!(a.series_overflow() > 0);
    // Only request_total has is_slow.
    assert!(x
        .series("kindling_entity_request_duration_nanoseconds_total")
        .iter()
        .all(|s| !s.labels.contains_key("is_slow")));
    assert!(x.series("kindling_entity_request_total").iter().all(|s| s.labels.contains_key("is_slow")));
    // An empty aggregator renders headers only, still valid.
    let mut empty = String::new();
    Aggregator::new(AggregateConfig::default()).render_prometheus(&mut empty);
    assert_eq!(Exposition::parse(&empty).samples.len(), 0);
}

/// promtool 2.x lints the contract names `*_duration_nanoseconds_total`
/// ("use base unit seconds"); that lint (exit 3) is expected and allowed,
/// anything else (a parse error, another lint) fails.
#[test]
fn promtool_check_metrics() {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not found; skipping (apt-get install prometheus)");
        return;
    };
    let mut text = String::new();
    busy().render_prometheus(&mut text);
    // Weird values too.
    let mut a = Aggregator::new(AggregateConfig::default());
    let mut s = nginx();
    s.labels = vec![("app.kubernetes.io/name".into(), "x\"y\\z\n\tw".into())];
    let mut text2 = String::new();
    a.record(&server("/\"\\\n\r\t{}=,", "é", MS, SEC, true), &curl(), &s, true);
    a.render_prometheus(&mut text2);
    Exposition::parse(&text2);
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    check_promtool(out);

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text2.as_bytes()).unwrap();
    check_promtool(child.wait_with_output().unwrap());
}

fn check_promtool(out: std::process::Output) {
    let msgs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            for line in msgs.lines().filter(|l| !l.trim().is_empty()) {
                let ok = [
                    "kindling_entity_request_duration_nanoseconds_total",
                    "kindling_topology_request_duration_nanoseconds_total",
                ]
                .iter()
                .any(|n| line == format!("{n} use base unit \"seconds\" instead of \"nanoseconds\""));
                assert!(ok, "unexpected promtool problem: {line}\n{msgs}");
            }
        }
        code => panic!("promtool check metrics failed ({code:?}):\n{msgs}"),
    }
}

#[test]
fn idle_series_expire() {
    let cfg = AggregateConfig { series_idle_ttl_ns: 60 * SEC, ..Default::default() };
    let mut a = Aggregator::new(cfg);
    let (c, s) = (curl(), nginx());
    a.record(&server("/old", "200", MS, 10 * SEC, false), &c, &s, true);
    a.record(&server("/new", "200", MS, 50 * SEC, false), &c, &s, true);
    assert_eq!(a.stats().entity_series, 2);
    // Time advances through records: /old (last seen at 10 s) is gone at 100 s.
    a.record(&server("/new", "200", MS, 100 * SEC, false), &c, &s, true);
    let x = render(&a);
    let t = "kindling_entity_request_total";
    assert_eq!(x.series(t).len(), 1);
    assert_eq!(x.series(t)[0].labels["request_content"], "/new");
    assert_eq!(x.series(t)[0].value, 2.0);
    // The topology series (same labels for both) stayed alive.
    assert_eq!(x.sum("kindling_topology_request_total"), 3.0);
    a.evict(1001 * SEC);
    let st = a.stats();
    assert_eq!((st.entity_series, st.topology_series, st.label_sets, st.edges, st.nodes), (0, 0, 0, 0, 0));
    // TTL 0: never.
    let mut b = Aggregator::new(AggregateConfig { series_idle_ttl_ns: 0, ..Default::default() });
    b.record(&server("/old", "200", MS, 10 * SEC, false), &c, &s, false);
    b.evict(1_000_000 * SEC);
    assert_eq!(b.stats().entity_series, 1);
}

#[test]
fn histograms_can_be_disabled_and_buckets_configured() {
    let mut a = Aggregator::new(AggregateConfig { histograms: false, ..Default::default() });
    a.record(&server("/", "200", MS, SEC, false), &curl(), &nginx(), true);
    let mut text = String::new();
    a.render_prometheus(&mut text);
    assert!(!text.contains("_duration_seconds"));
    Exposition::parse(&text);

    let cfg = AggregateConfig { histogram_buckets_s: vec![0.5, f64::NAN, 0.1, -1.0, 0.1], ..Default::default() };
    assert!(matches!(cfg.validate(), Err(ConfigError::BadBucket(b)) if b.is_nan()));
    let mut a = Aggregator::new(cfg);
    assert_eq!(a.config().histogram_buckets_s, vec![0.1, 0.5]);
    a.record(&server("/", "200", 200 * MS, SEC, false), &curl(), &nginx(), false);
    let x = render(&a);
    let h = "kindling_entity_request_duration_seconds_bucket";
    let les: Vec<&str> = x.series(h).iter().map(|s| s.labels["le"].as_str()).collect();
    assert_eq!(les, vec!["0.1", "0.5", "+Inf"]);
    assert_eq!(x.get(h, &entity("/", "", &[("le", "0.5")])), Some(1.0));
}

#[test]
fn config_validation() {
    assert_eq!(AggregateConfig::default().validate(), Ok(()));
    let bad = AggregateConfig { histogram_buckets_s: vec![1.0, 0.5], ..Default::default() };
    assert_eq!(bad.validate(), Err(ConfigError::UnsortedBuckets));
    let bad = AggregateConfig { histogram_buckets_s: vec![-1.0], ..Default::default() };
    assert_eq!(bad.validate(), Err(ConfigError::BadBucket(-1.0)));
    let bad = AggregateConfig { time_bucket_ns: 10, ..Default::default() };
    assert_eq!(bad.validate(), Err(ConfigError::TimeBucketTooSmall));
    let bad = AggregateConfig { retention_ns: SEC, ..Default::default() };
    assert_eq!(bad.validate(), Err(ConfigError::BadRetention));
    // Corrected, not refused.
    let a = Aggregator::new(bad);
    assert_eq!(a.config().retention_ns, a.config().time_bucket_ns);
    let cfg: AggregateConfig = serde_json::from_str(r#"{"max_series": 5}"#).unwrap();
    assert_eq!(cfg.max_series, 5);
    assert_eq!(cfg.histogram_buckets_s.len(), 13);
}

#[test]
fn large_endpoints_keep_their_identity() {
    // Label sets bigger than the inline buffer of the hot path.
    let big = |tag: &str| {
        let mut e = nginx();
        e.labels = (0..20).map(|i| (format!("label_{i}"), format!("{tag}-{}", "v".repeat(40)))).collect();
        e
    };
    let (b1, b2) = (big("a"), big("b"));
    let mut a = Aggregator::new(AggregateConfig::default());
    for _ in 0..3 {
        a.record(&server("/", "200", MS, SEC, false), &curl(), &b1, true);
    }
    a.record(&server("/", "200", MS, SEC, false), &curl(), &b2, true);
    let x = render(&a);
    let t = x.series("kindling_entity_request_total");
    assert_eq!(t.len(), 2);
    assert_eq!(t.iter().find(|s| s.labels["label_0"].starts_with("a-")).unwrap().value, 3.0);
    assert_eq!(x.series("kindling_topology_request_total").len(), 2);
    assert_eq!(a.stats().label_sets, 3);
}

/// Every counter against a naive model keyed by the full label set.
#[test]
fn matches_a_naive_model() {
    use std::collections::BTreeMap;
    type Key = BTreeMap<String, String>;
    let mut rng = Rng(99);
    let mut a = Aggregator::new(AggregateConfig::default());
    let servers: Vec<Endpoint> = (0..4).map(|i| ep(&format!("process:s{i}"), &format!("10.3.0.{i}"))).collect();
    let clients: Vec<Endpoint> = (0..3).map(|i| ep(&format!("process:c{i}"), &format!("10.4.0.{i}"))).collect();
    type Counts = BTreeMap<Key, u64>;
    let (mut total, mut dur, mut send, mut recv) = (Counts::new(), Counts::new(), Counts::new(), Counts::new());
    let (mut t_total, mut t_req) = (Counts::new(), Counts::new());
    for n in 0..5000u64 {
        let s = &servers[(rng.next() % 4) as usize];
        let c = &clients[(rng.next() % 3) as usize];
        let side = if rng.unit() < 0.5 { Side::Server } else { Side::Client };
        let endpoint = format!("/e{}", rng.next() % 5);
        let status = ["200", "500"][(rng.next() % 2) as usize];
        let mut r = rec(side, &endpoint, status, rng.next() % SEC, n * MS);
        r.request_bytes = rng.next() % 10_000;
        r.response_bytes = rng.next() % 100_000;
        r.is_slow = rng.unit() < 0.1;
        r.dst.set_port(if rng.unit() < 0.5 { 80 } else { 8080 });
        let edge = side == Side::Client || rng.unit() < 0.3;
        a.record(&r, c, s, edge);
        let port = r.dst.port().to_string();
        if side == Side::Server {
            let k = labels(&[
                ("protocol", "http"),
                ("ip", &s.ip),
                ("port", &port),
                ("workload_kind", &s.workload_kind),
                ("workload_name", &s.workload_name),
                ("container_id", ""),
                ("request_content", &endpoint),
                ("response_content", status),
            ]);
            let mut ks = k.clone();
            ks.insert("is_slow".into(), r.is_slow.to_string());
            *total.entry(ks).or_default() += 1;
            *dur.entry(k.clone()).or_default() += r.duration_ns;
            *send.entry(k.clone()).or_default() += r.response_bytes;
            *recv.entry(k).or_default() += r.request_bytes;
        }
        if edge {
            let k = labels(&[
                ("src_workload_kind", &c.workload_kind),
                ("src_workload_name", &c.workload_name),
                ("src_container_id", ""),
                ("src_ip", &c.ip),
                ("dst_workload_kind", &s.workload_kind),
                ("dst_workload_name", &s.workload_name),
                ("dst_container_id", ""),
                ("dst_ip", &s.ip),
                ("dst_port", &port),
                ("protocol", "http"),
                ("status_code", status),
            ]);
            *t_total.entry(k.clone()).or_default() += 1;
            *t_req.entry(k).or_default() += r.request_bytes;
        }
    }
    let x = render(&a);
    let check = |name: &str, want: &BTreeMap<Key, u64>| {
        let got: BTreeMap<Key, u64> = x.series(name).iter().map(|s| (s.labels.clone(), s.value as u64)).collect();
        assert_eq!(&got, want, "{name}");
    };
    check("kindling_entity_request_total", &total);
    check("kindling_entity_request_duration_nanoseconds_total", &dur);
    check("kindling_entity_request_send_bytes_total", &send);
    check("kindling_entity_request_receive_bytes_total", &recv);
    check("kindling_topology_request_total", &t_total);
    check("kindling_topology_request_request_bytes_total", &t_req);
    assert_eq!(a.series_overflow(), 0);
}
