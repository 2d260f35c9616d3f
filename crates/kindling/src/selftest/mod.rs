//! `kindling selftest`: will Kindling work on this host?
//!
//! Loads and attaches every BPF program of every module (all features on),
//! runs a workload in a child process (the agent never traces itself), and
//! checks that each kind of event arrived with sane values. Prints one line
//! per kernel feature, per program and per check, and a `summary` line the
//! kernel matrix (scripts/kernel-matrix) reads; any failure exits 1, quoting
//! the verifier when the kernel rejected a program.
//!
//! Programs are listed from the loaded objects, so a program added to a
//! module is covered without touching this file: it must load, attach, and
//! run at least once during the workload. Event checks live in one file per
//! module (`sockets.rs`, `tcp.rs`, `sched.rs`), registered in `MODULES`.

mod sched;
mod sockets;
mod tcp;
pub mod workload;

use crate::cli::SelftestArgs;
use anyhow::{anyhow, Context};
use kindling_events::model::{Event, EventBody};
use kindling_events::wire::Decoder;
use kindling_probe::inspect::{self, KernelFeatures};
use kindling_probe::{Features, ProbeConfig, ProbeError, ProgramInfo, SchedConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::Report;

/// Events kept for the checks; beyond this (a very busy host) they are
/// counted, not kept.
const MAX_EVENTS: usize = 200_000;

/// A module's event checks, given what the workload did and what arrived.
type CheckFn = fn(&Observed) -> Vec<Outcome>;

/// Every module's checks, by the module name its programs report.
const MODULES: &[(&str, CheckFn)] = &[("kindling", sockets::checks), ("tcp", tcp::checks), ("sched", sched::checks)];

/// The verdict of one check.
pub struct Outcome {
    pub name: String,
    /// Ok(details) or Err(what is wrong); `None` when it does not apply here.
    pub result: Option<Result<String, String>>,
}

impl Outcome {
    pub fn new(name: impl Into<String>, result: Result<String, String>) -> Outcome {
        Outcome { name: name.into(), result: Some(result) }
    }

    pub fn not_applicable(name: impl Into<String>, why: impl Into<String>) -> Outcome {
        Outcome { name: name.into(), result: None }.with_note(why)
    }

    fn with_note(mut self, why: impl Into<String>) -> Outcome {
        self.name = format!("{} ({})", self.name, why.into());
        self
    }
}

/// What the checks look at.
pub struct Observed {
    pub report: Report,
    /// Every decoded event, in arrival order.
    pub events: Vec<Event>,
    /// Wall-clock bounds of the workload (ns since the epoch), with a margin.
    pub window: (u64, u64),
    pub features: KernelFeatures,
    pub cpus: u32,
}

impl Observed {
    /// Events of the workload process.
    pub fn of_workload(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.pid == self.report.pid)
    }

    /// Header sanity shared by every event kind: time, CPU, thread ids.
    pub fn sane_header(&self, e: &Event) -> Result<(), String> {
        if e.ts_ns < self.window.0 || e.ts_ns > self.window.1 {
            return Err(format!("timestamp {} outside the test window {:?}", e.ts_ns, self.window));
        }
        if e.cpu >= self.cpus {
            return Err(format!("cpu {} but the host has {}", e.cpu, self.cpus));
        }
        if e.pid == 0 && !matches!(e.body, EventBody::Tcp(_)) {
            return Err("pid 0".into());
        }
        Ok(())
    }
}

/// Prints aligned result lines and keeps the score.
#[derive(Default)]
struct Score {
    programs_total: usize,
    programs_loaded: usize,
    checks_total: usize,
    checks_passed: usize,
    failed: bool,
}

impl Score {
    fn line(&mut self, what: &str, ok: Option<bool>, subject: &str, detail: &str) {
        let verdict = match ok {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "n/a",
        };
        if ok == Some(false) {
            self.failed = true;
        }
        println!("{what:<8} {verdict:<4} {subject:<44} {detail}");
    }

    fn check(&mut self, module: &str, o: &Outcome) {
        let subject = format!("{module}: {}", o.name);
        match &o.result {
            None => self.line("check", None, &subject, ""),
            Some(r) => {
                self.checks_total += 1;
                if r.is_ok() {
                    self.checks_passed += 1;
                }
                let detail = match r {
                    Ok(d) | Err(d) => d.as_str(),
                };
                self.line("check", Some(r.is_ok()), &subject, detail);
            }
        }
    }
}

pub fn run(args: SelftestArgs) -> anyhow::Result<()> {
    if let Some(code) = args.exit_with {
        std::process::exit(code);
    }
    if args.workload {
        return workload::child_main();
    }
    let mut score = Score::default();
    let release = kindling_probe::preflight::kernel_release().unwrap_or_else(|_| "unknown".into());
    println!("kindling selftest: kernel {release}");
    let features = KernelFeatures::detect();
    print_features(&features);

    let mut child = spawn_workload()?;
    let result = probe_and_check(&args, &mut child, &features, &mut score);
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        score.line("error", Some(false), "selftest", &format!("{e:#}"));
    }
    println!(
        "summary kernel={release} programs_loaded={} programs_total={} checks_passed={} checks_total={} result={}",
        score.programs_loaded,
        score.programs_total,
        score.checks_passed,
        score.checks_total,
        if score.failed { "FAIL" } else { "PASS" }
    );
    if score.failed {
        return Err(anyhow!("selftest failed on kernel {release}"));
    }
    Ok(())
}

/// What the kernel offers; each fallback taken is also announced by the probe
/// itself at start-up (one warning line each).
fn print_features(f: &KernelFeatures) {
    for (name, present) in [
        ("task storage from tracepoints", f.task_storage),
        ("bpf_loop", f.bpf_loop),
        ("bpf_rdonly_cast", f.rdonly_cast),
        ("bpf_get_current_task_btf", f.current_task_btf),
        ("kfree_skb drop reasons", f.skb_drop_reason),
        ("bpf_task_pt_regs", f.task_pt_regs),
        ("sched_switch prev_state", f.switch_prev_state),
    ] {
        println!("feature  {:<4} {name}", if present { "yes" } else { "no" });
    }
}

fn spawn_workload() -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    Command::new(exe)
        .args(["selftest", "--workload"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the workload process")
}

/// What the reader thread hands over.
#[derive(Default)]
struct Sink {
    events: Vec<Event>,
    overflow: u64,
    decode_errors: u64,
    first_error: Option<String>,
}

fn probe_and_check(
    args: &SelftestArgs,
    child: &mut Child,
    features: &KernelFeatures,
    score: &mut Score,
) -> anyhow::Result<()> {
    let child_pid = child.id();
    let sched = SchedConfig { pids: vec![child_pid], sample_hz: 99, ..SchedConfig::default() };
    let cfg = ProbeConfig {
        features: Features { sockets: true, tcp: true, sched: Some(sched) },
        ..ProbeConfig::default()
    };
    if let Ok(tracefs) = kindling_probe::preflight::ensure_tracefs() {
        kindling_events::tcp::load_drop_reason_names(&tracefs);
    }
    let sink = Arc::new(Mutex::new(Sink::default()));
    let decoder = Decoder::new(kindling_probe::realtime_offset_ns());
    let sink2 = sink.clone();
    let stats = inspect::enable_run_stats();
    let probe = kindling_probe::start(cfg.clone(), move |raw| {
        let Ok(mut s) = sink2.lock() else { return };
        match decoder.decode(raw) {
            Ok(ev) if s.events.len() < MAX_EVENTS => s.events.push(ev),
            Ok(_) => s.overflow += 1,
            Err(e) => {
                s.decode_errors += 1;
                s.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    });
    let probe = match probe {
        Ok(p) => p,
        Err(e) => {
            report_load_failure(&e, &cfg.features, args.verbose, score);
            return Ok(());
        }
    };
    let programs: Vec<ProgramInfo> = probe.programs().to_vec();
    score.programs_total = programs.len();
    score.programs_loaded = programs.len();
    let before = inspect::run_counts();

    let start = now_ns();
    let report = drive_workload(child)?;
    // The reader drains every poll interval (20 ms); leave it a few rounds.
    settle(&sink, Duration::from_millis(300), Duration::from_secs(3));
    let after = inspect::run_counts();
    let drops = probe.kernel_drops();
    probe.stop().context("stopping the probe")?;
    let end = now_ns();

    report_programs(&programs, &before, &after, stats.is_ok(), score);
    if let Err(e) = &stats {
        score.line("note", None, "program run counts", &format!("unavailable: {e}"));
    }
    let sink = std::mem::take(&mut *sink.lock().map_err(|_| anyhow!("event sink poisoned"))?);
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1).max(possible_cpus());
    let obs = Observed {
        report,
        events: sink.events,
        window: (start.saturating_sub(1_000_000_000), end + 1_000_000_000),
        features: features.clone(),
        cpus,
    };
    generic_checks(&obs, &programs, &drops, sink.decode_errors, sink.first_error, sink.overflow, score);
    for (module, checks) in MODULES {
        // A module without programs (not built yet, or not on this kernel)
        // has nothing to check.
        if !programs.iter().any(|p| p.module == *module) {
            continue;
        }
        for o in checks(&obs) {
            score.check(module, &o);
        }
    }
    Ok(())
}

fn now_ns() -> u64 {
    crate::source::now_ns()
}

/// CPUs the kernel may number (events carry the CPU id, which can exceed the
/// count of online CPUs on hosts with holes).
fn possible_cpus() -> u32 {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    s.trim().rsplit(['-', ',']).next().and_then(|n| n.parse::<u32>().ok()).map(|n| n + 1).unwrap_or(1)
}

/// Starts the workload and waits for its report.
fn drive_workload(child: &mut Child) -> anyhow::Result<Report> {
    let mut stdin = child.stdin.take().context("workload stdin")?;
    writeln!(stdin, "go").context("starting the workload")?;
    drop(stdin);
    let stdout = child.stdout.take().context("workload stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("reading the workload's report")?;
    let status = child.wait().context("waiting for the workload")?;
    if !status.success() || line.trim().is_empty() {
        return Err(anyhow!("the workload failed ({status}); see its message above"));
    }
    serde_json::from_str(&line).context("parsing the workload's report")
}

/// Waits until no event arrived for `quiet`, at most `max`.
fn settle(sink: &Mutex<Sink>, quiet: Duration, max: Duration) {
    let t = Instant::now();
    let count = || sink.lock().map(|s| s.events.len() + s.overflow as usize).unwrap_or(0);
    let mut last = count();
    let mut since = Instant::now();
    while t.elapsed() < max {
        std::thread::sleep(Duration::from_millis(50));
        let n = count();
        if n != last {
            last = n;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
}

fn report_programs(
    programs: &[ProgramInfo],
    before: &HashMap<u32, u64>,
    after: &HashMap<u32, u64>,
    counted: bool,
    score: &mut Score,
) {
    for p in programs {
        let subject = format!("{}: {}", p.module, p.name);
        let ran = after.get(&p.id).copied().unwrap_or(0).saturating_sub(before.get(&p.id).copied().unwrap_or(0));
        let detail = format!("{} ({} insns)", p.section, p.instructions);
        if !counted {
            score.line("program", Some(true), &subject, &format!("{detail}, attached"));
        } else if ran == 0 {
            score.line("program", Some(false), &subject, &format!("{detail}, attached but never ran"));
        } else {
            score.line("program", Some(true), &subject, &format!("{detail}, ran {ran} times"));
        }
    }
}

/// When loading failed: say which program and why (the verifier's words),
/// then load each module alone to show which ones do work on this kernel.
fn report_load_failure(e: &ProbeError, all: &Features, verbose: bool, score: &mut Score) {
    let subject = match e {
        ProbeError::Load { program, .. } | ProbeError::Attach { program, .. } => format!("load: {program}"),
        _ => "start".to_string(),
    };
    score.line("program", Some(false), &subject, &e.to_string());
    let log = e.verifier_log();
    let shown = if verbose { log.len() } else { 40.min(log.len()) };
    if shown < log.len() {
        println!("  | ... ({} earlier lines of the verifier log; --verbose shows all)", log.len() - shown);
    }
    for l in &log[log.len() - shown..] {
        println!("  | {l}");
    }
    if !matches!(e, ProbeError::Load { .. } | ProbeError::Attach { .. }) {
        return;
    }
    let alone = [
        ("kindling", Features { sockets: true, tcp: false, sched: None }),
        ("tcp", Features { sockets: false, tcp: true, sched: None }),
        ("sched", Features { sockets: false, tcp: false, sched: all.sched.clone().or(Some(SchedConfig::default())) }),
    ];
    let mut loaded = 0;
    let mut modules = BTreeMap::new();
    for (name, features) in alone {
        let cfg = ProbeConfig { features, ..ProbeConfig::default() };
        match kindling_probe::start(cfg, |_| {}) {
            Ok(p) => {
                loaded += p.programs().len();
                modules.insert(name, format!("{} programs load alone", p.programs().len()));
                let _ = p.stop();
            }
            Err(e) => {
                modules.insert(name, format!("fails alone: {e}"));
            }
        }
    }
    for (name, what) in modules {
        let ok = !what.starts_with("fails");
        score.line("module", Some(ok), name, &what);
    }
    score.programs_loaded = loaded;
    score.programs_total = inspect::program_count(all).unwrap_or(loaded);
    score.line("check", None, "event checks", "not run: the probe did not start");
}

/// Checks every module shares: records decode, nothing is lost, and every
/// module that has programs delivered events.
fn generic_checks(
    obs: &Observed,
    programs: &[ProgramInfo],
    drops: &[(&'static str, u64)],
    decode_errors: u64,
    first_error: Option<String>,
    overflow: u64,
    score: &mut Score,
) {
    let decoded = match decode_errors {
        0 => Ok(format!("{} events", obs.events.len() as u64 + overflow)),
        n => Err(format!("{n} records did not decode, first: {}", first_error.unwrap_or_default())),
    };
    score.check("all", &Outcome::new("every record decodes", decoded));
    let lost: Vec<String> = drops.iter().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
    let lost = if lost.is_empty() { Ok("nothing dropped".into()) } else { Err(format!("dropped: {}", lost.join(" "))) };
    score.check("all", &Outcome::new("no event lost in the kernel", lost));
    let mut modules: Vec<&str> = programs.iter().map(|p| p.module.as_str()).collect();
    modules.sort_unstable();
    modules.dedup();
    for m in modules {
        let n = obs.events.iter().filter(|e| module_of(e) == Some(m)).count();
        let r = if n > 0 { Ok(format!("{n} events")) } else { Err("no event from this module".into()) };
        score.check(m, &Outcome::new("events arrive", r));
    }
}

/// The module an event comes from (the wire kind ranges of kindling.h).
fn module_of(e: &Event) -> Option<&'static str> {
    match e.body {
        EventBody::Socket(_) | EventBody::Exec(_) | EventBody::Exit(_) | EventBody::Fork(_) | EventBody::Rename(_) => {
            Some("kindling")
        }
        EventBody::Tcp(_) => Some("tcp"),
        EventBody::Sched(_) => Some("sched"),
        EventBody::ProcessSnapshot(_) | EventBody::SocketSnapshot(_) => None,
    }
}
