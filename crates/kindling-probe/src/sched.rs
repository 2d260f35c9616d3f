//! The scheduler module (sched.bpf.c): per-thread on/off-CPU timelines and
//! CPU samples with stacks, for profiling.
//!
//! Which processes are followed is decided in the kernel from the `sched_pids`
//! map; [`SchedControl`] changes it at runtime from any thread (it holds its
//! own descriptors of the maps, so it does not need the skeleton, which lives
//! on the reader thread). On-CPU samples come from one software CPU-clock
//! perf event per online CPU.

use crate::loader::{check_sections, clear_libbpf_log, load_error, open_err, Attached, Module, ProbeConfig, ProbeError, ProgramInfo};
use crate::gofollow::{GoFollower, GoProgs};
use crate::preflight::KernelInfo;
use crate::sched_skel::{SchedSkel, SchedSkelBuilder};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// What to profile.
#[derive(Clone, Debug)]
pub struct SchedConfig {
    /// Processes whose threads are recorded at start (empty: none until
    /// [`SchedControl::set_pids`]).
    pub pids: Vec<u32>,
    /// On-CPU sampling frequency per CPU (Hz); 0 disables sampling.
    pub sample_hz: u32,
    /// Threads followed at once at most (beyond: counted as `sched_thread_map_full`).
    pub max_threads: u32,
    /// The module's ring buffer, bytes (a power of two).
    pub ringbuf_bytes: u32,
    /// Send the top of the user stack of threads that block, so user space can
    /// recover the frames of code without frame pointers (libc wrappers).
    pub stack_top: bool,
    /// Follow goroutines in followed Go processes (uprobes on the Go runtime).
    pub goroutines: bool,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig { pids: Vec::new(), sample_hz: 99, max_threads: 16_384, ringbuf_bytes: 8 << 20, stack_top: true, goroutines: true }
    }
}

/// At most this many processes are followed at once (`sched_pids` map size).
pub const MAX_PIDS: usize = 4096;

pub(crate) fn setup<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    cfg: &ProbeConfig,
    sc: &SchedConfig,
    kernel: &KernelInfo,
) -> Result<Module<SchedSkel<'obj>>, ProbeError> {
    if !sc.ringbuf_bytes.is_power_of_two() || sc.ringbuf_bytes < 4096 {
        return Err(ProbeError::Config(format!(
            "sched ring buffer size {} must be a power of two of at least 4096 bytes",
            sc.ringbuf_bytes
        )));
    }
    if sc.pids.len() > MAX_PIDS {
        return Err(ProbeError::Config(format!("at most {MAX_PIDS} processes can be profiled at once")));
    }
    let mut open = SchedSkelBuilder::default().open(storage).map_err(open_err)?;
    check_sections(open.open_object(), kernel)?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.self_tgid = cfg.self_pid;
        ro.wakeup_bytes = (sc.ringbuf_bytes / 8) as u64;
        ro.send_stack_top = sc.stack_top;
    }
    let cfg_err = |what: &str, e: libbpf_rs::Error| ProbeError::Config(format!("{what}: {e}"));
    open.maps.events.set_max_entries(sc.ringbuf_bytes).map_err(|e| cfg_err("sched ring buffer", e))?;
    open.maps.threads.set_max_entries(sc.max_threads.max(1)).map_err(|e| cfg_err("sched thread map", e))?;
    // Perf-event programs are attached by hand, one event per CPU; the Go
    // runtime uprobes per Go process (gofollow.rs).
    open.progs.kd_sched_sample.set_autoattach(false);
    open.progs.kd_go_execute.set_autoattach(false);
    open.progs.kd_go_park.set_autoattach(false);
    open.progs.kd_go_exit.set_autoattach(false);
    open.progs.kd_go_ready.set_autoattach(false);
    open.progs.kd_go_injectglist.set_autoattach(false);
    open.progs.kd_go_pollwait.set_autoattach(false);
    clear_libbpf_log();
    let skel = open.load().map_err(load_error)?;
    // Pids go into the maps now; goroutine following starts with the
    // long-lived control (`control`), which owns the uprobes.
    let control = SchedControl::new(&skel, false)?;
    control.set_pids(&sc.pids)?;
    let mut attached = attach_tracepoints(&skel)?;
    if sc.sample_hz > 0 {
        attach_sampler(&skel, sc.sample_hz, &mut attached)?;
    }
    Ok(Module { skel, attached })
}

/// The module's runtime controls, handed to [`crate::ProbeHandle`].
pub(crate) fn control(skel: &SchedSkel<'_>, sc: Option<&SchedConfig>) -> Result<SchedControl, ProbeError> {
    let c = SchedControl::new(skel, sc.is_some_and(|s| s.goroutines))?;
    if let Some(sc) = sc {
        c.set_pids(&sc.pids)?;
    }
    Ok(c)
}

fn attach_tracepoints(skel: &SchedSkel<'_>) -> Result<Attached, ProbeError> {
    let mut out = Attached::default();
    for prog in skel.object().progs_mut() {
        // Uprobes (the Go runtime programs) are attached per process by gofollow.rs.
        if matches!(prog.prog_type(), libbpf_rs::ProgramType::PerfEvent | libbpf_rs::ProgramType::Kprobe) {
            continue;
        }
        let info = program_info(&prog);
        let link = prog.attach().map_err(|e| ProbeError::Attach {
            program: info.name.clone(),
            section: info.section.clone(),
            reason: e.to_string(),
        })?;
        out.links.push(std::sync::Arc::new(link));
        out.programs.push(info);
    }
    Ok(out)
}

fn program_info(prog: &libbpf_rs::ProgramMut<'_>) -> ProgramInfo {
    use std::os::fd::AsFd;
    ProgramInfo {
        name: prog.name().to_string_lossy().into_owned(),
        section: prog.section().to_string_lossy().into_owned(),
        instructions: prog.insn_cnt(),
        module: "sched".into(),
        id: libbpf_rs::Program::id_from_fd(prog.as_fd()).unwrap_or(0),
    }
}

/// One CPU-clock software event per online CPU, sampling at `hz`, each
/// running the sample program. The link owns (and closes) the event's fd.
fn attach_sampler(skel: &SchedSkel<'_>, hz: u32, out: &mut Attached) -> Result<(), ProbeError> {
    let prog = &skel.progs.kd_sched_sample;
    let info = {
        use std::os::fd::AsFd;
        ProgramInfo {
            name: prog.name().to_string_lossy().into_owned(),
            section: prog.section().to_string_lossy().into_owned(),
            instructions: prog.insn_cnt(),
            module: "sched".into(),
            id: libbpf_rs::Program::id_from_fd(prog.as_fd()).unwrap_or(0),
        }
    };
    let err = |reason: String| ProbeError::Attach {
        program: info.name.clone(),
        section: "perf_event (cpu-clock)".into(),
        reason,
    };
    for cpu in online_cpus() {
        let fd = open_cpu_clock(cpu, hz).map_err(|e| err(format!("perf_event_open on CPU {cpu}: {e}")))?;
        let link = match prog.attach_perf_event(fd) {
            Ok(l) => l,
            Err(e) => {
                // SAFETY: `fd` is the perf event we just opened and nothing else owns it.
                unsafe { libc::close(fd) };
                return Err(err(e.to_string()));
            }
        };
        out.links.push(std::sync::Arc::new(link));
    }
    out.programs.push(info);
    Ok(())
}

/// `PERF_FLAG_FD_CLOEXEC` (linux/perf_event.h).
const PERF_FLAG_FD_CLOEXEC: u64 = 1 << 3;

fn open_cpu_clock(cpu: u32, hz: u32) -> std::io::Result<i32> {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: perf_event_attr is plain old data; all-zero is its documented initial value.
    let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
    attr.type_ = sys::PERF_TYPE_SOFTWARE;
    attr.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
    attr.config = sys::PERF_COUNT_SW_CPU_CLOCK as u64;
    attr.__bindgen_anon_1.sample_freq = hz as u64;
    attr.set_freq(1);
    // SAFETY: a valid attr pointer for the duration of the call; pid -1 + cpu = every task on that CPU.
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, &attr as *const _, -1i32, cpu as i32, -1i32, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd as i32)
}

/// CPUs listed in /sys/devices/system/cpu/online ("0-3,6").
fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_else(|_| "0".into());
    parse_cpu_list(&text)
}

fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// Changes what the sched module follows while it runs. Cheap to share
/// (`Arc`) and usable from any thread.
pub struct SchedControl {
    pids: MapHandle,
    ctl: MapHandle,
    threads: MapHandle,
    current: Mutex<HashSet<u32>>,
    stack_gen: AtomicU32,
    go: Option<GoFollower>,
}

impl std::fmt::Debug for SchedControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedControl").field("pids", &self.pids()).finish()
    }
}

impl SchedControl {
    fn new(skel: &SchedSkel<'_>, goroutines: bool) -> Result<SchedControl, ProbeError> {
        let h = |m: &libbpf_rs::Map<'_>, what: &str| {
            MapHandle::try_from(m).map_err(|e| ProbeError::Maps(format!("sched {what} map: {e}")))
        };
        let go = if goroutines {
            use std::os::fd::AsFd;
            let dup = |p: &libbpf_rs::Program<'_>| {
                p.as_fd().try_clone_to_owned().map_err(|e| ProbeError::Maps(format!("Go runtime program: {e}")))
            };
            let progs = GoProgs {
                execute: dup(&skel.progs.kd_go_execute)?,
                park: dup(&skel.progs.kd_go_park)?,
                exit: dup(&skel.progs.kd_go_exit)?,
                ready: dup(&skel.progs.kd_go_ready)?,
                injectglist: dup(&skel.progs.kd_go_injectglist)?,
                pollwait: dup(&skel.progs.kd_go_pollwait)?,
            };
            Some(GoFollower::new(progs, h(&skel.maps.go_params, "go_params")?))
        } else {
            None
        };
        Ok(SchedControl {
            go,
            pids: h(&skel.maps.sched_pids, "pids")?,
            ctl: h(&skel.maps.ctl, "ctl")?,
            threads: h(&skel.maps.threads, "threads")?,
            current: Mutex::new(HashSet::new()),
            stack_gen: AtomicU32::new(1),
        })
    }

    /// The processes followed now.
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.current.lock().map(|c| c.iter().copied().collect()).unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Follows exactly these processes from now on (threads of processes no
    /// longer wanted are forgotten in the kernel).
    pub fn set_pids(&self, pids: &[u32]) -> Result<(), ProbeError> {
        let want: HashSet<u32> = pids.iter().copied().collect();
        if want.len() > MAX_PIDS {
            return Err(ProbeError::Config(format!("at most {MAX_PIDS} processes can be profiled at once")));
        }
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let map_err = |e: libbpf_rs::Error| ProbeError::Maps(format!("sched pids: {e}"));
        let added: Vec<u32> = want.difference(&cur).copied().collect();
        for pid in &added {
            self.pids.update(&pid.to_ne_bytes(), &[1u8], MapFlags::ANY).map_err(map_err)?;
        }
        let gone: Vec<u32> = cur.difference(&want).copied().collect();
        for pid in &gone {
            let _ = self.pids.delete(&pid.to_ne_bytes());
        }
        *cur = want;
        self.write_ctl(cur.len() as u32)?;
        // After the pids are in the map, so a thread that wakes meanwhile makes
        // its own entry first (the seeds never overwrite one).
        for &pid in &added {
            self.seed_blocked(pid);
        }
        if !gone.is_empty() {
            self.forget_threads(&cur);
        }
        drop(cur);
        if let Some(go) = &self.go {
            go.update(&added, &gone);
        }
        Ok(())
    }

    /// The followed processes whose goroutines are followed too (Go programs).
    pub fn go_pids(&self) -> Vec<u32> {
        self.go.as_ref().map(|g| g.pids()).unwrap_or_default()
    }

    /// The names of a followed Go process's wait reasons, by
    /// `runtime.waitReason` number (the `reason` of `SchedEvent::GoPark`).
    pub fn go_wait_reasons(&self, pid: u32) -> Option<Vec<String>> {
        self.go.as_ref()?.wait_reasons(pid)
    }

    /// Makes the kernel send every stack's frames again (call after user
    /// space forgot the stacks it had).
    pub fn new_stack_generation(&self) -> Result<(), ProbeError> {
        self.stack_gen.fetch_add(1, Ordering::Relaxed);
        let n = self.current.lock().map(|c| c.len()).unwrap_or(0) as u32;
        self.write_ctl(n)
    }

    fn write_ctl(&self, npids: u32) -> Result<(), ProbeError> {
        let mut v = [0u8; 8];
        v[..4].copy_from_slice(&npids.to_ne_bytes());
        v[4..].copy_from_slice(&self.stack_gen.load(Ordering::Relaxed).to_ne_bytes());
        self.ctl
            .update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
            .map_err(|e| ProbeError::Maps(format!("sched ctl: {e}")))
    }

    /// Threads of `pid` already blocked when following starts would be seen
    /// only from their next turn on the CPU: their wait counts from now on,
    /// with the syscall and fd /proc shows (no stacks: those are taken at
    /// switch-out).
    fn seed_blocked(&self, pid: u32) {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
        let now = mono_now();
        for t in dir.flatten().take(self.threads.max_entries() as usize) {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if !blocked(pid, tid) {
                continue;
            }
            let mut v = crate::sched_skel::types::thread_state::default();
            v.s.hdr.tgid = pid;
            v.s.offcpu_start = now;
            v.s.syscall = -1;
            v.s.fd = -1;
            if let Some((nr, args)) = blocked_syscall(pid, tid) {
                v.s.syscall = nr;
                v.s.arg1 = args[1];
                v.s.flags = kindling_events::sched::slice::F_IN_SYSCALL;
                if FD_SYSCALLS.contains(&nr) {
                    v.s.fd = args[0] as i32;
                    v.s.fd_kind = fd_kind(pid, args[0]);
                }
            }
            let _ = self.threads.update(&tid.to_ne_bytes(), crate::sockets::pod_bytes(&v), MapFlags::NO_EXIST);
        }
    }

    /// Slices still open in the kernel, as wire records ending now (`now_mono`,
    /// the kernel's clock): threads off the CPU since `offcpu_start` (never
    /// switched in again, so never reported), and threads on the CPU since
    /// `oncpu_start`. Call at the end of a recording so long waits count.
    pub fn open_slices(&self, now_mono: u64) -> Vec<Vec<u8>> {
        use kindling_events::sched::{kind, slice};
        use kindling_events::wire::header;
        let mut out = Vec::new();
        for k in self.threads.keys().take(65_536) {
            let Ok(Some(v)) = self.threads.lookup(&k, MapFlags::ANY) else { continue };
            if v.len() < slice::SIZE || k.len() < 4 {
                continue;
            }
            let mut rec = v[..slice::SIZE].to_vec();
            let u64_at = |o: usize| u64::from_ne_bytes(rec[o..o + 8].try_into().unwrap_or([0; 8]));
            let (on, off) = (u64_at(slice::ONCPU_START), u64_at(slice::OFFCPU_START));
            if off == 0 {
                if on == 0 || on >= now_mono {
                    continue;
                }
                // On the CPU: an on-CPU slice up to now, nothing off.
                rec[slice::OFFCPU_START..slice::OFFCPU_START + 8].copy_from_slice(&now_mono.to_ne_bytes());
            } else if off >= now_mono {
                continue;
            }
            rec[header::TS_NS..header::TS_NS + 8].copy_from_slice(&now_mono.to_ne_bytes());
            rec[header::KIND..header::KIND + 4].copy_from_slice(&kind::SLICE.to_ne_bytes());
            rec[header::TID..header::TID + 4].copy_from_slice(&k[..4]);
            out.push(rec);
        }
        out
    }

    /// Drops the kernel's state of threads whose process is no longer wanted.
    fn forget_threads(&self, keep: &HashSet<u32>) {
        let tgid_off = kindling_events::wire::header::TGID;
        let stale: Vec<Vec<u8>> = self
            .threads
            .keys()
            .filter(|k| {
                match self.threads.lookup(k, MapFlags::ANY) {
                    Ok(Some(v)) if v.len() >= tgid_off + 4 => {
                        let tgid = u32::from_ne_bytes([v[tgid_off], v[tgid_off + 1], v[tgid_off + 2], v[tgid_off + 3]]);
                        !keep.contains(&tgid)
                    }
                    _ => false,
                }
            })
            .collect();
        for k in stale {
            let _ = self.threads.delete(&k);
        }
    }
}

/// Syscalls whose first argument is the fd they may block on (as in sched.bpf.c).
const FD_SYSCALLS: &[i64] = &[
    0, 1, 16, 17, 18, 19, 20, 40, 42, 43, 44, 45, 46, 47, 48, 72, 73, 74, 75, 77, 217, 275, 277, 285, 288, 295, 296,
    299, 307, 326, 327, 328,
];

/// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
fn mono_now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeping (S) or in uninterruptible wait (D), from /proc/PID/task/TID/stat.
fn blocked(pid: u32, tid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    // The state follows the command name, which may itself hold ") ".
    matches!(stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()), Some('S' | 'D'))
}

/// `nr arg0 arg1 ...` from /proc/PID/task/TID/syscall (None: running or not in a syscall).
fn blocked_syscall(pid: u32, tid: u32) -> Option<(i64, [u64; 2])> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    parse_syscall_line(&text)
}

fn parse_syscall_line(text: &str) -> Option<(i64, [u64; 2])> {
    let mut f = text.split_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let hex = |s: Option<&str>| s.and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
    Some((nr, [hex(f.next())?, hex(f.next())?]))
}

/// `enum kd_fd_kind` of an open fd, from its /proc link.
fn fd_kind(pid: u32, fd: u64) -> u8 {
    match std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
        Ok(l) if l.to_string_lossy().starts_with("socket:") => 1,
        Ok(l) if l.is_absolute() => match std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) {
            Ok(m) if m.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => 2,
            _ => 3,
        },
        Ok(_) => 3,
        Err(_) => 0,
    }
}

/// Compile-time proof that the decoder's offsets (`kindling_events::sched`)
/// are the C structs' (as libbpf-cargo generated them from BTF).
mod layout {
    use crate::sched_skel::types;
    use kindling_events::sched::{file, go, sample, slice, stack, top};
    use std::mem::{offset_of, size_of};

    macro_rules! same {
        ($ty:ident . $field:ident == $konst:expr) => {
            const _: () = assert!(offset_of!(types::$ty, $field) == $konst);
        };
    }

    const _: () = assert!(size_of::<types::kd_sched_slice>() == slice::SIZE);
    same!(kd_sched_slice.oncpu_start == slice::ONCPU_START);
    same!(kd_sched_slice.offcpu_start == slice::OFFCPU_START);
    same!(kd_sched_slice.wake_ts == slice::WAKE_TS);
    same!(kd_sched_slice.kstack == slice::KSTACK);
    same!(kd_sched_slice.ustack == slice::USTACK);
    same!(kd_sched_slice.sock_id == slice::SOCK_ID);
    same!(kd_sched_slice.syscall == slice::SYSCALL);
    same!(kd_sched_slice.arg1 == slice::ARG1);
    same!(kd_sched_slice.fd == slice::FD);
    same!(kd_sched_slice.waker_tid == slice::WAKER_TID);
    same!(kd_sched_slice.waker_tgid == slice::WAKER_TGID);
    same!(kd_sched_slice.flags == slice::FLAGS);
    same!(kd_sched_slice.fd_kind == slice::FD_KIND);
    same!(kd_sched_slice.family == slice::FAMILY);
    same!(kd_sched_slice.proto == slice::PROTO);
    same!(kd_sched_slice.saddr == slice::SADDR);
    same!(kd_sched_slice.daddr == slice::DADDR);
    same!(kd_sched_slice.sport == slice::SPORT);
    same!(kd_sched_slice.dport == slice::DPORT);

    const _: () = assert!(size_of::<types::kd_sched_sample>() == sample::SIZE);
    same!(kd_sched_sample.kstack == sample::KSTACK);
    same!(kd_sched_sample.ustack == sample::USTACK);

    const _: () = assert!(size_of::<types::kd_sched_stack>() == stack::SIZE);
    same!(kd_sched_stack.id == stack::ID);
    same!(kd_sched_stack.nr_frames == stack::NR_FRAMES);
    same!(kd_sched_stack.kernel == stack::KERNEL);
    same!(kd_sched_stack.frames == stack::FRAMES);

    const _: () = assert!(size_of::<types::kd_sched_file>() == file::SIZE);
    same!(kd_sched_file.offcpu_start == file::OFFCPU_START);
    same!(kd_sched_file.nr_parts == file::NR_PARTS);
    same!(kd_sched_file.truncated == file::TRUNCATED);
    same!(kd_sched_file.parts == file::PARTS);

    const _: () = assert!(size_of::<types::kd_sched_go>() == go::SIZE);
    same!(kd_sched_go.goid == go::GOID);
    same!(kd_sched_go.ustack == go::USTACK);
    same!(kd_sched_go.reason == go::REASON);
    same!(kd_sched_go.fd == go::FD);
    same!(kd_sched_go.sock_id == go::SOCK_ID);
    same!(kd_sched_go.fd_kind == go::FD_KIND);
    same!(kd_sched_go.family == go::FAMILY);
    same!(kd_sched_go.proto == go::PROTO);
    same!(kd_sched_go.sport == go::SPORT);
    same!(kd_sched_go.dport == go::DPORT);
    same!(kd_sched_go.saddr == go::SADDR);
    same!(kd_sched_go.daddr == go::DADDR);

    const _: () = assert!(size_of::<types::kd_sched_ustack_top>() == top::SIZE);
    same!(kd_sched_ustack_top.offcpu_start == top::OFFCPU_START);
    same!(kd_sched_ustack_top.ip == top::IP);
    same!(kd_sched_ustack_top.sp == top::SP);
    same!(kd_sched_ustack_top.bp == top::BP);
    same!(kd_sched_ustack_top.len == top::LEN);
    same!(kd_sched_ustack_top.data == top::DATA);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall_line("202 0x7f00 0x80 0x2 0x0 0x0 0x0 0x7ffc 0x7f01\n"), Some((202, [0x7f00, 0x80])));
        assert_eq!(parse_syscall_line("running\n"), None);
        assert_eq!(parse_syscall_line("-1 0x7ffc 0x7f01\n"), None);
        assert_eq!(parse_syscall_line(""), None);
        assert!(mono_now() > 0);
        assert!(!blocked(u32::MAX, 1), "no such process");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0\n"), vec![0]);
        assert_eq!(parse_cpu_list("x,2"), vec![2]);
    }
}
