//! Per-thread timelines: every followed thread's time cut into on-CPU and
//! off-CPU slices (with the reason, what was waited on, the stacks and who
//! woke it), plus on-CPU samples, per process, for a bounded time window.
//!
//! The query trace-profiling needs: "what did threads T1..Tn of process P do
//! between t0 and t1" is [`Timelines::threads`]. Memory is bounded by
//! construction: at most `max_slices` slices and `max_samples` samples in
//! all (the oldest go first, counted), kept at most `retention_ns`.

use crate::goroutines::{self, GoMarks, Mark, MarkKind, Segment};
use crate::stacks::{Frames, StackTable};
use kindling_events::model::{Event, EventBody, L4Proto};
use kindling_events::sched::{OffCpuReason, SchedEvent, SchedSlice, SchedStackTop};
use crate::unwind::{StackTop, Unwinder};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a thread was doing during a slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    OnCpu,
    Off(OffCpuReason),
}

impl State {
    /// `oncpu` or the off-CPU reason (`net`, `file`, `lock`, `epoll`, `sleep`, `runqueue`, `other`).
    pub fn name(self) -> &'static str {
        match self {
            State::OnCpu => "oncpu",
            State::Off(r) => r.name(),
        }
    }
}

impl Serialize for State {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What an off-CPU slice waited on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// An inet socket: local end and peer.
    Peer { proto: L4Proto, local: SocketAddr, peer: SocketAddr },
    /// A socket of another family (unix, netlink, ...).
    Socket { family: u8 },
    File(Arc<str>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Peer { proto, local, peer } => write!(
                f,
                "{} {} -> {}",
                proto.name(),
                kindling_events::model::format_addr(local),
                kindling_events::model::format_addr(peer)
            ),
            Target::Socket { family: 1 } => f.write_str("unix socket"),
            Target::Socket { family: 0 } => f.write_str("socket"),
            Target::Socket { family } => write!(f, "socket (family {family})"),
            Target::File(p) => f.write_str(p),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A stretch of one thread's time.
#[derive(Clone, Debug)]
pub struct Slice {
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub state: State,
    /// The syscall it blocked in (x86-64 number; -1: none).
    pub syscall: i64,
    /// Shared: slices are many, their targets few (keeps a slice small).
    pub target: Option<Arc<Target>>,
    /// Who made it runnable (0: unknown or preempted).
    pub waker_tid: u32,
    /// Stacks at switch-out (off-CPU slices only).
    pub kstack: Option<Frames>,
    pub ustack: Option<Frames>,
}

impl Slice {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// An on-CPU sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub tid: u32,
    pub ts_ns: u64,
    pub kstack: Option<Frames>,
    pub ustack: Option<Frames>,
}

/// One thread's slices within a query window, in time order.
#[derive(Clone, Debug)]
pub struct ThreadTimeline {
    pub tid: u32,
    pub name: String,
    pub slices: Vec<Slice>,
}

#[derive(Clone, Debug)]
pub struct TimelineConfig {
    /// How long slices and samples are kept (event time).
    pub retention_ns: u64,
    pub max_slices: usize,
    pub max_samples: usize,
    /// Distinct stacks remembered before the table starts over.
    pub max_stacks: usize,
    /// Processes with data at most (beyond: their events are dropped, counted).
    pub max_processes: usize,
    /// Goroutine scheduling marks kept at most, all Go processes together.
    pub max_go_marks: usize,
}

impl Default for TimelineConfig {
    fn default() -> Self {
        TimelineConfig {
            retention_ns: 120 * 1_000_000_000,
            max_slices: 300_000,
            max_samples: 200_000,
            max_stacks: 65_536,
            max_processes: 1024,
            max_go_marks: 300_000,
        }
    }
}

/// What was dropped or could not be resolved, for self-telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelineStats {
    pub slices: usize,
    pub samples: usize,
    pub stacks: usize,
    /// Slices and samples evicted before their time to stay within bounds.
    pub evicted: u64,
    /// Events of processes beyond `max_processes`.
    pub processes_full: u64,
    /// References to stacks whose frames never arrived (their record was lost).
    pub stack_unknown: u64,
    /// Times the stack table started over (a new kernel generation follows).
    pub stack_resets: u64,
    /// Goroutine scheduling marks held (their evictions count in `evicted`).
    pub go_marks: usize,
}

#[derive(Default)]
struct Process {
    slices: VecDeque<Slice>,
    samples: VecDeque<Sample>,
    names: HashMap<u32, String>,
    /// Earliest time from which this process's data is complete.
    since_ns: u64,
    /// The kernel follows it now: kept even while it has no data (an idle
    /// process sends nothing until its threads wake).
    followed: bool,
}

/// The process whose oldest entry (`front`: its time, None when it has
/// none) is the oldest of all: the one a bound evicts from.
pub(crate) fn oldest<'a, P: 'a>(
    procs: impl Iterator<Item = &'a mut P>,
    front: impl Fn(&P) -> Option<u64>,
) -> Option<&'a mut P> {
    procs.filter_map(|p| front(p).map(|t| (t, p))).min_by_key(|(t, _)| *t).map(|(_, p)| p)
}

/// Distinct targets shared by slices at most.
const TARGETS_MAX: usize = 16_384;

/// Files threads blocked on, waiting for their slices (by tid).
const PENDING_FILES_MAX: usize = 4096;

pub struct Timelines {
    cfg: TimelineConfig,
    procs: HashMap<u32, Process>,
    stacks: StackTable,
    pending_files: HashMap<u32, (u64, Arc<str>)>,
    targets: HashMap<Target, Arc<Target>>,
    /// Stack tops of blocked threads, waiting for their slices (by tid).
    pending_tops: HashMap<u32, SchedStackTop>,
    unwinder: Option<Unwinder>,
    /// User stacks the unwinder extended, interned by content.
    repaired: HashMap<Vec<u64>, Frames>,
    /// The last extension of each (pid, frame-pointer stack): the kernel sends
    /// no stack top when a thread blocks again where it blocked before.
    last_repair: HashMap<(u32, u64), Frames>,
    /// User stacks first seen since `take_new_user_stacks` (by pid).
    fresh: Vec<(u32, Frames)>,
    slices: usize,
    samples: usize,
    evicted: u64,
    processes_full: u64,
    now_ns: u64,
    go: GoMarks,
}

impl Default for Timelines {
    fn default() -> Self {
        Timelines::new(TimelineConfig::default())
    }
}

impl Timelines {
    pub fn new(cfg: TimelineConfig) -> Timelines {
        Timelines {
            stacks: StackTable::new(cfg.max_stacks),
            cfg,
            procs: HashMap::new(),
            pending_files: HashMap::new(),
            targets: HashMap::new(),
            pending_tops: HashMap::new(),
            unwinder: None,
            repaired: HashMap::new(),
            last_repair: HashMap::new(),
            fresh: Vec::new(),
            slices: 0,
            samples: 0,
            evicted: 0,
            processes_full: 0,
            now_ns: 0,
            go: GoMarks::default(),
        }
    }

    /// Recovers the user frames of code without frame pointers from the
    /// stack tops the kernel sends (reads /proc and the binaries: live only).
    pub fn enable_unwinding(&mut self) {
        self.unwinder = Some(Unwinder::new());
    }

    /// Feeds one event (anything but sched events is ignored).
    pub fn observe(&mut self, ev: &Event) {
        let EventBody::Sched(s) = &ev.body else { return };
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match s {
            SchedEvent::Stack(st) => {
                self.stacks.insert(st.id, &st.frames);
                if !st.kernel {
                    if let Some(f) = self.stacks.get(st.id) {
                        self.note_fresh(ev.pid, f);
                    }
                }
            }
            SchedEvent::File(f) => {
                if self.pending_files.len() >= PENDING_FILES_MAX {
                    self.pending_files.clear();
                }
                self.pending_files.insert(ev.tid, (f.offcpu_start_ns, f.path.as_str().into()));
            }
            SchedEvent::Sample(smp) => {
                let sample = Sample {
                    tid: ev.tid,
                    ts_ns: ev.ts_ns,
                    kstack: self.stacks.get(smp.kstack),
                    ustack: self.stacks.get(smp.ustack),
                };
                if let Some(p) = self.process(ev) {
                    p.samples.push_back(sample);
                    self.samples += 1;
                    self.bound();
                }
            }
            SchedEvent::StackTop(t) => {
                if self.unwinder.is_some() {
                    if self.pending_tops.len() >= PENDING_FILES_MAX {
                        self.pending_tops.clear();
                    }
                    self.pending_tops.insert(ev.tid, t.clone());
                }
            }
            SchedEvent::Slice(sl) => self.slice(ev, sl),
            SchedEvent::GoRun { goid } => self.go_mark(ev, *goid, MarkKind::Run),
            SchedEvent::GoPark { goid, reason, ustack, socket } => {
                let ustack = self.stacks.get(*ustack);
                let target = socket
                    .as_ref()
                    .map(|t| self.intern_target(Target::Peer { proto: t.proto, local: t.src, peer: t.dst }));
                self.go_mark(ev, *goid, MarkKind::Park { reason: *reason, ustack, target })
            }
            SchedEvent::GoExit { goid } => self.go_mark(ev, *goid, MarkKind::Exit),
            SchedEvent::GoRunnable { goid } => self.go_mark(ev, *goid, MarkKind::Runnable),
        }
    }

    fn go_mark(&mut self, ev: &Event, goid: u64, kind: MarkKind) {
        let m = Mark { ts_ns: ev.ts_ns, tid: ev.tid, goid, kind };
        if !self.go.push(ev.pid, m, self.cfg.max_go_marks, self.cfg.max_processes) {
            self.processes_full += 1;
        }
    }

    fn process(&mut self, ev: &Event) -> Option<&mut Process> {
        if !self.procs.contains_key(&ev.pid) && self.procs.len() >= self.cfg.max_processes {
            self.processes_full += 1;
            return None;
        }
        let p = self.procs.entry(ev.pid).or_insert_with(|| Process { since_ns: ev.ts_ns, ..Default::default() });
        // Per event: only a new or renamed thread allocates its name.
        let changed = p.names.get(&ev.tid).is_none_or(|n| n.as_bytes() != ev.comm.as_bytes());
        if changed && (p.names.len() < 100_000 || p.names.contains_key(&ev.tid)) {
            p.names.insert(ev.tid, ev.comm.to_string_lossy());
        }
        Some(p)
    }

    /// One kernel slice record becomes up to three slices: on-CPU, blocked, run queue.
    fn slice(&mut self, ev: &Event, s: &SchedSlice) {
        let end = ev.ts_ns;
        let kstack = self.stacks.get(s.kstack);
        let mut ustack = self.stacks.get(s.ustack);
        let top = self.pending_tops.remove(&ev.tid).filter(|t| t.offcpu_start_ns == s.offcpu_start_ns);
        if let (Some(fp), true) = (&ustack, self.unwinder.is_some()) {
            let repaired = match top {
                Some(top) => {
                    let r = self.repair(ev.pid, fp, &top);
                    if let Some(f) = &r {
                        if self.last_repair.len() >= self.cfg.max_stacks {
                            self.last_repair.clear();
                        }
                        self.last_repair.insert((ev.pid, s.ustack), f.clone());
                    }
                    r
                }
                None => self.last_repair.get(&(ev.pid, s.ustack)).cloned(),
            };
            if repaired.is_some() {
                ustack = repaired;
            }
        }
        let file = match self.pending_files.remove(&ev.tid) {
            Some((start, path)) if start == s.offcpu_start_ns => Some(path),
            _ => None,
        };
        let target = match (&s.socket, file) {
            (Some(t), _) => Some(Target::Peer { proto: t.proto, local: t.src, peer: t.dst }),
            (None, Some(path)) => Some(Target::File(path)),
            _ if s.fd_kind == kindling_events::sched::FdKind::Socket => Some(Target::Socket { family: s.family }),
            _ => None,
        }
        .map(|t| self.intern_target(t));
        let base = Slice {
            tid: ev.tid,
            start_ns: 0,
            end_ns: 0,
            state: State::OnCpu,
            syscall: -1,
            target: None,
            waker_tid: 0,
            kstack: None,
            ustack: None,
        };
        let mut out: Vec<Slice> = Vec::with_capacity(3);
        if s.oncpu_start_ns != 0 && s.oncpu_start_ns < s.offcpu_start_ns {
            out.push(Slice { start_ns: s.oncpu_start_ns, end_ns: s.offcpu_start_ns, ..base.clone() });
        }
        let (blocked, queued) = s.blocked_and_queued(end);
        if blocked > 0 {
            out.push(Slice {
                start_ns: s.offcpu_start_ns,
                end_ns: s.offcpu_start_ns + blocked,
                state: State::Off(s.reason()),
                syscall: s.syscall,
                target,
                waker_tid: s.waker_tid,
                kstack: kstack.clone(),
                ustack: ustack.clone(),
                ..base.clone()
            });
        }
        if queued > 0 {
            out.push(Slice {
                start_ns: end - queued,
                end_ns: end,
                state: State::Off(OffCpuReason::Runqueue),
                syscall: if s.preempted { -1 } else { s.syscall },
                waker_tid: s.waker_tid,
                kstack,
                ustack,
                ..base
            });
        }
        let n = out.len();
        if let Some(p) = self.process(ev) {
            p.slices.extend(out);
            self.slices += n;
            self.bound();
        }
    }

    fn repair(&mut self, pid: u32, fp: &Frames, top: &SchedStackTop) -> Option<Frames> {
        let unwinder = self.unwinder.as_mut()?;
        let st = StackTop { ip: top.ip, sp: top.sp, bp: top.bp, data: &top.data };
        let full = unwinder.repair(pid, fp, &st)?;
        if let Some(f) = self.repaired.get(&full) {
            return Some(f.clone());
        }
        if self.repaired.len() >= self.cfg.max_stacks {
            self.repaired.clear();
        }
        let f: Frames = full.as_slice().into();
        self.repaired.insert(full, f.clone());
        self.note_fresh(pid, f.clone());
        Some(f)
    }

    fn note_fresh(&mut self, pid: u32, f: Frames) {
        // Live only (with unwinding), and a bounded backlog if nobody takes them.
        if self.unwinder.is_some() && self.fresh.len() < 4096 {
            self.fresh.push((pid, f));
        }
    }

    /// User stacks (with their pid) seen for the first time since the last
    /// call: a live caller names them while their process still runs.
    pub fn take_new_user_stacks(&mut self) -> Vec<(u32, Frames)> {
        std::mem::take(&mut self.fresh)
    }

    /// One shared copy per distinct target (bounded; starts over when full).
    fn intern_target(&mut self, t: Target) -> Arc<Target> {
        if let Some(a) = self.targets.get(&t) {
            return a.clone();
        }
        if self.targets.len() >= TARGETS_MAX {
            self.targets.clear();
        }
        let a = Arc::new(t.clone());
        self.targets.insert(t, a.clone());
        a
    }

    /// Evicts the oldest data beyond the size bounds.
    fn bound(&mut self) {
        while self.slices > self.cfg.max_slices {
            let Some(p) = oldest(self.procs.values_mut(), |p| p.slices.front().map(|s| s.end_ns)) else {
                break;
            };
            if let Some(s) = p.slices.pop_front() {
                p.since_ns = p.since_ns.max(s.end_ns);
            }
            self.slices -= 1;
            self.evicted += 1;
        }
        while self.samples > self.cfg.max_samples {
            let Some(p) = oldest(self.procs.values_mut(), |p| p.samples.front().map(|s| s.ts_ns)) else {
                break;
            };
            if let Some(s) = p.samples.pop_front() {
                p.since_ns = p.since_ns.max(s.ts_ns);
            }
            self.samples -= 1;
            self.evicted += 1;
        }
    }

    /// Time passes: drops what is older than the retention.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let horizon = self.now_ns.saturating_sub(self.cfg.retention_ns);
        let (mut slices, mut samples) = (0, 0);
        for p in self.procs.values_mut() {
            while p.slices.front().is_some_and(|s| s.end_ns < horizon) {
                p.slices.pop_front();
                slices += 1;
            }
            while p.samples.front().is_some_and(|s| s.ts_ns < horizon) {
                p.samples.pop_front();
                samples += 1;
            }
            p.since_ns = p.since_ns.max(horizon);
        }
        self.slices -= slices;
        self.samples -= samples;
        self.procs.retain(|_, p| p.followed || !p.slices.is_empty() || !p.samples.is_empty());
        self.go.expire(horizon);
    }

    /// True once after the stack table started over: tell the kernel to
    /// begin a new stack generation (`SchedControl::new_stack_generation`).
    pub fn take_stack_reset(&mut self) -> bool {
        self.stacks.take_reset()
    }

    /// Forgets a process's data (it is no longer followed).
    pub fn forget(&mut self, pid: u32) {
        if let Some(p) = self.procs.remove(&pid) {
            self.slices -= p.slices.len();
            self.samples -= p.samples.len();
        }
        self.go.forget(pid);
    }

    /// The kernel follows `pid` from `since_ns` on: its data is complete from
    /// then, even if its threads stay blocked (and silent) for a while.
    pub fn followed(&mut self, pid: u32, since_ns: u64) {
        let p = self.procs.entry(pid).or_insert_with(|| Process { since_ns, ..Default::default() });
        p.followed = true;
    }

    /// The processes marked followed.
    pub fn followed_pids(&self) -> Vec<u32> {
        self.procs.iter().filter(|(_, p)| p.followed).map(|(pid, _)| *pid).collect()
    }

    /// The kernel no longer follows `pid` (its data ages out as usual).
    pub fn unfollowed(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.followed = false;
        }
    }

    /// Since when this process's data is complete (None: no data).
    pub fn since(&self, pid: u32) -> Option<u64> {
        self.procs.get(&pid).map(|p| p.since_ns)
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The slices of a process (optionally only some threads) that overlap
    /// `[t0, t1)`, clipped to it, per thread in time order.
    pub fn threads(&self, pid: u32, tids: Option<&[u32]>, t0: u64, t1: u64) -> Vec<ThreadTimeline> {
        let Some(p) = self.procs.get(&pid) else { return Vec::new() };
        let mut by_tid: HashMap<u32, Vec<Slice>> = HashMap::new();
        for s in &p.slices {
            if s.end_ns <= t0 || s.start_ns >= t1 || tids.is_some_and(|t| !t.contains(&s.tid)) {
                continue;
            }
            let mut c = s.clone();
            c.start_ns = c.start_ns.max(t0);
            c.end_ns = c.end_ns.min(t1);
            by_tid.entry(s.tid).or_default().push(c);
        }
        let mut out: Vec<ThreadTimeline> = by_tid
            .into_iter()
            .map(|(tid, mut slices)| {
                slices.sort_by_key(|s| (s.start_ns, s.end_ns));
                let name = p.names.get(&tid).cloned().unwrap_or_default();
                ThreadTimeline { tid, name, slices }
            })
            .collect();
        out.sort_by_key(|t| t.tid);
        out
    }

    /// On-CPU samples of a process in `[t0, t1)`.
    pub fn samples(&self, pid: u32, t0: u64, t1: u64) -> Vec<Sample> {
        let Some(p) = self.procs.get(&pid) else { return Vec::new() };
        p.samples.iter().filter(|s| s.ts_ns >= t0 && s.ts_ns < t1).cloned().collect()
    }

    /// The name of a thread (its comm), if seen.
    pub fn thread_name(&self, pid: u32, tid: u32) -> Option<&str> {
        self.procs.get(&pid)?.names.get(&tid).map(String::as_str)
    }

    /// Names a Go process's wait reasons (by `runtime.waitReason` number, as
    /// its binary defines them); without this, Go 1.19's names are assumed.
    pub fn set_go_wait_reasons(&mut self, pid: u32, names: Vec<String>) {
        self.go.set_reasons(pid, names, self.cfg.max_processes);
    }

    fn wait_reason_name(&self, pid: u32, reason: u32) -> &str {
        let own = self.go.reasons.get(&pid);
        match own {
            Some(names) => names.get(reason as usize).map(String::as_str).unwrap_or(""),
            None => kindling_events::sched::GO119_WAIT_REASONS.get(reason as usize).copied().unwrap_or(""),
        }
    }

    /// The goroutine thread `tid` was running at `ts` (None when not a
    /// followed Go process, or the thread ran none then).
    pub fn goroutine_at(&self, pid: u32, tid: u32, ts: u64) -> Option<u64> {
        self.go.procs.get(&pid)?.current(tid, ts)
    }

    /// Goroutines of a process seen scheduled in `[t0, t1)`, by id.
    pub fn goroutines(&self, pid: u32, t0: u64, t1: u64) -> Vec<u64> {
        self.go.procs.get(&pid).map(|p| p.goids(t0, t1)).unwrap_or_default()
    }

    /// A goroutine's time in `[t0, t1)` as a pseudo-thread (`tid` = goid as
    /// u32, `name` = "goroutine N"): while current on a thread, that
    /// thread's slices (on-CPU, run queue, blocked in a syscall); while
    /// parked, a slice whose state comes from the wait reason ("IO wait" ->
    /// net, mutexes and semaphores -> lock, "sleep" -> sleep, others ->
    /// other) with the park's user stack; runnable in Go's run queue (made
    /// runnable, preempted): `runqueue`. None when the goroutine is unknown.
    pub fn goroutine(&self, pid: u32, goid: u64, t0: u64, t1: u64) -> Option<ThreadTimeline> {
        let g = self.go.procs.get(&pid)?;
        if !g.knows(goid) || t0 >= t1 {
            return None;
        }
        let segs = g.segments(goid, t0, t1);
        let mut tids: Vec<u32> = segs
            .iter()
            .filter_map(|s| match s {
                Segment::OnThread { tid, start, end } if *end > t0 && *start < t1 => Some(*tid),
                _ => None,
            })
            .collect();
        tids.sort_unstable();
        tids.dedup();
        let threads = self.threads(pid, Some(&tids), t0, t1);
        let by_tid: HashMap<u32, &[Slice]> = threads.iter().map(|t| (t.tid, t.slices.as_slice())).collect();
        Some(self.goroutine_timeline(pid, goid, segs, &by_tid, t0, t1))
    }

    /// Every goroutine of a process that has time in `[t0, t1)`, as
    /// [`Timelines::goroutine`] gives them one by one (in one pass), by id.
    pub fn goroutine_timelines(&self, pid: u32, t0: u64, t1: u64) -> Vec<ThreadTimeline> {
        let Some(g) = self.go.procs.get(&pid) else { return Vec::new() };
        if t0 >= t1 {
            return Vec::new();
        }
        let threads = self.threads(pid, None, t0, t1);
        let by_tid: HashMap<u32, &[Slice]> = threads.iter().map(|t| (t.tid, t.slices.as_slice())).collect();
        let mut all: Vec<(u64, Vec<Segment>)> = g.segments_of(None, t1).into_iter().collect();
        all.sort_unstable_by_key(|(goid, _)| *goid);
        all.into_iter()
            .map(|(goid, segs)| self.goroutine_timeline(pid, goid, segs, &by_tid, t0, t1))
            .filter(|t| !t.slices.is_empty())
            .collect()
    }

    /// A goroutine's segments cut along its threads' slices, in `[t0, t1)`.
    fn goroutine_timeline(
        &self,
        pid: u32,
        goid: u64,
        segs: Vec<Segment>,
        by_tid: &HashMap<u32, &[Slice]>,
        t0: u64,
        t1: u64,
    ) -> ThreadTimeline {
        let pseudo = goid as u32;
        let mut slices = Vec::new();
        for seg in segs {
            let (start, end) = match &seg {
                Segment::OnThread { start, end, .. } | Segment::Parked { start, end, .. } | Segment::Queued { start, end } => {
                    ((*start).max(t0), (*end).min(t1))
                }
            };
            if start >= end {
                continue;
            }
            match seg {
                Segment::OnThread { tid, .. } => {
                    if let Some(th) = by_tid.get(&tid) {
                        goroutines::cut(th, start, end, pseudo, &mut slices);
                    }
                }
                Segment::Parked { reason, ustack, target, .. } => {
                    let name = self.wait_reason_name(pid, reason);
                    slices.push(goroutines::parked_slice(pseudo, start, end, name, ustack, target));
                }
                Segment::Queued { .. } => {
                    let mut s = goroutines::parked_slice(pseudo, start, end, "", None, None);
                    s.state = State::Off(OffCpuReason::Runqueue);
                    slices.push(s);
                }
            }
        }
        ThreadTimeline { tid: pseudo, name: format!("goroutine {goid}"), slices }
    }

    /// On-CPU samples of the threads while they ran goroutine `goid`, in
    /// `[t0, t1)`, in time order; `tid` = goid as u32 (as in [`Timelines::goroutine`]).
    pub fn goroutine_samples(&self, pid: u32, goid: u64, t0: u64, t1: u64) -> Vec<Sample> {
        let (Some(g), Some(p)) = (self.go.procs.get(&pid), self.procs.get(&pid)) else { return Vec::new() };
        let runs: Vec<(u32, u64, u64)> = g
            .segments(goid, t0, t1)
            .into_iter()
            .filter_map(|s| match s {
                Segment::OnThread { tid, start, end } => Some((tid, start.max(t0), end.min(t1))),
                _ => None,
            })
            .filter(|(_, a, b)| a < b)
            .collect();
        let mut out: Vec<Sample> = p
            .samples
            .iter()
            .filter(|s| runs.iter().any(|(tid, a, b)| s.tid == *tid && s.ts_ns >= *a && s.ts_ns < *b))
            .map(|s| Sample { tid: goid as u32, ..s.clone() })
            .collect();
        out.sort_by_key(|s| s.ts_ns);
        out
    }

    pub fn stats(&self) -> TimelineStats {
        TimelineStats {
            slices: self.slices,
            samples: self.samples,
            stacks: self.stacks.len(),
            evicted: self.evicted + self.go.evicted,
            go_marks: self.go.marks,
            processes_full: self.processes_full,
            stack_unknown: self.stacks.unknown,
            stack_resets: self.stacks.resets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindling_events::model::Comm;
    use kindling_events::sched::{FdKind, SchedFile, SchedSample, SchedStack, SockTarget};

    pub(crate) fn ev(pid: u32, tid: u32, ts: u64, s: SchedEvent) -> Event {
        Event { ts_ns: ts, pid, tid, cpu: 0, comm: Comm::from("t"), body: EventBody::Sched(s) }
    }

    pub(crate) fn sl(on: u64, off: u64, wake: u64, syscall: i64) -> SchedSlice {
        SchedSlice {
            oncpu_start_ns: on,
            offcpu_start_ns: off,
            wake_ns: wake,
            kstack: 0,
            ustack: 7,
            preempted: false,
            syscall,
            arg1: 0,
            fd: -1,
            fd_kind: FdKind::None,
            family: 0,
            socket: None,
            waker_tid: 9,
            waker_pid: 1,
        }
    }

    #[test]
    fn a_followed_process_is_complete_from_its_follow_time_even_when_silent() {
        let mut t = Timelines::default();
        assert_eq!(t.since(1), None);
        t.followed(1, 1_000);
        t.tick(5_000);
        assert_eq!(t.since(1), Some(1_000), "kept with no data while followed");
        assert_eq!(t.followed_pids(), vec![1]);
        t.unfollowed(1);
        t.tick(6_000);
        assert_eq!(t.since(1), None, "an unfollowed process with no data is forgotten");
    }

    #[test]
    fn a_cycle_becomes_three_slices() {
        let mut t = Timelines::default();
        t.observe(&ev(1, 2, 50, SchedEvent::Stack(SchedStack { id: 7, kernel: false, frames: vec![1, 2] })));
        t.observe(&ev(1, 2, 400, SchedEvent::Slice(sl(100, 200, 350, 202))));
        let th = t.threads(1, None, 0, 1000);
        assert_eq!(th.len(), 1);
        let s = &th[0].slices;
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].state, s[0].start_ns, s[0].end_ns), (State::OnCpu, 100, 200));
        assert_eq!((s[1].state, s[1].start_ns, s[1].end_ns), (State::Off(OffCpuReason::Lock), 200, 350));
        assert_eq!(s[1].ustack.as_deref(), Some(&[1u64, 2][..]));
        assert_eq!(s[1].waker_tid, 9);
        assert_eq!((s[2].state, s[2].start_ns, s[2].end_ns), (State::Off(OffCpuReason::Runqueue), 350, 400));
        // Clipped to the window; other threads filtered out.
        let th = t.threads(1, Some(&[2]), 250, 380);
        assert_eq!(th[0].slices.first().map(|s| s.start_ns), Some(250));
        assert_eq!(th[0].slices.last().map(|s| s.end_ns), Some(380));
        assert!(t.threads(1, Some(&[3]), 0, 1000).is_empty());
        assert_eq!(t.stats().stack_unknown, 0);
    }

    #[test]
    fn targets_sockets_and_files() {
        let mut t = Timelines::default();
        let mut s = sl(0, 200, 300, 45);
        s.fd_kind = FdKind::Socket;
        s.family = 2;
        s.socket = Some(SockTarget {
            sock_id: 1,
            proto: L4Proto::Tcp,
            src: "127.0.0.1:5000".parse().unwrap(),
            dst: "127.0.0.1:6000".parse().unwrap(),
        });
        t.observe(&ev(1, 2, 300, SchedEvent::Slice(s)));
        t.observe(&ev(1, 3, 200, SchedEvent::File(SchedFile { offcpu_start_ns: 200, path: "/data/x".into() })));
        let mut f = sl(0, 200, 300, 74);
        f.fd_kind = FdKind::File;
        t.observe(&ev(1, 3, 300, SchedEvent::Slice(f)));
        let th = t.threads(1, None, 0, 1000);
        let net = &th[0].slices[0];
        assert_eq!(net.state, State::Off(OffCpuReason::Net));
        assert_eq!(net.target.as_ref().unwrap().to_string(), "tcp 127.0.0.1:5000 -> 127.0.0.1:6000");
        let file = &th[1].slices[0];
        assert_eq!(file.state, State::Off(OffCpuReason::File));
        assert_eq!(file.target.as_ref().unwrap().to_string(), "/data/x");
        // Stack 7 never arrived: counted.
        assert_eq!(t.stats().stack_unknown, 2);
    }

    #[test]
    fn goroutines_follow_their_threads_and_parks() {
        let mut t = Timelines::default();
        let (r, p, x) = (|g| SchedEvent::GoRun { goid: g }, |g, reason| SchedEvent::GoPark { goid: g, reason, ustack: 7, socket: None }, |g| SchedEvent::GoExit { goid: g });
        t.observe(&ev(1, 2, 50, SchedEvent::Stack(SchedStack { id: 7, kernel: false, frames: vec![1, 2] })));
        t.observe(&ev(1, 2, 100, r(5)));
        let mut read = sl(100, 200, 350, 0);
        read.fd_kind = FdKind::File;
        t.observe(&ev(1, 2, 400, SchedEvent::Slice(read)));
        t.observe(&ev(1, 2, 420, SchedEvent::Sample(SchedSample { kstack: 0, ustack: 0 })));
        t.observe(&ev(1, 2, 450, p(5, 18)));
        t.observe(&ev(1, 2, 460, r(6)));
        t.observe(&ev(1, 2, 470, SchedEvent::Sample(SchedSample { kstack: 0, ustack: 0 })));
        t.observe(&ev(1, 2, 1000, SchedEvent::Slice(sl(400, 500, 990, 202))));
        t.observe(&ev(1, 3, 700, SchedEvent::Slice(sl(0, 650, 690, 232))));
        t.observe(&ev(1, 3, 700, r(5)));
        t.observe(&ev(1, 3, 750, SchedEvent::Sample(SchedSample { kstack: 0, ustack: 0 })));
        let sock = SockTarget {
            sock_id: 1,
            proto: L4Proto::Tcp,
            src: "127.0.0.1:5000".parse().unwrap(),
            dst: "127.0.0.1:6379".parse().unwrap(),
        };
        t.observe(&ev(1, 3, 800, SchedEvent::GoPark { goid: 5, reason: 2, ustack: 0, socket: Some(sock) }));
        // The netpoller (on thread 2) makes it runnable; it runs at 1000.
        t.observe(&ev(1, 2, 990, SchedEvent::GoRunnable { goid: 5 }));
        t.observe(&ev(1, 3, 1000, r(5)));
        t.observe(&ev(1, 3, 1100, x(5)));
        t.observe(&ev(1, 3, 1200, SchedEvent::Slice(sl(700, 1150, 1190, 202))));

        let g = t.goroutine(1, 5, 0, 2000).unwrap();
        assert_eq!((g.tid, g.name.as_str()), (5, "goroutine 5"));
        let got: Vec<(&str, u64, u64)> = g.slices.iter().map(|s| (s.state.name(), s.start_ns, s.end_ns)).collect();
        assert_eq!(
            got,
            vec![
                ("oncpu", 100, 200),
                ("file", 200, 350),
                ("runqueue", 350, 400),
                ("oncpu", 400, 450),
                ("lock", 450, 700),
                ("oncpu", 700, 800),
                ("net", 800, 990),
                ("runqueue", 990, 1000),
                ("oncpu", 1000, 1100),
            ]
        );
        assert!(g.slices.iter().all(|s| s.tid == 5));
        assert_eq!(g.slices[4].ustack.as_deref(), Some(&[1u64, 2][..]), "the park's stack");
        let net = &g.slices[6];
        assert_eq!(net.target.as_ref().map(|t| t.to_string()).as_deref(), Some("tcp 127.0.0.1:5000 -> 127.0.0.1:6379"));
        // Clipped to the window.
        let w = t.goroutine(1, 5, 420, 720).unwrap();
        let got: Vec<(&str, u64, u64)> = w.slices.iter().map(|s| (s.state.name(), s.start_ns, s.end_ns)).collect();
        assert_eq!(got, vec![("oncpu", 420, 450), ("lock", 450, 700), ("oncpu", 700, 720)]);
        assert_eq!(t.goroutine_at(1, 2, 420), Some(5));
        assert_eq!(t.goroutine_at(1, 2, 455), None);
        assert_eq!(t.goroutine_at(1, 2, 470), Some(6));
        assert_eq!(t.goroutine_at(9, 2, 470), None, "not a Go process");
        assert!(t.goroutine(1, 99, 0, 2000).is_none());
        let samples: Vec<u64> = t.goroutine_samples(1, 5, 0, 2000).iter().map(|s| s.ts_ns).collect();
        assert_eq!(samples, vec![420, 750]);
        assert_eq!(t.goroutines(1, 0, 2000), vec![5, 6]);
        // The binary's own names win over Go 1.19's.
        let mut names: Vec<String> = kindling_events::sched::GO119_WAIT_REASONS.iter().map(|s| s.to_string()).collect();
        names[18] = "sync.Mutex.Lock".into();
        names[2] = "select".into();
        t.set_go_wait_reasons(1, names);
        let g = t.goroutine(1, 5, 0, 2000).unwrap();
        assert_eq!(g.slices[4].state.name(), "lock");
        assert_eq!(g.slices[6].state.name(), "other");
        assert_eq!(t.stats().go_marks, 8);
        assert_eq!(t.goroutine_at(1, 2, 995), Some(6), "readying another goroutine does not change the thread's");
        t.forget(1);
        assert_eq!(t.stats().go_marks, 0);
    }

    use proptest::prelude::*;

    fn arb_event() -> impl Strategy<Value = Event> {
        let slice = (0u64..5_000, 0u64..5_000, 0u64..5_000, any::<bool>(), -1i64..500, 0u64..4, 0u64..4).prop_map(
            |(on, off, wake, preempted, syscall, k, u)| {
                let mut s = sl(on, off, wake, syscall);
                s.preempted = preempted;
                s.kstack = k;
                s.ustack = u;
                SchedEvent::Slice(s)
            },
        );
        let body = prop_oneof![
            slice,
            (0u64..4, 0u64..4).prop_map(|(k, u)| SchedEvent::Sample(SchedSample { kstack: k, ustack: u })),
            (0u64..4, proptest::collection::vec(any::<u64>(), 0..8))
                .prop_map(|(id, frames)| SchedEvent::Stack(SchedStack { id, kernel: id % 2 == 0, frames })),
            (0u64..5_000).prop_map(|t| SchedEvent::File(SchedFile { offcpu_start_ns: t, path: "/x".into() })),
            (1u64..4).prop_map(|goid| SchedEvent::GoRun { goid }),
            (1u64..4, 0u32..30, 0u64..4).prop_map(|(goid, reason, ustack)| SchedEvent::GoPark { goid, reason, ustack, socket: None }),
            (1u64..4).prop_map(|goid| SchedEvent::GoExit { goid }),
            (1u64..4).prop_map(|goid| SchedEvent::GoRunnable { goid }),
        ];
        (1u32..4, 1u32..8, 0u64..6_000, body).prop_map(|(pid, tid, ts, b)| ev(pid, tid, ts, b))
    }

    proptest! {
        /// Any sequence of events: no panic, the bounds hold, queries give
        /// well-formed slices in time order inside the window.
        #[test]
        fn arbitrary_events_stay_bounded(events in proptest::collection::vec(arb_event(), 0..300),
                                         t0 in 0u64..3_000, len in 1u64..4_000) {
            let cfg = TimelineConfig { max_slices: 50, max_samples: 20, max_stacks: 3, max_processes: 2, retention_ns: 10_000, max_go_marks: 30 };
            let mut t = Timelines::new(cfg);
            for e in &events {
                t.observe(e);
                let st = t.stats();
                prop_assert!(st.slices <= 50 && st.samples <= 20 && st.stacks <= 3);
            }
            for pid in 1..4 {
                for th in t.threads(pid, None, t0, t0 + len) {
                    let mut last = 0;
                    for s in &th.slices {
                        prop_assert!(s.start_ns < s.end_ns && s.start_ns >= t0 && s.end_ns <= t0 + len);
                        prop_assert!(s.start_ns >= last);
                        last = s.start_ns;
                    }
                }
                prop_assert!(t.samples(pid, t0, t0 + len).iter().all(|s| s.ts_ns >= t0 && s.ts_ns < t0 + len));
                // All at once is the same as one by one.
                let all = t.goroutine_timelines(pid, t0, t0 + len);
                let key = |g: &ThreadTimeline| -> Vec<(u32, u64, u64, &'static str)> {
                    g.slices.iter().map(|s| (s.tid, s.start_ns, s.end_ns, s.state.name())).collect()
                };
                for goid in 1..4 {
                    let one = t.goroutine(pid, goid, t0, t0 + len).filter(|g| !g.slices.is_empty());
                    prop_assert_eq!(one.as_ref().map(key), all.iter().find(|g| g.tid == goid as u32).map(key));
                    if let Some(g) = one {
                        prop_assert!(g.slices.iter().all(|s| s.start_ns < s.end_ns && s.start_ns >= t0 && s.end_ns <= t0 + len));
                    }
                    prop_assert!(t.goroutine_samples(pid, goid, t0, t0 + len).iter().all(|s| s.ts_ns >= t0 && s.ts_ns < t0 + len));
                }
                prop_assert!(t.stats().go_marks <= 30);
            }
            t.tick(1_000_000);
            prop_assert_eq!(t.stats().slices, 0);
            prop_assert_eq!(t.stats().go_marks, 0);
        }
    }

    #[test]
    fn bounded_and_retained() {
        let cfg = TimelineConfig { max_slices: 10, max_samples: 5, retention_ns: 1000, ..Default::default() };
        let mut t = Timelines::new(cfg);
        for i in 0..20u64 {
            t.observe(&ev(1 + (i % 2) as u32, 5, i * 10 + 5, SchedEvent::Slice(sl(i * 10, i * 10 + 1, 0, 35))));
            t.observe(&ev(1, 5, i * 10, SchedEvent::Sample(SchedSample { kstack: 0, ustack: 0 })));
        }
        let st = t.stats();
        assert!(st.slices <= 10 && st.samples <= 5, "{st:?}");
        assert!(st.evicted > 0);
        t.tick(5000);
        assert_eq!(t.stats().slices, 0);
        assert_eq!(t.stats().samples, 0);
        assert!(t.since(1).is_none());
    }
}
