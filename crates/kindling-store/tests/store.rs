//! The store against a real SQLite file: what is written is read back, a
//! restart keeps it, `kill -9` during writes loses at most the last second
//! and never corrupts the file, and retention holds the age and size limits.

use kindling_store::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const SEC: u64 = 1_000_000_000;

fn row(end_ts_ns: u64, n: u64, payload: usize) -> RequestRow {
    let record = serde_json::json!({
        "start_ts_ns": end_ts_ns - 5_000_000, "end_ts_ns": end_ts_ns, "protocol": "http", "side": "client",
        "endpoint": format!("/item/{n}"), "duration_ns": 5_000_000 + n, "is_slow": n.is_multiple_of(10), "is_error": n.is_multiple_of(7),
        "breakdown": {"connect_ns": 0, "request_sent_ns": 1000, "waiting_ttfb_ns": 4_000_000, "content_download_ns": 2000},
        "pad": "x".repeat(payload),
    });
    RequestRow {
        end_ts_ns,
        start_ts_ns: end_ts_ns - 5_000_000,
        duration_ns: 5_000_000 + n,
        protocol: "http".into(),
        side: "client".into(),
        src_node: "process:frontend".into(),
        dst_node: if n.is_multiple_of(2) { "process:backend".into() } else { "process:other".into() },
        dst_port: 8080,
        endpoint: format!("/item/{n}"),
        is_error: n.is_multiple_of(7),
        is_slow: n.is_multiple_of(10),
        trace_id: format!("{n:032x}"),
        record: record.to_string(),
    }
}

fn edge(src: &str, dst: &str, requests: u64, p99: f64) -> EdgeRow {
    EdgeRow {
        src: src.into(),
        dst: dst.into(),
        protocol: "http".into(),
        dst_port: 8080,
        requests,
        errors: 1,
        slow: 0,
        p50_ms: p99 / 2.0,
        p99_ms: p99,
        max_ms: p99,
        retransmits: Some(2),
        rtt_ms: Some(0.5),
        ..EdgeRow::default()
    }
}

fn cfg(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.commit_interval = Duration::from_millis(200);
    c
}

#[test]
fn written_data_reads_back_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    let minute = now / MINUTE_NS * MINUTE_NS - MINUTE_NS;
    {
        let store = Store::open(cfg(dir.path())).unwrap();
        let h = store.handle();
        for n in 0..50 {
            assert!(h.request(row(now - SEC + n * 1000, n, 10)));
        }
        let node = serde_json::json!({"id": "process:frontend", "name": "frontend", "kind": "process",
            "workload_kind": "process", "workload_name": "frontend", "container_id": "", "ip": "127.0.0.1"});
        assert!(h.rollup(Rollup {
            ts_ns: minute,
            edges: vec![edge("process:frontend", "process:backend", 120, 40.0)],
            nodes: vec![NodeRow { node: "process:backend".into(), direction: "inbound", requests: 120, errors: 1, slow: 0, p99_ms: Some(40.0) }],
            node_info: vec![("process:frontend".into(), node.to_string())],
        }));
        assert!(h.profile(&serde_json::json!({"id": "p1", "trace_id": "abc", "kept_because": "slow",
            "request": {"endpoint": "/slow", "start_ts_ns": now, "duration_ns": 9}, "threads": []})));
        assert!(!h.profile(&serde_json::json!({"trace_id": "no id"})));
        store.close();
    }
    let store = Store::open(cfg(dir.path())).unwrap();
    let r = store.reader();
    assert_eq!(r.integrity_check().unwrap(), "ok");
    let all = r.requests(&RequestFilter { limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 50);
    assert!(all[0]["end_ts_ns"].as_u64() >= all[1]["end_ts_ns"].as_u64(), "newest first");
    assert_eq!(all[0]["src_node"], "process:frontend");
    assert!(all[0]["id"].is_i64());
    assert!(all[0]["breakdown"]["waiting_ttfb_ns"].is_u64());
    let edge_only = r
        .requests(&RequestFilter { src: Some("process:frontend".into()), dst: Some("process:backend".into()), limit: 1000, ..Default::default() })
        .unwrap();
    assert_eq!(edge_only.len(), 25);
    let slowest = r.requests(&RequestFilter { order: Order::Slowest, limit: 3, ..Default::default() }).unwrap();
    assert_eq!(slowest[0]["endpoint"], "/item/49");
    let errs = r.requests(&RequestFilter { error: Some(true), limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(errs.len(), 8);
    let like = r.requests(&RequestFilter { endpoint: Some("ITEM/4".into()), limit: 1000, ..Default::default() }).unwrap();
    assert_eq!(like.len(), 11, "substring, case-insensitive: /item/4 and /item/40-49");
    let pct = r.requests(&RequestFilter { endpoint: Some("%".into()), limit: 10, ..Default::default() }).unwrap();
    assert!(pct.is_empty(), "LIKE wildcards in the filter are literal");
    let by_trace = r.requests(&RequestFilter { trace_id: Some(format!("{:032x}", 7)), limit: 10, ..Default::default() }).unwrap();
    assert_eq!(by_trace.len(), 1);
    let id = by_trace[0]["id"].as_i64().unwrap();
    assert_eq!(r.request(id).unwrap().unwrap()["endpoint"], "/item/7");
    assert!(r.request(-5).unwrap().is_none());

    let topo = r.topology(minute - 10 * MINUTE_NS, minute + MINUTE_NS).unwrap();
    assert_eq!(topo.edges.len(), 1);
    assert_eq!(topo.edges[0].requests, 120);
    assert_eq!(topo.edges[0].retransmits, Some(2));
    assert_eq!(topo.nodes.len(), 2);
    assert_eq!(topo.nodes.iter().find(|n| n.id == "process:frontend").unwrap().name, "frontend");
    assert_eq!(topo.nodes.iter().find(|n| n.id == "process:backend").unwrap().name, "backend", "unknown nodes named from their id");
    let series = r.edge_series("process:frontend", "process:backend", Some("http"), None, minute - 2 * MINUTE_NS, minute, MINUTE_NS).unwrap();
    assert_eq!(series.len(), 3, "{series:?}");
    assert_eq!(series[2].requests, 120);
    assert_eq!(series[2].p99_ms, Some(40.0));
    assert_eq!(series[0].requests, 0);
    let ns = r.node_series("process:backend", "inbound", minute - MINUTE_NS, minute, MINUTE_NS).unwrap();
    assert_eq!(ns.last().unwrap().requests, 120);

    let profs = r.profiles(&ProfileFilter { trace_id: Some("abc".into()), limit: 10, ..Default::default() }).unwrap();
    assert_eq!(profs.len(), 1);
    assert_eq!(profs[0].kept_because, "slow");
    assert_eq!(r.profile("p1").unwrap().unwrap()["request"]["endpoint"], "/slow");
    assert!(r.profile("nope").unwrap().is_none());
    let c = r.contents().unwrap();
    assert_eq!((c.requests, c.edge_minutes, c.profiles), (50, 1, 1));
    // A profile displaced by sampling is removed.
    let h = store.handle();
    assert!(h.remove_profile("p1"));
    h.flush();
    assert!(r.profile("p1").unwrap().is_none());
}

#[test]
fn feed_samples_and_rolls_up_minutes_from_the_aggregator() {
    use kindling_aggregate::{AggregateConfig, Aggregator, Endpoint};
    use kindling_requests::{Breakdown, RequestRecord, Side, TcpDuring};
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.requests_per_endpoint_per_second = 3;
    let store = Store::open(c).unwrap();
    let mut feed = store.feed();
    let mut agg = Aggregator::new(AggregateConfig { retention_ns: 5 * MINUTE_NS, ..AggregateConfig::default() });
    let ep = |id: &str| Endpoint {
        node_id: format!("process:{id}"),
        name: id.into(),
        kind: "process".into(),
        workload_kind: "process".into(),
        workload_name: id.into(),
        container_id: String::new(),
        ip: "127.0.0.1".into(),
        labels: Vec::new(),
    };
    let (a, b) = (ep("a"), ep("b"));
    let t0 = now_ns() / MINUTE_NS * MINUTE_NS - 3 * MINUTE_NS;
    feed.tick(&agg, t0);
    let rec = |ts: u64, slow: bool| RequestRecord {
        start_ts_ns: ts - 1_000_000,
        end_ts_ns: ts,
        protocol: kindling_protocols::Protocol::Http,
        side: Side::Client,
        pid: 1,
        tid: 1,
        response_tid: 1,
        comm: "a".into(),
        src: "127.0.0.1:40000".parse().unwrap(),
        dst: "127.0.0.1:8080".parse().unwrap(),
        method: "GET".into(),
        endpoint: "/x".into(),
        detail: "/x".into(),
        status: "200".into(),
        is_error: false,
        is_slow: slow,
        error: String::new(),
        duration_ns: 1_000_000,
        breakdown: Breakdown::default(),
        request_bytes: 10,
        response_bytes: 20,
        trace_id: String::new(),
        trace_type: String::new(),
        sock_id: 1,
        tcp: TcpDuring::default(),
    };
    // 10 records in one second: 3 normal kept + 2 slow.
    for k in 0..10u64 {
        let r = rec(t0 + 10 * SEC + k * 1000, k >= 8);
        agg.record(&r, &a, &b, true);
        feed.record(&r, "process:a", "process:b");
    }
    // The next minute too, then time passes beyond the grace period.
    let r = rec(t0 + MINUTE_NS + SEC, false);
    agg.record(&r, &a, &b, true);
    feed.tick(&agg, t0 + 2 * MINUTE_NS + 20 * SEC);
    store.flush();
    let rd = store.reader();
    let kept = rd.requests(&RequestFilter { limit: 100, ..Default::default() }).unwrap();
    assert_eq!(kept.len(), 5, "{kept:?}");
    assert_eq!(store.stats().sampled_out, 5);
    let s = rd.edge_series("process:a", "process:b", None, None, t0, t0 + MINUTE_NS, MINUTE_NS).unwrap();
    assert_eq!(s.iter().map(|p| p.requests).collect::<Vec<_>>(), vec![10, 1]);
    let topo = rd.topology(t0, t0 + MINUTE_NS).unwrap();
    assert_eq!(topo.edges[0].requests, 11);
    assert_eq!(topo.edges[0].slow, 2);
    assert_eq!(topo.nodes.iter().find(|n| n.id == "process:a").unwrap().workload_name, "a");
    let inbound = rd.node_series("process:b", "inbound", t0, t0, MINUTE_NS).unwrap();
    assert_eq!(inbound[0].requests, 10);
}

#[test]
fn retention_removes_old_data_and_holds_the_size_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.max_age = Duration::from_secs(24 * 3600);
    c.max_size_bytes = 4 * 1024 * 1024;
    c.retention_interval = Duration::from_secs(3600);
    let store = Store::open(c).unwrap();
    let h = store.handle();
    let now = now_ns();
    // Two days ago, beyond max_age.
    for n in 0..100 {
        h.request(row(now - 48 * 3600 * SEC + n, n, 100));
    }
    h.rollup(Rollup { ts_ns: now - 48 * 3600 * SEC, edges: vec![edge("a", "b", 1, 1.0)], ..Rollup::default() });
    h.profile(&serde_json::json!({"id": "old", "request": {"start_ts_ns": now - 48 * 3600 * SEC}}));
    // The last two hours: ~24 MB, six times the cap.
    let n_recent = 24_000u64;
    for n in 0..n_recent {
        let ts = now - 2 * 3600 * SEC + n * (2 * 3600 * SEC / n_recent);
        while !h.request(row(ts, 1000 + n, 900)) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    h.rollup(Rollup { ts_ns: now / MINUTE_NS * MINUTE_NS, edges: vec![edge("a", "b", 5, 1.0)], ..Rollup::default() });
    store.flush();
    let before = store.reader().contents().unwrap();
    assert_eq!(before.requests, 100 + n_recent);

    let rep = store.handle().run_retention(Some(now)).expect("retention ran");
    let r = store.reader();
    assert!(rep.size_bytes <= 4 * 1024 * 1024, "{rep:?}");
    let db = std::fs::metadata(store.path()).unwrap().len();
    let wal = std::fs::metadata(format!("{}-wal", store.path().display())).map(|m| m.len()).unwrap_or(0);
    assert!(db + wal <= 4 * 1024 * 1024 + 64 * 1024, "files: db {db} + wal {wal} bytes");
    let after = r.contents().unwrap();
    assert!(after.requests > 1000 && after.requests < n_recent, "{after:?}");
    // Nothing older than max_age; the oldest of the recent data went first.
    let oldest = r.requests(&RequestFilter { until_ns: Some(now - 24 * 3600 * SEC), limit: 10, ..Default::default() }).unwrap();
    assert!(oldest.is_empty());
    assert!(r.profile("old").unwrap().is_none());
    let newest = r.requests(&RequestFilter { limit: 1, ..Default::default() }).unwrap();
    assert_eq!(newest[0]["endpoint"], format!("/item/{}", 1000 + n_recent - 1));
    assert_eq!(after.edge_minutes, 1, "the old minute is gone, the newest kept");
    assert_eq!(r.integrity_check().unwrap(), "ok");
    assert!(store.stats().expired >= 100);
}

/// Runs only as the child of `kill_9_during_writes_loses_at_most_the_last_second`:
/// writes one numbered record every millisecond until killed.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("KINDLING_STORE_CRASH_DIR") else { return };
    let start: u64 = std::env::var("KINDLING_STORE_CRASH_FROM").unwrap().parse().unwrap();
    let mut c = StoreConfig::new(&dir);
    c.commit_interval = Duration::from_millis(500);
    let store = Store::open(c).unwrap();
    let h = store.handle();
    println!("ready");
    let mut n = start;
    loop {
        if h.request(row(now_ns(), n, 600)) {
            n += 1;
        }
        if n.is_multiple_of(500) {
            h.profile(&serde_json::json!({"id": format!("p{n}"), "request": {"start_ts_ns": now_ns()}}));
            h.rollup(Rollup { ts_ns: now_ns() / MINUTE_NS * MINUTE_NS, edges: vec![edge("a", "b", n, 2.0)], ..Rollup::default() });
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn kill_9_during_writes_loses_at_most_the_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut from = 0u64;
    for round in 0..3 {
        let mut child = Killed(Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("KINDLING_STORE_CRASH_DIR", dir.path())
            .env("KINDLING_STORE_CRASH_FROM", from.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap());
        let child = &mut child.0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(lines.any(|l| l.is_ok_and(|l| l.contains("ready"))), "the child did not start");
        std::thread::sleep(Duration::from_millis(1500 + 700 * round));
        let killed_at = now_ns();
        child.kill().unwrap(); // SIGKILL
        let st = child.wait().unwrap();
        assert!(!st.success());

        let store = Store::open(cfg(dir.path())).unwrap();
        let r = store.reader();
        assert_eq!(r.integrity_check().unwrap(), "ok", "round {round}");
        let rows = r.requests(&RequestFilter { since_ns: Some(0), limit: 10_000, ..Default::default() }).unwrap();
        let mut ns: Vec<u64> = rows
            .iter()
            .map(|v| v["endpoint"].as_str().unwrap().trim_start_matches("/item/").parse().unwrap())
            .collect();
        ns.sort_unstable();
        // Commits are atomic and in order: what survives is a gap-free prefix.
        assert_eq!(ns.first(), Some(&0), "round {round}");
        let last = *ns.last().unwrap();
        assert_eq!(ns.len() as u64, last + 1, "round {round}: no gaps");
        assert!(last >= from, "round {round}: the round wrote nothing that survived");
        let newest = rows.iter().map(|v| v["end_ts_ns"].as_u64().unwrap()).max().unwrap();
        assert!(
            killed_at.saturating_sub(newest) <= SEC,
            "round {round}: lost {} ms before the kill",
            (killed_at - newest) / 1_000_000
        );
        for v in &rows {
            assert!(v["breakdown"]["waiting_ttfb_ns"].is_u64(), "intact JSON");
        }
        from = last + 1;
        store.close();
    }
}

/// A child process that does not outlive a failed test.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn refuses_a_newer_schema_and_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(cfg(dir.path())).unwrap().close();
    // The header's user_version (offset 60) as a future Kindling would leave it.
    let path = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    match Store::open(cfg(dir.path())) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("newer Kindling") && msg.contains(DB_FILE), "{msg}");
        }
        Ok(_) => panic!("a newer schema was opened"),
    }
}
