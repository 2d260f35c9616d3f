//! The request's critical path: walking back from the response's last byte
//! on the thread that wrote it, what was that thread doing, and when it had
//! been waiting since before the request arrived (an idle pool thread
//! woken to take the request), who handed the work over.
//!
//! Exact for thread-per-request servers and for hand-offs the kernel sees
//! as wakeups. A thread that blocks mid-request on a futex is attributed
//! `lock` even when the futex is a hand-off to another thread (a future's
//! result): the waker is then listed among the profile's threads, so what
//! it did is visible, but its time is not on the path. An event loop's
//! request window (read to write) includes whatever the loop did for other
//! connections in between (counted as on-CPU).

use kindling_events::sched::OffCpuReason;
use kindling_profile::{Slice, State, ThreadTimeline};
use std::collections::HashMap;

/// A stretch of the path: thread `tid` was in `state` over `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub state: State,
    /// The slice of `tid` it comes from (an index into its timeline), if any.
    pub slice: Option<usize>,
}

impl Segment {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// Hops between threads at most (a cycle guard: a path never needs many).
const MAX_HOPS: usize = 16;

/// The path over `[start, end)`, in time order. `threads` are the process's
/// timelines over (at least) that window; `req_tid` read the request and
/// `resp_tid` wrote the response (0: unknown, then `req_tid`).
pub fn critical_path(threads: &[ThreadTimeline], req_tid: u32, resp_tid: u32, start: u64, end: u64) -> Vec<Segment> {
    let by_tid: HashMap<u32, &ThreadTimeline> = threads.iter().map(|t| (t.tid, t)).collect();
    let mut out: Vec<Segment> = Vec::new();
    let mut cur = if resp_tid != 0 { resp_tid } else { req_tid };
    let mut t = end;
    let mut hops = 0;
    while t > start {
        let Some(tl) = by_tid.get(&cur) else {
            // No data for this thread: the thread was on CPU at `t` (it was
            // doing the request's work), what before is unknown.
            out.push(seg(cur, start, t, State::Off(OffCpuReason::Other), None));
            break;
        };
        let slices = &tl.slices;
        // Slices of a thread are contiguous in time; the last one starting before `t`.
        let idx = slices.partition_point(|s| s.start_ns < t);
        if idx == 0 {
            out.push(seg(cur, start, t, State::Off(OffCpuReason::Other), None));
            break;
        }
        let s = &slices[idx - 1];
        if s.end_ns < t {
            // A gap after the thread's last slice is its current run on CPU
            // (a slice is reported when the thread next switches in); a gap
            // between slices is lost data.
            let from = s.end_ns.max(start);
            let state = if idx == slices.len() { State::OnCpu } else { State::Off(OffCpuReason::Other) };
            out.push(seg(cur, from, t, state, None));
            t = from;
            continue;
        }
        let from = s.start_ns.max(start);
        if is_idle_wait(s, start) && cur != req_tid && hops < MAX_HOPS && by_tid.contains_key(&s.waker_tid) {
            // An idle thread woken to take the request: the work came from its waker.
            cur = s.waker_tid;
            hops += 1;
            continue;
        }
        out.push(seg(cur, from, t, s.state, Some(idx - 1)));
        t = from;
    }
    out.reverse();
    merge_adjacent(out)
}

/// Waiting since before the request began, and woken by another thread.
fn is_idle_wait(s: &Slice, start: u64) -> bool {
    s.start_ns <= start
        && s.waker_tid != 0
        && s.waker_tid != s.tid
        && !matches!(s.state, State::OnCpu | State::Off(OffCpuReason::Runqueue))
}

fn seg(tid: u32, start_ns: u64, end_ns: u64, state: State, slice: Option<usize>) -> Segment {
    Segment { tid, start_ns, end_ns, state, slice }
}

/// Joins neighbours of the same thread and state that the lost-data
/// handling split.
fn merge_adjacent(v: Vec<Segment>) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(v.len());
    for s in v {
        if s.start_ns >= s.end_ns {
            continue;
        }
        match out.last_mut() {
            Some(l) if l.tid == s.tid && l.state == s.state && l.end_ns == s.start_ns && l.slice == s.slice => {
                l.end_ns = s.end_ns;
            }
            _ => out.push(s),
        }
    }
    out
}

/// The threads on the path, in order of first appearance.
pub fn path_threads(path: &[Segment]) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for s in path {
        if !v.contains(&s.tid) {
            v.push(s.tid);
        }
    }
    v
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn slice(tid: u32, start: u64, end: u64, state: State, waker: u32) -> Slice {
        Slice {
            tid,
            start_ns: start,
            end_ns: end,
            state,
            syscall: -1,
            target: None,
            waker_tid: waker,
            kstack: None,
            ustack: None,
        }
    }

    pub fn tl(tid: u32, slices: Vec<Slice>) -> ThreadTimeline {
        ThreadTimeline { tid, name: format!("t{tid}"), slices }
    }

    const ON: State = State::OnCpu;
    const NET: State = State::Off(OffCpuReason::Net);
    const LOCK: State = State::Off(OffCpuReason::Lock);
    const RQ: State = State::Off(OffCpuReason::Runqueue);

    fn total(p: &[Segment], st: State) -> u64 {
        p.iter().filter(|s| s.state == st).map(Segment::duration_ns).sum()
    }

    #[test]
    fn one_thread_cpu_net_lock_then_current_run() {
        // Request [100, 1000): CPU 100..400, net 400..600, lock 600..800, runqueue
        // 800..810, then running (no slice yet: the current run).
        let t = tl(
            1,
            vec![
                slice(1, 0, 400, ON, 0),
                slice(1, 400, 600, NET, 0),
                slice(1, 600, 800, LOCK, 2),
                slice(1, 800, 810, RQ, 2),
            ],
        );
        let p = critical_path(&[t], 1, 1, 100, 1000);
        assert_eq!(total(&p, ON), 300 + 190);
        assert_eq!(total(&p, NET), 200);
        assert_eq!(total(&p, LOCK), 200);
        assert_eq!(total(&p, RQ), 10);
        assert_eq!(p.iter().map(Segment::duration_ns).sum::<u64>(), 900);
        assert!(p.windows(2).all(|w| w[0].end_ns == w[1].start_ns), "contiguous");
    }

    #[test]
    fn hand_off_from_reader_to_pool_thread() {
        // Thread 1 reads at 100, works on CPU until 300 and wakes pool thread 2,
        // idle (lock wait) since 0; 2 waits 300..305 for a CPU, works until 1000.
        let reader = tl(1, vec![slice(1, 50, 310, ON, 0), slice(1, 310, 2000, State::Off(OffCpuReason::Epoll), 0)]);
        let pool = tl(2, vec![slice(2, 0, 300, LOCK, 1), slice(2, 300, 305, RQ, 1), slice(2, 305, 1000, ON, 0)]);
        let p = critical_path(&[reader, pool], 1, 2, 100, 1000);
        assert_eq!(path_threads(&p), vec![1, 2]);
        assert_eq!(total(&p, ON), 200 + 695);
        assert_eq!(total(&p, RQ), 5);
        assert_eq!(total(&p, LOCK), 0, "the pool thread's idle wait is not the request's");
    }

    #[test]
    fn a_mid_request_lock_wait_stays_a_lock_wait() {
        let t = tl(1, vec![slice(1, 0, 300, ON, 0), slice(1, 300, 700, LOCK, 9), slice(1, 700, 1000, ON, 0)]);
        let holder = tl(9, vec![slice(9, 0, 700, State::Off(OffCpuReason::Sleep), 0)]);
        let p = critical_path(&[t, holder], 1, 1, 100, 1000);
        assert_eq!(total(&p, LOCK), 400);
        assert_eq!(path_threads(&p), vec![1]);
    }

    #[test]
    fn unknown_threads_and_gaps_are_other_never_lost() {
        let p = critical_path(&[], 1, 0, 100, 200);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].state, State::Off(OffCpuReason::Other));
        // A gap between two slices (lost events).
        let t = tl(1, vec![slice(1, 0, 150, ON, 0), slice(1, 170, 300, ON, 0)]);
        let p = critical_path(&[t], 1, 1, 100, 200);
        assert_eq!(p.iter().map(Segment::duration_ns).sum::<u64>(), 100);
        assert_eq!(total(&p, State::Off(OffCpuReason::Other)), 20);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever the threads did (gaps, hand-offs, cycles), the path covers
        /// the request exactly once: contiguous, inside it, nothing lost.
        #[test]
        fn the_path_covers_the_request_exactly(
            lens in proptest::collection::vec((1u64..200, 0u8..8, 0u32..4, 0u64..30), 0..60),
            start in 0u64..2_000, dur in 1u64..3_000, req in 1u32..4, resp in 0u32..4,
        ) {
            let states = [ON, NET, LOCK, RQ, State::Off(OffCpuReason::Sleep), State::Off(OffCpuReason::Epoll),
                State::Off(OffCpuReason::File), State::Off(OffCpuReason::Other)];
            // Three threads; each slice follows the previous one of its thread,
            // sometimes after a gap (lost events).
            let mut t_end = [0u64; 4];
            let mut threads: Vec<ThreadTimeline> = (1..4).map(|t| tl(t, Vec::new())).collect();
            for (i, (len, st, waker, gap)) in lens.iter().enumerate() {
                let tid = (i % 3) as u32 + 1;
                let s0 = t_end[tid as usize] + if *gap > 25 { *gap } else { 0 };
                let s = slice(tid, s0, s0 + len, states[*st as usize], *waker);
                t_end[tid as usize] = s0 + len;
                threads[tid as usize - 1].slices.push(s);
            }
            let end = start + dur;
            let p = critical_path(&threads, req, resp, start, end);
            proptest::prop_assert_eq!(p.iter().map(Segment::duration_ns).sum::<u64>(), dur);
            proptest::prop_assert!(p.first().is_some_and(|s| s.start_ns == start));
            proptest::prop_assert!(p.last().is_some_and(|s| s.end_ns == end));
            proptest::prop_assert!(p.windows(2).all(|w| w[0].end_ns == w[1].start_ns));
        }
    }

    #[test]
    fn waker_cycles_terminate() {
        let a = tl(1, vec![slice(1, 0, 500, LOCK, 2)]);
        let b = tl(2, vec![slice(2, 0, 500, LOCK, 1)]);
        let p = critical_path(&[a, b], 3, 1, 100, 400);
        assert_eq!(p.iter().map(Segment::duration_ns).sum::<u64>(), 300);
    }
}
