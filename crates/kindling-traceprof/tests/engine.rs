//! The engine from sched events and request records to stored and removed
//! profiles: the verdict of a known timeline, downstream attribution,
//! displacement and the disk budget.

use kindling_events::model::{Comm, Event, EventBody};
use kindling_events::sched::{FdKind, SchedEvent, SchedSlice};
use kindling_profile::{Symbolizer, Timelines};
use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};
use kindling_traceprof::{Action, SamplerConfig, TraceProfConfig, TraceProfiler};
use std::sync::Arc;

const MS: u64 = 1_000_000;
const PID: u32 = 4_000_000; // no such process: symbolization finds nothing, without failing

fn slice(tid: u32, on: u64, off: u64, wake: u64, syscall: i64, fd_kind: FdKind) -> Event {
    let s = SchedSlice {
        oncpu_start_ns: on,
        offcpu_start_ns: off,
        wake_ns: wake,
        kstack: 0,
        ustack: 0,
        preempted: false,
        syscall,
        arg1: 0,
        fd: 5,
        fd_kind,
        family: 2,
        socket: None,
        waker_tid: 0,
        waker_pid: 0,
    };
    Event { ts_ns: wake, pid: PID, tid, cpu: 0, comm: Comm::from("srv"), body: EventBody::Sched(SchedEvent::Slice(s)) }
}

fn record(side: Side, tid: u32, start: u64, end: u64, protocol: Protocol, detail: &str, trace: &str) -> Arc<RequestRecord> {
    Arc::new(RequestRecord {
        start_ts_ns: start,
        end_ts_ns: end,
        protocol,
        side,
        pid: PID,
        tid,
        response_tid: tid,
        comm: "srv".into(),
        src: "127.0.0.1:40000".parse().unwrap(),
        dst: if side == Side::Server { "127.0.0.1:8080" } else { "127.0.0.1:5432" }.parse().unwrap(),
        method: "GET".into(),
        endpoint: "/work".into(),
        detail: detail.into(),
        status: "200".into(),
        is_error: false,
        is_slow: end - start > 100 * MS,
        error: String::new(),
        duration_ns: end - start,
        breakdown: Default::default(),
        request_bytes: 100,
        response_bytes: 100,
        trace_id: trace.into(),
        trace_type: if trace.is_empty() { "" } else { "w3c" }.into(),
        sock_id: start,
        tcp: Default::default(),
    })
}

/// Thread 2: on CPU 1..160 ms, blocked on a socket 160..360, on CPU until
/// 361, on a futex until 461, then running (its current run).
fn timeline() -> Timelines {
    let mut tl = Timelines::default();
    tl.observe(&slice(2, 500_000, 900_000, MS, 0, FdKind::None));
    tl.observe(&slice(2, MS, 160 * MS, 360 * MS, 45, FdKind::Socket));
    tl.observe(&slice(2, 360 * MS, 361 * MS, 461 * MS, 202, FdKind::None));
    tl
}

fn cfg() -> TraceProfConfig {
    TraceProfConfig { edge_ns: 100_000, settle_ns: 500 * MS, ..Default::default() }
}

fn stored(actions: Vec<Action>) -> (Vec<kindling_traceprof::TraceProfile>, Vec<String>) {
    let (mut s, mut r) = (Vec::new(), Vec::new());
    for a in actions {
        match a {
            Action::Store { profile, json } => {
                assert_eq!(serde_json::to_string(&profile).unwrap(), json, "the JSON is the profile's");
                s.push(*profile)
            }
            Action::Remove(id) => r.push(id),
        }
    }
    (s, r)
}

#[test]
fn verdict_of_a_known_timeline_names_the_sql() {
    let tl = timeline();
    let mut e = TraceProfiler::new(cfg());
    let mut sym = Symbolizer::new();
    // The server is followed from an earlier request on.
    e.observe(&record(Side::Server, 2, 0, 1, Protocol::Http, "/work", ""), "srv", &tl);
    let pg = record(Side::Client, 2, 159 * MS, 361 * MS, Protocol::Postgresql, "SELECT pg_sleep(0.2)", "");
    e.observe(&pg, "srv", &tl);
    let req = record(Side::Server, 2, 10 * MS, 470 * MS, Protocol::Http, "/work", "4bf92f3577b34da6a3ce929d0e0e4736");
    e.observe(&req, "srv", &tl);
    e.tick(900 * MS);
    e.build_settled(&tl, 10 * MS, &mut sym);
    assert!(stored(e.take_actions()).0.is_empty(), "not before the request settled");
    e.tick(971 * MS);
    e.build_settled(&tl, 10 * MS, &mut sym);
    let (s, r) = stored(e.take_actions());
    assert!(r.is_empty());
    assert_eq!(s.len(), 1);
    let p = &s[0];
    assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(p.kept_because, "slow");
    let v = &p.verdict;
    assert_eq!(v.oncpu_ns, 150 * MS + MS + 9 * MS);
    assert_eq!(v.net_ns, 200 * MS);
    assert_eq!(v.lock_ns, 100 * MS);
    assert_eq!(v.oncpu_ns + v.net_ns + v.lock_ns + v.other_ns, 460 * MS, "the whole request, nothing lost");
    assert!(v.summary.starts_with("43% waiting on postgresql 127.0.0.1:5432 `SELECT pg_sleep(0.2)`"), "{}", v.summary);
    assert!(v.summary.contains("35% on-CPU"), "{}", v.summary);
    assert!(v.summary.contains("22% waiting on a lock"), "{}", v.summary);
    let net = p.threads[0].slices.iter().find(|s| s.state == "net").expect("the net slice");
    assert_eq!(net.downstream.len(), 1, "the SQL call sits on the wait it caused");
    assert_eq!(p.threads[0].role, "request");
    // The profile's JSON reads back (the API's flame graph path).
    let back: kindling_traceprof::TraceProfile = serde_json::from_str(&serde_json::to_string(p).unwrap()).unwrap();
    let f = kindling_traceprof::flame::flame(&back, kindling_profile::ProfileType::OffCpu);
    assert_eq!(f.total_ns(), 300 * MS, "net + lock waits");
    assert_eq!(e.stats().built, 1);
}

#[test]
fn a_displaced_profile_is_removed_and_the_budget_holds() {
    let tl = timeline();
    let sampler = SamplerConfig { slow: 1, baseline: 0, ..Default::default() };
    let mut e = TraceProfiler::new(TraceProfConfig { sampler, ..cfg() });
    let mut sym = Symbolizer::new();
    let a = record(Side::Server, 2, 10 * MS, 300 * MS, Protocol::Http, "/work", "aa");
    e.observe(&a, "srv", &tl);
    e.tick(900 * MS);
    e.build_settled(&tl, 10 * MS, &mut sym);
    let (s, _) = stored(e.take_actions());
    assert_eq!(s.len(), 1, "visible as soon as admitted");
    let b = record(Side::Server, 2, 20 * MS, 470 * MS, Protocol::Http, "/work", "bb");
    e.observe(&b, "srv", &tl);
    e.tick(1_000 * MS);
    e.build_settled(&tl, 10 * MS, &mut sym);
    let (s2, r2) = stored(e.take_actions());
    assert_eq!(r2, vec![s[0].id.clone()], "the slower request displaced it");
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].trace_id, "bb");

    // A budget smaller than one profile: kept, not stored, counted.
    let mut e = TraceProfiler::new(TraceProfConfig { max_bytes_per_window: 100, ..cfg() });
    e.observe(&a, "srv", &tl);
    e.tick(900 * MS);
    e.build_settled(&tl, 10 * MS, &mut sym);
    assert!(stored(e.take_actions()).0.is_empty());
    assert_eq!(e.stats().over_budget, 1);
}

#[test]
fn requests_before_following_are_counted_not_profiled() {
    let tl = Timelines::default();
    let mut e = TraceProfiler::new(cfg());
    let req = record(Side::Server, 2, 10 * MS, 470 * MS, Protocol::Http, "/work", "");
    e.observe(&req, "srv", &tl);
    assert_eq!(e.stats().not_followed, 1);
    assert_eq!(e.take_followed_change(), Some(vec![PID]), "its process is followed from now on");
    assert_eq!(e.take_followed_change(), None);
}
