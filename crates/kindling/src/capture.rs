//! `kindling capture`: live events to stdout and/or a capture file.

use crate::cli::CaptureArgs;
use crate::output::Printer;
use crate::source::{self, SourceOptions};
use anyhow::Context;
use crossbeam_channel::RecvTimeoutError;
use kindling_events::capture::{CaptureHeader, CaptureWriter, FORMAT_VERSION};
use kindling_events::model::{Event, EventBody};
use kindling_events::wire::WIRE_VERSION;
use kindling_sockets::SocketTable;
use kindling_telemetry::Telemetry;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(args: CaptureArgs) -> anyhow::Result<()> {
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
    // Scripts and tests wait for this line: from here on, nothing is missed.
    eprintln!("kindling: capturing ({} programs attached)", src.probe.programs().len());

    let mut writer = match &args.record {
        Some(path) => {
            let header = CaptureHeader {
                format_version: FORMAT_VERSION,
                wire_version: WIRE_VERSION,
                created_unix_ns: source::now_ns(),
                hostname: hostname(),
                kernel: src.probe.kernel().release.clone(),
                snaplen: args.snaplen,
                command: std::env::args().collect::<Vec<_>>().join(" "),
            };
            Some(CaptureWriter::create(path, &header)?)
        }
        None => None,
    };
    let stdout = std::io::stdout();
    let mut printer = Printer::new(std::io::BufWriter::new(stdout.lock()), args.json, args.payload);
    let mut table = SocketTable::default();
    let mut printed = 0u64;

    // With only ports to filter on, process lifecycle events are noise.
    let ports = &args.filter.ports;
    let sockets_only = !ports.is_empty() && args.filter.pids.is_empty();
    let mut handle = |mut ev: Event| -> anyhow::Result<()> {
        let keep = match &ev.body {
            EventBody::Socket(_) | EventBody::SocketSnapshot(_) => true,
            // TCP health is host-wide in the kernel: apply the port filter here.
            EventBody::Tcp(t) => ports.is_empty() || ports.contains(&t.src.port()) || ports.contains(&t.dst.port()),
            _ => !sockets_only,
        };
        if !keep {
            return Ok(());
        }
        table.observe(&mut ev);
        if let Some(w) = writer.as_mut() {
            w.write(&ev)?;
        }
        if !args.quiet {
            if let Err(e) = printer.print(&ev) {
                // A closed pipe (`| head`) ends the capture quietly.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    stop.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        printed += 1;
        Ok(())
    };

    for ev in src.snapshot {
        handle(ev)?;
    }
    let deadline = args.filter.duration.map(|d| started + d);
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
            Ok(ev) => handle(ev)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Detach, then take what the kernel had already delivered.
    let drops = src.probe.kernel_drop_counters();
    src.probe.stop()?;
    for ev in src.events.try_iter() {
        handle(ev)?;
    }
    printer.flush().ok();
    for (reason, n) in drops.get() {
        telemetry.dropped(reason).set(n);
    }
    let recorded = match writer {
        Some(w) => {
            let n = w.count();
            w.finish()?;
            Some(n)
        }
        None => None,
    };
    summary(&telemetry, printed, recorded, "events");
    Ok(())
}

/// One line on stderr: how much was seen and everything that was lost.
pub fn summary(t: &Telemetry, events: u64, recorded: Option<u64>, what: &str) {
    let drops: Vec<String> = t
        .family(kindling_telemetry::DROPPED_TOTAL)
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(l, v)| format!("{}={v}", l.first().map(|x| x.1.as_str()).unwrap_or("?")))
        .collect();
    let mut line = format!("kindling: {events} {what}");
    if let Some(n) = recorded {
        line.push_str(&format!(", {n} recorded"));
    }
    if drops.is_empty() {
        line.push_str(", nothing dropped");
    } else {
        line.push_str(&format!(", dropped: {}", drops.join(" ")));
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}
