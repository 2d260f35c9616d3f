//! Goroutine following: attaches the sched module's Go runtime programs
//! (`kd_go_execute`, `kd_go_park`, `kd_go_exit`, `kd_go_ready` on
//! `runtime.ready` and `runtime.exitsyscall0`, `kd_go_injectglist`,
//! `kd_go_pollwait`) to the executables of the
//! followed processes that are Go programs, one uprobe perf event per
//! function and process, and fills the module's `go_params` map.
//!
//! Attached with perf_event_open on the uprobe PMU, by program fd: the
//! skeleton lives on the reader thread, while the followed set changes from
//! any thread. The events are per process (the kernel filters a uprobe
//! perf event by the target's address space), and closing them detaches.

use crate::golang::{inspect, GoRuntime};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// Go processes followed at goroutine level at once (up to 7 perf events each).
pub const MAX_GO_PROCS: usize = 256;
/// Executables whose inspection is remembered (by device and inode).
const CACHE_MAX: usize = 64;

/// An executable by device and inode (`None`: not a Go program we can follow).
type FileId = (u64, u64);

pub(crate) struct GoProgs {
    pub execute: OwnedFd,
    pub park: OwnedFd,
    pub exit: OwnedFd,
    pub ready: OwnedFd,
    pub injectglist: OwnedFd,
    pub pollwait: OwnedFd,
}

struct Followed {
    _events: Vec<OwnedFd>,
    rt: Arc<GoRuntime>,
}

pub(crate) struct GoFollower {
    progs: GoProgs,
    params: MapHandle,
    procs: Mutex<HashMap<u32, Followed>>,
    cache: Mutex<HashMap<FileId, Option<Arc<GoRuntime>>>>,
}

impl GoFollower {
    pub fn new(progs: GoProgs, params: MapHandle) -> GoFollower {
        GoFollower { progs, params, procs: Mutex::new(HashMap::new()), cache: Mutex::new(HashMap::new()) }
    }

    /// Follows the goroutines of `added` processes that are Go programs and
    /// stops following `gone` ones. Never fails: a process that cannot be
    /// followed gets one debug line.
    pub fn update(&self, added: &[u32], gone: &[u32]) {
        let mut procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        for pid in gone {
            // Closing the perf events detaches the uprobes.
            if procs.remove(pid).is_some() {
                let _ = self.params.delete(&pid.to_ne_bytes());
            }
        }
        for &pid in added {
            if procs.contains_key(&pid) {
                continue;
            }
            let Some(rt) = self.runtime_of(pid) else { continue };
            if procs.len() >= MAX_GO_PROCS {
                tracing::debug!(pid, "goroutines not followed: {MAX_GO_PROCS} Go processes already are");
                continue;
            }
            match self.attach(pid, &rt) {
                Ok(events) => {
                    tracing::debug!(pid, version = %rt.version, goid_offset = rt.goid_offset, "following goroutines");
                    procs.insert(pid, Followed { _events: events, rt });
                }
                Err(e) => {
                    let _ = self.params.delete(&pid.to_ne_bytes());
                    tracing::debug!(pid, "goroutines not followed: {e}");
                }
            }
        }
    }

    /// Wait reason names (by `runtime.waitReason` number) of a followed Go process.
    pub fn wait_reasons(&self, pid: u32) -> Option<Vec<String>> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        procs.get(&pid).map(|f| f.rt.wait_reasons.clone())
    }

    /// Processes followed at goroutine level.
    pub fn pids(&self) -> Vec<u32> {
        let procs = self.procs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<u32> = procs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn runtime_of(&self, pid: u32) -> Option<Arc<GoRuntime>> {
        use std::os::unix::fs::MetadataExt;
        let exe = format!("/proc/{pid}/exe");
        let meta = std::fs::metadata(&exe).ok()?;
        let key = (meta.dev(), meta.ino());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cache.get(&key) {
            return r.clone();
        }
        let r = match inspect(std::path::Path::new(&exe)) {
            Ok(rt) => Some(Arc::new(rt)),
            Err(e) => {
                tracing::debug!(pid, "goroutines not followed: {e}");
                None
            }
        };
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, r.clone());
        r
    }

    fn attach(&self, pid: u32, rt: &GoRuntime) -> std::io::Result<Vec<OwnedFd>> {
        let io_wait = rt.wait_reasons.iter().position(|r| r == "IO wait").unwrap_or(0) as u32;
        let mut params = [0u8; 16];
        params[..4].copy_from_slice(&rt.goid_offset.to_ne_bytes());
        params[4..8].copy_from_slice(&rt.schedlink_offset.to_ne_bytes());
        params[8..12].copy_from_slice(&rt.pd_fd_offset.to_ne_bytes());
        params[12..].copy_from_slice(&io_wait.to_ne_bytes());
        self.params
            .update(&pid.to_ne_bytes(), &params, MapFlags::ANY)
            .map_err(|e| std::io::Error::other(format!("go_params: {e}")))?;
        let path = CString::new(format!("/proc/{pid}/exe")).map_err(std::io::Error::other)?;
        let mut out = Vec::with_capacity(6);
        out.push(uprobe(&path, rt.execute, pid, &self.progs.execute)?);
        out.push(uprobe(&path, rt.gopark, pid, &self.progs.park)?);
        // The others refine the picture; without them parks last until the
        // goroutine runs again (the Go run queue wait folds into them).
        let injectglist = rt.injectglist.filter(|_| rt.schedlink_offset != 0);
        let pollwait = rt.poll_wait.filter(|_| rt.pd_fd_offset != 0);
        for (off, prog) in [
            (pollwait, &self.progs.pollwait),
            (rt.goexit1, &self.progs.exit),
            (rt.ready, &self.progs.ready),
            // The same program: both make a goroutine runnable (gp in AX).
            (rt.exitsyscall0, &self.progs.ready),
            (injectglist, &self.progs.injectglist),
        ] {
            if let Some(off) = off {
                out.push(uprobe(&path, off, pid, prog)?);
            }
        }
        Ok(out)
    }
}

/// `_IO('$', 0)` and `_IOW('$', 8, __u32)` (linux/perf_event.h).
const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;
const PERF_FLAG_FD_CLOEXEC: u64 = 1 << 3;

/// The uprobe PMU's type (dynamic; /sys/bus/event_source/devices/uprobe/type),
/// read once.
fn uprobe_type() -> std::io::Result<u32> {
    static TYPE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(t) = TYPE.get() {
        return Ok(*t);
    }
    let t = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?;
    let t: u32 = t.trim().parse().map_err(std::io::Error::other)?;
    Ok(*TYPE.get_or_init(|| t))
}

/// An entry uprobe at `offset` of the file `path` names, for process `pid`,
/// running `prog`.
fn uprobe(path: &CString, offset: u64, pid: u32, prog: &OwnedFd) -> std::io::Result<OwnedFd> {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: perf_event_attr is plain old data; all-zero is its documented initial value.
    let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = uprobe_type()?;
    attr.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
    attr.config = 0; // bit 0 clear: an entry probe, not a return probe
    attr.__bindgen_anon_3.uprobe_path = path.as_ptr() as u64;
    attr.__bindgen_anon_4.probe_offset = offset;
    // SAFETY: valid attr and path pointers for the duration of the call; cpu -1 with a pid: that process.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const _, pid as i32, -1i32, -1i32, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd we own from here on (closed on every path below).
    let ev = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: ioctls on our own perf event fd with integer arguments.
    let rc = unsafe { libc::ioctl(ev.as_raw_fd(), PERF_EVENT_IOC_SET_BPF as _, prog.as_raw_fd()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(ev.as_raw_fd(), PERF_EVENT_IOC_ENABLE as _, 0) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ev)
}
