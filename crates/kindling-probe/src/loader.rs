//! Opening, configuring, loading and attaching the BPF object, and the
//! ring-buffer reader thread.
//!
//! The skeleton borrows storage that must outlive it, so everything that
//! touches it lives on one thread, which owns the storage on its stack: it
//! loads, attaches, reports readiness, then polls until told to stop.

use crate::bench_skel::BenchEmptySkelBuilder;
use crate::preflight::{self, KernelInfo, PreflightError};
use kindling_events::wire::DROP_REASONS;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, PrintLevel, RingBufferBuilder};
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Clone, Debug)]
pub struct ProbeConfig {
    /// Trace only these processes and their descendants (empty: all).
    pub pids: Vec<u32>,
    /// Trace only sockets with one of these ports at either end (empty: all).
    pub ports: Vec<u16>,
    /// Bytes of payload head captured per send/receive (at most 4096).
    pub snaplen: u32,
    /// Ring buffer size in bytes (a power of two, at least a page).
    pub ringbuf_bytes: u32,
    /// Our own process, whose activity is never traced.
    pub self_pid: u32,
    /// The reader drains the ring buffers at least this often.
    pub poll_interval: Duration,
    /// Which BPF modules to load.
    pub features: Features,
}

/// The BPF modules (one object each, in src/bpf/): every module has its own
/// ring buffer (`events`) and drop counters (`drop_counts`), read by the same
/// reader thread.
#[derive(Clone, Debug)]
pub struct Features {
    /// Socket syscalls and process lifecycle (kindling.bpf.c).
    pub sockets: bool,
    /// TCP health: retransmits, resets, RTT, drops, connects (tcp.bpf.c).
    pub tcp: bool,
    /// Scheduler timelines and CPU samples (sched.bpf.c); off when `None`.
    pub sched: Option<crate::sched::SchedConfig>,
}

impl Default for Features {
    fn default() -> Self {
        Features { sockets: true, tcp: true, sched: None }
    }
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            pids: Vec::new(),
            ports: Vec::new(),
            snaplen: 512,
            ringbuf_bytes: 16 << 20,
            self_pid: std::process::id(),
            poll_interval: Duration::from_millis(20),
            features: Features::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub name: String,
    /// The hook, e.g. `tracepoint/syscalls/sys_enter_read`.
    pub section: String,
    pub instructions: usize,
    /// The module (BPF object) it belongs to: `kindling`, `tcp`, `sched`.
    pub module: String,
    /// The kernel's id of the loaded program (0 if it could not be read).
    pub id: u32,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("invalid probe configuration: {0}")]
    Config(String),
    #[error("cannot open the BPF object: {0}")]
    Open(String),
    #[error("the kernel rejected BPF program {program}: {reason}")]
    Load { program: String, reason: String, verifier_log: Vec<String> },
    #[error("cannot attach BPF program {program} to {section}: {reason}")]
    Attach { program: String, section: String, reason: String },
    #[error("cannot set up BPF maps: {0}")]
    Maps(String),
    #[error("the ring-buffer reader thread failed: {0}")]
    Reader(String),
}

impl ProbeError {
    /// The verifier's own words, when the kernel refused a program.
    pub fn verifier_log(&self) -> &[String] {
        match self {
            ProbeError::Load { verifier_log, .. } => verifier_log,
            _ => &[],
        }
    }
}

/// A running probe. Dropping it detaches the programs.
pub struct ProbeHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), ProbeError>>>,
    kernel_drops: Arc<Vec<AtomicU64>>,
    programs: Vec<ProgramInfo>,
    kernel: KernelInfo,
    /// The sched module's controls, when it is loaded.
    sched: Option<Arc<crate::sched::SchedControl>>,
}

impl ProbeHandle {
    /// Follows exactly these processes in the sched module from now on (an
    /// error if the module is not loaded).
    pub fn set_sched_pids(&self, pids: &[u32]) -> Result<(), ProbeError> {
        match &self.sched {
            Some(c) => c.set_pids(pids),
            None => Err(ProbeError::Config("the sched module is not loaded".into())),
        }
    }

    /// A shareable handle on the sched module's controls (pids, stack generation).
    pub fn sched_control(&self) -> Option<Arc<crate::sched::SchedControl>> {
        self.sched.clone()
    }

    pub fn programs(&self) -> &[ProgramInfo] {
        &self.programs
    }

    pub fn kernel(&self) -> &KernelInfo {
        &self.kernel
    }

    /// Events the kernel side could not deliver, per reason (totals so far,
    /// refreshed by the reader about once a second and at stop).
    pub fn kernel_drops(&self) -> Vec<(&'static str, u64)> {
        kernel_drops_of(&self.kernel_drops)
    }

    /// A cheap shared view of the kernel drop counters, for telemetry.
    pub fn kernel_drop_counters(&self) -> KernelDrops {
        KernelDrops(self.kernel_drops.clone())
    }

    /// Detaches, drains what is left in the ring buffer, and joins the reader.
    pub fn stop(mut self) -> Result<(), ProbeError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ProbeError> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| ProbeError::Reader("reader thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ProbeHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Shared, read-only view of the kernel drop counters.
#[derive(Clone)]
pub struct KernelDrops(Arc<Vec<AtomicU64>>);

impl KernelDrops {
    pub fn get(&self) -> Vec<(&'static str, u64)> {
        kernel_drops_of(&self.0)
    }
}

fn kernel_drops_of(v: &[AtomicU64]) -> Vec<(&'static str, u64)> {
    DROP_REASONS.iter().zip(v).map(|(r, c)| (*r, c.load(Ordering::Relaxed))).collect()
}

/// libbpf's messages go to `tracing`; the latest lines are kept so a load
/// failure can quote the verifier.
fn libbpf_log() -> &'static Mutex<VecDeque<String>> {
    static LOG: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();
    LOG.get_or_init(|| Mutex::new(VecDeque::with_capacity(512)))
}

fn route_libbpf_print(level: PrintLevel, msg: String) {
    let msg = msg.trim_end().to_string();
    match level {
        PrintLevel::Warn => tracing::debug!(target: "libbpf", "{msg}"),
        PrintLevel::Info => tracing::debug!(target: "libbpf", "{msg}"),
        PrintLevel::Debug => tracing::trace!(target: "libbpf", "{msg}"),
    }
    if let Ok(mut log) = libbpf_log().lock() {
        for line in msg.lines() {
            if log.len() == 4096 {
                log.pop_front();
            }
            log.push_back(line.to_string());
        }
    }
}

fn install_libbpf_print() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        libbpf_rs::set_print(Some((PrintLevel::Debug, route_libbpf_print)));
    });
}

/// Turns a failed load into the program name and the verifier's log.
pub(crate) fn load_error(err: libbpf_rs::Error) -> ProbeError {
    let log: Vec<String> = libbpf_log().lock().map(|l| l.iter().cloned().collect()).unwrap_or_default();
    // libbpf says "prog 'NAME': failed to load: -13" after dumping the log.
    let program = log
        .iter()
        .rev()
        .find_map(|l| {
            let rest = l.split("prog '").nth(1)?;
            let (name, tail) = rest.split_once('\'')?;
            tail.contains("failed to load").then(|| name.to_string())
        })
        .unwrap_or_else(|| "(unknown)".into());
    let start = log.iter().rposition(|l| l.contains("-- BEGIN PROG LOAD LOG --")).unwrap_or(0);
    let verifier_log: Vec<String> = log[start..].to_vec();
    let reason = verifier_log
        .iter()
        .rev()
        .find(|l| {
            !l.contains("END PROG LOAD LOG")
                && !l.starts_with("processed ")
                && !l.contains("failed to load")
                && !l.trim().is_empty()
        })
        .cloned()
        .unwrap_or_else(|| err.to_string());
    ProbeError::Load { program, reason, verifier_log }
}

pub(crate) fn clear_libbpf_log() {
    if let Ok(mut l) = libbpf_log().lock() {
        l.clear();
    }
}

fn validate(cfg: &ProbeConfig) -> Result<(), ProbeError> {
    if cfg.snaplen as usize > kindling_events::wire::MAX_PAYLOAD {
        return Err(ProbeError::Config(format!(
            "snaplen {} is larger than the maximum {}",
            cfg.snaplen,
            kindling_events::wire::MAX_PAYLOAD
        )));
    }
    if !cfg.ringbuf_bytes.is_power_of_two() || cfg.ringbuf_bytes < 4096 {
        return Err(ProbeError::Config(format!(
            "ring buffer size {} must be a power of two of at least 4096 bytes",
            cfg.ringbuf_bytes
        )));
    }
    Ok(())
}

fn tracepoints_of<'a>(sections: impl Iterator<Item = &'a str>) -> Vec<String> {
    sections.filter_map(|s| s.strip_prefix("tracepoint/")).map(str::to_string).collect()
}

type Ready = Result<(Vec<ProgramInfo>, KernelInfo, Option<Arc<crate::sched::SchedControl>>), ProbeError>;

/// Loads and attaches Kindling's programs; `on_record` receives every raw
/// ring-buffer record on the reader thread.
pub fn start<F>(cfg: ProbeConfig, on_record: F) -> Result<ProbeHandle, ProbeError>
where
    F: FnMut(&[u8]) + Send + 'static,
{
    validate(&cfg)?;
    install_libbpf_print();
    let stop = Arc::new(AtomicBool::new(false));
    let drops: Arc<Vec<AtomicU64>> = Arc::new(DROP_REASONS.iter().map(|_| AtomicU64::new(0)).collect());
    let (ready_tx, ready_rx) = sync_channel::<Ready>(1);
    let (stop2, drops2) = (stop.clone(), drops.clone());

    let thread = thread::Builder::new()
        .name("kindling-ringbuf".into())
        .spawn(move || -> Result<(), ProbeError> {
            // Each module's skeleton borrows its storage: all live on this stack.
            let (mut s_sock, mut s_tcp, mut s_sched) =
                (MaybeUninit::uninit(), MaybeUninit::uninit(), MaybeUninit::uninit());
            let setup = setup_all(&mut s_sock, &mut s_tcp, &mut s_sched, &cfg);
            let (mut sock, mut tcp, mut sched, kernel) = match setup {
                Ok(v) => v,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let mut programs = Vec::new();
            for a in [sock.as_ref().map(|m| &m.attached), tcp.as_ref().map(|m| &m.attached), sched.as_ref().map(|m| &m.attached)]
                .into_iter()
                .flatten()
            {
                programs.extend(a.programs.iter().cloned());
            }
            // Links leave their modules so they can be dropped (detached)
            // while the maps the reader borrows stay alive.
            let mut links: Vec<std::sync::Arc<Link>> = Vec::new();
            for a in [sock.as_mut().map(|m| &mut m.attached), tcp.as_mut().map(|m| &mut m.attached), sched.as_mut().map(|m| &mut m.attached)]
                .into_iter()
                .flatten()
            {
                links.append(&mut a.links);
            }
            // What the reader needs from every module, borrowed from its skeleton.
            // TCP first: a retransmit precedes the response it delays, so within
            // one poll its event is consumed before the socket events.
            let mut views: Vec<(&dyn MapCore, &dyn MapCore)> = Vec::new();
            if let Some(m) = &tcp {
                views.push((&m.skel.maps.events, &m.skel.maps.drop_counts));
            }
            if let Some(m) = &sock {
                views.push((&m.skel.maps.events, &m.skel.maps.drop_counts));
            }
            if let Some(m) = &sched {
                views.push((&m.skel.maps.events, &m.skel.maps.drop_counts));
            }
            let on_record = std::rc::Rc::new(std::cell::RefCell::new(on_record));
            let mut builder = RingBufferBuilder::new();
            let mut add_err = None;
            for (events, _) in &views {
                let cb = on_record.clone();
                if let Err(e) = builder.add(*events, move |data: &[u8]| {
                    (cb.borrow_mut())(data);
                    0
                }) {
                    add_err = Some(e);
                }
            }
            let rb = match add_err {
                Some(e) => Err(e),
                None => builder.build(),
            };
            let sched_ctl = match sched.as_ref().map(|m| crate::sched::control(&m.skel, cfg.features.sched.as_ref())).transpose() {
                Ok(c) => c.map(Arc::new),
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let rb = match rb {
                Ok(rb) => rb,
                Err(e) => {
                    let _ = ready_tx.send(Err(ProbeError::Maps(format!("ring buffer: {e}"))));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok((programs, kernel, sched_ctl)));
            let mut last_drop_read = Instant::now();
            let attached = Instant::now();
            let mut adopted_retired = false;
            let read_all_drops = |views: &[(&dyn MapCore, &dyn MapCore)]| {
                let maps: Vec<&dyn MapCore> = views.iter().map(|v| v.1).collect();
                read_drops(&maps, &drops2);
            };
            while !stop2.load(Ordering::Relaxed) {
                // Events are submitted without wake-ups until a buffer fills
                // up, so poll on a timer and drain whatever is there.
                let _ = rb.poll(cfg.poll_interval);
                let _ = rb.consume();
                if last_drop_read.elapsed() >= Duration::from_secs(1) {
                    read_all_drops(&views);
                    if let (false, Some(m)) = (adopted_retired, sock.as_ref()) {
                        adopted_retired = crate::sockets::retire_adopted(&m.skel, attached);
                    }
                    last_drop_read = Instant::now();
                }
            }
            // Detach everything, then take what was already delivered.
            drop(links);
            let _ = rb.consume();
            read_all_drops(&views);
            Ok(())
        })
        .map_err(|e| ProbeError::Reader(e.to_string()))?;

    let (programs, kernel, sched) = match ready_rx.recv() {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let why = match thread.join() {
                Ok(Err(e)) => e.to_string(),
                _ => "reader thread ended before the probe was ready".into(),
            };
            return Err(ProbeError::Reader(why));
        }
    };
    Ok(ProbeHandle { stop, thread: Some(thread), kernel_drops: drops, programs, kernel, sched })
}

type Storage = MaybeUninit<libbpf_rs::OpenObject>;
type Loaded<'a> = (
    Option<Module<crate::skel::KindlingSkel<'a>>>,
    Option<Module<crate::tcp_skel::TcpSkel<'a>>>,
    Option<Module<crate::sched_skel::SchedSkel<'a>>>,
    KernelInfo,
);

/// Checks the kernel once, then loads and attaches every enabled module.
fn setup_all<'a>(
    s_sock: &'a mut Storage,
    s_tcp: &'a mut Storage,
    s_sched: &'a mut Storage,
    cfg: &ProbeConfig,
) -> Result<Loaded<'a>, ProbeError> {
    let kernel = preflight::check_base()?;
    crate::inspect::warn_degradations(&cfg.features);
    let sock = match cfg.features.sockets {
        true => Some(crate::sockets::setup(s_sock, cfg, &kernel)?),
        false => None,
    };
    let tcp = match cfg.features.tcp {
        true => Some(crate::tcp::setup(s_tcp, cfg, &kernel)?),
        false => None,
    };
    let sched = match &cfg.features.sched {
        Some(sc) => Some(crate::sched::setup(s_sched, cfg, sc, &kernel)?),
        None => None,
    };
    Ok((sock, tcp, sched, kernel))
}

/// A loaded module: its skeleton (which owns the object) and what attaching
/// it produced.
pub(crate) struct Module<S> {
    pub skel: S,
    pub attached: Attached,
}

#[derive(Default, Clone)]
pub(crate) struct Attached {
    pub links: Vec<std::sync::Arc<Link>>,
    pub programs: Vec<ProgramInfo>,
}

/// Opens a module's object and checks the tracepoints it needs exist.
pub(crate) fn check_sections(open: &libbpf_rs::OpenObject, kernel: &KernelInfo) -> Result<(), ProbeError> {
    let sections: Vec<String> = open.progs().map(|p| p.section().to_string_lossy().into_owned()).collect();
    let tps = tracepoints_of(sections.iter().map(String::as_str));
    let refs: Vec<&str> = tps.iter().map(String::as_str).collect();
    preflight::check_tracepoints(kernel, &refs)?;
    Ok(())
}

pub(crate) fn open_err(e: libbpf_rs::Error) -> ProbeError {
    ProbeError::Open(e.to_string())
}

pub(crate) fn attach_all(obj: &libbpf_rs::Object) -> Result<Attached, ProbeError> {
    let mut links = Vec::new();
    let mut programs = Vec::new();
    let object = obj.name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let module = object.strip_suffix("_bpf").unwrap_or(&object).to_string();
    for prog in obj.progs_mut() {
        use std::os::fd::AsFd;
        // A program left out of the load (a variant for other kernels).
        if !prog.autoload() {
            continue;
        }
        let info = ProgramInfo {
            name: prog.name().to_string_lossy().into_owned(),
            section: prog.section().to_string_lossy().into_owned(),
            instructions: prog.insn_cnt(),
            module: module.clone(),
            id: libbpf_rs::Program::id_from_fd(prog.as_fd()).unwrap_or(0),
        };
        let link = prog.attach().map_err(|e| ProbeError::Attach {
            program: info.name.clone(),
            section: info.section.clone(),
            reason: e.to_string(),
        })?;
        links.push(std::sync::Arc::new(link));
        programs.push(info);
    }
    Ok(Attached { links, programs })
}

/// Sums every module's per-CPU drop counters into `out` (by reason index).
fn read_drops(maps: &[&dyn MapCore], out: &[AtomicU64]) {
    for (i, slot) in out.iter().enumerate() {
        let key = (i as u32).to_ne_bytes();
        let mut total = 0u64;
        for map in maps {
            if let Ok(Some(per_cpu)) = map.lookup_percpu(&key, MapFlags::ANY) {
                total += per_cpu
                    .iter()
                    .filter_map(|v| v.get(..8).map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))))
                    .sum::<u64>();
            }
        }
        slot.store(total, Ordering::Relaxed);
    }
}

/// Attaches the empty programs of `bench_empty.bpf.c` to the same hooks, for
/// the overhead floor in `make bench`. Detached when the handle drops.
pub fn start_empty() -> Result<ProbeHandle, ProbeError> {
    install_libbpf_print();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = sync_channel::<Ready>(1);
    let stop2 = stop.clone();
    let thread = thread::Builder::new()
        .name("kindling-bench-empty".into())
        .spawn(move || -> Result<(), ProbeError> {
            let mut storage = MaybeUninit::uninit();
            let setup = (|| {
                let open = BenchEmptySkelBuilder::default()
                    .open(&mut storage)
                    .map_err(|e| ProbeError::Open(e.to_string()))?;
                let kernel = preflight::check_base()?;
                let skel = open.load().map_err(load_error)?;
                let a = attach_all(skel.object())?;
                Ok::<_, ProbeError>((a.links, a.programs, kernel))
            })();
            match setup {
                Ok((links, programs, kernel)) => {
                    let _ = ready_tx.send(Ok((programs, kernel, None)));
                    while !stop2.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(20));
                    }
                    drop(links);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
            Ok(())
        })
        .map_err(|e| ProbeError::Reader(e.to_string()))?;
    let (programs, kernel, _) = ready_rx
        .recv()
        .map_err(|_| ProbeError::Reader("bench thread ended early".into()))??;
    Ok(ProbeHandle {
        stop,
        thread: Some(thread),
        kernel_drops: Arc::new(Vec::new()),
        programs,
        kernel,
        sched: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracepoint_sections_are_extracted() {
        let tps = tracepoints_of(
            ["tracepoint/syscalls/sys_enter_read", "tp_btf/sched_process_exec"].into_iter(),
        );
        assert_eq!(tps, vec!["syscalls/sys_enter_read"]);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let cfg = ProbeConfig { snaplen: 100_000, ..Default::default() };
        assert!(matches!(validate(&cfg), Err(ProbeError::Config(_))));
        let cfg = ProbeConfig { ringbuf_bytes: 1000, ..Default::default() };
        assert!(matches!(validate(&cfg), Err(ProbeError::Config(_))));
        assert!(validate(&ProbeConfig::default()).is_ok());
    }
}
