//! `kindling requests`: live request records.

use crate::cli::RequestsArgs;
use crate::output::RequestPrinter;
use crate::source::{self, SourceOptions};
use anyhow::Context;
use crossbeam_channel::RecvTimeoutError;
use kindling_events::capture::{CaptureHeader, CaptureWriter, FORMAT_VERSION};
use kindling_events::wire::WIRE_VERSION;
use kindling_pipeline::{Pipeline, PipelineConfig};
use kindling_workloads::ProcFsLookup;
use kindling_telemetry::Telemetry;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: RequestsArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let telemetry = Telemetry::new();
    let opts = SourceOptions {
        pids: args.filter.pids.clone(),
        ports: args.filter.ports.clone(),
        snaplen: args.snaplen,
        sched: None,
    };
    let src = source::start(&opts, &telemetry)?;
    let started = Instant::now();
    eprintln!("kindling: capturing ({} programs attached)", src.probe.programs().len());
    let mut writer = match &args.record {
        Some(path) => Some(CaptureWriter::create(
            path,
            &CaptureHeader {
                format_version: FORMAT_VERSION,
                wire_version: WIRE_VERSION,
                created_unix_ns: source::now_ns(),
                hostname: crate::capture::hostname(),
                kernel: src.probe.kernel().release.clone(),
                snaplen: args.snaplen,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            },
        )?),
        None => None,
    };
    let stdout = std::io::stdout();
    let mut printer = RequestPrinter::new(std::io::BufWriter::new(stdout.lock()), args.json);
    let mut analysis = Pipeline::new(PipelineConfig::default(), Box::new(ProcFsLookup::default()));
    let mut printed = 0u64;
    let mut emit = |printer: &mut RequestPrinter<_>, r: &kindling_requests::RequestRecord| -> anyhow::Result<()> {
        match printer.print(r) {
            Err(e) if e.kind() == ErrorKind::BrokenPipe => stop.store(true, Ordering::SeqCst),
            Err(e) => return Err(e.into()),
            Ok(()) => printed += 1,
        }
        Ok(())
    };

    for mut ev in src.snapshot {
        if let Some(w) = writer.as_mut() {
            w.write(&ev)?;
        }
        for r in analysis.process(&mut ev) {
            emit(&mut printer, r)?;
        }
    }
    let deadline = args.filter.duration.map(|d| started + d);
    let mut last_tick = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left.min(Duration::from_millis(100)),
                None => break,
            },
            None => Duration::from_millis(100),
        };
        match src.events.recv_timeout(wait) {
            Ok(mut ev) => {
                if let Some(w) = writer.as_mut() {
                    w.write(&ev)?;
                }
                for r in analysis.process(&mut ev) {
                    emit(&mut printer, r)?;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_tick.elapsed() >= Duration::from_millis(200) {
            for r in analysis.tick(source::now_ns()) {
                emit(&mut printer, r)?;
            }
            last_tick = Instant::now();
        }
    }
    let drops = src.probe.kernel_drop_counters();
    src.probe.stop()?;
    for mut ev in src.events.try_iter() {
        if let Some(w) = writer.as_mut() {
            w.write(&ev)?;
        }
        for r in analysis.process(&mut ev) {
            emit(&mut printer, r)?;
        }
    }
    for r in analysis.finish() {
        emit(&mut printer, r)?;
    }
    printer.flush().ok();
    if let Some(w) = writer {
        w.finish()?;
    }
    for (reason, n) in drops.get() {
        telemetry.dropped(reason).set(n);
    }
    crate::capture::summary(&telemetry, printed, None, "requests");
    Ok(())
}
