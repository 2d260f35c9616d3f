//! A kept request's trace-profile: its window's thread timelines, the
//! critical path and verdict, stacks and downstream calls, symbolized.

use crate::doc::{Downstream, PathDoc, SliceDoc, StackWeight, ThreadDoc, TraceProfile};
use crate::path::{critical_path, path_threads, Segment};
use crate::sampler::KeptBecause;
use crate::verdict::{verdict, Evidence};
use kindling_events::sched::OffCpuReason;
use kindling_profile::export::slice_stack;
use kindling_profile::stacks::Frames;
use kindling_profile::{Sample, Slice, State, Symbolizer, ThreadTimeline, Timelines};
use kindling_requests::RequestRecord;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Input<'a> {
    pub id: String,
    pub request: &'a RequestRecord,
    pub kept_because: KeptBecause,
    /// Time shown before and after the request.
    pub edge_ns: u64,
    /// Threads in the profile at most.
    pub max_threads: usize,
    /// Slices in the profile at most (those nearest the request are kept:
    /// an event loop has many in the edges around a short request).
    pub max_slices: usize,
    /// Client-side records of the request's process around its window.
    pub downstream: &'a [Arc<RequestRecord>],
    pub sample_period_ns: u64,
}

/// What the timelines hold for the request: its unit of work's time.
struct Gathered {
    threads: Vec<ThreadTimeline>,
    samples: Vec<Sample>,
    req_tid: u32,
    resp_tid: u32,
    unit: &'static str,
}

fn gather(tl: &Timelines, r: &RequestRecord, w0: u64, w1: u64) -> Gathered {
    // Go: the goroutine that read the request is the unit of work (its
    // threads multiplex others); its timeline uses the goid as a pseudo-tid.
    if let Some(goid) = tl.goroutine_at(r.pid, r.tid, r.start_ts_ns) {
        if let Some(g) = tl.goroutine(r.pid, goid, w0, w1) {
            let pseudo = g.tid;
            return Gathered {
                threads: vec![g],
                samples: tl.goroutine_samples(r.pid, goid, w0, w1),
                req_tid: pseudo,
                resp_tid: pseudo,
                unit: "goroutine",
            };
        }
    }
    Gathered {
        threads: tl.threads(r.pid, None, w0, w1),
        samples: tl.samples(r.pid, w0, w1),
        req_tid: r.tid,
        resp_tid: r.response_tid,
        unit: "thread",
    }
}

/// A slice's or sample's (kernel, user) stacks.
type StackKey = (Option<Frames>, Option<Frames>);

/// Symbolized stacks, each computed once per profile.
struct Stacks<'a> {
    pid: u32,
    sym: &'a mut Symbolizer,
    full: HashMap<StackKey, Arc<Vec<String>>>,
}

impl Stacks<'_> {
    fn full(&mut self, k: &Option<Frames>, u: &Option<Frames>) -> Arc<Vec<String>> {
        let key = (k.clone(), u.clone());
        if let Some(v) = self.full.get(&key) {
            return v.clone();
        }
        let v: Arc<Vec<String>> = Arc::new(slice_stack(self.pid, k, u, self.sym).iter().map(|f| f.to_string()).collect());
        self.full.insert(key, v.clone());
        v
    }
}

pub fn assemble(inp: &Input<'_>, tl: &Timelines, sym: &mut Symbolizer) -> TraceProfile {
    let r = inp.request;
    let (start, end) = (r.start_ts_ns, r.end_ts_ns.max(r.start_ts_ns));
    let (w0, w1) = (start.saturating_sub(inp.edge_ns), end.saturating_add(inp.edge_ns));
    let g = gather(tl, r, w0, w1);
    let path = critical_path(&g.threads, g.req_tid, g.resp_tid, start, end);
    sym.refresh_perf_map(r.pid);
    let mut stacks = Stacks { pid: r.pid, sym, full: HashMap::new() };

    // Which threads to show, and why.
    let by_tid: HashMap<u32, &ThreadTimeline> = g.threads.iter().map(|t| (t.tid, t)).collect();
    let mut shown: Vec<(u32, &'static str)> = Vec::new();
    let show = |tid: u32, role: &'static str, shown: &mut Vec<(u32, &'static str)>| {
        if tid != 0 && shown.len() < inp.max_threads.max(1) && !shown.iter().any(|(t, _)| *t == tid) {
            shown.push((tid, role));
        }
    };
    show(g.req_tid, "request", &mut shown);
    for tid in path_threads(&path) {
        let role = if tid == g.resp_tid { "response" } else { "handoff" };
        show(tid, role, &mut shown);
    }
    for s in &path {
        if let Some(w) = waker_of(&by_tid, s).filter(|w| by_tid.contains_key(w)) {
            show(w, "waker", &mut shown);
        }
    }

    // On-CPU samples on the path: the flame graph and the top function.
    let samples = SampleIndex::new(&g.samples);
    let on_path: Vec<&Sample> =
        path.iter().filter(|s| s.state == State::OnCpu).flat_map(|s| samples.of(s.tid, s.start_ns, s.end_ns).iter().copied()).collect();
    let mut agg: HashMap<Arc<Vec<String>>, u64> = HashMap::new();
    let mut user_stacks: Vec<Arc<Vec<String>>> = Vec::new();
    for x in &on_path {
        *agg.entry(stacks.full(&x.kstack, &x.ustack)).or_default() += 1;
        if x.ustack.is_some() {
            user_stacks.push(stacks.full(&None, &x.ustack));
        }
    }
    let mut oncpu_stacks: Vec<StackWeight> = agg
        .into_iter()
        .map(|(s, n)| StackWeight { stack: s.to_vec(), samples: n, weight_ns: n * inp.sample_period_ns })
        .collect();
    oncpu_stacks.sort_by(|a, b| b.samples.cmp(&a.samples).then_with(|| a.stack.cmp(&b.stack)));

    // Thread documents, with each downstream call on the slice it overlaps most.
    let per_thread = (inp.max_slices / shown.len().max(1)).max(1);
    let mut left_out = 0u64;
    let mut threads: Vec<ThreadDoc> = shown
        .iter()
        .map(|(tid, role)| {
            let tl_t = by_tid.get(tid);
            let mut slices: Vec<SliceDoc> = tl_t
                .map(|t| {
                    let keep = nearest(&t.slices, start, end, per_thread);
                    left_out += (t.slices.len() - keep.len()) as u64;
                    keep.into_iter().map(|s| slice_doc(s, &samples, &mut stacks)).collect()
                })
                .unwrap_or_default();
            // The path's stretches no slice reports yet (a thread's current run).
            for s in path.iter().filter(|s| s.tid == *tid && s.slice.is_none()) {
                slices.push(SliceDoc {
                    start_ns: s.start_ns,
                    end_ns: s.end_ns,
                    state: s.state.name().to_string(),
                    target: None,
                    syscall: None,
                    waker_tid: 0,
                    stack: top_sample_stack(&samples, *tid, s.start_ns, s.end_ns, &mut stacks),
                    downstream: Vec::new(),
                });
            }
            slices.sort_by_key(|s| (s.start_ns, s.end_ns));
            let name = tl_t.map(|t| t.name.clone()).filter(|n| !n.is_empty());
            ThreadDoc {
                tid: *tid,
                name: name.or_else(|| tl.thread_name(r.pid, *tid).map(str::to_string)).unwrap_or_default(),
                role: role.to_string(),
                slices,
            }
        })
        .collect();
    let path_tids = path_threads(&path);
    let mut slowest: Option<&RequestRecord> = None;
    for d in inp.downstream {
        if d.pid != r.pid || d.end_ts_ns <= w0 || d.start_ts_ns >= w1 {
            continue;
        }
        let placed = place(&mut threads, d, |t| t.tid == d.tid || t.tid == d.response_tid)
            // The thread that made the call is not shown (a runtime's worker
            // thread): a network wait of the path that spans most of it.
            || (!path_tids.contains(&d.tid) && place_on_wait(&mut threads, &path_tids, d));
        let during = d.start_ts_ns < end && d.end_ts_ns > start;
        if placed && during && slowest.is_none_or(|s| d.duration_ns > s.duration_ns) {
            slowest = Some(d);
        }
    }

    let ev = Evidence {
        top_function: top_function(&user_stacks),
        slowest_downstream: slowest.map(|d| Downstream {
            protocol: d.protocol.name().to_string(),
            peer: kindling_events::model::format_addr(&d.dst),
            detail: d.detail.clone(),
            duration_ns: d.duration_ns,
        }),
        net_target: longest_target(&by_tid, &path, OffCpuReason::Net),
        file_target: longest_target(&by_tid, &path, OffCpuReason::File),
        lock_holder: longest_of(&path, OffCpuReason::Lock)
            .and_then(|s| waker_of(&by_tid, s))
            .map(|w| match tl.thread_name(r.pid, w) {
                Some(n) if !n.is_empty() => format!("thread {n} ({w})"),
                _ => format!("thread {w}"),
            }),
    };
    let v = verdict(&path, end - start, ev);
    TraceProfile {
        id: inp.id.clone(),
        trace_id: r.trace_id.clone(),
        trace_type: r.trace_type.clone(),
        request: r.clone(),
        kept_because: inp.kept_because.name().to_string(),
        verdict: v,
        unit: g.unit.to_string(),
        window_start_ns: w0,
        window_end_ns: w1,
        threads,
        slices_left_out: left_out,
        path: path
            .iter()
            .map(|s| PathDoc { tid: s.tid, start_ns: s.start_ns, end_ns: s.end_ns, state: s.state.name().to_string() })
            .collect(),
        oncpu_stacks,
    }
}

/// At most `n` of a thread's slices, the nearest to `[start, end)` (those
/// overlapping it first), in time order.
fn nearest(slices: &[Slice], start: u64, end: u64, n: usize) -> Vec<&Slice> {
    if slices.len() <= n {
        return slices.iter().collect();
    }
    let dist = |s: &Slice| {
        if s.end_ns <= start {
            start - s.end_ns
        } else {
            s.start_ns.saturating_sub(end)
        }
    };
    let mut v: Vec<&Slice> = slices.iter().collect();
    v.sort_by_key(|s| (dist(s), s.start_ns));
    v.truncate(n);
    v.sort_by_key(|s| (s.start_ns, s.end_ns));
    v
}

/// Samples by thread, in time order: a slice's samples without a scan of all.
struct SampleIndex<'a>(HashMap<u32, Vec<&'a Sample>>);

impl<'a> SampleIndex<'a> {
    fn new(samples: &'a [Sample]) -> SampleIndex<'a> {
        let mut by_tid: HashMap<u32, Vec<&Sample>> = HashMap::new();
        for x in samples {
            by_tid.entry(x.tid).or_default().push(x);
        }
        for v in by_tid.values_mut() {
            v.sort_by_key(|x| x.ts_ns);
        }
        SampleIndex(by_tid)
    }

    /// `tid`'s samples in `[t0, t1)`.
    fn of(&self, tid: u32, t0: u64, t1: u64) -> &[&'a Sample] {
        let Some(v) = self.0.get(&tid) else { return &[] };
        let a = v.partition_point(|x| x.ts_ns < t0);
        let b = v.partition_point(|x| x.ts_ns < t1);
        &v[a..b.max(a)]
    }
}

fn slice_doc(s: &Slice, samples: &SampleIndex<'_>, stacks: &mut Stacks<'_>) -> SliceDoc {
    let stack = match s.state {
        State::OnCpu => top_sample_stack(samples, s.tid, s.start_ns, s.end_ns, stacks),
        State::Off(_) => stacks.full(&s.kstack, &s.ustack).to_vec(),
    };
    SliceDoc {
        start_ns: s.start_ns,
        end_ns: s.end_ns,
        state: s.state.name().to_string(),
        target: s.target.as_ref().map(|t| t.to_string()),
        syscall: kindling_events::sched::syscall_name(s.syscall).map(str::to_string),
        waker_tid: s.waker_tid,
        stack,
        downstream: Vec::new(),
    }
}

/// The most frequent sampled stack of `tid` in `[t0, t1)`.
fn top_sample_stack(samples: &SampleIndex<'_>, tid: u32, t0: u64, t1: u64, stacks: &mut Stacks<'_>) -> Vec<String> {
    let mut count: HashMap<Arc<Vec<String>>, u32> = HashMap::new();
    for x in samples.of(tid, t0, t1) {
        *count.entry(stacks.full(&x.kstack, &x.ustack)).or_default() += 1;
    }
    count.into_iter().max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0))).map(|(s, _)| s.to_vec()).unwrap_or_default()
}

/// Puts `d` on the slice of a matching thread it overlaps most.
fn place(threads: &mut [ThreadDoc], d: &RequestRecord, matches: impl Fn(&ThreadDoc) -> bool) -> bool {
    let Some(t) = threads.iter_mut().find(|t| matches(t)) else { return false };
    let best = t
        .slices
        .iter()
        .enumerate()
        .map(|(i, s)| (overlap(s.start_ns, s.end_ns, d.start_ts_ns, d.end_ts_ns), i))
        .max();
    match best {
        Some((ov, i)) if ov > 0 => {
            t.slices[i].downstream.push(d.clone());
            true
        }
        _ => false,
    }
}

/// Puts `d` on a path thread's `net` slice that covers most of it.
fn place_on_wait(threads: &mut [ThreadDoc], path_tids: &[u32], d: &RequestRecord) -> bool {
    let mut best: Option<(u64, usize, usize)> = None;
    for (ti, t) in threads.iter().enumerate().filter(|(_, t)| path_tids.contains(&t.tid)) {
        for (si, s) in t.slices.iter().enumerate().filter(|(_, s)| s.state == "net") {
            let ov = overlap(s.start_ns, s.end_ns, d.start_ts_ns, d.end_ts_ns);
            if best.is_none_or(|b| ov > b.0) {
                best = Some((ov, ti, si));
            }
        }
    }
    match best {
        Some((ov, ti, si)) if ov * 2 > d.duration_ns.max(1) => {
            threads[ti].slices[si].downstream.push(d.clone());
            true
        }
        _ => false,
    }
}

fn overlap(a0: u64, a1: u64, b0: u64, b1: u64) -> u64 {
    a1.min(b1).saturating_sub(a0.max(b0))
}

fn longest_of(path: &[Segment], r: OffCpuReason) -> Option<&Segment> {
    path.iter().filter(|s| s.state == State::Off(r)).max_by_key(|s| s.duration_ns())
}

fn slice_of<'a>(by_tid: &HashMap<u32, &'a ThreadTimeline>, s: &Segment) -> Option<&'a Slice> {
    by_tid.get(&s.tid)?.slices.get(s.slice?)
}

fn waker_of(by_tid: &HashMap<u32, &ThreadTimeline>, s: &Segment) -> Option<u32> {
    if !matches!(s.state, State::Off(OffCpuReason::Lock | OffCpuReason::Other)) {
        return None;
    }
    slice_of(by_tid, s).map(|x| x.waker_tid).filter(|w| *w != 0 && *w != s.tid)
}

fn longest_target(by_tid: &HashMap<u32, &ThreadTimeline>, path: &[Segment], r: OffCpuReason) -> Option<String> {
    let s = longest_of(path, r)?;
    slice_of(by_tid, s)?.target.as_ref().map(|t| t.to_string())
}

/// Frames that are plumbing, not the application's own code: runtimes, libc,
/// the JVM and JDK, the kernel.
fn is_plumbing(f: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "runtime.", "syscall.", "internal/", "java.", "javax.", "jdk.", "sun.", "com.sun.", "__", "_dl_", "clock_",
        "pthread_", "[", "Interpreter", "JVM_", "os::", "start_thread", "thread_start", "clone", "epoll_",
    ];
    const EXACT: &[&str] = &["main", "memcpy", "memset", "malloc", "free", "syscall", "gettimeofday", "time", "nanosleep"];
    f.ends_with(kindling_profile::symbolize::KERNEL_SUFFIX)
        || f.starts_with("0x")
        || PREFIXES.iter().any(|p| f.starts_with(p))
        || EXACT.contains(&f)
        || f.contains("::")
        || f.contains("StubRoutines")
        || is_go_std(f)
}

/// A function of Go's standard library (`time.Now`, `net/http.(*conn).serve`).
fn is_go_std(f: &str) -> bool {
    const STD: &[&str] = &[
        "bufio", "bytes", "compress", "container", "context", "crypto", "database", "encoding", "errors", "fmt",
        "hash", "io", "log", "math", "mime", "net", "os", "path", "reflect", "regexp", "sort", "strconv", "strings",
        "sync", "time", "unicode", "unsafe",
    ];
    let Some(dot) = f.find('.') else { return false };
    let pkg = &f[..dot];
    let root = pkg.split('/').next().unwrap_or(pkg);
    STD.contains(&root) && pkg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '/')
}

/// The deepest application frame present in at least half the samples:
/// the function the CPU time was spent in, below the entry points every
/// sample shares and above the library calls it makes.
pub fn top_function(user_stacks: &[Arc<Vec<String>>]) -> Option<String> {
    if user_stacks.is_empty() {
        return None;
    }
    // Per frame: samples containing it, and its summed depth from the root.
    let mut seen: HashMap<&str, (usize, usize)> = HashMap::new();
    for s in user_stacks {
        let n = s.len();
        let mut once: Vec<&str> = Vec::new();
        for (i, f) in s.iter().enumerate() {
            if is_plumbing(f) || once.contains(&f.as_str()) {
                continue;
            }
            once.push(f);
            let e = seen.entry(f).or_default();
            e.0 += 1;
            e.1 += n - i;
        }
    }
    seen.into_iter()
        .filter(|(_, (c, _))| c * 2 >= user_stacks.len())
        .max_by(|a, b| {
            let da = a.1 .1 as f64 / a.1 .0 as f64;
            let db = b.1 .1 as f64 / b.1 .0 as f64;
            da.total_cmp(&db).then_with(|| b.0.cmp(a.0))
        })
        .map(|(f, _)| f.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(frames: &[&str]) -> Arc<Vec<String>> {
        Arc::new(frames.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn nearest_slices_keep_the_request_and_its_closest_context() {
        use crate::path::tests::slice;
        let on = State::OnCpu;
        let v: Vec<Slice> = (0..10).map(|i| slice(1, i * 10, i * 10 + 10, on, 0)).collect();
        let kept: Vec<u64> = nearest(&v, 45, 55, 4).iter().map(|s| s.start_ns).collect();
        assert_eq!(kept, vec![30, 40, 50, 60], "the two overlapping, then the nearest on each side");
        assert_eq!(nearest(&v, 45, 55, 100).len(), 10);
    }

    #[test]
    fn top_function_is_the_deepest_common_application_frame() {
        // Innermost first, as stacks are stored.
        let mut v = Vec::new();
        for _ in 0..6 {
            v.push(st(&["burn_cpu", "handle", "serve", "start_thread"]));
        }
        for _ in 0..4 {
            v.push(st(&["__clock_gettime", "burn_cpu", "handle", "serve", "start_thread"]));
        }
        v.push(st(&["write", "handle", "serve", "start_thread"]));
        assert_eq!(top_function(&v).as_deref(), Some("burn_cpu"));
        // Java: JDK and JVM frames under the application's.
        let j = vec![
            st(&["os::thread_cpu_time", "sun.management.ThreadImpl.getThreadTotalCpuTime0", "TraceServer.burnCpu", "TraceServer$H.handle"]);
            5
        ];
        assert_eq!(top_function(&j).as_deref(), Some("TraceServer.burnCpu"));
        assert_eq!(top_function(&[]), None);
        // Go: runtime frames are plumbing.
        let g = vec![st(&["runtime.nanotime1", "time.Now", "main.burnCPU", "main.handler", "net/http.HandlerFunc.ServeHTTP"]); 3];
        assert_eq!(top_function(&g).as_deref(), Some("main.burnCPU"));
    }
}
