//! `kindling profile`: a flame graph of one process — on-CPU samples,
//! off-CPU time by reason, or both — in folded, pprof or speedscope format.
//!
//! Loads only the sched module, follows the process's threads for the
//! duration, then symbolizes while the process still runs.

use anyhow::{bail, Context};
use clap::Args;
use crossbeam_channel::{bounded, RecvTimeoutError};
use kindling_events::model::Event;
use kindling_events::wire::Decoder;
use kindling_probe::{Features, ProbeConfig, SchedConfig};
use kindling_profile::{Format, Profile, ProfileType, RawProfile, Symbolizer, Timelines};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// The process to profile (all its threads).
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// How long to profile (e.g. 500ms, 10s, 2m).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = crate::cli::parse_duration)]
    pub duration: Duration,
    /// oncpu: where CPU time goes (samples); offcpu: where threads wait, by
    /// reason (net, file, lock, epoll, sleep, runqueue, other); both.
    #[arg(long = "type", value_name = "TYPE", default_value = "oncpu", value_parser = ["oncpu", "offcpu", "both"])]
    pub kind: String,
    /// folded (flamegraph.pl), pprof (gzipped protobuf for `go tool pprof`), speedscope (JSON);
    /// or timeline: every thread's on/off-CPU slices with reasons, targets and stacks (JSON).
    #[arg(long, value_name = "FORMAT", default_value = "folded",
          value_parser = ["folded", "pprof", "speedscope", "timeline"])]
    pub format: String,
    /// Write the flame graph to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// On-CPU samples per second per CPU.
    #[arg(long, value_name = "HZ", default_value_t = kindling_profile::DEFAULT_SAMPLE_HZ,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub frequency: u32,
}

/// Events between the reader thread and the profile (overflow counted).
const QUEUE_LEN: usize = 64 * 1024;

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    let kind = ProfileType::from_name(&args.kind).context("bad --type")?;
    let format = Format::from_name(&args.format);
    if !std::path::Path::new(&format!("/proc/{}", args.pid)).exists() {
        bail!("no process {}", args.pid);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let cfg = ProbeConfig {
        features: Features {
            sockets: false,
            tcp: false,
            sched: Some(SchedConfig { pids: vec![args.pid], sample_hz: args.frequency, ..SchedConfig::default() }),
        },
        ..ProbeConfig::default()
    };
    let (tx, rx) = bounded::<Event>(QUEUE_LEN);
    let decoder = Decoder::new(kindling_probe::realtime_offset_ns());
    let (queue_full, decode_error) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (qf, de) = (queue_full.clone(), decode_error.clone());
    let probe = kindling_probe::start(cfg, move |raw| match decoder.decode(raw) {
        Ok(ev) => {
            if tx.try_send(ev).is_err() {
                qf.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            de.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    let control = probe.sched_control().context("the sched module did not load")?;
    let t0 = crate::source::now_ns();
    let started = Instant::now();
    eprintln!("kindling: profiling pid {} for {:?} ({} programs attached)", args.pid, args.duration, probe.programs().len());
    if control.go_pids().contains(&args.pid) {
        eprintln!("kindling: following the goroutines of pid {} (Go runtime probes attached)", args.pid);
    }

    let mut tl = Timelines::default();
    tl.enable_unwinding();
    // A Go program's wait reasons are named as its own runtime names them.
    if let Some(names) = control.go_wait_reasons(args.pid) {
        tl.set_go_wait_reasons(args.pid, names);
    }
    let mut sym = Symbolizer::new();
    // User stacks are named as they arrive: the process may be gone at the end.
    let observe = |tl: &mut Timelines, sym: &mut Symbolizer, ev: Event| {
        tl.observe(&ev);
        for (pid, frames) in tl.take_new_user_stacks() {
            sym.prefetch_user(pid, &frames);
        }
        if tl.take_stack_reset() {
            let _ = control.new_stack_generation();
        }
    };
    let alive_path = format!("/proc/{}", args.pid);
    let mut last_alive_check = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let Some(left) = args.duration.checked_sub(started.elapsed()) else { break };
        match rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(ev) => observe(&mut tl, &mut sym, ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A stat per 100 ms, not per event.
        if last_alive_check.elapsed() >= Duration::from_millis(100) {
            last_alive_check = std::time::Instant::now();
            if !std::path::Path::new(&alive_path).exists() {
                eprintln!("kindling: process {} exited", args.pid);
                break;
            }
        }
    }
    let t1 = crate::source::now_ns();
    let drops = probe.kernel_drop_counters();
    probe.stop()?;
    for ev in rx.try_iter() {
        observe(&mut tl, &mut sym, ev);
    }
    // Waits still going on when we detached (and turns on the CPU) end then:
    // count them too (the kernel's state outlives the programs).
    let mono_now = (crate::source::now_ns() as i64 - decoder.realtime_offset_ns) as u64;
    for raw in control.open_slices(mono_now) {
        if let Ok(ev) = decoder.decode(&raw) {
            observe(&mut tl, &mut sym, ev);
        }
    }

    let raw = RawProfile::collect(&tl, args.pid, t0, t1, kind, kindling_profile::sample_period_ns(args.frequency));
    let bytes = match format {
        Some(f) => f.render(&Profile::symbolize(&raw, &mut sym)),
        None => {
            let doc = kindling_profile::export::timeline(&tl, args.pid, t0, t1, &mut sym);
            let mut v = serde_json::to_vec(&doc).context("encoding the timeline")?;
            v.push(b'\n');
            v
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|_| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                r => r.context("writing the flame graph")?,
            }
        }
    }
    summary(&raw, &tl, &drops.get(), queue_full.load(Ordering::Relaxed), decode_error.load(Ordering::Relaxed));
    Ok(())
}

/// One line on stderr: what was seen, where off-CPU time went, what was lost.
fn summary(raw: &RawProfile, tl: &Timelines, kernel: &[(&str, u64)], queue_full: u64, decode_error: u64) {
    let secs = raw.end_ns.saturating_sub(raw.start_ns) as f64 / 1e9;
    let mut off: Vec<(&str, u64)> = raw.offcpu_ns.iter().map(|(k, v)| (*k, *v)).collect();
    off.sort_by_key(|o| std::cmp::Reverse(o.1));
    let off: Vec<String> = off.iter().map(|(k, v)| format!("{k}={:.3}s", *v as f64 / 1e9)).collect();
    let st = tl.stats();
    let mut drops: Vec<String> = kernel
        .iter()
        .filter(|(r, n)| *n > 0 && !r.is_empty())
        .map(|(r, n)| format!("{r}={n}"))
        .collect();
    for (r, n) in [
        ("queue_full", queue_full),
        ("decode_error", decode_error),
        ("profile_evicted", st.evicted),
        ("stack_unknown", st.stack_unknown),
    ] {
        if n > 0 {
            drops.push(format!("{r}={n}"));
        }
    }
    eprintln!(
        "kindling: {:.1}s of pid {}: {} on-CPU samples, off-CPU {}; {}",
        secs,
        raw.pid,
        raw.samples,
        if off.is_empty() { "none".to_string() } else { off.join(" ") },
        if drops.is_empty() { "nothing dropped".to_string() } else { format!("dropped: {}", drops.join(" ")) }
    );
}

/// For `kindling run` (call from the analysis loop every tick): pushes the
/// processes to follow to the kernel when they changed, starts a new stack
/// generation when the timelines forgot their stacks, and publishes what
/// profiling lost.
pub fn sync_agent(probe: &kindling_probe::ProbeHandle, p: &mut kindling_pipeline::Pipeline, t: &kindling_telemetry::Telemetry) {
    let pr = p.profiling_mut();
    if let Some(pids) = pr.interest.take_change() {
        match probe.set_sched_pids(&pids) {
            Ok(()) => {
                // Complete from now on, even before the first event arrives.
                let now = crate::source::now_ns();
                for pid in pids.iter().filter(|p| !pr.interest.is_applied(**p)) {
                    pr.timelines.followed(*pid, now);
                }
                let gone: Vec<u32> = pr.timelines.followed_pids().into_iter().filter(|p| !pids.contains(p)).collect();
                for pid in gone {
                    pr.timelines.unfollowed(pid);
                }
                pr.interest.applied(&pids);
            }
            Err(e) => tracing::warn!("cannot change the profiled processes: {e}"),
        }
        // Goroutine parks of Go programs name their wait reasons by number.
        if let Some(c) = probe.sched_control() {
            for pid in c.go_pids() {
                if let Some(names) = c.go_wait_reasons(pid) {
                    pr.timelines.set_go_wait_reasons(pid, names);
                }
            }
        }
    }
    if pr.timelines.take_stack_reset() {
        if let Some(c) = probe.sched_control() {
            let _ = c.new_stack_generation();
        }
    }
    let st = pr.timelines.stats();
    t.dropped("profile_evicted").set(st.evicted);
    t.dropped("profile_stack_unknown").set(st.stack_unknown);
    t.dropped("profile_processes_full").set(st.processes_full);
}
