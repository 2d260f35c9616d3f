//! Opening, configuring, loading and attaching the BPF object, and the
//! ring-buffer reader thread.
//!
//! The skeleton borrows storage that must outlive it, so everything that
//! touches it lives on one thread, which owns the storage on its stack: it
//! loads, attaches, reports readiness, then polls until told to stop.

use crate::bench_skel::BenchEmptySkelBuilder;
use crate::preflight::{self, KernelInfo, PreflightError};
use crate::skel::KindlingSkelBuilder;
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
    /// The reader drains the ring buffer at least this often.
    pub poll_interval: Duration,
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
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub name: String,
    /// The hook, e.g. `tracepoint/syscalls/sys_enter_read`.
    pub section: String,
    pub instructions: usize,
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
}

impl ProbeHandle {
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
fn load_error(err: libbpf_rs::Error) -> ProbeError {
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

fn clear_libbpf_log() {
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

type Ready = Result<(Vec<ProgramInfo>, KernelInfo), ProbeError>;

/// Loads and attaches Kindling's programs; `on_record` receives every raw
/// ring-buffer record on the reader thread.
pub fn start<F>(cfg: ProbeConfig, mut on_record: F) -> Result<ProbeHandle, ProbeError>
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
            let mut storage = MaybeUninit::uninit();
            let setup = setup_kindling(&mut storage, &cfg);
            let (mut skel, links, programs, kernel) = match setup {
                Ok(v) => v,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(());
                }
            };
            let mut builder = RingBufferBuilder::new();
            let rb = builder
                .add(&skel.maps.events, |data: &[u8]| {
                    on_record(data);
                    0
                })
                .map(|_| ())
                .and_then(|_| builder.build());
            let rb = match rb {
                Ok(rb) => rb,
                Err(e) => {
                    let _ = ready_tx.send(Err(ProbeError::Maps(format!("ring buffer: {e}"))));
                    return Ok(());
                }
            };
            let _ = ready_tx.send(Ok((programs, kernel)));
            let mut last_drop_read = Instant::now();
            let attached = Instant::now();
            let mut adopted_retired = false;
            while !stop2.load(Ordering::Relaxed) {
                // Events are submitted without wake-ups until the buffer fills
                // up, so poll on a timer and drain whatever is there.
                let _ = rb.poll(cfg.poll_interval);
                let _ = rb.consume();
                if last_drop_read.elapsed() >= Duration::from_secs(1) {
                    read_drops(&skel.maps.drop_counts, &drops2);
                    if !adopted_retired {
                        adopted_retired = retire_adopted(&mut skel, attached);
                    }
                    last_drop_read = Instant::now();
                }
            }
            drop(links);
            let _ = rb.consume();
            read_drops(&skel.maps.drop_counts, &drops2);
            Ok(())
        })
        .map_err(|e| ProbeError::Reader(e.to_string()))?;

    let (programs, kernel) = match ready_rx.recv() {
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
    Ok(ProbeHandle { stop, thread: Some(thread), kernel_drops: drops, programs, kernel })
}

type Loaded<'obj> = (crate::skel::KindlingSkel<'obj>, Vec<Link>, Vec<ProgramInfo>, KernelInfo);

fn setup_kindling<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    cfg: &ProbeConfig,
) -> Result<Loaded<'obj>, ProbeError> {
    let mut open = KindlingSkelBuilder::default()
        .open(storage)
        .map_err(|e| ProbeError::Open(e.to_string()))?;
    let sections: Vec<String> =
        open.open_object().progs().map(|p| p.section().to_string_lossy().into_owned()).collect();
    let tps = tracepoints_of(sections.iter().map(String::as_str));
    let tp_refs: Vec<&str> = tps.iter().map(String::as_str).collect();
    let kernel = preflight::check(&tp_refs)?;
    let ro = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| ProbeError::Open("object has no .rodata".into()))?;
    ro.self_tgid = cfg.self_pid;
    ro.snaplen = cfg.snaplen;
    ro.filter_pids = !cfg.pids.is_empty();
    ro.filter_ports = !cfg.ports.is_empty();
    ro.wakeup_bytes = (cfg.ringbuf_bytes / 8) as u64;
    let task_storage = task_storage_supported();
    ro.use_task_storage = task_storage;
    let maps_err = |what: &str, e: libbpf_rs::Error| ProbeError::Config(format!("{what}: {e}"));
    if task_storage {
        // The hash map is the fallback; keep it minimal when unused.
        open.maps.inflight.set_max_entries(1).map_err(|e| maps_err("inflight map", e))?;
    } else {
        tracing::info!("task-local storage unavailable to tracepoints: in-flight syscalls kept in a hash map");
        open.maps.inflight_ts.set_autocreate(false).map_err(|e| maps_err("inflight_ts map", e))?;
    }
    open.maps
        .events
        .set_max_entries(cfg.ringbuf_bytes)
        .map_err(|e| ProbeError::Config(format!("ring buffer size: {e}")))?;
    clear_libbpf_log();
    let mut skel = open.load().map_err(load_error)?;
    for pid in &cfg.pids {
        skel.maps
            .pid_filter
            .update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY)
            .map_err(|e| ProbeError::Maps(format!("pid filter: {e}")))?;
    }
    for port in &cfg.ports {
        skel.maps
            .port_filter
            .update(&(*port as u32).to_ne_bytes(), &[1u8], MapFlags::ANY)
            .map_err(|e| ProbeError::Maps(format!("port filter: {e}")))?;
    }
    let (links, programs) = attach_all(skel.object())?;
    adopt_in_flight(&mut skel, cfg);
    Ok((skel, links, programs, kernel))
}

/// Can tracepoint programs use task-local storage (5.19+ in practice)?
fn task_storage_supported() -> bool {
    let helper = libbpf_rs::ProgramType::Tracepoint
        .is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_task_storage_get)
        .unwrap_or(false);
    let map = libbpf_rs::MapType::TaskStorage.is_supported().unwrap_or(false);
    helper && map
}

/// Hands syscalls that were already blocked at attach to the BPF side.
fn adopt_in_flight(skel: &mut crate::skel::KindlingSkel<'_>, cfg: &ProbeConfig) {
    let pids: Option<std::collections::HashSet<u32>> =
        (!cfg.pids.is_empty()).then(|| cfg.pids.iter().copied().collect());
    let mut n = 0;
    for a in crate::adopt::scan(pids.as_ref(), cfg.self_pid) {
        let mut v = crate::skel::types::inflight::default();
        v.fd = a.fd;
        v.syscall = a.syscall;
        v.buf = a.buf;
        v.addr = a.addr;
        v.count = a.count;
        // ts = 0 (start unknown), has_info = 0 (resolve the socket at exit).
        if skel.maps.adopted.update(&a.tid.to_ne_bytes(), pod_bytes(&v), MapFlags::ANY).is_ok() {
            n += 1;
        }
    }
    if n > 0 {
        set_adopted_active(skel, true);
        tracing::debug!("adopted {n} syscalls in flight at attach");
    }
}

fn set_adopted_active(skel: &mut crate::skel::KindlingSkel<'_>, on: bool) {
    if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
        // SAFETY: `bss` is the live mmap of the object's .bss; a volatile write
        // makes the store visible to the BPF programs that read it.
        unsafe { std::ptr::write_volatile(&mut bss.adopted_active, on as u32) };
    }
}

/// Adopted entries are consumed as their syscalls return; once none are left,
/// or after a minute (threads blocked that long are idle anyway), stop
/// looking so syscall exits never pay for the lookup again.
fn retire_adopted(skel: &mut crate::skel::KindlingSkel<'_>, since: Instant) -> bool {
    let empty = skel.maps.adopted.keys().next().is_none();
    if !empty && since.elapsed() < Duration::from_secs(60) {
        return false;
    }
    set_adopted_active(skel, false);
    let keys: Vec<Vec<u8>> = skel.maps.adopted.keys().collect();
    for k in keys {
        let _ = skel.maps.adopted.delete(&k);
    }
    true
}

/// The bytes of a plain-old-data value generated from the BPF object's BTF.
fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a #[repr(C)] Copy struct generated by libbpf-cargo from BTF
    // (no pointers, no invariants); reading its bytes is always valid.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn attach_all(obj: &libbpf_rs::Object) -> Result<(Vec<Link>, Vec<ProgramInfo>), ProbeError> {
    let mut links = Vec::new();
    let mut programs = Vec::new();
    for prog in obj.progs_mut() {
        let info = ProgramInfo {
            name: prog.name().to_string_lossy().into_owned(),
            section: prog.section().to_string_lossy().into_owned(),
            instructions: prog.insn_cnt(),
        };
        let link = prog.attach().map_err(|e| ProbeError::Attach {
            program: info.name.clone(),
            section: info.section.clone(),
            reason: e.to_string(),
        })?;
        links.push(link);
        programs.push(info);
    }
    Ok((links, programs))
}

fn read_drops(map: &dyn MapCore, out: &[AtomicU64]) {
    for (i, slot) in out.iter().enumerate() {
        let key = (i as u32).to_ne_bytes();
        if let Ok(Some(per_cpu)) = map.lookup_percpu(&key, MapFlags::ANY) {
            let total: u64 = per_cpu
                .iter()
                .filter_map(|v| v.get(..8).map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))))
                .sum();
            slot.store(total, Ordering::Relaxed);
        }
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
                let kernel = preflight::check(&[])?;
                let skel = open.load().map_err(load_error)?;
                let (links, programs) = attach_all(skel.object())?;
                Ok::<_, ProbeError>((links, programs, kernel))
            })();
            match setup {
                Ok((links, programs, kernel)) => {
                    let _ = ready_tx.send(Ok((programs, kernel)));
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
    let (programs, kernel) = ready_rx
        .recv()
        .map_err(|_| ProbeError::Reader("bench thread ended early".into()))??;
    Ok(ProbeHandle {
        stop,
        thread: Some(thread),
        kernel_drops: Arc::new(Vec::new()),
        programs,
        kernel,
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
