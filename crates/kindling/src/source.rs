//! The live event source: the probe's ring buffer, decoded on the reader
//! thread into a bounded queue, preceded by the /proc snapshot of what existed
//! before capture started. Every event that cannot be delivered is counted.

use crossbeam_channel::{bounded, Receiver};
use kindling_events::model::{Event, EventBody};
use kindling_events::wire::Decoder;
use kindling_probe::{ProbeConfig, ProbeError, ProbeHandle};
use kindling_procfs::ProcFs;
use kindling_telemetry::{Counter, Telemetry};
use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

/// Events between the reader thread and the analysis; bounds memory when the
/// analysis falls behind (overflow is counted as `queue_full`).
pub const QUEUE_LEN: usize = 32 * 1024;

pub struct SourceOptions {
    pub pids: Vec<u32>,
    pub ports: Vec<u16>,
    pub snaplen: u32,
    /// Load the sched module (profiling), following no process until told.
    pub sched: Option<kindling_probe::SchedConfig>,
}

pub struct LiveSource {
    pub events: Receiver<Event>,
    pub probe: ProbeHandle,
    /// What /proc showed right after the probes attached; feed these first.
    pub snapshot: Vec<Event>,
}

/// Per-kind event counters, resolved once so the hot path is an array index.
struct KindCounters {
    names: Vec<&'static str>,
    counters: Vec<Counter>,
}

impl KindCounters {
    fn new(t: &Telemetry) -> KindCounters {
        let names = vec![
            "connect", "connect_done", "accept", "send", "recv", "close", "exec", "exit", "fork", "rename",
            "sched_slice", "sched_sample", "sched_stack", "sched_file", "sched_stack_top",
        ];
        let counters = names.iter().map(|n| t.events(n)).collect();
        KindCounters { names, counters }
    }

    fn count(&self, kind: &str) {
        if let Some(i) = self.names.iter().position(|n| *n == kind) {
            self.counters[i].inc();
        }
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub fn start(opts: &SourceOptions, telemetry: &Telemetry) -> Result<LiveSource, ProbeError> {
    let procfs = ProcFs::default();
    let self_pid = std::process::id();
    // Processes forked before we started are not seen forking: add them now.
    let pid_set: Option<HashSet<u32>> =
        (!opts.pids.is_empty()).then(|| procfs.with_descendants(&opts.pids));
    let cfg = ProbeConfig {
        pids: pid_set.as_ref().map(|s| s.iter().copied().collect()).unwrap_or_default(),
        ports: opts.ports.clone(),
        snaplen: opts.snaplen,
        self_pid,
        features: kindling_probe::Features { sched: opts.sched.clone(), ..Default::default() },
        ..ProbeConfig::default()
    };
    // Drop-reason names differ between kernels: learn this one's before decoding.
    if let Ok(tracefs) = kindling_probe::preflight::ensure_tracefs() {
        kindling_events::tcp::load_drop_reason_names(&tracefs);
    }
    let (tx, rx) = bounded::<Event>(QUEUE_LEN);
    let decoder = Decoder::new(kindling_probe::realtime_offset_ns());
    let kinds = KindCounters::new(telemetry);
    let queue_full = telemetry.dropped("queue_full");
    let decode_error = telemetry.dropped("decode_error");
    let probe = kindling_probe::start(cfg, move |raw| match decoder.decode(raw) {
        Ok(ev) => {
            kinds.count(ev.kind());
            if tx.try_send(ev).is_err() {
                queue_full.inc();
            }
        }
        Err(e) => {
            decode_error.inc();
            tracing::debug!("undecodable record: {e}");
        }
    })?;

    // Snapshot after attaching: anything created from now on is seen live.
    let ports: HashSet<u16> = opts.ports.iter().copied().collect();
    let mut snapshot = procfs.snapshot(pid_set.as_ref(), now_ns(), self_pid);
    if !ports.is_empty() {
        let with_sockets: HashSet<u32> = snapshot
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::SocketSnapshot(s)
                    if ports.contains(&s.src.port()) || ports.contains(&s.dst.port()) =>
                {
                    Some(e.pid)
                }
                _ => None,
            })
            .collect();
        snapshot.retain(|e| match &e.body {
            EventBody::Tcp(t) => ports.contains(&t.src.port()) || ports.contains(&t.dst.port()),
            EventBody::SocketSnapshot(s) => ports.contains(&s.src.port()) || ports.contains(&s.dst.port()),
            _ => with_sockets.contains(&e.pid),
        });
    }
    Ok(LiveSource { events: rx, probe, snapshot })
}

/// Mirrors the kernel's drop counters into telemetry (call periodically).
pub fn publish_kernel_drops(probe: &ProbeHandle, telemetry: &Telemetry) {
    for (reason, n) in probe.kernel_drops() {
        telemetry.dropped(reason).set(n);
    }
}
