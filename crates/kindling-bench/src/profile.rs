//! Profiling overhead: the throughput of a workload process while the sched
//! module follows it (99 Hz samples, every context switch with stacks, the
//! events decoded into timelines as `kindling run` does), against the same
//! workload unprofiled, alternated so drift hits both sides.
//!
//! Two workloads, run in a child process (the agent never follows itself):
//! - cpu-bound: one spinning thread per CPU, counting loop iterations;
//! - context-switch: two threads ping-ponging a byte over a socket pair, so
//!   every round trip blocks and wakes each thread once.

use kindling_events::wire::Decoder;
use kindling_probe::{Features, ProbeConfig, SchedConfig};
use kindling_profile::Timelines;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set in a child's environment: run this workload instead of the bench.
pub const WORKLOAD_ENV: &str = "KINDLING_BENCH_PROFILE_WORKLOAD";
const RUN: Duration = Duration::from_secs(2);
const ROUNDS: usize = 3;

#[derive(Clone, Copy)]
enum Work {
    Cpu,
    Switch,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Cpu => "cpu",
            Work::Switch => "switch",
        }
    }
}

/// The child side: waits for a line on stdin, runs, prints operations per second.
pub fn workload(kind: &str) -> anyhow::Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let ops = match kind {
        "cpu" => spin_all(),
        "switch" => ping_pong()?,
        other => anyhow::bail!("unknown workload {other}"),
    };
    println!("{:.0}", ops as f64 / RUN.as_secs_f64());
    Ok(())
}

fn spin_all() -> u64 {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let total = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let total = total.clone();
            std::thread::spawn(move || {
                let end = Instant::now() + RUN;
                let (mut x, mut ops) = (1u64, 0u64);
                while Instant::now() < end {
                    for _ in 0..10_000 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    ops += 1;
                }
                std::hint::black_box(x);
                total.fetch_add(ops, Ordering::Relaxed);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    total.load(Ordering::Relaxed)
}

fn ping_pong() -> anyhow::Result<u64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + RUN;
    let mut n = 0u64;
    let mut buf = [0u8; 1];
    while Instant::now() < end {
        a.write_all(b"x")?;
        a.read_exact(&mut buf)?;
        n += 1;
    }
    drop(a);
    let _ = echo.join();
    Ok(n)
}

/// One run: (operations per second, sched events per second, kernel drops).
fn run(work: Work, profiled: bool) -> anyhow::Result<(f64, f64, u64)> {
    let mut child = Command::new(std::env::current_exe()?)
        .env(WORKLOAD_ENV, work.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let events = Arc::new(AtomicU64::new(0));
    let probe = if profiled {
        let cfg = ProbeConfig {
            features: Features {
                sockets: false,
                tcp: false,
                sched: Some(SchedConfig { pids: vec![child.id()], ..SchedConfig::default() }),
            },
            ..ProbeConfig::default()
        };
        let decoder = Decoder::new(kindling_probe::realtime_offset_ns());
        let mut tl = Timelines::default();
        let n = events.clone();
        Some(kindling_probe::start(cfg, move |raw| {
            if let Ok(ev) = decoder.decode(raw) {
                tl.observe(&ev);
                n.fetch_add(1, Ordering::Relaxed);
            }
        })?)
    } else {
        None
    };
    writeln!(child.stdin.as_mut().ok_or_else(|| anyhow::anyhow!("no stdin"))?, "go")?;
    line.clear();
    out.read_line(&mut line)?;
    let ops: f64 = line.trim().parse().map_err(|_| anyhow::anyhow!("bad workload output {line:?}"))?;
    let drops = match probe {
        Some(p) => {
            let d = p.kernel_drop_counters();
            p.stop()?;
            d.get().iter().map(|(_, n)| n).sum()
        }
        None => 0,
    };
    let _ = child.wait();
    Ok((ops, events.load(Ordering::Relaxed) as f64 / RUN.as_secs_f64(), drops))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn profiling() -> anyhow::Result<()> {
    for (work, label, unit) in [
        (Work::Cpu, "cpu-bound", "k loop blocks/s"),
        (Work::Switch, "context-switch", "k round trips/s"),
    ] {
        let (mut off, mut on, mut rate, mut drops) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..ROUNDS {
            off.push(run(work, false)?.0);
            let (ops, ev, d) = run(work, true)?;
            on.push(ops);
            rate.push(ev);
            drops += d;
        }
        let scale = match work {
            Work::Cpu => 1e3,
            Work::Switch => 1e3,
        };
        let (off, on) = (median(off), median(on));
        println!(
            "profiling ({label}): throughput profiled / unprofiled = {:.3} ({:.2} vs {:.2} {unit}; {:.0} sched events/s, {drops} dropped)",
            on / off,
            on / scale,
            off / scale,
            median(rate)
        );
    }
    Ok(())
}
