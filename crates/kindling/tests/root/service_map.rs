//! The service map from `kindling run`: a three-hop chain of real processes
//! (curl -> a Python HTTP service -> Redis and PostgreSQL) gives exactly the
//! edges the chain has, each call counted once, named by workload; and the
//! agent's /metrics is valid Prometheus exposition.

use crate::servers::*;
use crate::util::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `kindling run` on a free port with a temporary data dir (and optionally a
/// config file); its stderr goes to a log file, shown when it fails.
pub struct Agent {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(None)
    }

    pub fn start_with(config: Option<&str>) -> Agent {
        let dir = tempfile::tempdir().expect("a temporary dir for the agent");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("the agent's log file");
        let port = free_port();
        let mut cmd = Command::new(kindling());
        cmd.args(["run", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"]).arg(dir.path().join("data"));
        if let Some(text) = config {
            let conf = dir.path().join("kindling.toml");
            std::fs::write(&conf, text).expect("writing the agent's config");
            cmd.arg("--config").arg(conf);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("starting kindling run");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(port, "/healthz").is_none() {
            if let Ok(Some(st)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
                panic!("kindling run exited ({st}): {log}");
            }
            assert!(Instant::now() < deadline, "kindling run did not answer /healthz");
            std::thread::sleep(Duration::from_millis(200));
        }
        Agent { child, port, dir }
    }

    /// What the agent wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).unwrap_or_else(|| panic!("GET {path} failed"))
    }

    pub fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON {e}: {body}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        crate::servers::stop_child(&mut self.child, libc::SIGTERM, Duration::from_secs(15));
    }
}

/// A minimal HTTP/1.0 GET: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

/// The edge src -> dst:port (the port keeps other runs on this host apart).
fn edge<'a>(topo: &'a Value, src: &str, dst: &str, protocol: &str, port: u16) -> Option<&'a Value> {
    topo["edges"]
        .as_array()?
        .iter()
        .find(|e| e["src"] == src && e["dst"] == dst && e["protocol"] == protocol && e["dst_port"] == port)
}

#[test]
fn three_hop_chain_gives_the_right_service_map() {
    require_root();
    let redis = Redis::start();
    let pg = Postgres::start();
    let agent = Agent::start();
    let mut service = Command::new(grpc_python())
        .arg(peer_script("chain_service.py"))
        .args([redis.port.to_string(), pg.port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting chain_service.py (needs python3-psycopg2)");
    let mut line = String::new();
    BufReader::new(service.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let sport: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("service port");
    redis.cli(&["SET", "order:7", "cached-seven"]);

    const N: usize = 20;
    for i in 0..N {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{sport}/orders/{i}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Records complete within ~1 s; give the agent time to drain.
    std::thread::sleep(Duration::from_secs(3));
    let topo = agent.json("/api/v1/topology?window=5m");
    let _ = service.kill();
    let _ = service.wait();

    let svc = "process:python3 chain_service.py";
    let http = edge(&topo, "process:curl", svc, "http", sport).unwrap_or_else(|| panic!("no curl -> service edge: {topo}"));
    assert_eq!(http["requests"], N, "each call counted once (seen from both ends): {http}");
    assert_eq!(http["dst_port"], sport);
    assert_eq!(http["errors"], 0);
    let to_redis = edge(&topo, svc, "process:redis-server", "redis", redis.port).unwrap_or_else(|| panic!("no redis edge: {topo}"));
    assert_eq!(to_redis["requests"], N, "{to_redis}");
    assert_eq!(to_redis["dst_port"], redis.port);
    let to_pg = edge(&topo, svc, "process:postgres", "postgresql", pg.port).unwrap_or_else(|| panic!("no pg edge: {topo}"));
    // One query per call, plus what psycopg2 sends when it connects (SET, etc.).
    let pg_requests = to_pg["requests"].as_u64().unwrap();
    assert!((N as u64..=N as u64 + 5).contains(&pg_requests), "{to_pg}");
    assert_eq!(to_pg["dst_port"], pg.port);
    for e in [http, to_redis, to_pg] {
        assert!(e["p99_ms"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["rps"].as_f64().unwrap() > 0.0, "{e}");
    }
    // Nodes carry their workload names.
    let nodes = topo["nodes"].as_array().unwrap();
    for id in [svc, "process:curl", "process:redis-server", "process:postgres"] {
        assert!(nodes.iter().any(|n| n["id"] == id), "node {id} missing: {nodes:?}");
    }

    // The same calls in the request API, with SQL templated.
    let recs = agent.json("/api/v1/requests?protocol=postgresql&side=client&limit=100");
    let sql: Vec<&str> = recs.as_array().unwrap().iter().filter_map(|r| r["endpoint"].as_str()).collect();
    assert!(sql.iter().any(|e| e.starts_with("SELECT ?::int + ?") || e.contains("SELECT ?")), "{sql:?}");
    let redis_recs = agent.json("/api/v1/requests?protocol=redis&side=server&limit=100");
    assert_eq!(redis_recs.as_array().unwrap().iter().filter(|r| r["method"] == "GET").count(), N);
}

/// Metric names the product contract fixes in other units than seconds (kept
/// for the original Kindling dashboards), which promtool's linter flags.
const CONTRACT_UNITS: [&str; 5] = [
    "kindling_entity_request_duration_nanoseconds_total",
    "kindling_topology_request_duration_nanoseconds_total",
    "kindling_tcp_connect_duration_nanoseconds_total",
    "kindling_tcp_srtt_microseconds",
    "kindling_trace_request_duration_nanoseconds",
];

/// /metrics passes promtool. Its only findings may be the naming lint on the
/// contract's non-second units (`CONTRACT_UNITS`).
#[test]
fn metrics_pass_promtool() {
    require_root();
    let agent = Agent::start();
    let nginx = Nginx::start("location / { } location /err { return 500; }");
    for p in ["/index.html", "/err", "/index.html"] {
        let _ = http_get(nginx.port, p);
    }
    std::thread::sleep(Duration::from_secs(3));
    let (code, text) = agent.get("/metrics");
    assert_eq!(code, 200);
    for name in [
        "kindling_entity_request_total",
        "kindling_entity_request_duration_seconds_bucket",
        "kindling_topology_request_total",
        "kindling_topology_request_duration_seconds_count",
        "kindling_telemetry_events_total",
        "kindling_telemetry_dropped_events_total",
        "kindling_telemetry_agent_memory_used_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let findings = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let unexpected: Vec<&str> = findings
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !(CONTRACT_UNITS.iter().any(|n| l.starts_with(n)) && l.contains("base unit")))
        .collect();
    assert!(unexpected.is_empty(), "promtool findings: {findings}");
}
