//! `make bench`: measures Kindling's performance targets (PRODUCT.md, P1-P7)
//! as ratios of runs made side by side on this machine, so the numbers mean
//! the same on any machine. Each section prints one result line.
//!
//! Sections so far:
//! - P3: ns a traced syscall costs with our programs vs with empty programs on
//!   the same hooks vs with nothing attached;
//! - reader: wire records decoded per second by the user-space reader;
//! - P1/P2: nginx+wrk throughput with `kindling run` on vs off, and its CPU per 10k req/s;
//! - P4: a recording of real nginx+wrk traffic replayed through the analysis pipeline on one core;
//! - P5: the agent's RSS with 10k open connections and 1k endpoints;
//! - P6: events lost at 20k req/s sustained (and counted when saturated);
//! - P7: a slow request's end -> its trace-profile in the API;
//! - profile: a CPU-bound and a context-switch-heavy workload, profiled / not profiled.

mod load;
mod nginx;
mod profile;
mod replay;
mod syscalls;
mod traceprof;

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    // A child of the profiling section: be its workload.
    if let Ok(w) = std::env::var(profile::WORKLOAD_ENV) {
        return profile::workload(&w);
    }
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    println!("kindling bench — ratios measured side by side in this run");
    if wants("p3") {
        syscalls::p3()?;
    }
    if wants("reader") {
        reader_decode_rate();
    }
    if wants("p1") || wants("p2") {
        nginx::p1_p2()?;
    }
    if wants("p4") {
        replay::p4()?;
    }
    if wants("p5") {
        load::p5()?;
    }
    if wants("p6") {
        load::p6()?;
    }
    if wants("p7") {
        traceprof::p7()?;
    }
    if wants("profile") {
        profile::profiling()?;
    }
    Ok(())
}

/// Wire records decoded per second on one core (the reader thread's work).
fn reader_decode_rate() {
    use kindling_events::model::*;
    use kindling_events::wire::{encode, Decoder};
    let d = Decoder::new(0);
    let ev = Event {
        ts_ns: 1,
        pid: 1,
        tid: 1,
        cpu: 0,
        comm: Comm::from("nginx"),
        body: EventBody::Socket(SocketEvent {
            op: SocketOp::Recv,
            syscall: Syscall::Read,
            fd: 5,
            sock_id: 7,
            proto: L4Proto::Tcp,
            src: "127.0.0.1:80".parse().unwrap(),
            dst: "127.0.0.1:40000".parse().unwrap(),
            bytes: 120,
            latency_ns: 1000,
            ret: 120,
            msg_index: 0,
            payload: b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n".to_vec(),
            role: Role::Unknown,
        }),
    };
    let raw = encode(&ev, &d).expect("socket events encode");
    let n = 2_000_000u64;
    let start = Instant::now();
    let mut bytes = 0usize;
    for _ in 0..n {
        let e = d.decode(std::hint::black_box(&raw)).expect("decodes");
        bytes += e.as_socket().map_or(0, |s| s.payload.len());
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    println!(
        "reader: {:.2} M wire records decoded per second on one core ({:.0} ns each, {}-byte HTTP payload heads)",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64,
        ev.as_socket().map_or(0, |s| s.payload.len())
    );
}
