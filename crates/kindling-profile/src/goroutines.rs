//! Goroutines of followed Go processes as pseudo-threads.
//!
//! The kernel side reports three marks per thread (uprobes on the Go
//! runtime): a goroutine starts running on this thread (`runtime.execute`),
//! the running goroutine parks, with the runtime's wait reason and its stack
//! (`runtime.gopark`), and it ends (`runtime.goexit1`). A goroutine is
//! *current* on a thread from its run mark until the thread's next mark.
//! Marks are kept per process, bounded (oldest evicted first, counted), and
//! turned into time slices at query time against the thread timelines:
//!
//! - current on a thread: that thread's slices (on-CPU, run queue, blocked
//!   in a syscall with its reason and target);
//! - parked: one slice whose state comes from the wait reason, with the
//!   park's stack, until it is made runnable (`runtime.ready`,
//!   `runtime.injectglist`; when that was not seen, until it runs again);
//! - runnable, in Go's run queue (readied, preempted or yielded, back from a
//!   syscall without a P: `runtime.exitsyscall0`): `runqueue`, until it runs.

use crate::stacks::Frames;
use crate::timeline::{Slice, State, Target};
use kindling_events::sched::OffCpuReason;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

#[derive(Clone, Debug)]
pub(crate) enum MarkKind {
    Run,
    Park { reason: u32, ustack: Option<Frames>, target: Option<Arc<Target>> },
    Exit,
    /// Made runnable (readied, or back from a syscall without a P); `tid`
    /// is the thread that did it.
    Runnable,
}

#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub ts_ns: u64,
    pub tid: u32,
    pub goid: u64,
    pub kind: MarkKind,
}

#[derive(Default)]
pub(crate) struct GoProcess {
    pub marks: VecDeque<Mark>,
}

/// Why a goroutine was parked, by the runtime's wait reason name (names
/// changed across Go versions: "semacquire" became "sync.Mutex.Lock", ...).
pub fn park_reason(name: &str) -> OffCpuReason {
    match name {
        "IO wait" => OffCpuReason::Net,
        "sleep" => OffCpuReason::Sleep,
        "semacquire" => OffCpuReason::Lock,
        n if n.starts_with("sync.Mutex") || n.starts_with("sync.RWMutex") => OffCpuReason::Lock,
        _ => OffCpuReason::Other,
    }
}

/// One stretch of a goroutine's life, before it is cut along thread slices.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Segment {
    /// Current on thread `tid`.
    OnThread { tid: u32, start: u64, end: u64 },
    Parked { start: u64, end: u64, reason: u32, ustack: Option<Frames>, target: Option<Arc<Target>> },
    /// Runnable, in Go's run queue (descheduled without parking).
    Queued { start: u64, end: u64 },
}

impl GoProcess {
    /// The goroutine current on `tid` at `ts`: the thread's last run, park
    /// or exit mark at or before `ts`, if it is a run mark and the goroutine
    /// did not leave the thread runnable since (a runnable mark of another
    /// goroutine is the thread readying it).
    pub fn current(&self, tid: u32, ts: u64) -> Option<u64> {
        let last = self
            .marks
            .iter()
            .filter(|m| m.tid == tid && m.ts_ns <= ts && !matches!(m.kind, MarkKind::Runnable))
            .max_by_key(|m| m.ts_ns)?;
        if !matches!(last.kind, MarkKind::Run) {
            return None;
        }
        let left = self.marks.iter().any(|m| {
            m.tid == tid && m.goid == last.goid && matches!(m.kind, MarkKind::Runnable) && m.ts_ns > last.ts_ns && m.ts_ns <= ts
        });
        (!left).then_some(last.goid)
    }

    pub fn knows(&self, goid: u64) -> bool {
        self.marks.iter().any(|m| m.goid == goid)
    }

    /// Goroutines with a mark in `[t0, t1)`, in order of id.
    pub fn goids(&self, t0: u64, t1: u64) -> Vec<u64> {
        let set: HashSet<u64> = self.marks.iter().filter(|m| m.ts_ns >= t0 && m.ts_ns < t1).map(|m| m.goid).collect();
        let mut v: Vec<u64> = set.into_iter().collect();
        v.sort_unstable();
        v
    }

    /// The goroutine's segments up to `until` (open ones end there), in time
    /// order; complete from `from` on (earlier ones may be missing).
    pub fn segments(&self, goid: u64, from: u64, until: u64) -> Vec<Segment> {
        self.segments_of(Some((goid, from)), until).remove(&goid).unwrap_or_default()
    }

    /// Every goroutine's segments (or only one's, from some time on) up to
    /// `until`, in one pass over the marks in time order.
    pub fn segments_of(&self, only: Option<(u64, u64)>, until: u64) -> HashMap<u64, Vec<Segment>> {
        let mut marks: Vec<&Mark> = match only {
            // Its own marks and every mark of the threads it ran on (another
            // goroutine starting there ends its turn): all that can change
            // it, from its last run, park or exit at or before `from` (that
            // sets its state whatever it was before; a runnable mark does not).
            Some((goid, from)) => {
                let own = self.marks.iter().filter(|m| m.goid == goid);
                let start = own
                    .clone()
                    .filter(|m| m.ts_ns <= from && !matches!(m.kind, MarkKind::Runnable))
                    .map(|m| m.ts_ns)
                    .max();
                let start = start.or_else(|| own.clone().map(|m| m.ts_ns).min()).unwrap_or(0);
                let tids: HashSet<u32> = own.filter(|m| m.ts_ns >= start).map(|m| m.tid).collect();
                self.marks.iter().filter(|m| m.ts_ns >= start && (m.goid == goid || tids.contains(&m.tid))).collect()
            }
            None => self.marks.iter().collect(),
        };
        let only = only.map(|(g, _)| g);
        // Stable: marks of the same instant keep their arrival order.
        marks.sort_by_key(|m| m.ts_ns);
        let mut w = Walk { only, states: HashMap::new(), current: HashMap::new(), out: HashMap::new() };
        for m in marks {
            let (g, tid, ts) = (m.goid, m.tid, m.ts_ns);
            // The goroutine current on this thread, other than `g`.
            let other = w.current.get(&tid).copied().filter(|h| *h != g && w.is_on(*h, tid));
            match &m.kind {
                MarkKind::Run => {
                    // Another goroutine starts on its thread: it was descheduled without parking.
                    if let Some(h) = other {
                        w.set(h, St::Queued(ts), ts);
                    }
                    w.set(g, St::On(tid, ts), ts);
                    w.current.insert(tid, g);
                }
                MarkKind::Park { reason, ustack, target } => {
                    // Lost marks: the thread it ran on parked another goroutine.
                    if let Some(h) = other {
                        w.set(h, St::Unknown, ts);
                    }
                    w.set(g, St::Parked(ts, *reason, ustack.clone(), target.clone()), ts);
                }
                MarkKind::Exit => {
                    if let Some(h) = other {
                        w.set(h, St::Unknown, ts);
                    }
                    w.set(g, St::Dead, ts);
                }
                MarkKind::Runnable => {
                    if !matches!(w.states.get(&g), Some(St::Queued(_) | St::Dead)) {
                        w.set(g, St::Queued(ts), ts);
                    }
                }
            }
        }
        let open: Vec<u64> = w.states.keys().copied().collect();
        for g in open {
            w.set(g, St::Dead, until);
        }
        w.out
    }
}

enum St {
    Unknown,
    On(u32, u64),
    Parked(u64, u32, Option<Frames>, Option<Arc<Target>>),
    Queued(u64),
    Dead,
}

/// The state of every goroutine while walking the marks.
struct Walk {
    only: Option<u64>,
    states: HashMap<u64, St>,
    /// The goroutine each thread last started.
    current: HashMap<u32, u64>,
    out: HashMap<u64, Vec<Segment>>,
}

impl Walk {
    fn is_on(&self, g: u64, tid: u32) -> bool {
        matches!(self.states.get(&g), Some(St::On(t, _)) if *t == tid)
    }

    /// `g` enters state `new` at `ts`: its previous state becomes a segment.
    fn set(&mut self, g: u64, new: St, ts: u64) {
        let old = self.states.insert(g, new).unwrap_or(St::Unknown);
        if let St::On(t, _) = old {
            if self.current.get(&t) == Some(&g) && !self.is_on(g, t) {
                self.current.remove(&t);
            }
        }
        if self.only.is_some_and(|o| o != g) {
            return;
        }
        let seg = match old {
            St::On(tid, start) if ts > start => Segment::OnThread { tid, start, end: ts },
            St::Parked(start, reason, ustack, target) if ts > start => {
                Segment::Parked { start, end: ts, reason, ustack, target }
            }
            St::Queued(start) if ts > start => Segment::Queued { start, end: ts },
            _ => return,
        };
        self.out.entry(g).or_default().push(seg);
    }
}

/// A parked segment as a slice of pseudo-thread `tid`.
pub(crate) fn parked_slice(
    tid: u32,
    start: u64,
    end: u64,
    name: &str,
    ustack: Option<Frames>,
    target: Option<Arc<Target>>,
) -> Slice {
    Slice {
        tid,
        start_ns: start,
        end_ns: end,
        state: State::Off(park_reason(name)),
        syscall: -1,
        target,
        waker_tid: 0,
        kstack: None,
        ustack,
    }
}

/// The part of a thread's slices (sorted, not overlapping) inside `[a, b)`,
/// relabelled as pseudo-thread `tid`.
pub(crate) fn cut(thread: &[Slice], a: u64, b: u64, tid: u32, out: &mut Vec<Slice>) {
    let first = thread.partition_point(|s| s.end_ns <= a);
    for s in &thread[first..] {
        if s.start_ns >= b {
            break;
        }
        let mut c = s.clone();
        c.start_ns = c.start_ns.max(a);
        c.end_ns = c.end_ns.min(b);
        c.tid = tid;
        if c.start_ns < c.end_ns {
            out.push(c);
        }
    }
}

/// Bounded store of the marks of every process.
#[derive(Default)]
pub(crate) struct GoMarks {
    pub procs: HashMap<u32, GoProcess>,
    pub marks: usize,
    pub evicted: u64,
    /// Wait reason names by number (each binary's own table), by pid.
    pub reasons: HashMap<u32, Arc<[String]>>,
}

impl GoMarks {
    pub fn push(&mut self, pid: u32, m: Mark, max_marks: usize, max_procs: usize) -> bool {
        if !self.procs.contains_key(&pid) && self.procs.len() >= max_procs {
            return false;
        }
        self.procs.entry(pid).or_default().marks.push_back(m);
        self.marks += 1;
        while self.marks > max_marks {
            let Some(p) = crate::timeline::oldest(self.procs.values_mut(), |p| p.marks.front().map(|m| m.ts_ns)) else {
                break;
            };
            p.marks.pop_front();
            self.marks -= 1;
            self.evicted += 1;
        }
        true
    }

    /// Drops marks older than `horizon`, and processes left without any.
    pub fn expire(&mut self, horizon: u64) {
        let mut gone = 0;
        for p in self.procs.values_mut() {
            while p.marks.front().is_some_and(|m| m.ts_ns < horizon) {
                p.marks.pop_front();
                gone += 1;
            }
        }
        self.marks -= gone;
        self.procs.retain(|_, p| !p.marks.is_empty());
    }

    pub fn forget(&mut self, pid: u32) {
        if let Some(p) = self.procs.remove(&pid) {
            self.marks -= p.marks.len();
        }
        self.reasons.remove(&pid);
    }

    /// Bounded like the processes: starts over when full.
    pub fn set_reasons(&mut self, pid: u32, names: Vec<String>, max_procs: usize) {
        if self.reasons.len() >= max_procs && !self.reasons.contains_key(&pid) {
            self.reasons.clear();
        }
        self.reasons.insert(pid, names.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_name() {
        assert_eq!(park_reason("IO wait"), OffCpuReason::Net);
        assert_eq!(park_reason("semacquire"), OffCpuReason::Lock);
        assert_eq!(park_reason("sync.Mutex.Lock"), OffCpuReason::Lock);
        assert_eq!(park_reason("sync.RWMutex.RLock"), OffCpuReason::Lock);
        assert_eq!(park_reason("sleep"), OffCpuReason::Sleep);
        assert_eq!(park_reason("chan receive"), OffCpuReason::Other);
        assert_eq!(park_reason("select"), OffCpuReason::Other);
        assert_eq!(park_reason("GC assist wait"), OffCpuReason::Other);
    }

    fn mk(ts: u64, tid: u32, goid: u64, kind: MarkKind) -> Mark {
        Mark { ts_ns: ts, tid, goid, kind }
    }

    #[test]
    fn segments_follow_runs_parks_and_preemptions() {
        let mut p = GoProcess::default();
        p.marks.push_back(mk(10, 1, 7, MarkKind::Run));
        p.marks.push_back(mk(12, 1, 3, MarkKind::Runnable)); // 7 readies 3: stays current
        p.marks.push_back(mk(20, 1, 7, MarkKind::Park { reason: 2, ustack: None, target: None }));
        p.marks.push_back(mk(21, 1, 8, MarkKind::Run));
        p.marks.push_back(mk(28, 1, 7, MarkKind::Runnable)); // 8 readies 7
        p.marks.push_back(mk(30, 2, 7, MarkKind::Run));
        p.marks.push_back(mk(40, 2, 9, MarkKind::Run)); // 7 preempted
        p.marks.push_back(mk(50, 1, 7, MarkKind::Run));
        p.marks.push_back(mk(60, 1, 7, MarkKind::Exit));
        let s = p.segments(7, 0, 100);
        // From a later time on: the same, the start aside.
        assert_eq!(p.segments(7, 35, 100)[..], s[s.len() - 3..]);
        assert_eq!(
            s,
            vec![
                Segment::OnThread { tid: 1, start: 10, end: 20 },
                Segment::Parked { start: 20, end: 28, reason: 2, ustack: None, target: None },
                Segment::Queued { start: 28, end: 30 },
                Segment::OnThread { tid: 2, start: 30, end: 40 },
                Segment::Queued { start: 40, end: 50 },
                Segment::OnThread { tid: 1, start: 50, end: 60 },
            ]
        );
        assert_eq!(p.current(1, 15), Some(7));
        assert_eq!(p.current(1, 12), Some(7));
        assert_eq!(p.current(1, 20), None, "parked at 20");
        assert_eq!(p.current(1, 25), Some(8));
        assert_eq!(p.current(2, 45), Some(9));
        assert_eq!(p.current(3, 45), None);
        assert_eq!(p.current(1, 5), None);
        assert_eq!(p.goids(0, 100), vec![3, 7, 8, 9]);
        // Still running at the end: open until `until`.
        assert_eq!(p.segments(9, 0, 100), vec![Segment::OnThread { tid: 2, start: 40, end: 100 }]);
        // Back from a syscall without a P: it leaves its thread, runnable.
        p.marks.push_back(mk(70, 3, 10, MarkKind::Run));
        p.marks.push_back(mk(80, 3, 10, MarkKind::Runnable));
        p.marks.push_back(mk(90, 4, 10, MarkKind::Run));
        assert_eq!(
            p.segments(10, 0, 100),
            vec![
                Segment::OnThread { tid: 3, start: 70, end: 80 },
                Segment::Queued { start: 80, end: 90 },
                Segment::OnThread { tid: 4, start: 90, end: 100 },
            ]
        );
        assert_eq!(p.current(3, 75), Some(10));
        assert_eq!(p.current(3, 85), None);
    }

    #[test]
    fn bounded_marks() {
        let mut g = GoMarks::default();
        for i in 0..100u64 {
            assert!(g.push((i % 3) as u32, mk(i, 1, i, MarkKind::Run), 10, 2) || i % 3 == 2);
        }
        assert_eq!(g.marks, 10);
        assert!(g.evicted > 0);
        assert_eq!(g.procs.len(), 2);
        g.expire(1000);
        assert_eq!(g.marks, 0);
    }
}
