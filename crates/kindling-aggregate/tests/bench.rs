//! A criterion-free microbenchmark of the hot path. Prints, asserts nothing:
//! `cargo test --release -p kindling-aggregate --test bench -- --nocapture`

mod common;

use common::*;
use kindling_aggregate::{AggregateConfig, Aggregator, Endpoint};
use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};
use std::hint::black_box;
use std::time::Instant;

#[test]
fn record_ns_per_record() {
    let n: usize = if cfg!(debug_assertions) { 20_000 } else { 2_000_000 };
    let servers: Vec<Endpoint> = (0..20)
        .map(|i| {
            let mut e = ep(&format!("container:{i:012x}"), &format!("10.1.0.{i}"));
            e.container_id = format!("{i:012x}");
            e.workload_kind = "deployment".into();
            e.workload_name = format!("service-{i}");
            e.labels = vec![("namespace".into(), "default".into()), ("pod".into(), format!("service-{i}-7d9f8"))];
            e
        })
        .collect();
    let clients: Vec<Endpoint> = (0..5).map(|i| ep(&format!("process:client{i}"), &format!("10.2.0.{i}"))).collect();
    let mut rng = Rng(1);
    // 2000 distinct (server, endpoint, status, client, side) combinations.
    let mut work: Vec<(RequestRecord, usize, usize, bool)> = Vec::new();
    for i in 0..2000usize {
        let side = if i % 2 == 0 { Side::Server } else { Side::Client };
        let mut r = rec(side, &format!("/api/v1/resource{}/{{id}}", i % 10), ["200", "404", "500"][i % 3], 0, 0);
        r.protocol = if i % 7 == 0 { Protocol::Redis } else { Protocol::Http };
        work.push((r, i % 20, (i / 20) % 5, side == Side::Client || i % 4 == 0));
    }
    let mut a = Aggregator::new(AggregateConfig::default());
    let mut ts = 1_000 * SEC;
    let mut run = |a: &mut Aggregator, count: usize, ts: &mut u64| {
        for k in 0..count {
            let (r, s, c, edge) = &mut work[k % 2000];
            *ts += 50_000; // 20k records/s of record time
            r.end_ts_ns = *ts;
            r.duration_ns = 100_000 + rng.next() % (50 * MS);
            r.is_slow = r.duration_ns > 40 * MS;
            a.record(black_box(r), &clients[*c], &servers[*s], *edge);
        }
    };
    run(&mut a, 10_000, &mut ts); // warm: every series exists
    let t0 = Instant::now();
    run(&mut a, n, &mut ts);
    let el = t0.elapsed();
    let mode = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!("record: {:.1} ns/record ({n} records, {mode})", el.as_nanos() as f64 / n as f64);

    let t0 = Instant::now();
    let mut out = String::new();
    a.render_prometheus(&mut out);
    println!("render_prometheus: {:?} for {} bytes, stats {:?}", t0.elapsed(), out.len(), a.stats());
    let t0 = Instant::now();
    let t = a.topology(ts, 60 * SEC);
    println!("topology(60s): {:?} for {} edges", t0.elapsed(), t.edges.len());
    let t0 = Instant::now();
    let t = a.topology(ts, 15 * 60 * SEC);
    println!("topology(15m): {:?} for {} edges, {} nodes", t0.elapsed(), t.edges.len(), t.nodes.len());
    black_box(t);
}
