//! Issue 3: `kindling requests` against real servers and clients. Every count
//! is compared with what the client or the server itself reports (wrk,
//! nginx's access log, redis `INFO commandstats`, pg_stat_statements and
//! pgbench, MariaDB's `Com_*` counters, dig's answers, the gRPC client), and
//! is exact wherever that ground truth is exact.
//!
//! The `golden_*` tests run small versions of the same scenarios with
//! `--record`; with `KINDLING_GOLDEN_RECORD=1` they (re)write the recordings
//! and expected replay output under `tests/golden/` that the non-root
//! `golden` test replays.

use crate::servers::*;
use crate::util::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn count<'a, K: Ord>(recs: impl IntoIterator<Item = &'a Rec>, key: impl Fn(&Rec) -> K) -> BTreeMap<K, u64> {
    let mut m = BTreeMap::new();
    for r in recs {
        *m.entry(key(r)).or_insert(0) += 1;
    }
    m
}

/// Records of one side whose server end is `port`.
fn on_port(got: &RequestsOut, side: &str, port: u16) -> Vec<Rec> {
    got.records.iter().filter(|r| r.side == side && r.dst_port() == port).cloned().collect()
}

// ---------------------------------------------------------------------------
// 1. nginx + wrk: counts, statuses, latency percentiles

const WRK_THREADS: u64 = 2;
const WRK_CONNECTIONS: u64 = 10;

/// wrk's own numbers, printed by a `done()` hook (exact integers, where the
/// normal report rounds): completed requests, run time, errors, and the
/// latency percentiles of its `--latency` report (microseconds).
const WRK_DONE: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("kindling-wrk requests=%d duration_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout))
  for _, p in ipairs({50, 75, 90, 99}) do
    io.write(string.format("kindling-wrk p%d=%d\n", p, latency:percentile(p)))
  end
end
"#;

#[derive(Debug, Default)]
struct WrkReport {
    requests: u64,
    duration_us: u64,
    non2xx: u64,
    socket_errors: u64,
    percentiles: BTreeMap<u32, u64>,
}

fn parse_wrk(out: &str) -> WrkReport {
    let mut w = WrkReport::default();
    for l in out.lines().filter_map(|l| l.strip_prefix("kindling-wrk ")) {
        for kv in l.split_whitespace() {
            let (k, v) = kv.split_once('=').unwrap();
            let v: u64 = v.parse().unwrap_or_else(|_| panic!("wrk printed {l:?}"));
            match k {
                "requests" => w.requests = v,
                "duration_us" => w.duration_us = v,
                "non2xx" => w.non2xx = v,
                "socket_errors" => w.socket_errors = v,
                p => drop(w.percentiles.insert(p[1..].parse().unwrap(), v)),
            }
        }
    }
    assert!(w.requests > 0 && w.percentiles.len() == 4, "no summary from wrk's done() hook:\n{out}");
    w
}

/// Percentiles of latencies (ns) computed as wrk 4 computes its `--latency`
/// report (stats.c): a histogram of whole microseconds; with `expected_us`,
/// first wrk's correction for coordinated omission (`stats_correct`: every
/// sample of n >= 2 * expected adds samples n - expected, n - 2 * expected...
/// down to expected); then the percentile is the first value whose cumulative
/// count reaches round(p / 100 * count + 0.5).
fn wrk_percentiles(latencies_ns: &[u64], expected_us: Option<u64>, ps: &[u32]) -> Vec<u64> {
    let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
    for &ns in latencies_ns {
        *hist.entry(ns / 1000).or_insert(0) += 1;
    }
    if let Some(exp) = expected_us.filter(|&e| e > 0) {
        // Additions only go to lower values, so the original counts are read.
        let high: Vec<(u64, u64)> = hist.range(2 * exp..).map(|(&n, &c)| (n, c)).collect();
        for (n, c) in high {
            let mut m = n - exp;
            while m > exp {
                *hist.entry(m).or_insert(0) += c;
                m -= exp;
            }
        }
    }
    let total: u64 = hist.values().sum();
    ps.iter()
        .map(|&p| {
            let rank = (p as f64 / 100.0 * total as f64 + 0.5).round() as u64;
            let mut cum = 0;
            hist.iter()
                .find(|(_, &c)| {
                    cum += c;
                    cum >= rank
                })
                .map_or(0, |(&v, _)| v)
        })
        .collect()
}

#[test]
fn wrk_percentile_model_matches_wrk_stats_c() {
    // Samples 100us x 8, 1000us x 2; expected interval 300us: 1000 adds 700 and 400 (x2 each).
    let ns: Vec<u64> = [100u64; 8].iter().chain(&[1000, 1000]).map(|us| us * 1000 + 999).collect();
    assert_eq!(wrk_percentiles(&ns, None, &[50, 90, 99]), vec![100, 1000, 1000]);
    // 14 samples: 8 x 100, 2 x 400, 2 x 700, 2 x 1000; rank(p50) = round(7.5) = 8 -> 100; p75 -> 11 -> 700.
    assert_eq!(wrk_percentiles(&ns, Some(300), &[50, 75, 99]), vec![100, 700, 1000]);
}

/// nginx serving wrk (keep-alive): every request wrk completed is one client
/// record and one server record; statuses are nginx's; the latency
/// percentiles of the client-side records are wrk's.
#[test]
fn nginx_wrk_counts_statuses_and_latency() {
    require_root();
    let nginx = Nginx::start("location / { }");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("done.lua");
    std::fs::write(&script, WRK_DONE).unwrap();
    let port = nginx.port;
    let agent = Requests::start(&["--port", &port.to_string()]);
    let out = run_ok(
        Command::new("wrk")
            .args([&format!("-t{WRK_THREADS}"), &format!("-c{WRK_CONNECTIONS}"), "-d5s", "--latency", "-s"])
            .arg(&script)
            .arg(format!("http://127.0.0.1:{port}/index.html")),
        Duration::from_secs(120),
    );
    let got = agent.stop();
    got.assert_nothing_dropped();
    let wrk = parse_wrk(&stdout_of(&out));
    assert_eq!((wrk.non2xx, wrk.socket_errors), (0, 0), "wrk saw errors: {wrk:?}");
    assert!(wrk.requests > 1000, "wrk made only {} requests", wrk.requests);

    let server: Vec<Rec> = on_port(&got, "server", port);
    let client: Vec<Rec> = on_port(&got, "client", port);
    assert!(server.iter().all(|r| r.comm == "nginx"), "server records from another process");
    assert!(client.iter().all(|r| r.comm == "wrk"), "client records from another process");
    let (answered, unanswered): (Vec<&Rec>, Vec<&Rec>) = client.iter().partition(|r| r.answered());

    // Counts. wrk counts the responses it read: exactly the answered client
    // records. nginx also answered the requests still in flight when wrk
    // stopped (at most one per connection), which wrk never read.
    assert_eq!(answered.len() as u64, wrk.requests, "answered client records vs wrk's requests");
    assert!(unanswered.len() as u64 <= WRK_CONNECTIONS, "{} unanswered client records", unanswered.len());
    assert!(
        (server.len() as u64) >= wrk.requests && (server.len() as u64) <= wrk.requests + WRK_CONNECTIONS,
        "server records {} vs wrk's {} requests (+ at most {WRK_CONNECTIONS} in flight)",
        server.len(),
        wrk.requests
    );

    // Statuses: nginx answered 200 to everything (wrk saw no non-2xx).
    for r in server.iter().chain(answered.iter().copied()) {
        assert_eq!(
            (r.protocol.as_str(), r.method.as_str(), r.endpoint.as_str(), r.status.as_str(), r.is_error),
            ("http", "GET", "/index.html", "200", false),
            "{r:?}"
        );
    }
    for r in &unanswered {
        assert_eq!((r.status.as_str(), r.is_error), ("closed", true), "{r:?}");
    }

    // Per connection, the k-th request nginx read is the k-th wrk wrote
    // (only the last one may be missing on one side), and nginx cannot have
    // read it before wrk began writing it.
    let by_conn = |recs: &[Rec]| {
        let mut m: BTreeMap<(String, String), Vec<Rec>> = BTreeMap::new();
        for r in recs {
            m.entry((r.src.clone(), r.dst.clone())).or_default().push(r.clone());
        }
        for v in m.values_mut() {
            v.sort_by_key(|r| r.start_ts_ns);
        }
        m
    };
    let (sc, cc) = (by_conn(&server), by_conn(&client));
    assert_eq!(sc.keys().collect::<Vec<_>>(), cc.keys().collect::<Vec<_>>(), "connections seen from both ends");
    for (conn, s) in &sc {
        let c = &cc[conn];
        assert!(s.len().abs_diff(c.len()) <= 1, "{conn:?}: {} requests seen by nginx, {} by wrk", s.len(), c.len());
        for (s, c) in s.iter().zip(c) {
            assert!(c.start_ts_ns <= s.start_ts_ns, "server record starts before its client record: {s:?} {c:?}");
        }
    }

    // Latency. wrk times each request from just before its write() to just
    // after parsing the response read(); the client-side record spans that
    // write()'s start to that read()'s end: the same interval less a few
    // microseconds of wrk's own user-space work. wrk's report applies its
    // coordinated-omission correction (see `wrk_percentiles`), so the agent's
    // samples get the same correction with wrk's own interval
    // (run time / (requests / connections)) before the percentiles are taken.
    // Tolerance: 5% + 10us at p50, 10% + 50us at p99. Each wrk sample is the
    // kernel's interval plus wrk's own user-space work around the syscalls
    // (clock reads, HTTP parsing) and microsecond truncation, so wrk is
    // expected a few microseconds above the agent at every percentile (2-3us
    // on the 2-core test machine). The margin covers a loaded machine, where
    // a preemption between wrk's clock read and its syscall adds a whole time
    // slice to single samples, which the correction multiplies in the tail.
    let expected_us = wrk.duration_us / (wrk.requests / WRK_CONNECTIONS);
    let lat: Vec<u64> = answered.iter().map(|r| r.duration_ns).collect();
    let ps = [50, 75, 90, 99];
    let agent_ps = wrk_percentiles(&lat, Some(expected_us), &ps);
    let raw_client = wrk_percentiles(&lat, None, &ps);
    let raw_server = wrk_percentiles(&server.iter().map(|r| r.duration_ns).collect::<Vec<_>>(), None, &ps);
    let report = format!(
        "percentiles p50/p75/p90/p99 (us): wrk {:?}, agent client-side (wrk-corrected) {agent_ps:?}, \
         client-side raw {raw_client:?}, server-side raw {raw_server:?}; expected interval {expected_us}us",
        wrk.percentiles.values().collect::<Vec<_>>()
    );
    eprintln!("{report}");
    for (i, p, rel, abs) in [(0, 50, 0.05, 10.0), (3, 99, 0.10, 50.0)] {
        let (want, have) = (wrk.percentiles[&p] as f64, agent_ps[i] as f64);
        assert!((have - want).abs() <= want * rel + abs, "p{p}: agent {have}us vs wrk {want}us; {report}");
    }
    // nginx's time (read to last write) is part of wrk's.
    assert!(raw_server[0] <= raw_client[0] && raw_server[3] <= raw_client[3], "server slower than client: {report}");
}

// ---------------------------------------------------------------------------
// 2. curl against nginx: 200/404/500, errors, traceparent

const NGINX_STATUS_LOCATIONS: &str = "location = /boom { return 500; }\n    location / { }";

/// (path, trace id or "") of each curl request, and the code curl got.
fn curl(port: u16, path: &str, trace: &str) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    if !trace.is_empty() {
        cmd.args(["-H", &format!("traceparent: 00-{trace}-00f067aa0ba902b7-01")]);
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    stdout_of(&run_ok(&mut cmd, Duration::from_secs(60))).trim().parse().expect("curl's status code")
}

/// nginx access log: (status, path) per request ($status and $request).
fn access_log_requests(nginx: &Nginx) -> Vec<(String, String)> {
    std::fs::read_to_string(nginx.access_log())
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3].to_string(), f[6].to_string())
        })
        .collect()
}

#[test]
fn curl_statuses_errors_and_trace_ids() {
    require_root();
    let nginx = Nginx::start(NGINX_STATUS_LOCATIONS);
    let port = nginx.port;
    let agent = Requests::start(&["--port", &port.to_string()]);
    // (path, trace id): three plain requests per status, then one traced.
    let mut sent = Vec::new();
    for (i, path) in ["/index.html", "/missing", "/boom"].into_iter().enumerate() {
        for _ in 0..3 {
            sent.push((path, String::new()));
        }
        sent.push((path, format!("4bf92f3577b34da6a3ce929d0e0e473{i}")));
    }
    let mut truth: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (path, trace) in &sent {
        let code = curl(port, path, trace);
        *truth.entry((path.to_string(), code.to_string(), trace.clone())).or_insert(0) += 1;
    }
    let got = agent.stop();
    got.assert_nothing_dropped();
    std::thread::sleep(Duration::from_millis(300));
    let log = access_log_requests(&nginx);

    let expected_codes: BTreeMap<&str, &str> = [("/index.html", "200"), ("/missing", "404"), ("/boom", "500")].into();
    for (path, code, _) in truth.keys() {
        assert_eq!(expected_codes[path.as_str()], code, "curl got {code} for {path}");
    }
    let server = on_port(&got, "server", port);
    let client = on_port(&got, "client", port);
    let key = |r: &Rec| (r.endpoint.clone(), r.status.clone(), r.trace_id.clone());
    // Client side: what curl got; server side: what nginx logged.
    assert_eq!(count(&client, key), truth, "client records vs curl");
    let mut logged = BTreeMap::new();
    for (status, path) in &log {
        *logged.entry((path.clone(), status.clone())).or_insert(0u64) += 1;
    }
    assert_eq!(count(&server, |r| (r.endpoint.clone(), r.status.clone())), logged, "server records vs access log");
    assert_eq!(count(&server, key), truth, "server records: statuses and trace ids");
    for r in server.iter().chain(&client) {
        let code: u16 = r.status.parse().unwrap();
        assert_eq!(r.is_error, code >= 400, "is_error of {r:?}");
        assert_eq!((r.protocol.as_str(), r.method.as_str()), ("http", "GET"), "{r:?}");
        let traced = !r.trace_id.is_empty();
        assert_eq!(r.trace_type, if traced { "w3c" } else { "" }, "{r:?}");
    }
    assert!(client.iter().all(|r| r.comm == "curl") && server.iter().all(|r| r.comm == "nginx"));
}

// ---------------------------------------------------------------------------
// 3. redis-server + redis-benchmark

/// `redis-benchmark -t set,get -n 20000` (optionally pipelined): the records
/// per command equal the server's own `INFO commandstats` (which also counts
/// the benchmark's CONFIG GET at start), on both sides.
fn redis_benchmark(pipeline: Option<u32>) {
    require_root();
    let redis = Redis::start();
    let port = redis.port.to_string();
    let before = redis.command_calls();
    let agent = Requests::start(&["--port", &port]);
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &port, "-t", "set,get", "-n", "20000", "-q"]);
    if let Some(p) = pipeline {
        cmd.args(["-P", &p.to_string()]);
    }
    run_ok(&mut cmd, Duration::from_secs(300));
    let got = agent.stop();
    got.assert_nothing_dropped();
    let mut delta = redis.command_calls();
    for (k, v) in &before {
        *delta.get_mut(k).unwrap() -= v;
    }
    delta.retain(|_, v| *v > 0);
    // Our own `INFO commandstats` before the run (outside the capture) is the
    // only other command; the one after does not count itself.
    assert_eq!(delta.remove("info"), Some(1), "commands other than the benchmark's: {delta:?}");
    assert_eq!((delta.get("set"), delta.get("get")), (Some(&20000), Some(&20000)), "{delta:?}");
    let name = |r: &Rec| r.method.to_lowercase().replace(' ', "|");
    let server = on_port(&got, "server", redis.port);
    let client = on_port(&got, "client", redis.port);
    assert_eq!(count(&server, name), delta, "server records per command vs INFO commandstats");
    assert_eq!(count(&client, name), delta, "client records per command vs INFO commandstats");
    for r in server.iter().chain(&client) {
        assert_eq!((r.protocol.as_str(), r.is_error), ("redis", false), "{r:?}");
        assert_eq!(r.endpoint, r.method, "a Redis endpoint is its command: {r:?}");
    }
    assert!(client.iter().all(|r| r.comm == "redis-benchmark"), "client records from another process");
}

#[test]
fn redis_benchmark_counts_per_command() {
    redis_benchmark(None);
}

#[test]
fn redis_benchmark_pipelined_counts_per_command() {
    redis_benchmark(Some(16));
}

// ---------------------------------------------------------------------------
// 4. PostgreSQL + pgbench

/// SQL text compared across the agent and pg_stat_statements: placeholders
/// (`$1`, `?`) and case and spacing do not matter.
fn sql_key(sql: &str) -> String {
    let mut out = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The statements of pgbench's default (TPC-B like) script besides BEGIN and END.
const PGBENCH_DML: [&str; 5] = [
    "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?",
    "SELECT abalance FROM pgbench_accounts WHERE aid = ?",
    "UPDATE pgbench_tellers SET tbalance = tbalance + ? WHERE tid = ?",
    "UPDATE pgbench_branches SET bbalance = bbalance + ? WHERE bid = ?",
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP)",
];
const PGBENCH_CLIENTS: u64 = 2;

fn processed_transactions(pgbench_out: &str) -> u64 {
    pgbench_out
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in pgbench's output:\n{pgbench_out}"))
}

/// pgbench -c2 -t500 in `mode`: per statement template, the server-side
/// records equal pg_stat_statements' calls (DML) and pgbench's transaction
/// count (each transaction runs BEGIN, the 5 DML statements and END); the
/// client side agrees. Then (simple mode) a failing query.
fn pgbench(mode: &str) {
    require_root();
    let pg = Postgres::start();
    pg.pgbench(&["-i", "-q"]);
    pg.psql("SELECT pg_stat_statements_reset()");
    let agent = Requests::start(&["--port", &pg.port.to_string()]);
    let out = pg.pgbench(&[&format!("-c{PGBENCH_CLIENTS}"), "-t500", "-M", mode]);
    let failed = if mode == "simple" {
        // psql reports the SQLSTATE with VERBOSITY=verbose: "ERROR:  42P01: relation ...".
        let mut cmd = Command::new(pg_bin("psql"));
        pg.env(&mut cmd);
        cmd.args(["-X", "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM nope"]);
        Some(run(&mut cmd, Duration::from_secs(60)))
    } else {
        None
    };
    let got = agent.stop();
    got.assert_nothing_dropped();
    let tx = processed_transactions(&out);
    assert_eq!(tx, 1000, "pgbench: {out}");
    // pg_stat_statements (reset before the run; the reading query after it
    // is not in the capture). It does not count utility statements (BEGIN,
    // END) run through the extended protocol, so those are compared with
    // pgbench's transaction count instead.
    let mut pgss: BTreeMap<String, u64> = BTreeMap::new();
    for l in pg.psql("SELECT calls || E'\\t' || query FROM pg_stat_statements").lines() {
        let (calls, query) = l.split_once('\t').unwrap();
        *pgss.entry(sql_key(query)).or_insert(0) += calls.parse::<u64>().unwrap();
    }

    for side in ["server", "client"] {
        let recs: Vec<Rec> = on_port(&got, side, pg.port)
            .into_iter()
            .filter(|r| side == "server" || r.comm == "pgbench")
            .filter(|r| !r.endpoint.contains("nope"))
            .collect();
        for r in &recs {
            assert_eq!((r.protocol.as_str(), r.status.as_str(), r.is_error), ("postgresql", "OK", false), "{r:?}");
        }
        let executed = count(recs.iter().filter(|r| r.method != "PREPARE"), |r| sql_key(&r.endpoint));
        for stmt in PGBENCH_DML {
            let k = sql_key(stmt);
            assert_eq!(pgss.get(&k), Some(&tx), "pg_stat_statements calls of {stmt}: {pgss:#?}");
            assert_eq!(executed.get(&k), Some(&tx), "{side} records of {stmt} ({mode}): {executed:#?}");
        }
        for stmt in ["BEGIN", "END"] {
            assert_eq!(executed.get(&sql_key(stmt)), Some(&tx), "{side} records of {stmt} ({mode}): {executed:#?}");
        }
        // Prepared mode: each client prepares the 7 statements once (Parse).
        let prepared = count(recs.iter().filter(|r| r.method == "PREPARE"), |r| sql_key(&r.endpoint));
        if mode == "prepared" {
            assert_eq!(prepared.len(), 7, "{side}: prepared statements {prepared:#?}");
            assert!(prepared.values().all(|&n| n == PGBENCH_CLIENTS), "{side}: prepared statements {prepared:#?}");
        } else {
            assert!(prepared.is_empty(), "{side}: {prepared:#?}");
        }
    }

    if let Some(failed) = failed {
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "SELECT * FROM nope succeeded");
        let code = stderr
            .lines()
            .find_map(|l| l.strip_prefix("ERROR:")?.trim().split_once(':').map(|(c, _)| c))
            .unwrap_or_else(|| panic!("no SQLSTATE in psql's error: {stderr}"));
        assert_eq!(code, "42P01", "{stderr}");
        for side in ["server", "client"] {
            let errs: Vec<Rec> = on_port(&got, side, pg.port).into_iter().filter(|r| r.is_error).collect();
            assert_eq!(errs.len(), 1, "{side}: error records {errs:?}");
            let r = &errs[0];
            assert_eq!(
                (r.method.as_str(), r.endpoint.as_str(), r.status.as_str()),
                ("SELECT", "SELECT * FROM nope", code),
                "{r:?}"
            );
            assert!(r.error.contains("nope"), "the server's message: {r:?}");
        }
    }
}

#[test]
fn postgres_pgbench_simple_per_statement_and_error() {
    pgbench("simple");
}

#[test]
fn postgres_pgbench_prepared_per_statement() {
    pgbench("prepared");
}

// ---------------------------------------------------------------------------
// 5. MariaDB + mysqlslap

/// The `Com_*` counter a statement record increments.
fn mysql_counter(r: &Rec) -> String {
    let e = r.endpoint.to_uppercase();
    let c = match r.method.as_str() {
        "COM_INIT_DB" => "Com_change_db",
        "SELECT" => "Com_select",
        "INSERT" => "Com_insert",
        "CREATE" if e.starts_with("CREATE TABLE") => "Com_create_table",
        "CREATE" if e.starts_with("CREATE SCHEMA") || e.starts_with("CREATE DATABASE") => "Com_create_db",
        "DROP" if e.starts_with("DROP SCHEMA") || e.starts_with("DROP DATABASE") => "Com_drop_db",
        _ => panic!("no Com_ counter known for {r:?}"),
    };
    c.to_string()
}

#[test]
fn mariadb_mysqlslap_counts_and_error() {
    require_root();
    let db = Mariadb::start();
    let before = db.global_status();
    let agent = Requests::start(&["--port", &db.port.to_string()]);
    run_ok(
        Command::new("mysqlslap").args(db.client_args()).args([
            "--concurrency=2",
            "--iterations=5",
            "--number-of-queries=200",
            "--auto-generate-sql",
        ]),
        Duration::from_secs(300),
    );
    let failed = run(
        Command::new("mysql").args(db.client_args()).args(["-D", "mysql", "-e", "SELECT * FROM nope"]),
        Duration::from_secs(60),
    );
    let got = agent.stop();
    got.assert_nothing_dropped();
    let after = db.global_status();
    let mut delta: BTreeMap<String, u64> = after
        .iter()
        .filter(|(k, _)| k.starts_with("Com_"))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    // Our own SHOW GLOBAL STATUS after the run counts itself; the one before does not.
    assert_eq!(delta.remove("Com_show_status"), Some(1), "statements besides the test's: {delta:?}");
    assert!(delta.get("Com_insert").is_some_and(|&n| n >= 200), "{delta:?}");

    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success() && stderr.contains("ERROR 1146"), "the failing query: {stderr}");
    let server = on_port(&got, "server", db.port);
    let client = on_port(&got, "client", db.port);
    assert_eq!(count(&server, mysql_counter), delta, "server records vs Com_* counters");
    assert_eq!(count(&client, mysql_counter), delta, "client records vs Com_* counters");
    for r in server.iter().chain(&client) {
        assert_eq!(r.protocol, "mysql", "{r:?}");
        if r.endpoint == "SELECT * FROM nope" {
            assert_eq!((r.status.as_str(), r.is_error), ("1146", true), "{r:?}");
            assert!(r.error.contains("nope"), "the server's message: {r:?}");
        } else {
            assert_eq!((r.status.as_str(), r.is_error), ("OK", false), "{r:?}");
        }
    }
    assert_eq!(server.iter().filter(|r| r.is_error).count(), 1, "one failing statement");
}

// ---------------------------------------------------------------------------
// 6. dnsmasq + dig (UDP and TCP)

/// One query as dig reported it: (name, status, A answers).
type DigAnswer = (String, String, Vec<String>);

/// Parses dig's full output: per query, its QUESTION, status and A answers.
fn parse_dig(out: &str) -> Vec<DigAnswer> {
    let mut res = Vec::new();
    for block in out.split(";; ->>HEADER<<-").skip(1) {
        let status = block.split("status: ").nth(1).and_then(|s| s.split(',').next()).unwrap().to_string();
        let mut section = "";
        let (mut name, mut answers) = (String::new(), Vec::new());
        for l in block.lines() {
            if let Some(s) = l.strip_prefix(";; ").and_then(|s| s.strip_suffix(" SECTION:")) {
                section = if s == "QUESTION" {
                    "q"
                } else if s == "ANSWER" {
                    "a"
                } else {
                    ""
                };
                continue;
            }
            if l.trim().is_empty() {
                section = "";
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            match section {
                "q" if l.starts_with(';') && !l.starts_with(";;") && f.len() >= 3 => {
                    name = f[0][1..].trim_end_matches('.').to_string()
                }
                "a" if f.len() == 5 && f[3] == "A" => answers.push(f[4].to_string()),
                _ => {}
            }
        }
        res.push((name, status, answers));
    }
    res
}

const DNS_FOUND: [&str; 3] = ["a.kindling.test", "b.kindling.test", "www.kindling.test"];
const DNS_MISSING: [&str; 2] = ["nothing.test", "missing.test"];

fn dig(port: u16, tcp: bool, names: &[&str]) -> Vec<DigAnswer> {
    let mut cmd = Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "+tries=1", "+time=10"]);
    if tcp {
        cmd.arg("+tcp");
    }
    cmd.args(names);
    let got = parse_dig(&stdout_of(&run_ok(&mut cmd, Duration::from_secs(120))));
    assert_eq!(got.len(), names.len(), "dig answered {got:?}");
    got
}

#[test]
fn dnsmasq_dig_udp_and_tcp() {
    require_root();
    let dns = Dnsmasq::start();
    let agent = Requests::start(&["--port", &dns.port.to_string()]);
    let names: Vec<&str> = DNS_FOUND.iter().chain(&DNS_MISSING).copied().collect();
    let mut truth = dig(dns.port, false, &names);
    truth.extend(dig(dns.port, true, &names));
    let got = agent.stop();
    got.assert_nothing_dropped();
    for (name, status, answers) in &truth {
        let found = DNS_FOUND.contains(&name.as_str());
        let want = if found { ("NOERROR", vec![DNS_ANSWER.to_string()]) } else { ("NXDOMAIN", vec![]) };
        assert_eq!((status.as_str(), answers.clone()), want, "dig: {name}");
    }
    // The record's `error` carries the first answer as the DNS parser shows it.
    let mut want: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for (name, status, answers) in &truth {
        let first = answers.first().map(|a| format!("A {a}")).unwrap_or_default();
        *want.entry((name.clone(), status.clone(), first)).or_insert(0) += 1;
    }
    for side in ["server", "client"] {
        let recs = on_port(&got, side, dns.port);
        assert_eq!(recs.len(), truth.len(), "{side}: one record per dig query");
        let have = count(&recs, |r| (r.endpoint.clone(), r.status.clone(), r.error.clone()));
        assert_eq!(have, want, "{side} records vs dig");
        for r in &recs {
            assert_eq!((r.protocol.as_str(), r.method.as_str()), ("dns", "A"), "{r:?}");
            assert_eq!(r.is_error, r.status != "NOERROR", "{r:?}");
        }
        // dnsmasq answers TCP queries from a forked child, named like its parent.
        if side == "server" {
            assert!(recs.iter().all(|r| r.comm == "dnsmasq"), "{recs:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// 7. gRPC (python grpcio)

const GRPC_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn grpc_client(port: u16, unary: u32, missing: u32, streams: u32, stream_len: u32) -> Command {
    let mut cmd = Command::new(grpc_python());
    cmd.arg(peer_script("grpcpeer.py")).args(["client", "--port", &port.to_string()]);
    for (flag, n) in [("--unary", unary), ("--missing", missing), ("--streams", streams), ("--stream-len", stream_len)]
    {
        cmd.args([flag, &n.to_string()]);
    }
    cmd.args(["--traceparent", &format!("00-{GRPC_TRACE}-b7ad6b7169203331-01")]);
    cmd
}

/// The client's "done ok=N not_found=M stream_messages=K" line.
fn grpc_done(out: &str) -> BTreeMap<String, u64> {
    let line = out.lines().find_map(|l| l.strip_prefix("done ")).unwrap_or_else(|| panic!("grpc client: {out}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// grpcio (C core) writes each call as one sendmsg with an iovec per header
/// field (25 for a first unary call): the probe must walk that many iovecs
/// for the payload head to hold the header block, or the HPACK tables of
/// both ends lose entries and later calls lose their path and status.
#[test]
fn grpc_unary_errors_streaming_and_trace_ids() {
    require_root();
    let server = GrpcServer::start();
    let agent = Requests::start(&["--port", &server.port.to_string()]);
    let (unary, missing, streams, len) = (10, 3, 2, 4);
    let out = run_ok(&mut grpc_client(server.port, unary, missing, streams, len), Duration::from_secs(120));
    let got = agent.stop();
    got.assert_nothing_dropped();
    let done = grpc_done(&stdout_of(&out));
    assert_eq!(
        (done["ok"], done["not_found"], done["stream_messages"]),
        (unary as u64, missing as u64, (streams * len) as u64),
        "the client's own count"
    );
    let want: BTreeMap<(String, String), u64> = [
        (("/pkg.Service/Echo".to_string(), "OK".to_string()), done["ok"]),
        (("/pkg.Service/Missing".to_string(), "NOT_FOUND".to_string()), done["not_found"]),
        (("/pkg.Service/Stream".to_string(), "OK".to_string()), streams as u64),
    ]
    .into();
    for side in ["server", "client"] {
        let recs = on_port(&got, side, server.port);
        let have = count(&recs, |r| (r.endpoint.clone(), r.status.clone()));
        assert_eq!(have, want, "{side}: records per method and status");
        for r in &recs {
            assert_eq!((r.protocol.as_str(), r.method.as_str()), ("grpc", "POST"), "{r:?}");
            assert_eq!(r.is_error, r.status != "OK", "{r:?}");
        }
        // The first call of each method carried the traceparent.
        let traced =
            count(recs.iter().filter(|r| !r.trace_id.is_empty()), |r| (r.endpoint.clone(), r.trace_id.clone()));
        let want_traced: BTreeMap<(String, String), u64> = ["Echo", "Missing", "Stream"]
            .iter()
            .map(|m| ((format!("/pkg.Service/{m}"), GRPC_TRACE.to_string()), 1))
            .collect();
        assert_eq!(traced, want_traced, "{side}: trace ids");
        assert!(recs.iter().all(|r| r.trace_id.is_empty() || r.trace_type == "w3c"), "{recs:#?}");
    }
}

// ---------------------------------------------------------------------------
// 8. Golden recordings: small scenarios recorded for the non-root `golden` test.

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A shell script whose process tree the recording follows (with the
/// server's): it waits for a line on stdin, then runs the clients.
struct Driver {
    child: std::process::Child,
}

impl Driver {
    fn spawn(script: &str) -> Driver {
        let child = Command::new("sh")
            .args(["-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning sh");
        Driver { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the clients run; their output once they are done.
    fn go(mut self) -> String {
        let mut stdout = self.child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        writeln!(self.child.stdin.take().unwrap(), "go").unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "driver script did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = reader.join().unwrap();
        assert!(status.success(), "driver script failed ({status}): {out}");
        out
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Records `script` (run by a driver shell) against `server_pid`; checks that
/// replaying the recording gives the live records, then, with
/// `KINDLING_GOLDEN_RECORD=1`, stores it as `tests/golden/<name>.kcap` with
/// its replay output as `<name>.expected.jsonl`. Returns the live records and
/// the script's output.
fn golden(name: &str, server_pid: u32, script: &str) -> (Vec<Rec>, String) {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{name}.kcap"));
    let driver = Driver::spawn(script);
    let agent = Requests::start(&[
        "--pid",
        &server_pid.to_string(),
        "--pid",
        &driver.pid().to_string(),
        "--record",
        file.to_str().unwrap(),
    ]);
    let out = driver.go();
    let got = agent.stop();
    got.assert_nothing_dropped();
    let replayed = replay(&file);
    let mut again: Vec<Rec> = replayed.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut live = got.records.clone();
    let order = |r: &Rec| (r.start_ts_ns, r.end_ts_ns, r.sock_id, r.side.clone());
    live.sort_by_key(order);
    again.sort_by_key(order);
    assert_eq!(again, live, "{name}: replaying the recording gives the live records");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size < 300_000, "{name}: the recording is {size} bytes");
    if std::env::var("KINDLING_GOLDEN_RECORD").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::copy(&file, golden_dir().join(format!("{name}.kcap"))).unwrap();
        let mut text = replayed.join("\n");
        text.push('\n');
        std::fs::write(golden_dir().join(format!("{name}.expected.jsonl")), text).unwrap();
        eprintln!("{name}: wrote tests/golden/{name}.kcap ({size} bytes) and {name}.expected.jsonl");
    }
    (got.records, out)
}

fn sides(recs: &[Rec], port: u16) -> (Vec<&Rec>, Vec<&Rec>) {
    let on = |side: &'static str| recs.iter().filter(move |r| r.side == side && r.dst_port() == port).collect();
    (on("server"), on("client"))
}

#[test]
fn golden_http_curl() {
    let nginx = Nginx::start(NGINX_STATUS_LOCATIONS);
    let url = format!("http://127.0.0.1:{}", nginx.port);
    let script = format!(
        "for p in /index.html /missing /boom /index.html; do curl -s -o /dev/null -w '%{{http_code}}\\n' {url}$p; done; \
         curl -s -o /dev/null -w '%{{http_code}}\\n' -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' {url}/boom"
    );
    let (recs, out) = golden("http_curl", nginx.pid(), &script);
    let codes: Vec<&str> = out.lines().collect();
    assert_eq!(codes, ["200", "404", "500", "200", "500"]);
    let (server, client) = sides(&recs, nginx.port);
    assert_eq!((server.len(), client.len()), (5, 5));
    assert_eq!(server.iter().filter(|r| !r.trace_id.is_empty()).count(), 1);
}

#[test]
fn golden_http_wrk() {
    let nginx = Nginx::start("location / { }");
    let dir = tempfile::tempdir().unwrap();
    let lua = dir.path().join("stop.lua");
    // Keep-alive on two connections; each thread stops after 20 responses.
    std::fs::write(&lua, "local n = 0\nresponse = function() n = n + 1; if n >= 20 then wrk.thread:stop() end end\n")
        .unwrap();
    let script = format!("wrk -t1 -c2 -d10s -s {} http://127.0.0.1:{}/index.html", lua.display(), nginx.port);
    let (recs, out) = golden("http_wrk", nginx.pid(), &script);
    let n = wrk_requests(&out);
    let (server, client) = sides(&recs, nginx.port);
    assert_eq!(client.iter().filter(|r| r.answered()).count() as u64, n, "{out}");
    assert!(server.len() as u64 >= n && server.len() as u64 <= n + 2, "{} vs {n}", server.len());
}

#[test]
fn golden_redis() {
    let redis = Redis::start();
    let script = format!("redis-benchmark -h 127.0.0.1 -p {} -c 2 -t set,get -n 20 -P 4 -q", redis.port);
    let before = redis.command_calls();
    let (recs, _) = golden("redis_benchmark", redis.pid(), &script);
    let after = redis.command_calls();
    let (server, client) = sides(&recs, redis.port);
    let set = after["set"] - before.get("set").copied().unwrap_or(0);
    assert_eq!(set, 20);
    assert_eq!(server.iter().filter(|r| r.method == "SET").count() as u64, set);
    assert_eq!(client.iter().filter(|r| r.method == "SET").count() as u64, set);
}

#[test]
fn golden_postgres() {
    let pg = Postgres::start();
    pg.pgbench(&["-i", "-q"]);
    let env = format!("PGHOST=127.0.0.1 PGPORT={} PGUSER=postgres PGDATABASE=postgres", pg.port);
    let pgbench = pg_bin("pgbench");
    let script = format!(
        "export {env}; {p} -n -c1 -t3 -M simple >/dev/null 2>&1 && {p} -n -c1 -t2 -M prepared >/dev/null 2>&1 \
         && ! psql -X -c 'SELECT * FROM nope' 2>/dev/null",
        p = pgbench.display()
    );
    let (recs, _) = golden("postgres_pgbench", pg.pid(), &script);
    let (server, client) = sides(&recs, pg.port);
    let script: Vec<String> = PGBENCH_DML.iter().chain(&["BEGIN", "END"]).map(|s| sql_key(s)).collect();
    for recs in [&server, &client] {
        let executed = recs.iter().filter(|r| r.method != "PREPARE" && script.contains(&sql_key(&r.endpoint))).count();
        assert_eq!(executed, 7 * 5, "7 statements x 5 transactions");
        let errs: Vec<&&Rec> = recs.iter().filter(|r| r.is_error).collect();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].status, "42P01");
    }
}

#[test]
fn golden_mysql() {
    let db = Mariadb::start();
    let args = db.client_args().join(" ");
    let script = format!(
        "mysqlslap {args} --concurrency=1 --iterations=1 --number-of-queries=10 --auto-generate-sql \
         --auto-generate-sql-write-number=10 >/dev/null \
         && ! mysql {args} -D mysql -e 'SELECT * FROM nope' 2>/dev/null"
    );
    let before = db.global_status();
    let (recs, _) = golden("mysql_mysqlslap", db.pid(), &script);
    let after = db.global_status();
    let (server, client) = sides(&recs, db.port);
    let selects = after["Com_select"] - before["Com_select"];
    assert_eq!(server.iter().filter(|r| r.method == "SELECT").count() as u64, selects);
    assert_eq!(client.iter().filter(|r| r.method == "SELECT").count() as u64, selects);
    assert_eq!(server.iter().filter(|r| r.status == "1146").count(), 1);
}

#[test]
fn golden_dns() {
    let dns = Dnsmasq::start();
    let q = format!("dig @127.0.0.1 -p {} +tries=1 +time=10", dns.port);
    let script = format!("{q} a.kindling.test nothing.test && {q} +tcp b.kindling.test missing.test");
    let (recs, out) = golden("dns_dig", dns.pid(), &script);
    let truth = parse_dig(&out);
    assert_eq!(truth.len(), 4);
    let (server, client) = sides(&recs, dns.port);
    for recs in [&server, &client] {
        let mut have: Vec<(String, String)> = recs.iter().map(|r| (r.endpoint.clone(), r.status.clone())).collect();
        let mut want: Vec<(String, String)> = truth.iter().map(|t| (t.0.clone(), t.1.clone())).collect();
        have.sort();
        want.sort();
        assert_eq!(have, want);
    }
}

#[test]
fn golden_grpc() {
    let server = GrpcServer::start();
    let cmd = grpc_client(server.port, 3, 1, 1, 3);
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let (recs, out) = golden("grpc_python", server.pid(), &argv.join(" "));
    let done = grpc_done(&out);
    let (srv, cli) = sides(&recs, server.port);
    assert_eq!(srv.len() as u64, done["ok"] + done["not_found"] + 1, "{srv:#?}");
    assert_eq!(cli.len(), srv.len());
}
