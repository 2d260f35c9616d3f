//! Events of the sched module (sched.bpf.c): thread timelines, on-CPU
//! samples, stacks. Wire kinds 40-59 (`struct kd_sched_*` in kindling.h).
//!
//! A [`SchedSlice`] covers one cycle of a thread: its turn on the CPU, the
//! time it was blocked (with why: [`OffCpuReason`]), and its wait in the run
//! queue, ending when it ran again (the event's `ts_ns`). Stacks are referred
//! to by hash; their frames come once, before the first reference, as a
//! [`SchedStack`].

use crate::json::JsonEvent;
use crate::model::{format_addr, Event, EventBody, L4Proto};
use crate::wire::{addr, header, ip_bytes, need, put, u16_at, u32_at, u64_at, DecodeError, Decoder};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// `enum kd_event_kind`, sched range.
pub mod kind {
    pub const SLICE: u32 = 40;
    pub const SAMPLE: u32 = 41;
    pub const STACK: u32 = 42;
    pub const FILE: u32 = 43;
    pub const USTACK_TOP: u32 = 44;
    pub const GO_RUN: u32 = 45;
    pub const GO_PARK: u32 = 46;
    pub const GO_EXIT: u32 = 47;
    pub const GO_RUNNABLE: u32 = 48;
}

/// `struct kd_sched_slice` field offsets.
pub mod slice {
    pub const ONCPU_START: usize = 40;
    pub const OFFCPU_START: usize = 48;
    pub const WAKE_TS: usize = 56;
    pub const KSTACK: usize = 64;
    pub const USTACK: usize = 72;
    pub const SOCK_ID: usize = 80;
    pub const SYSCALL: usize = 88;
    pub const ARG1: usize = 96;
    pub const FD: usize = 104;
    pub const WAKER_TID: usize = 108;
    pub const WAKER_TGID: usize = 112;
    pub const FLAGS: usize = 116;
    pub const FD_KIND: usize = 117;
    pub const FAMILY: usize = 118;
    pub const PROTO: usize = 119;
    pub const SADDR: usize = 120;
    pub const DADDR: usize = 136;
    pub const SPORT: usize = 152;
    pub const DPORT: usize = 154;
    pub const SIZE: usize = 160;
    /// `KD_SLICE_PREEMPTED`, `KD_SLICE_IN_SYSCALL`.
    pub const F_PREEMPTED: u8 = 1;
    pub const F_IN_SYSCALL: u8 = 2;
}

/// `struct kd_sched_sample` field offsets.
pub mod sample {
    pub const KSTACK: usize = 40;
    pub const USTACK: usize = 48;
    pub const SIZE: usize = 56;
}

/// `struct kd_sched_stack` field offsets.
pub mod stack {
    pub const ID: usize = 40;
    pub const NR_FRAMES: usize = 48;
    pub const KERNEL: usize = 52;
    pub const FRAMES: usize = 56;
    pub const MAX_FRAMES: usize = 127;
    pub const SIZE: usize = FRAMES + MAX_FRAMES * 8;
}

/// `struct kd_sched_file` field offsets.
pub mod file {
    pub const OFFCPU_START: usize = 40;
    pub const NR_PARTS: usize = 48;
    pub const TRUNCATED: usize = 52;
    pub const PARTS: usize = 56;
    pub const MAX_PARTS: usize = 12;
    pub const PART_LEN: usize = 48;
    pub const SIZE: usize = PARTS + MAX_PARTS * PART_LEN;
}

/// `struct kd_sched_ustack_top` field offsets.
pub mod top {
    pub const OFFCPU_START: usize = 40;
    pub const IP: usize = 48;
    pub const SP: usize = 56;
    pub const BP: usize = 64;
    pub const LEN: usize = 72;
    pub const DATA: usize = 80;
    pub const MAX: usize = 512;
    pub const SIZE: usize = DATA + MAX;
}

/// `struct kd_sched_go` field offsets.
pub mod go {
    pub const GOID: usize = 40;
    pub const USTACK: usize = 48;
    pub const REASON: usize = 56;
    pub const FD: usize = 60;
    pub const SOCK_ID: usize = 64;
    pub const FD_KIND: usize = 72;
    pub const FAMILY: usize = 73;
    pub const PROTO: usize = 74;
    pub const SPORT: usize = 76;
    pub const DPORT: usize = 78;
    pub const SADDR: usize = 80;
    pub const DADDR: usize = 96;
    pub const SIZE: usize = 112;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SchedEvent {
    Slice(SchedSlice),
    Sample(SchedSample),
    Stack(SchedStack),
    File(SchedFile),
    StackTop(SchedStackTop),
    /// The thread in the header starts running goroutine `goid` (runtime.execute).
    GoRun { goid: u64 },
    /// The goroutine the thread ran parks (runtime.gopark): `reason` is the
    /// runtime's waitReason number (its name depends on the Go version),
    /// `ustack` the goroutine's user stack hash (0: none); in the netpoller
    /// ("IO wait"), the inet socket it waits on when seen.
    GoPark { goid: u64, reason: u32, ustack: u64, socket: Option<SockTarget> },
    /// The goroutine the thread ran ends (runtime.goexit1).
    GoExit { goid: u64 },
    /// Goroutine `goid` becomes runnable: readied after a park
    /// (runtime.ready, runtime.injectglist for the netpoller) or back from a
    /// syscall without a P (runtime.exitsyscall0). The thread is the one
    /// that made it so.
    GoRunnable { goid: u64 },
}

/// The user registers and top of the user stack of a thread that blocked in
/// a syscall; joins with its slice by `offcpu_start_ns`. Lets user space
/// unwind the frames the frame-pointer walk misses (code without frame
/// pointers, such as libc's syscall wrappers) with the binaries' .eh_frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedStackTop {
    pub offcpu_start_ns: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Stack bytes from `sp` up.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// What the fd a thread blocked on was (`enum kd_fd_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FdKind {
    None,
    Socket,
    File,
    Other,
}

impl FdKind {
    fn from_wire(v: u8) -> FdKind {
        match v {
            1 => FdKind::Socket,
            2 => FdKind::File,
            3 => FdKind::Other,
            _ => FdKind::None,
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            FdKind::None => 0,
            FdKind::Socket => 1,
            FdKind::File => 2,
            FdKind::Other => 3,
        }
    }
}

/// The connection a thread waited on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockTarget {
    pub sock_id: u64,
    pub proto: L4Proto,
    /// Local end.
    pub src: SocketAddr,
    /// Peer.
    pub dst: SocketAddr,
}

/// One cycle of a thread: on-CPU `[oncpu_start_ns, offcpu_start_ns)`, blocked
/// `[offcpu_start_ns, wake_ns)`, run queue `[wake_ns, event ts)`. Times are
/// wall-clock ns; 0 is unknown (`oncpu_start_ns`) or none (`wake_ns`: preempted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedSlice {
    pub oncpu_start_ns: u64,
    pub offcpu_start_ns: u64,
    pub wake_ns: u64,
    /// Stack hashes at switch-out (0: none); frames in an earlier [`SchedStack`].
    pub kstack: u64,
    pub ustack: u64,
    /// Runnable when switched out: the whole off-CPU time is run queue.
    pub preempted: bool,
    /// The x86-64 syscall number the thread blocked in (-1: none).
    pub syscall: i64,
    /// The syscall's second argument (futex op, poll timeout, ...).
    pub arg1: u64,
    /// Its fd argument (-1: none).
    pub fd: i32,
    pub fd_kind: FdKind,
    /// AF_* of a socket fd (2 inet, 10 inet6, 1 unix, ...; 0 otherwise).
    pub family: u8,
    /// Inet socket addresses when `fd` is one.
    pub socket: Option<SockTarget>,
    pub waker_tid: u32,
    pub waker_pid: u32,
}

/// Why a thread was off the CPU (the `state` of off-CPU slices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OffCpuReason {
    Net,
    File,
    Lock,
    Epoll,
    Sleep,
    Runqueue,
    Other,
}

impl OffCpuReason {
    pub const ALL: [OffCpuReason; 7] = [
        OffCpuReason::Net,
        OffCpuReason::File,
        OffCpuReason::Lock,
        OffCpuReason::Epoll,
        OffCpuReason::Sleep,
        OffCpuReason::Runqueue,
        OffCpuReason::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OffCpuReason::Net => "net",
            OffCpuReason::File => "file",
            OffCpuReason::Lock => "lock",
            OffCpuReason::Epoll => "epoll",
            OffCpuReason::Sleep => "sleep",
            OffCpuReason::Runqueue => "runqueue",
            OffCpuReason::Other => "other",
        }
    }

    pub fn from_name(s: &str) -> Option<OffCpuReason> {
        OffCpuReason::ALL.into_iter().find(|r| r.name() == s)
    }
}

/// x86-64 syscall numbers that decide a reason by themselves.
mod nr {
    pub const SOCKET_CALLS: &[i64] = &[40, 42, 43, 44, 45, 46, 47, 48, 288, 299, 307];
    pub const LOCK: &[i64] = &[73, 202, 449, 454, 455, 456];
    pub const EPOLL: &[i64] = &[7, 23, 232, 270, 271, 281, 441];
    pub const SLEEP: &[i64] = &[35, 230];
    /// open, stat, sync, rename, aio... : file-system work without an fd argument.
    pub const FILE: &[i64] = &[
        2, 4, 5, 6, 21, 26, 74, 75, 76, 82, 83, 84, 85, 86, 87, 88, 162, 208, 257, 262, 263, 264, 266, 277,
        285, 306, 316, 332, 333, 437,
    ];
    /// read/write-like calls whose reason is what their fd is.
    pub const BY_FD: &[i64] = &[0, 1, 3, 16, 17, 18, 19, 20, 72, 77, 217, 275, 295, 296, 326, 327, 328];
}

impl SchedSlice {
    /// Why the thread was off the CPU: preempted (or woken before it could
    /// block) is run queue; else what the syscall it blocked in waits for, a
    /// read/write by what its fd is.
    pub fn reason(&self) -> OffCpuReason {
        if self.preempted {
            return OffCpuReason::Runqueue;
        }
        let n = self.syscall;
        if n < 0 {
            return OffCpuReason::Other;
        }
        if nr::LOCK.contains(&n) {
            OffCpuReason::Lock
        } else if nr::EPOLL.contains(&n) {
            OffCpuReason::Epoll
        } else if nr::SLEEP.contains(&n) {
            OffCpuReason::Sleep
        } else if nr::SOCKET_CALLS.contains(&n) {
            OffCpuReason::Net
        } else if nr::FILE.contains(&n) {
            OffCpuReason::File
        } else if nr::BY_FD.contains(&n) {
            match self.fd_kind {
                FdKind::Socket => OffCpuReason::Net,
                FdKind::File => OffCpuReason::File,
                FdKind::Other | FdKind::None => OffCpuReason::Other,
            }
        } else {
            OffCpuReason::Other
        }
    }

    /// Time blocked (0 when preempted) and time waiting for a CPU, given
    /// the slice's end (the event's ts).
    pub fn blocked_and_queued(&self, end_ns: u64) -> (u64, u64) {
        if self.preempted || self.wake_ns == 0 {
            if self.preempted {
                return (0, end_ns.saturating_sub(self.offcpu_start_ns));
            }
            // Never saw the wakeup: all of it counts as blocked.
            return (end_ns.saturating_sub(self.offcpu_start_ns), 0);
        }
        let wake = self.wake_ns.clamp(self.offcpu_start_ns, end_ns.max(self.offcpu_start_ns));
        (wake - self.offcpu_start_ns, end_ns.saturating_sub(wake))
    }
}

/// An on-CPU sample of the thread in the event header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedSample {
    pub kstack: u64,
    pub ustack: u64,
}

/// A stack's frames (instruction addresses, leaf first), sent once per
/// generation; user addresses belong to the event's process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedStack {
    pub id: u64,
    pub kernel: bool,
    pub frames: Vec<u64>,
}

/// The file a thread blocked on; joins with the slice of the same thread
/// whose `offcpu_start_ns` is equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchedFile {
    pub offcpu_start_ns: u64,
    pub path: String,
}

/// `runtime.waitReasonStrings` of Go 1.19 (the `reason` of
/// [`SchedEvent::GoPark`] -> its name), for when the binary's own table is
/// not at hand (replays, PIE executables).
pub const GO119_WAIT_REASONS: &[&str] = &[
    "",
    "GC assist marking",
    "IO wait",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "dumping heap",
    "garbage collection",
    "garbage collection scan",
    "panicwait",
    "select",
    "select (no cases)",
    "GC assist wait",
    "GC sweep wait",
    "GC scavenge wait",
    "chan receive",
    "chan send",
    "finalizer wait",
    "force gc (idle)",
    "semacquire",
    "sleep",
    "sync.Cond.Wait",
    "timer goroutine (idle)",
    "trace reader (blocked)",
    "wait for GC cycle",
    "GC worker (idle)",
    "preempted",
    "debug call",
];

/// Names of the x86-64 syscalls a thread is commonly found blocked in.
pub fn syscall_name(n: i64) -> Option<&'static str> {
    Some(match n {
        0 => "read",
        1 => "write",
        2 => "open",
        3 => "close",
        7 => "poll",
        16 => "ioctl",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        24 => "sched_yield",
        35 => "nanosleep",
        40 => "sendfile",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        48 => "shutdown",
        61 => "wait4",
        72 => "fcntl",
        73 => "flock",
        74 => "fsync",
        75 => "fdatasync",
        202 => "futex",
        217 => "getdents64",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        257 => "openat",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        295 => "preadv",
        296 => "pwritev",
        299 => "recvmmsg",
        307 => "sendmmsg",
        426 => "io_uring_enter",
        441 => "epoll_pwait2",
        449 => "futex_waitv",
        455 => "futex_wait",
        _ => return None,
    })
}

impl SchedEvent {
    pub fn kind_name(&self) -> &'static str {
        match self {
            SchedEvent::Slice(_) => "sched_slice",
            SchedEvent::Sample(_) => "sched_sample",
            SchedEvent::Stack(_) => "sched_stack",
            SchedEvent::File(_) => "sched_file",
            SchedEvent::StackTop(_) => "sched_stack_top",
            SchedEvent::GoRun { .. } => "go_run",
            SchedEvent::GoPark { .. } => "go_park",
            SchedEvent::GoExit { .. } => "go_exit",
            SchedEvent::GoRunnable { .. } => "go_runnable",
        }
    }

    pub fn json_fields(&self, j: &mut JsonEvent<'_>) {
        let v = |x: u64| serde_json::Value::from(x);
        let hex = |x: u64| serde_json::Value::from(format!("{x:#x}"));
        match self {
            SchedEvent::Slice(s) => {
                let (blocked, queued) = s.blocked_and_queued(j.ts_ns);
                j.latency_ns = Some(j.ts_ns.saturating_sub(s.offcpu_start_ns));
                j.syscall = syscall_name(s.syscall);
                if s.fd >= 0 {
                    j.fd = Some(s.fd);
                }
                if let Some(t) = &s.socket {
                    j.proto = Some(t.proto.name());
                    j.family = Some(if t.src.is_ipv6() || t.dst.is_ipv6() { "ipv6" } else { "ipv4" });
                    j.src = Some(format_addr(&t.src));
                    j.dst = Some(format_addr(&t.dst));
                    j.sock_id = Some(t.sock_id);
                }
                let m = &mut j.extra;
                m.insert("reason".into(), s.reason().name().into());
                m.insert("oncpu_start_ns".into(), v(s.oncpu_start_ns));
                m.insert("offcpu_start_ns".into(), v(s.offcpu_start_ns));
                m.insert("wake_ts_ns".into(), v(s.wake_ns));
                m.insert("blocked_ns".into(), v(blocked));
                m.insert("runqueue_ns".into(), v(queued));
                m.insert("syscall_nr".into(), serde_json::Value::from(s.syscall));
                m.insert("waker_tid".into(), v(s.waker_tid as u64));
                m.insert("waker_pid".into(), v(s.waker_pid as u64));
                m.insert("kstack".into(), hex(s.kstack));
                m.insert("ustack".into(), hex(s.ustack));
            }
            SchedEvent::Sample(s) => {
                j.extra.insert("kstack".into(), hex(s.kstack));
                j.extra.insert("ustack".into(), hex(s.ustack));
            }
            SchedEvent::Stack(s) => {
                j.extra.insert("stack_id".into(), hex(s.id));
                j.extra.insert("space".into(), (if s.kernel { "kernel" } else { "user" }).into());
                let frames: Vec<serde_json::Value> = s.frames.iter().map(|f| hex(*f)).collect();
                j.extra.insert("frames".into(), frames.into());
            }
            SchedEvent::File(f) => {
                j.extra.insert("offcpu_start_ns".into(), v(f.offcpu_start_ns));
                j.extra.insert("path".into(), f.path.clone().into());
            }
            SchedEvent::StackTop(t) => {
                j.extra.insert("offcpu_start_ns".into(), v(t.offcpu_start_ns));
                j.extra.insert("ip".into(), hex(t.ip));
                j.extra.insert("sp".into(), hex(t.sp));
                j.extra.insert("stack_bytes".into(), v(t.data.len() as u64));
            }
            SchedEvent::GoRun { goid } | SchedEvent::GoExit { goid } | SchedEvent::GoRunnable { goid } => {
                j.extra.insert("goid".into(), v(*goid));
            }
            SchedEvent::GoPark { goid, reason, ustack, socket } => {
                if let Some(t) = socket {
                    j.proto = Some(t.proto.name());
                    j.family = Some(if t.src.is_ipv6() || t.dst.is_ipv6() { "ipv6" } else { "ipv4" });
                    j.src = Some(format_addr(&t.src));
                    j.dst = Some(format_addr(&t.dst));
                    j.sock_id = Some(t.sock_id);
                }
                j.extra.insert("goid".into(), v(*goid));
                j.extra.insert("wait_reason".into(), v(*reason as u64));
                j.extra.insert("ustack".into(), hex(*ustack));
            }
        }
    }
}

/// Monotonic -> wall clock; 0 stays 0 (unknown).
fn wall(d: &Decoder, mono: u64) -> u64 {
    if mono == 0 {
        0
    } else {
        (mono as i64).wrapping_add(d.realtime_offset_ns) as u64
    }
}

fn mono(offset: i64, wall: u64) -> u64 {
    if wall == 0 {
        0
    } else {
        (wall as i64).wrapping_sub(offset) as u64
    }
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

pub fn decode(buf: &[u8], kind_id: u32, d: &Decoder) -> Result<SchedEvent, DecodeError> {
    match kind_id {
        kind::SLICE => decode_slice(buf, d).map(SchedEvent::Slice),
        kind::SAMPLE => {
            need(buf, sample::SIZE)?;
            Ok(SchedEvent::Sample(SchedSample {
                kstack: u64_at(buf, sample::KSTACK),
                ustack: u64_at(buf, sample::USTACK),
            }))
        }
        kind::STACK => {
            need(buf, stack::FRAMES)?;
            let n = (u32_at(buf, stack::NR_FRAMES) as usize).min(stack::MAX_FRAMES);
            need(buf, stack::FRAMES + n * 8)?;
            let frames = (0..n).map(|i| u64_at(buf, stack::FRAMES + i * 8)).collect();
            Ok(SchedEvent::Stack(SchedStack {
                id: u64_at(buf, stack::ID),
                kernel: u32_at(buf, stack::KERNEL) != 0,
                frames,
            }))
        }
        kind::FILE => {
            need(buf, file::SIZE)?;
            let n = (u32_at(buf, file::NR_PARTS) as usize).min(file::MAX_PARTS);
            let mut path = String::new();
            if u32_at(buf, file::TRUNCATED) != 0 {
                path.push('…');
            }
            for i in (0..n).rev() {
                let raw = &buf[file::PARTS + i * file::PART_LEN..file::PARTS + (i + 1) * file::PART_LEN];
                let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
                path.push('/');
                path.push_str(&String::from_utf8_lossy(&raw[..end]));
            }
            if path.is_empty() {
                path.push('/');
            }
            Ok(SchedEvent::File(SchedFile { offcpu_start_ns: wall(d, u64_at(buf, file::OFFCPU_START)), path }))
        }
        kind::USTACK_TOP => {
            need(buf, top::SIZE)?;
            let len = (u32_at(buf, top::LEN) as usize).min(top::MAX);
            Ok(SchedEvent::StackTop(SchedStackTop {
                offcpu_start_ns: wall(d, u64_at(buf, top::OFFCPU_START)),
                ip: u64_at(buf, top::IP),
                sp: u64_at(buf, top::SP),
                bp: u64_at(buf, top::BP),
                data: buf[top::DATA..top::DATA + len].to_vec(),
            }))
        }
        kind::GO_RUN | kind::GO_PARK | kind::GO_EXIT | kind::GO_RUNNABLE => {
            need(buf, go::SIZE)?;
            let goid = u64_at(buf, go::GOID);
            Ok(match kind_id {
                kind::GO_RUN => SchedEvent::GoRun { goid },
                kind::GO_EXIT => SchedEvent::GoExit { goid },
                kind::GO_RUNNABLE => SchedEvent::GoRunnable { goid },
                _ => {
                    let family = buf[go::FAMILY];
                    let socket = match (FdKind::from_wire(buf[go::FD_KIND]), family, buf[go::PROTO]) {
                        (FdKind::Socket, AF_INET | AF_INET6, p @ (IPPROTO_TCP | IPPROTO_UDP)) => Some(SockTarget {
                            sock_id: u64_at(buf, go::SOCK_ID),
                            proto: if p == IPPROTO_UDP { L4Proto::Udp } else { L4Proto::Tcp },
                            src: addr(family, &buf[go::SADDR..go::SADDR + 16], u16_at(buf, go::SPORT))?,
                            dst: addr(family, &buf[go::DADDR..go::DADDR + 16], u16_at(buf, go::DPORT))?,
                        }),
                        _ => None,
                    };
                    SchedEvent::GoPark { goid, reason: u32_at(buf, go::REASON), ustack: u64_at(buf, go::USTACK), socket }
                }
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_slice(buf: &[u8], d: &Decoder) -> Result<SchedSlice, DecodeError> {
    use slice::*;
    need(buf, SIZE)?;
    let flags = buf[FLAGS];
    let fd_kind = FdKind::from_wire(buf[FD_KIND]);
    let family = buf[FAMILY];
    let socket = match (fd_kind, family, buf[PROTO]) {
        (FdKind::Socket, AF_INET | AF_INET6, p @ (IPPROTO_TCP | IPPROTO_UDP)) => Some(SockTarget {
            sock_id: u64_at(buf, SOCK_ID),
            proto: if p == IPPROTO_UDP { L4Proto::Udp } else { L4Proto::Tcp },
            src: addr(family, &buf[SADDR..SADDR + 16], u16_at(buf, SPORT))?,
            dst: addr(family, &buf[DADDR..DADDR + 16], u16_at(buf, DPORT))?,
        }),
        _ => None,
    };
    let in_syscall = flags & F_IN_SYSCALL != 0;
    Ok(SchedSlice {
        oncpu_start_ns: wall(d, u64_at(buf, ONCPU_START)),
        offcpu_start_ns: wall(d, u64_at(buf, OFFCPU_START)),
        wake_ns: wall(d, u64_at(buf, WAKE_TS)),
        kstack: u64_at(buf, KSTACK),
        ustack: u64_at(buf, USTACK),
        preempted: flags & F_PREEMPTED != 0,
        syscall: if in_syscall { u64_at(buf, SYSCALL) as i64 } else { -1 },
        arg1: u64_at(buf, ARG1),
        fd: u32_at(buf, FD) as i32,
        fd_kind,
        family,
        socket,
        waker_tid: u32_at(buf, WAKER_TID),
        waker_pid: u32_at(buf, WAKER_TGID),
    })
}

/// The inverse of `decode`, for tests and synthetic captures.
pub fn encode(ev: &Event, t: &SchedEvent, mono_ts: u64) -> Option<Vec<u8>> {
    let EventBody::Sched(_) = &ev.body else { return None };
    let offset = (ev.ts_ns as i64).wrapping_sub(mono_ts as i64);
    let (kind_id, mut b) = match t {
        SchedEvent::Slice(s) => (kind::SLICE, encode_slice(s, offset)),
        SchedEvent::Sample(s) => {
            let mut b = vec![0u8; sample::SIZE];
            put(&mut b, sample::KSTACK, &s.kstack.to_le_bytes());
            put(&mut b, sample::USTACK, &s.ustack.to_le_bytes());
            (kind::SAMPLE, b)
        }
        SchedEvent::Stack(s) => {
            let n = s.frames.len().min(stack::MAX_FRAMES);
            let mut b = vec![0u8; stack::FRAMES + n * 8];
            put(&mut b, stack::ID, &s.id.to_le_bytes());
            put(&mut b, stack::NR_FRAMES, &(n as u32).to_le_bytes());
            put(&mut b, stack::KERNEL, &(s.kernel as u32).to_le_bytes());
            for (i, f) in s.frames.iter().take(n).enumerate() {
                put(&mut b, stack::FRAMES + i * 8, &f.to_le_bytes());
            }
            (kind::STACK, b)
        }
        SchedEvent::File(f) => {
            let mut b = vec![0u8; file::SIZE];
            put(&mut b, file::OFFCPU_START, &mono(offset, f.offcpu_start_ns).to_le_bytes());
            let (truncated, rest) = match f.path.strip_prefix('…') {
                Some(r) => (true, r),
                None => (false, f.path.as_str()),
            };
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).rev().take(file::MAX_PARTS).collect();
            for (i, p) in parts.iter().enumerate() {
                let bytes = &p.as_bytes()[..p.len().min(file::PART_LEN - 1)];
                put(&mut b, file::PARTS + i * file::PART_LEN, bytes);
            }
            put(&mut b, file::NR_PARTS, &(parts.len() as u32).to_le_bytes());
            put(&mut b, file::TRUNCATED, &(truncated as u32).to_le_bytes());
            (kind::FILE, b)
        }
        SchedEvent::StackTop(t) => {
            let mut b = vec![0u8; top::SIZE];
            let len = t.data.len().min(top::MAX);
            put(&mut b, top::OFFCPU_START, &mono(offset, t.offcpu_start_ns).to_le_bytes());
            put(&mut b, top::IP, &t.ip.to_le_bytes());
            put(&mut b, top::SP, &t.sp.to_le_bytes());
            put(&mut b, top::BP, &t.bp.to_le_bytes());
            put(&mut b, top::LEN, &(len as u32).to_le_bytes());
            put(&mut b, top::DATA, &t.data[..len]);
            (kind::USTACK_TOP, b)
        }
        SchedEvent::GoRun { goid } | SchedEvent::GoExit { goid } | SchedEvent::GoRunnable { goid } => {
            let mut b = vec![0u8; go::SIZE];
            put(&mut b, go::GOID, &goid.to_le_bytes());
            let k = match t {
                SchedEvent::GoRun { .. } => kind::GO_RUN,
                SchedEvent::GoExit { .. } => kind::GO_EXIT,
                _ => kind::GO_RUNNABLE,
            };
            (k, b)
        }
        SchedEvent::GoPark { goid, reason, ustack, socket } => {
            let mut b = vec![0u8; go::SIZE];
            put(&mut b, go::GOID, &goid.to_le_bytes());
            put(&mut b, go::USTACK, &ustack.to_le_bytes());
            put(&mut b, go::REASON, &reason.to_le_bytes());
            put(&mut b, go::FD, &(-1i32).to_le_bytes());
            if let Some(t) = socket {
                let v6 = t.src.is_ipv6() || t.dst.is_ipv6();
                put(&mut b, go::FD, &3i32.to_le_bytes());
                b[go::FD_KIND] = FdKind::Socket.to_wire();
                b[go::FAMILY] = if v6 { AF_INET6 } else { AF_INET };
                b[go::PROTO] = if t.proto == L4Proto::Udp { IPPROTO_UDP } else { IPPROTO_TCP };
                put(&mut b, go::SOCK_ID, &t.sock_id.to_le_bytes());
                put(&mut b, go::SADDR, &ip_bytes(t.src.ip(), v6));
                put(&mut b, go::DADDR, &ip_bytes(t.dst.ip(), v6));
                put(&mut b, go::SPORT, &t.src.port().to_le_bytes());
                put(&mut b, go::DPORT, &t.dst.port().to_le_bytes());
            }
            (kind::GO_PARK, b)
        }
    };
    put(&mut b, header::TS_NS, &mono_ts.to_le_bytes());
    put(&mut b, header::KIND, &kind_id.to_le_bytes());
    put(&mut b, header::TGID, &ev.pid.to_le_bytes());
    put(&mut b, header::TID, &ev.tid.to_le_bytes());
    put(&mut b, header::CPU, &ev.cpu.to_le_bytes());
    put(&mut b, header::COMM, ev.comm.as_bytes());
    Some(b)
}

fn encode_slice(s: &SchedSlice, offset: i64) -> Vec<u8> {
    use slice::*;
    let mut b = vec![0u8; SIZE];
    put(&mut b, ONCPU_START, &mono(offset, s.oncpu_start_ns).to_le_bytes());
    put(&mut b, OFFCPU_START, &mono(offset, s.offcpu_start_ns).to_le_bytes());
    put(&mut b, WAKE_TS, &mono(offset, s.wake_ns).to_le_bytes());
    put(&mut b, KSTACK, &s.kstack.to_le_bytes());
    put(&mut b, USTACK, &s.ustack.to_le_bytes());
    put(&mut b, SYSCALL, &s.syscall.to_le_bytes());
    put(&mut b, ARG1, &s.arg1.to_le_bytes());
    put(&mut b, FD, &s.fd.to_le_bytes());
    put(&mut b, WAKER_TID, &s.waker_tid.to_le_bytes());
    put(&mut b, WAKER_TGID, &s.waker_pid.to_le_bytes());
    let mut flags = 0;
    if s.preempted {
        flags |= F_PREEMPTED;
    }
    if s.syscall >= 0 {
        flags |= F_IN_SYSCALL;
    }
    b[FLAGS] = flags;
    b[FD_KIND] = s.fd_kind.to_wire();
    b[FAMILY] = s.family;
    if let Some(t) = &s.socket {
        let v6 = t.src.is_ipv6() || t.dst.is_ipv6();
        b[FAMILY] = if v6 { AF_INET6 } else { AF_INET };
        b[PROTO] = if t.proto == L4Proto::Udp { IPPROTO_UDP } else { IPPROTO_TCP };
        put(&mut b, SOCK_ID, &t.sock_id.to_le_bytes());
        put(&mut b, SADDR, &ip_bytes(t.src.ip(), v6));
        put(&mut b, DADDR, &ip_bytes(t.dst.ip(), v6));
        put(&mut b, SPORT, &t.src.port().to_le_bytes());
        put(&mut b, DPORT, &t.dst.port().to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Comm;
    use proptest::prelude::*;

    fn ev(body: SchedEvent) -> Event {
        Event { ts_ns: 1_700_000_000_500_000_000, pid: 40, tid: 41, cpu: 1, comm: Comm::from("worker"), body: EventBody::Sched(body) }
    }

    fn slice(syscall: i64, fd_kind: FdKind) -> SchedSlice {
        SchedSlice {
            oncpu_start_ns: 1_700_000_000_100_000_000,
            offcpu_start_ns: 1_700_000_000_200_000_000,
            wake_ns: 1_700_000_000_400_000_000,
            kstack: 0xdead,
            ustack: 0xbeef,
            preempted: false,
            syscall,
            arg1: 128,
            fd: if fd_kind == FdKind::None { -1 } else { 5 },
            fd_kind,
            family: 0,
            socket: None,
            waker_tid: 77,
            waker_pid: 70,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let d = Decoder::new(1_700_000_000_000_000_000);
        let mut net = slice(45, FdKind::Socket);
        net.family = 2;
        net.socket = Some(SockTarget {
            sock_id: 0xffff_8880_0000_1000,
            proto: L4Proto::Tcp,
            src: "127.0.0.1:40000".parse().unwrap(),
            dst: "127.0.0.1:5432".parse().unwrap(),
        });
        let mut pre = slice(-1, FdKind::None);
        pre.preempted = true;
        pre.wake_ns = 0;
        for body in [
            SchedEvent::Slice(net),
            SchedEvent::Slice(pre),
            SchedEvent::Slice(slice(202, FdKind::None)),
            SchedEvent::Sample(SchedSample { kstack: 1, ustack: 2 }),
            SchedEvent::Stack(SchedStack { id: 9, kernel: true, frames: vec![0xffff_ffff_8100_0000, 2, 3] }),
            SchedEvent::File(SchedFile { offcpu_start_ns: 1_700_000_000_200_000_000, path: "/var/lib/db/x".into() }),
            SchedEvent::File(SchedFile { offcpu_start_ns: 0, path: "…/deep/file".into() }),
            SchedEvent::StackTop(SchedStackTop {
                offcpu_start_ns: 1_700_000_000_200_000_000,
                ip: 0x7f00_0000_1000,
                sp: 0x7ffc_0000_0000,
                bp: 0x7ffc_0000_0040,
                data: (0..=255u8).collect(),
            }),
            SchedEvent::GoRun { goid: 18 },
            SchedEvent::GoPark { goid: 18, reason: 18, ustack: 0xfeed, socket: None },
            SchedEvent::GoPark {
                goid: 19,
                reason: 2,
                ustack: 0,
                socket: Some(SockTarget {
                    sock_id: 7,
                    proto: L4Proto::Tcp,
                    src: "[::1]:40000".parse().unwrap(),
                    dst: "[::1]:6379".parse().unwrap(),
                }),
            },
            SchedEvent::GoExit { goid: u64::MAX },
            SchedEvent::GoRunnable { goid: 1 },
        ] {
            let e = ev(body);
            let raw = crate::wire::encode(&e, &d).unwrap();
            assert_eq!(d.decode(&raw).unwrap(), e);
        }
    }

    #[test]
    fn reasons() {
        let r = |n, k| slice(n, k).reason();
        assert_eq!(r(202, FdKind::None), OffCpuReason::Lock);
        assert_eq!(r(0, FdKind::Socket), OffCpuReason::Net);
        assert_eq!(r(0, FdKind::File), OffCpuReason::File);
        assert_eq!(r(0, FdKind::Other), OffCpuReason::Other);
        assert_eq!(r(45, FdKind::None), OffCpuReason::Net);
        assert_eq!(r(232, FdKind::None), OffCpuReason::Epoll);
        assert_eq!(r(7, FdKind::None), OffCpuReason::Epoll);
        assert_eq!(r(230, FdKind::None), OffCpuReason::Sleep);
        assert_eq!(r(74, FdKind::File), OffCpuReason::File);
        assert_eq!(r(61, FdKind::None), OffCpuReason::Other);
        assert_eq!(r(-1, FdKind::None), OffCpuReason::Other);
        let mut p = slice(202, FdKind::None);
        p.preempted = true;
        assert_eq!(p.reason(), OffCpuReason::Runqueue);
        for reason in OffCpuReason::ALL {
            assert_eq!(OffCpuReason::from_name(reason.name()), Some(reason));
        }
    }

    #[test]
    fn blocked_and_queued_split_the_off_cpu_time() {
        let s = slice(202, FdKind::None);
        let end = s.wake_ns + 5;
        assert_eq!(s.blocked_and_queued(end), (200_000_000, 5));
        let mut p = s.clone();
        p.preempted = true;
        assert_eq!(p.blocked_and_queued(end), (0, 200_000_005));
        let mut nowake = s.clone();
        nowake.wake_ns = 0;
        assert_eq!(nowake.blocked_and_queued(end), (200_000_005, 0));
    }

    #[test]
    fn truncated_records_are_errors() {
        let d = Decoder::new(0);
        let raw = crate::wire::encode(&ev(SchedEvent::Slice(slice(0, FdKind::File))), &d).unwrap();
        assert!(d.decode(&raw[..slice::SIZE - 1]).is_err());
        let st = ev(SchedEvent::Stack(SchedStack { id: 1, kernel: false, frames: vec![1, 2, 3, 4] }));
        let raw = crate::wire::encode(&st, &d).unwrap();
        assert!(d.decode(&raw[..raw.len() - 8]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes behind a sched kind never panic the decoder.
        #[test]
        fn sched_records_never_panic(kind in 40u32..60, bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let mut raw = bytes;
            if raw.len() >= 12 {
                raw[8..12].copy_from_slice(&kind.to_le_bytes());
            }
            let _ = Decoder::new(0).decode(&raw);
        }
    }
}
