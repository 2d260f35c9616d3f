//! What the analysis thread hands the store: request records as they
//! complete (sampled here, before the queue) and, once a minute, the
//! service map of the minute that just ended (from the aggregator, which
//! holds the last few minutes in 10-second buckets).

use crate::sample::Sampler;
use crate::writer::{EdgeRow, Handle, NodeRow, RequestRow, Rollup};
use crate::StoreConfig;
use kindling_aggregate::Aggregator;
use kindling_requests::RequestRecord;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

pub const MINUTE_NS: u64 = 60_000_000_000;
/// A minute is rolled up this long after it ended: records complete (and
/// TCP events are attributed) a little after the fact.
const GRACE_NS: u64 = 15_000_000_000;
/// Minutes the aggregator still holds when a minute is due (it keeps 5).
const CATCH_UP: u64 = 3;

pub struct Feed {
    handle: Handle,
    sampler: Sampler,
    next_minute: Option<u64>,
}

impl Feed {
    pub(crate) fn new(handle: Handle, cfg: &StoreConfig) -> Feed {
        Feed {
            handle,
            sampler: Sampler::new(cfg.requests_per_endpoint_per_second, cfg.max_kept_per_second),
            next_minute: None,
        }
    }

    /// A completed request on the edge `src_node` -> `dst_node`.
    pub fn record(&mut self, r: &RequestRecord, src_node: &str, dst_node: &str) {
        let important = r.is_slow || r.is_error;
        if !self.sampler.keep(r.end_ts_ns, important, &[src_node, dst_node, r.side.name(), &r.endpoint], &r.trace_id) {
            self.handle.counters().sampled_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(record) = serde_json::to_string(r) else { return };
        self.handle.request(RequestRow {
            end_ts_ns: r.end_ts_ns,
            start_ts_ns: r.start_ts_ns,
            duration_ns: r.duration_ns,
            protocol: r.protocol.name().to_string(),
            side: r.side.name().to_string(),
            src_node: src_node.to_string(),
            dst_node: dst_node.to_string(),
            dst_port: r.dst_port(),
            endpoint: r.endpoint.clone(),
            is_error: r.is_error,
            is_slow: r.is_slow,
            trace_id: r.trace_id.clone(),
            record,
        });
    }

    /// Time passed: rolls up every minute that ended at least the grace
    /// period before `now_ns` and was not rolled up yet. The minute in
    /// progress at the first call is the first one (partial: the agent
    /// started during it).
    pub fn tick(&mut self, agg: &Aggregator, now_ns: u64) {
        let next = *self.next_minute.get_or_insert(now_ns / MINUTE_NS);
        let ready = now_ns.saturating_sub(GRACE_NS) / MINUTE_NS;
        let mut m = next.max(ready.saturating_sub(CATCH_UP));
        while m < ready {
            let r = rollup_of(agg, m * MINUTE_NS);
            if !r.edges.is_empty() {
                self.handle.rollup(r);
            }
            m += 1;
        }
        self.next_minute = Some(m.max(next));
    }
}

/// The service map of the minute starting at `minute_ns`.
pub fn rollup_of(agg: &Aggregator, minute_ns: u64) -> Rollup {
    // The window ending at the minute's last nanosecond covers exactly its buckets.
    let topo = agg.topology(minute_ns + MINUTE_NS - 1, MINUTE_NS - 1);
    let mut nodes: BTreeMap<(&str, &'static str), NodeRow> = BTreeMap::new();
    let mut edges = Vec::with_capacity(topo.edges.len());
    for e in &topo.edges {
        for (id, dir) in [(e.dst.as_str(), "inbound"), (e.src.as_str(), "outbound")] {
            let n = nodes.entry((id, dir)).or_insert_with(|| NodeRow {
                node: id.to_string(),
                direction: dir,
                ..NodeRow::default()
            });
            n.requests += e.requests;
            n.errors += e.errors;
            n.slow += e.slow;
            if e.requests > 0 {
                // The slowest edge's p99 bounds the node's from above.
                n.p99_ms = Some(n.p99_ms.unwrap_or(0.0).max(e.p99_ms));
            }
        }
        edges.push(EdgeRow {
            src: e.src.clone(),
            dst: e.dst.clone(),
            protocol: e.protocol.name().to_string(),
            dst_port: e.dst_port,
            requests: e.requests,
            errors: e.errors,
            slow: e.slow,
            bytes_sent: e.bytes_sent,
            bytes_received: e.bytes_received,
            avg_ms: e.avg_ms,
            p50_ms: e.p50_ms,
            p95_ms: e.p95_ms,
            p99_ms: e.p99_ms,
            max_ms: e.max_ms,
            retransmits: e.retransmits,
            rtt_ms: e.rtt_ms,
            resets: e.resets,
            drops: e.drops,
            connect_failures: e.connect_failures,
        });
    }
    let node_info = topo
        .nodes
        .iter()
        .filter_map(|n| Some((n.id.clone(), serde_json::to_string(n).ok()?)))
        .collect();
    Rollup { ts_ns: minute_ns, edges, nodes: nodes.into_values().collect(), node_info }
}
