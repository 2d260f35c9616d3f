//! Shared helpers for the root tests: running `kindling capture` around real
//! traffic, and the peer processes that make it.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Root tests must fail loudly, never skip, when they cannot run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("ROOT TEST: this test loads eBPF programs and must run as root (`make test` runs it as root)");
    }
}

pub fn kindling() -> &'static str {
    env!("CARGO_BIN_EXE_kindling")
}

pub fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers").join(name)
}

/// A running `kindling <command>`, its stdout lines parsed as they come
/// (a busy `requests` run prints hundreds of thousands of lines).
struct Agent<T> {
    child: Child,
    stdout: JoinHandle<Vec<T>>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl<T: Send + 'static> Agent<T> {
    fn spawn(command: &str, args: &[&str], parse: fn(&str) -> T) -> Agent<T> {
        let mut child = Command::new(kindling())
            .arg(command)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning kindling {command}: {e}"));
        let out = child.stdout.take().expect("stdout");
        let stdout =
            std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).map(|l| parse(&l)).collect());
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut agent = Agent { child, stdout, stderr: rx, stderr_seen: Vec::new() };
        agent.wait_ready(command);
        agent
    }

    fn wait_ready(&mut self, command: &str) {
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let ready = line.contains("kindling: capturing");
                    self.stderr_seen.push(line);
                    if ready {
                        return;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("kindling {command} did not become ready; stderr: {:?}", self.stderr_seen);
                }
            }
        }
    }

    /// Stops the agent (SIGINT) unless it ends by itself; its output and stderr.
    fn stop(mut self) -> (Vec<T>, Vec<String>) {
        // Let the reader drain what the kernel already delivered.
        std::thread::sleep(Duration::from_millis(300));
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill with a valid pid and signal.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        }
        let status = self.child.wait().expect("waiting for kindling");
        let lines = self.stdout.join().expect("stdout reader");
        self.stderr_seen.extend(self.stderr.try_iter());
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.stderr_seen.push(l);
        }
        assert!(status.success(), "kindling failed: {status}; stderr: {:?}", self.stderr_seen);
        (lines, self.stderr_seen)
    }
}

/// The closing summary line of `capture` or `requests`.
fn summary_of(stderr: &[String]) -> &str {
    stderr.iter().rev().find(|l| l.contains("dropped")).map(String::as_str).unwrap_or("")
}

/// A running `kindling capture --json` (plus any extra args).
pub struct Capture(Agent<Value>);

pub struct Captured {
    pub events: Vec<Value>,
    pub stderr: Vec<String>,
}

impl Capture {
    pub fn start(args: &[&str]) -> Capture {
        Capture(Agent::spawn("capture", args, |l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))
        }))
    }

    /// Stops the capture (SIGINT) unless it ends by itself, and parses its output.
    pub fn stop(self) -> Captured {
        let (events, stderr) = self.0.stop();
        Captured { events, stderr }
    }
}

impl Captured {
    /// The capture's closing summary line.
    pub fn summary(&self) -> &str {
        summary_of(&self.stderr)
    }

    /// Fails the test when the capture lost anything: counts would be wrong.
    pub fn assert_nothing_dropped(&self) {
        assert!(self.summary().contains("nothing dropped"), "capture dropped events: {}", self.summary());
    }

    pub fn of_kind<'a>(&'a self, pid: u32, kinds: &'a [&str]) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| {
            e["pid"].as_u64() == Some(pid as u64) && kinds.iter().any(|k| e["kind"] == *k)
        })
    }
}

pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

/// A peer process speaking `msgpeer.py`.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    pub fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new("python3")
            .arg(peer_script("msgpeer.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning python3 msgpeer.py");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stdin = child.stdin.take();
        Peer { child, stdin, lines: rx }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the peer prints that starts with `prefix`; returns the rest.
    pub fn expect_line(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("peer did not print {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}").expect("writing to peer");
        stdin.flush().expect("flushing peer stdin");
    }

    pub fn wait_ok(mut self) {
        let status = self.child.wait().expect("waiting for peer");
        assert!(status.success(), "peer failed: {status}");
    }
}

/// One `requests --json` record: the fields of the contract the tests read
/// (parsed by name, as a script or dashboard would).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Rec {
    pub start_ts_ns: u64,
    pub end_ts_ns: u64,
    pub protocol: String,
    pub side: String,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub src: String,
    pub dst: String,
    pub method: String,
    pub endpoint: String,
    #[serde(default)]
    pub detail: String,
    pub status: String,
    pub is_error: bool,
    pub is_slow: bool,
    #[serde(default)]
    pub error: String,
    pub duration_ns: u64,
    pub breakdown: Breakdown,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub trace_id: String,
    pub trace_type: String,
    pub sock_id: u64,
    #[serde(default)]
    pub tcp: TcpDuring,
}

/// TCP health seen on the request's connection while it was in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TcpDuring {
    pub retransmits: u32,
    pub srtt_us: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Breakdown {
    pub connect_ns: u64,
    pub request_sent_ns: u64,
    pub waiting_ttfb_ns: u64,
    pub content_download_ns: u64,
}

impl Rec {
    /// A response came (not `closed`/`timeout`, the agent's own statuses).
    pub fn answered(&self) -> bool {
        self.status != "closed" && self.status != "timeout"
    }

    pub fn dst_port(&self) -> u16 {
        port_of(&self.dst)
    }
}

/// A running `kindling requests --json` (plus any extra args).
pub struct Requests(Agent<Rec>);

pub struct RequestsOut {
    pub records: Vec<Rec>,
    pub stderr: Vec<String>,
}

impl Requests {
    pub fn start(args: &[&str]) -> Requests {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        Requests(Agent::spawn("requests", &all, |l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad request record {l:?}: {e}"))
        }))
    }

    /// Stops the agent (SIGINT); the records it printed.
    pub fn stop(self) -> RequestsOut {
        let (records, stderr) = self.0.stop();
        RequestsOut { records, stderr }
    }
}

impl RequestsOut {
    pub fn summary(&self) -> &str {
        summary_of(&self.stderr)
    }

    /// Fails the test when the agent lost events: counts would be wrong.
    pub fn assert_nothing_dropped(&self) {
        assert!(self.summary().contains("nothing dropped"), "kindling requests dropped events: {}", self.summary());
    }
}

/// The request records of a recording, as `kindling replay --json` prints them.
pub fn replay(file: &Path) -> Vec<String> {
    let out = Command::new(kindling()).args(["replay", "--json"]).arg(file).output().expect("running kindling replay");
    assert!(out.status.success(), "kindling replay failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 replay output").lines().map(str::to_string).collect()
}

/// A directory under cargo's scratch space for tests (`CARGO_TARGET_TMPDIR`),
/// created; subjects are built there and reused from run to run.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Runs a build step (gcc, javac, go build); fails the test with its stderr.
pub fn build_ok(cmd: &mut std::process::Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e} (scripts/install-deps.sh test installs it)"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}
