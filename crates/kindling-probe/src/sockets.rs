//! The sockets module (kindling.bpf.c): socket syscalls with payload heads,
//! non-blocking connect completion, process lifecycle.

use crate::loader::{attach_all, check_sections, clear_libbpf_log, load_error, open_err, Module, ProbeConfig, ProbeError};
use crate::preflight::KernelInfo;
use crate::skel::{KindlingSkel, KindlingSkelBuilder};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

pub(crate) fn setup<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    cfg: &ProbeConfig,
    kernel: &KernelInfo,
) -> Result<Module<KindlingSkel<'obj>>, ProbeError> {
    let mut open = KindlingSkelBuilder::default().open(storage).map_err(open_err)?;
    check_sections(open.open_object(), kernel)?;
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
        // The start-up notice for this fallback comes from inspect.rs.
        tracing::debug!("task-local storage unavailable to tracepoints: in-flight syscalls kept in a hash map");
        open.maps.inflight_ts.set_autocreate(false).map_err(|e| maps_err("inflight_ts map", e))?;
    }
    choose_iov_walk(open.open_object_mut(), crate::inspect::KernelFeatures::detect().bpf_loop);
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
    let attached = attach_all(skel.object())?;
    adopt_in_flight(&mut skel, cfg);
    Ok(Module { skel, attached })
}

/// The exits that walk iovecs come twice (kindling.bpf.c, SOCK_EXIT_NOLOOP):
/// with bpf_loop, and `_noloop` for kernels without it, which reject any
/// program that refers to a bpf_loop callback. Loads one of each pair.
pub(crate) fn choose_iov_walk(open: &mut libbpf_rs::OpenObject, has_loop: bool) {
    let paired: Vec<String> = open
        .progs()
        .filter_map(|p| p.name().to_str()?.strip_suffix("_noloop").map(str::to_string))
        .collect();
    for mut prog in open.progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if name.ends_with("_noloop") {
            prog.set_autoload(!has_loop);
        } else if paired.contains(&name) {
            prog.set_autoload(has_loop);
        }
    }
}

/// Can tracepoint programs use task-local storage (5.19+ in practice)?
pub(crate) fn task_storage_supported() -> bool {
    let helper = libbpf_rs::ProgramType::Tracepoint
        .is_helper_supported(libbpf_rs::libbpf_sys::BPF_FUNC_task_storage_get)
        .unwrap_or(false);
    let map = libbpf_rs::MapType::TaskStorage.is_supported().unwrap_or(false);
    helper && map
}

/// Hands syscalls that were already blocked at attach to the BPF side.
fn adopt_in_flight(skel: &mut KindlingSkel<'_>, cfg: &ProbeConfig) {
    let pids: Option<std::collections::HashSet<u32>> =
        (!cfg.pids.is_empty()).then(|| cfg.pids.iter().copied().collect());
    let mut n = 0;
    for a in crate::adopt::scan(pids.as_ref(), cfg.self_pid) {
        let v = crate::skel::types::inflight {
            fd: a.fd,
            syscall: a.syscall,
            buf: a.buf,
            addr: a.addr,
            count: a.count,
            ..Default::default()
        };
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

fn set_adopted_active(skel: &KindlingSkel<'_>, on: bool) {
    // The .bss is one array element: rewrite it whole (the other globals in it
    // only give the wire structs BTF and are never read).
    // SAFETY: `bss` is a #[repr(C)] plain-old-data struct generated from BTF;
    // all-zero bytes are a valid value of it.
    let mut bss: crate::skel::types::bss = unsafe { std::mem::zeroed() };
    bss.adopted_active = on as u32;
    let _ = skel.maps.bss.update(&0u32.to_ne_bytes(), pod_bytes(&bss), MapFlags::ANY);
}

/// Adopted entries are consumed as their syscalls return; once none are left,
/// or after a minute (threads blocked that long are idle anyway), stop
/// looking so syscall exits never pay for the lookup again.
pub(crate) fn retire_adopted(skel: &KindlingSkel<'_>, since: Instant) -> bool {
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
pub(crate) fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a #[repr(C)] Copy struct generated by libbpf-cargo from BTF
    // (no pointers, no invariants); reading its bytes is always valid.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}
