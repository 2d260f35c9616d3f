//! The timeline of a process as JSON: its threads, each with its slices
//! (`start_ns`, `end_ns`, `state` = `oncpu` or the off-CPU reason, `target`,
//! `syscall`, `waker_tid`, `stack` innermost frame first) — the shape of a
//! trace-profile's `threads` (PRODUCT.md). `kindling profile --format timeline`.
//! Go processes also get their `goroutines`, in the same shape.

use crate::flame::trim_probe_frames;
use crate::stacks::Frames;
use crate::symbolize::Symbolizer;
use crate::timeline::{Slice, State, ThreadTimeline, Timelines};
use serde::Serialize;
use std::sync::Arc;

/// Goroutines exported at most (the lowest ids first).
const MAX_GOROUTINES: usize = 10_000;

#[derive(Serialize)]
pub struct TimelineDoc {
    pub pid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub threads: Vec<ThreadDoc>,
    /// Goroutines of a Go process, as pseudo-threads (`tid` = goroutine id,
    /// `name` = "goroutine N"; see `Timelines::goroutine`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub goroutines: Vec<ThreadDoc>,
}

#[derive(Serialize)]
pub struct ThreadDoc {
    pub tid: u32,
    pub name: String,
    pub oncpu_ns: u64,
    pub offcpu_ns: u64,
    pub slices: Vec<SliceDoc>,
}

#[derive(Serialize)]
pub struct SliceDoc {
    pub start_ns: u64,
    pub end_ns: u64,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<&'static str>,
    #[serde(skip_serializing_if = "is_zero")]
    pub waker_tid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<Arc<str>>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// Symbolized stack of a slice, innermost frame first (kernel, then user).
pub fn slice_stack(pid: u32, kstack: &Option<Frames>, ustack: &Option<Frames>, sym: &mut Symbolizer) -> Vec<Arc<str>> {
    let mut out = Vec::new();
    if let Some(k) = kstack {
        let addrs: Vec<u64> = crate::flame::call_sites(k).collect();
        let mut names = sym.kernel(&addrs);
        trim_probe_frames(&mut names);
        out.extend(names);
    }
    if let Some(u) = ustack {
        let addrs: Vec<u64> = crate::flame::call_sites(u).collect();
        out.extend(sym.user(pid, &addrs));
    }
    out
}

fn slice_doc(pid: u32, s: &Slice, sym: &mut Symbolizer) -> SliceDoc {
    SliceDoc {
        start_ns: s.start_ns,
        end_ns: s.end_ns,
        state: s.state,
        target: s.target.as_ref().map(|t| t.to_string()),
        syscall: kindling_events::sched::syscall_name(s.syscall),
        waker_tid: s.waker_tid,
        stack: slice_stack(pid, &s.kstack, &s.ustack, sym),
    }
}

fn thread_doc(pid: u32, t: &ThreadTimeline, sym: &mut Symbolizer) -> ThreadDoc {
    let oncpu_ns = t.slices.iter().filter(|s| s.state == State::OnCpu).map(Slice::duration_ns).sum();
    let offcpu_ns = t.slices.iter().filter(|s| s.state != State::OnCpu).map(Slice::duration_ns).sum();
    ThreadDoc {
        tid: t.tid,
        name: t.name.clone(),
        oncpu_ns,
        offcpu_ns,
        slices: t.slices.iter().map(|s| slice_doc(pid, s, sym)).collect(),
    }
}

/// `[t0, t1)` of a process's threads, symbolized.
pub fn timeline(tl: &Timelines, pid: u32, t0: u64, t1: u64, sym: &mut Symbolizer) -> TimelineDoc {
    sym.refresh_perf_map(pid);
    let threads = tl.threads(pid, None, t0, t1).iter().map(|t| thread_doc(pid, t, sym)).collect();
    let goroutines =
        tl.goroutine_timelines(pid, t0, t1).iter().take(MAX_GOROUTINES).map(|t| thread_doc(pid, t, sym)).collect();
    TimelineDoc { pid, start_ns: t0, end_ns: t1, threads, goroutines }
}
