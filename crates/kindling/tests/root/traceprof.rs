//! Trace-profiling (issue 6) against real servers in C, Java and Go
//! (tests/subjects/traceprof/). Each `GET /work` spends ~150 ms on-CPU in a
//! named function, ~200 ms waiting on a real PostgreSQL (`pg_sleep`) and
//! ~100 ms blocked on a contended lock, and prints its own timings of those
//! phases. The kept profile of each request, found by the `traceparent`
//! trace id curl sent, must attribute the same amounts (within 15%) in its
//! verdict, name the function and the SQL, and appear in the API within 5 s
//! of the request's end (P7). A C run with more spinning threads than cores
//! must show a run-queue share.

use crate::servers::Postgres;
use crate::service_map::{http_get, Agent};
use crate::util::require_root;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The agent's config: HTTP requests of 100 ms or more are slow, and up to
/// 50 slow ones per endpoint and window are kept. Only the server under test
/// is traced: other servers on a shared host (benchmarks with a thousand
/// endpoints) would otherwise compete for the per-window cap and the
/// followed-process slots, and push its profiles out by design.
fn config(server_pid: u32) -> String {
    format!("[capture]\npids = [{server_pid}]\n\n[requests.slow_ms]\nhttp = 100\n\n[traceprof]\nslow = 50\n")
}

/// The verdict must match the server's own clock within this share.
const TOLERANCE: f64 = 0.15;

/// P7: a slow request's profile is listed within this long of its end.
const P7: Duration = Duration::from_secs(5);

fn subjects_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/subjects/traceprof")
}

/// Where the subjects are built: cargo's scratch space for tests.
fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| crate::util::scratch_dir("traceprof-subjects"))
}

use crate::util::build_ok as run_ok;

// ---------------------------------------------------------------------------
// The servers

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lang {
    C,
    Java,
    Go,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::C => "c",
            Lang::Java => "java",
            Lang::Go => "go",
        }
    }

    /// The function the server burns its CPU in, as a profile names it.
    fn cpu_function(self) -> &'static str {
        match self {
            Lang::C => "burn_cpu",
            Lang::Java => "TraceServer.burnCpu",
            Lang::Go => "main.burnCPU",
        }
    }

    /// Warm-up requests before the measured ones (Java: until burnCpu is JIT-compiled).
    fn warmups(self) -> usize {
        match self {
            Lang::Java => 8,
            _ => 2,
        }
    }

    /// Builds the server; the command that runs it against PostgreSQL on `pg_port`.
    fn command(self, pg_port: u16) -> Command {
        let dir = build_dir();
        let mut cmd = match self {
            Lang::C => {
                let bin = dir.join("traceserver");
                run_ok(
                    Command::new("gcc")
                        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
                        .arg(&bin)
                        .arg(subjects_dir().join("traceserver.c")),
                    "gcc traceserver.c",
                );
                Command::new(bin)
            }
            Lang::Java => {
                let classes = dir.join("java");
                run_ok(
                    Command::new("javac").arg("-d").arg(&classes).arg(subjects_dir().join("TraceServer.java")),
                    "javac TraceServer.java",
                );
                let mut c = Command::new("java");
                // Frame pointers so JIT-compiled frames can be walked; burnCpu
                // kept out of line so its frame (and name) stays.
                c.args(["-XX:+PreserveFramePointer", "-XX:CompileCommand=quiet"])
                    .args(["-XX:CompileCommand=dontinline,TraceServer::burnCpu", "-cp"])
                    .arg(classes)
                    .arg("TraceServer");
                c
            }
            Lang::Go => {
                let bin = dir.join("traceserver-go");
                run_ok(
                    Command::new("go")
                        .args(["build", "-o"])
                        .arg(&bin)
                        .arg(subjects_dir().join("goserver/main.go"))
                        .env("GOCACHE", dir.join("gocache"))
                        .env("GO111MODULE", "off"),
                    "go build",
                );
                Command::new(bin)
            }
        };
        cmd.arg(pg_port.to_string());
        cmd
    }
}

/// A server's own timings of one request (ms). The waits are wall time; the
/// C server also says how much of each its thread then spent in a run queue
/// (the kernel's run_delay), which a verdict counts as run queue instead.
#[derive(Clone, Copy, Debug)]
struct Truth {
    cpu_ms: f64,
    burn_wall_ms: f64,
    pg_ms: f64,
    lock_ms: f64,
    pg_rq_ms: f64,
    lock_rq_ms: f64,
}

impl Truth {
    /// Waiting on PostgreSQL, without the run-queue wait once woken.
    fn net_ms(&self) -> f64 {
        self.pg_ms - self.pg_rq_ms
    }

    /// Blocked on the lock, without the run-queue wait once woken.
    fn lock_wait_ms(&self) -> f64 {
        self.lock_ms - self.lock_rq_ms
    }
}

/// `timing trace=ID cpu_ms X burn_wall_ms X pg_ms X lock_ms X total_ms X [pg_rq_ms X lock_rq_ms X]`
/// -> (ID, truth).
fn parse_timing(line: &str) -> Option<(String, Truth)> {
    let mut f = line.split_whitespace();
    (f.next()? == "timing").then_some(())?;
    let trace = f.next()?.strip_prefix("trace=")?.to_string();
    let rest: Vec<&str> = f.collect();
    let get = |k: &str| -> Option<f64> { rest.iter().position(|x| *x == k).and_then(|i| rest.get(i + 1)?.parse().ok()) };
    let truth = Truth {
        cpu_ms: get("cpu_ms")?,
        burn_wall_ms: get("burn_wall_ms")?,
        pg_ms: get("pg_ms")?,
        lock_ms: get("lock_ms")?,
        pg_rq_ms: get("pg_rq_ms").unwrap_or(0.0),
        lock_rq_ms: get("lock_rq_ms").unwrap_or(0.0),
    };
    Some((trace, truth))
}

/// A running server: its port, and its stderr lines as they come (echoed).
struct Server {
    child: Child,
    port: u16,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(lang: Lang, pg_port: u16) -> Server {
        let mut child = lang
            .command(pg_port)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {} server: {e}", lang.name()));
        // The first stdout line is the port; a server that dies first ends the wait.
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            if let Some(Ok(l)) = BufReader::new(out).lines().next() {
                let _ = tx.send(format!("port {l}"));
            }
        });
        let err = child.stderr.take().expect("stderr");
        let (etx, erx) = mpsc::channel();
        let name = lang.name();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{name} server] {l}");
                let _ = etx.send(l);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60));
        let port = line.as_deref().ok().and_then(|l| l.strip_prefix("port ")?.trim().parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            let said: Vec<String> = erx.try_iter().collect();
            panic!("the {name} server did not print its port ({line:?}); stderr: {said:?}");
        };
        Server { child, port, stderr: erx }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's timings of the request with this trace id (within 10 s).
    fn truth(&self, trace: &str) -> Truth {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(l) = self.stderr.recv_timeout(left) else { break };
            if let Some((t, truth)) = parse_timing(&l) {
                if t == trace {
                    return truth;
                }
            }
            seen.push(l);
        }
        panic!("the server printed no timing for trace {trace}; it printed {seen:?}");
    }

    /// Drops the timing lines of requests already made (warm-ups).
    fn drain(&self) {
        while self.stderr.recv_timeout(Duration::from_millis(200)).is_ok() {}
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` of `path` with an optional traceparent; fails on a non-2xx answer.
fn curl(port: u16, path: &str, traceparent: Option<&str>) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f", "-o", "/dev/null", "--max-time", "30"]);
    if let Some(tp) = traceparent {
        cmd.args(["-H", &format!("traceparent: {tp}")]);
    }
    run_ok(cmd.arg(format!("http://127.0.0.1:{port}{path}")), &format!("curl {path}"));
}

/// A fresh W3C trace id (32 hex digits) and its `traceparent` header.
fn new_trace(n: u64) -> (String, String) {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let id = format!("{:016x}{:016x}", (t as u64) ^ 0x6b696e646c696e67, (std::process::id() as u64) << 32 | n);
    let tp = format!("00-{id}-{:016x}-01", 0x7470_0000_0000_0000u64 | n);
    (id, tp)
}

// ---------------------------------------------------------------------------
// The agent

/// What the trace-profiling tests ask the agent beyond the shared helper.
impl Agent {
    /// GET `path` as JSON; None when it does not answer 200.
    fn try_json(&self, path: &str) -> Option<Value> {
        let (code, body) = http_get(self.port, path)?;
        (code == 200).then(|| serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: bad JSON {e}: {body}")))
    }

    /// What the agent knows of a trace that has no profile: its request
    /// records, its trace-profiling telemetry and its log.
    fn diagnosis(&self, trace: &str) -> String {
        let recs = http_get(self.port, &format!("/api/v1/requests?trace_id={trace}")).map(|r| r.1).unwrap_or_default();
        let tp = self.metrics(&["traceprof", "dropped_events"]);
        format!("request records: {recs}\ntraceprof and drop metrics (non-zero):\n{}\nagent log:\n{}", tp.join("\n"), self.log())
    }

    /// The agent's non-zero samples of metrics whose names contain one of `names`.
    fn metrics(&self, names: &[&str]) -> Vec<String> {
        let text = http_get(self.port, "/metrics").map(|r| r.1).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
            .filter(|l| names.iter().any(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// Polls the profile list for `trace` (10 s at most): the entry and how
    /// long after `since` it was first listed.
    fn wait_listed(&self, trace: &str, since: Instant) -> (Value, Duration) {
        let path = format!("/api/v1/profiles?trace_id={trace}");
        let deadline = since + Duration::from_secs(10);
        let mut last = Value::Null;
        loop {
            if let Some(list) = self.try_json(&path) {
                if let Some(e) = list.as_array().and_then(|a| a.iter().find(|e| e["trace_id"] == trace)) {
                    return (e.clone(), since.elapsed());
                }
                last = list;
            }
            if Instant::now() > deadline {
                panic!(
                    "no profile listed for trace {trace} within 10 s (last answer {last}); {}",
                    self.diagnosis(trace)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}


// ---------------------------------------------------------------------------
// Reading a profile

fn ns(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no integer {key} in {v}"))
}

fn ms_of(n: u64) -> f64 {
    n as f64 / 1e6
}

/// "<what> <got> ms, expected <want> ms ± 15%" unless within tolerance.
fn off(what: &str, got_ns: u64, want_ms: f64) -> Option<String> {
    let got = ms_of(got_ns);
    ((got - want_ms).abs() > want_ms * TOLERANCE)
        .then(|| format!("{what} {got:.1} ms, server measured {want_ms:.1} ms (±{:.0}%)", TOLERANCE * 100.0))
}

/// Every downstream request record of every slice.
fn downstream(profile: &Value) -> Vec<&Value> {
    let threads = profile["threads"].as_array().map(Vec::as_slice).unwrap_or_default();
    threads
        .iter()
        .flat_map(|t| t["slices"].as_array().map(Vec::as_slice).unwrap_or_default())
        .flat_map(|s| s["downstream"].as_array().map(Vec::as_slice).unwrap_or_default())
        .collect()
}

/// One measured request: curl with a fresh trace id, its profile listed
/// (P7 checked) and fetched, written to /tmp/traceprof-<tag>.json.
struct Measured {
    trace: String,
    truth: Truth,
    listed: Value,
    profile: Value,
    /// The profile's flame graph (`/api/v1/profiles/{id}/flamegraph`, folded).
    folded: String,
    p7: Duration,
}

fn measure(agent: &Agent, server: &Server, path: &str, n: u64, tag: &str) -> Measured {
    let (trace, tp) = new_trace(n);
    curl(server.port, path, Some(&tp));
    let ended = Instant::now();
    let (listed, p7) = agent.wait_listed(&trace, ended);
    eprintln!("traceprof {tag}: profile of trace {trace} listed {:.2} s after the request ended (P7 <= 5 s)", p7.as_secs_f64());
    let truth = server.truth(&trace);
    // The subject itself must have done what it is for (the lock is timed
    // from when the helper's signal is seen, which a busy CPU can delay).
    assert!(
        truth.cpu_ms >= 145.0 && truth.pg_ms >= 195.0 && truth.lock_ms >= 50.0,
        "the {tag} server's own timings are not ~150/200/100 ms: {truth:?}"
    );
    let id = listed["id"].as_str().map(str::to_string).unwrap_or_else(|| listed["id"].to_string());
    let profile = agent.json(&format!("/api/v1/profiles/{id}"));
    let folded = match http_get(agent.port, &format!("/api/v1/profiles/{id}/flamegraph?format=folded&type=both")) {
        Some((200, body)) => body,
        other => panic!("the {tag} profile's flame graph: {other:?}"),
    };
    let file = format!("/tmp/traceprof-{tag}.json");
    let pretty = serde_json::to_string_pretty(&profile).unwrap_or_default();
    if let Err(e) = std::fs::write(&file, pretty) {
        eprintln!("traceprof {tag}: cannot write {file}: {e}");
    }
    let drops = agent.metrics(&["dropped_events"]);
    if !drops.is_empty() {
        eprintln!("traceprof {tag}: the agent dropped events: {drops:?}");
    }
    let v = &profile["verdict"];
    eprintln!(
        "traceprof {tag}: server cpu {:.1} pg {:.1} lock {:.1} ms (run queue excluded) | verdict oncpu {:.1} net {:.1} lock {:.1} runqueue {:.1} \
         file {:.1} epoll {:.1} sleep {:.1} other {:.1} ms of {:.1} ms | {} | {file}",
        truth.cpu_ms,
        truth.net_ms(),
        truth.lock_wait_ms(),
        ms_of(v["oncpu_ns"].as_u64().unwrap_or(0)),
        ms_of(v["net_ns"].as_u64().unwrap_or(0)),
        ms_of(v["lock_ns"].as_u64().unwrap_or(0)),
        ms_of(v["runqueue_ns"].as_u64().unwrap_or(0)),
        ms_of(v["file_ns"].as_u64().unwrap_or(0)),
        ms_of(v["epoll_ns"].as_u64().unwrap_or(0)),
        ms_of(v["sleep_ns"].as_u64().unwrap_or(0)),
        ms_of(v["other_ns"].as_u64().unwrap_or(0)),
        ms_of(profile["request"]["duration_ns"].as_u64().unwrap_or(0)),
        v["summary"].as_str().unwrap_or("<no summary>"),
    );
    Measured { trace, truth, listed, profile, folded, p7 }
}

/// What is wrong with a measured request's profile (empty when all holds):
/// identity, trace link, why kept, P7, the downstream SQL.
fn identity_problems(m: &Measured, pid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let p = &m.profile;
    let mut check = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    check(m.listed["kept_because"] == "slow", format!("listed kept_because {}, want \"slow\"", m.listed["kept_because"]));
    check(p["trace_id"] == m.trace.as_str(), format!("trace_id {}, sent {}", p["trace_id"], m.trace));
    check(p["trace_type"] == "w3c", format!("trace_type {}, want \"w3c\" (traceparent)", p["trace_type"]));
    check(
        p["request"]["trace_id"] == m.trace.as_str() && p["request"]["trace_type"] == p["trace_type"],
        format!("request record trace {} / {}", p["request"]["trace_id"], p["request"]["trace_type"]),
    );
    check(p["kept_because"] == "slow", format!("kept_because {}, want \"slow\"", p["kept_because"]));
    check(p["request"]["pid"] == pid, format!("request pid {}, server pid {pid}", p["request"]["pid"]));
    check(p["request"]["side"] == "server", format!("request side {}", p["request"]["side"]));
    check(m.p7 <= P7, format!("P7: listed {:.2} s after the request ended (target <= 5 s)", m.p7.as_secs_f64()));
    let sql = downstream(p)
        .into_iter()
        .any(|d| d["protocol"] == "postgresql" && d["detail"].as_str().is_some_and(|s| s.contains("pg_sleep")));
    check(sql, "no slice's downstream holds the postgresql pg_sleep call".to_string());
    let threads = p["threads"].as_array().map_or(0, Vec::len);
    check(threads > 0, "no threads".to_string());
    bad
}

/// The verdict against the server's own clock, and the summary's names.
fn verdict_problems(m: &Measured, lang: Lang) -> Vec<String> {
    let v = &m.profile["verdict"];
    let summary = v["summary"].as_str().unwrap_or("");
    let mut bad: Vec<String> = [
        off("oncpu_ns", ns(v, "oncpu_ns"), m.truth.cpu_ms),
        off("net_ns", ns(v, "net_ns"), m.truth.net_ms()),
        off("lock_ns", ns(v, "lock_ns"), m.truth.lock_wait_ms()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !summary.contains(lang.cpu_function()) {
        bad.push(format!("summary {summary:?} does not name {}", lang.cpu_function()));
    }
    if !summary.contains("pg_sleep") {
        bad.push(format!("summary {summary:?} does not name pg_sleep"));
    }
    // The flame graph: the function on CPU, and the net and lock waits as roots.
    for want in [lang.cpu_function(), "offcpu:net;", "offcpu:lock;"] {
        if !m.folded.lines().any(|l| l.contains(want)) {
            bad.push(format!("the flame graph has no stack with {want:?}"));
        }
    }
    bad
}

/// Warm-up requests (the agent follows the server from its first one),
/// then a second for the agent to settle.
fn warm_up(server: &Server, n: usize) {
    for _ in 0..n {
        curl(server.port, "/work", None);
    }
    std::thread::sleep(Duration::from_secs(1));
    server.drain();
}

/// Three sequential measured requests to one server; every problem of every
/// request is reported at once.
fn three_requests_match_the_servers_clock(lang: Lang) {
    require_root();
    let pg = Postgres::start();
    let server = Server::start(lang, pg.port);
    let agent = Agent::start_with(Some(&config(server.pid())));
    warm_up(&server, lang.warmups());
    let mut problems = Vec::new();
    for i in 0..3u64 {
        let tag = format!("{}-{}", lang.name(), i + 1);
        let m = measure(&agent, &server, "/work", i + 1, &tag);
        for p in identity_problems(&m, server.pid()).into_iter().chain(verdict_problems(&m, lang)) {
            problems.push(format!("{tag} (trace {}): {p}", m.trace));
        }
    }
    assert!(problems.is_empty(), "{} server's profiles are off:\n  {}", lang.name(), problems.join("\n  "));
}

#[test]
fn traceprof_c_server_verdict_matches_the_servers_clock() {
    three_requests_match_the_servers_clock(Lang::C);
}

#[test]
fn traceprof_java_server_verdict_matches_the_servers_clock() {
    three_requests_match_the_servers_clock(Lang::Java);
}

#[test]
fn traceprof_go_server_verdict_matches_the_servers_clock() {
    three_requests_match_the_servers_clock(Lang::Go);
}

/// A C request with four threads spinning in the server's process, on a
/// machine with fewer cores; its profile and the server's pid.
fn starved_request(tag: &str) -> (Measured, u32) {
    require_root();
    let pg = Postgres::start();
    let server = Server::start(Lang::C, pg.port);
    let agent = Agent::start_with(Some(&config(server.pid())));
    warm_up(&server, Lang::C.warmups());
    let spinners = 4;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(spinners > cores, "this test needs more spinners ({spinners}) than cores ({cores})");
    let m = measure(&agent, &server, &format!("/work?spinners={spinners}"), 9, tag);
    eprintln!(
        "traceprof {tag}: burn took {:.1} ms of wall time for {:.1} ms of CPU (server's clocks)",
        m.truth.burn_wall_ms, m.truth.cpu_ms
    );
    (m, server.pid())
}

/// CPU starvation: the request waits in the run queue, and the verdict says so.
#[test]
fn traceprof_cpu_starved_request_shows_run_queue() {
    let (m, pid) = starved_request("c-starved");
    let duration = ns(&m.profile["request"], "duration_ns");
    let runqueue = ns(&m.profile["verdict"], "runqueue_ns");
    let mut problems = identity_problems(&m, pid);
    if runqueue * 10 <= duration {
        problems.push(format!("runqueue_ns {:.1} ms is not > 10% of the request's {:.1} ms", ms_of(runqueue), ms_of(duration)));
    }
    assert!(problems.is_empty(), "the starved request's profile is off (trace {}):\n  {}", m.trace, problems.join("\n  "));
}

/// CPU starvation does not blur the rest: the starved request's CPU time
/// (the thread's own clock), PostgreSQL wait and lock wait are still
/// attributed within 15%, the run-queue waits apart.
#[test]
fn traceprof_cpu_starved_request_keeps_its_cpu_pg_and_lock_shares() {
    let (m, _) = starved_request("c-starved-shares");
    let problems = verdict_problems(&m, Lang::C);
    assert!(problems.is_empty(), "the starved request's verdict is off (trace {}):\n  {}", m.trace, problems.join("\n  "));
}
