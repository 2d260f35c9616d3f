//! The analysis pipeline, the same live and in replay:
//!
//! ```text
//! Event -> SocketTable (role) -> Tracker (request records) -> Workloads (who)
//!       -> Aggregator (RED metrics, service map) + recent requests (API)
//! ```
//!
//! Synchronous and single-threaded: the caller feeds events in order and
//! reads results between batches. Every stage is bounded.

mod owners;
mod recent;

pub use recent::RequestQuery;

use kindling_aggregate::{AggregateConfig, Aggregator, Endpoint, Topology};
use kindling_events::model::{Event, EventBody, Role, SocketOp};
use kindling_requests::{RequestRecord, Side, Tracker, TrackerConfig};
use kindling_sockets::SocketTable;
use kindling_workloads::{ProcessLookup, Workload, WorkloadKind, Workloads};
use owners::Owners;
use recent::Recent;
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub tracker: TrackerConfig,
    pub aggregate: AggregateConfig,
    /// Request records kept for `/api/v1/requests`.
    pub recent_requests: usize,
    pub workloads_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            tracker: TrackerConfig::default(),
            aggregate: AggregateConfig {
                // Minutes of history in memory; the store keeps longer rollups.
                retention_ns: 5 * 60 * 1_000_000_000,
                max_edges: 2_000,
                ..AggregateConfig::default()
            },
            recent_requests: 10_000,
            workloads_capacity: Workloads::DEFAULT_CAPACITY,
        }
    }
}

/// Losses and sizes, for self-telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub requests: u64,
    pub connections: usize,
    pub sockets: usize,
    pub socket_table_full: u64,
    pub parser_gave_up: u64,
    pub responses_without_request: u64,
    pub pending_requests_full: u64,
    pub connection_table_full: u64,
    pub unanswered: u64,
    pub series_overflow: u64,
    pub address_index_full: u64,
}

pub struct Pipeline {
    sockets: SocketTable,
    tracker: Tracker,
    workloads: Workloads,
    aggregate: Aggregator,
    recent: Recent,
    owners: Owners,
    out: Vec<RequestRecord>,
    requests: u64,
    now_ns: u64,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig, lookup: Box<dyn ProcessLookup + Send>) -> Pipeline {
        Pipeline {
            sockets: SocketTable::default(),
            tracker: Tracker::new(cfg.tracker),
            workloads: Workloads::new(cfg.workloads_capacity, lookup),
            aggregate: Aggregator::new(cfg.aggregate),
            recent: Recent::new(cfg.recent_requests),
            owners: Owners::new(200_000),
            out: Vec::new(),
            requests: 0,
            now_ns: 0,
        }
    }

    /// Feeds one event; returns the request records it completed (already
    /// aggregated and kept for the API).
    pub fn process(&mut self, ev: &mut Event) -> &[RequestRecord] {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.sockets.observe(ev);
        self.workloads.observe(ev);
        if let EventBody::Socket(s) = &ev.body {
            match (s.op, s.role) {
                (SocketOp::Close, _) => self.owners.forget(&s.src, ev.pid),
                (SocketOp::Accept, _) => self.owners.listener(s.src, ev.pid),
                (_, Role::Client) => self.owners.client(s.src, ev.pid),
                _ => {}
            }
        } else if let EventBody::SocketSnapshot(s) = &ev.body {
            if s.is_listening() {
                self.owners.listener(s.src, ev.pid);
            }
        }
        self.out.clear();
        self.tracker.observe(ev, &mut self.out);
        self.absorb();
        &self.out
    }

    /// Time passes without events: completes what went quiet.
    pub fn tick(&mut self, now_ns: u64) -> &[RequestRecord] {
        self.now_ns = self.now_ns.max(now_ns);
        self.out.clear();
        self.tracker.tick(self.now_ns, &mut self.out);
        self.absorb();
        self.aggregate.evict(self.now_ns);
        &self.out
    }

    /// End of input: reports what is complete.
    pub fn finish(&mut self) -> &[RequestRecord] {
        self.out.clear();
        self.tracker.finish(&mut self.out);
        self.absorb();
        &self.out
    }

    /// Aggregates and keeps the records in `self.out`.
    fn absorb(&mut self) {
        let out = std::mem::take(&mut self.out);
        for r in &out {
            let (client, server, edge) = self.endpoints(r);
            self.aggregate.record(r, &client, &server, edge);
            self.recent.push(r.clone());
            self.requests += 1;
        }
        self.out = out;
    }

    /// Both ends of a request as service-map endpoints, and whether the
    /// record counts as the edge (a call seen from both ends counts once,
    /// from its client).
    fn endpoints(&mut self, r: &RequestRecord) -> (Endpoint, Endpoint, bool) {
        let me = self.workloads.of(r.pid, &r.comm);
        match r.side {
            Side::Client => {
                let client = endpoint(&me, r.src.ip());
                let server = match self.owners.listener_of(&r.dst) {
                    Some(pid) => {
                        let w = self.workloads.of(pid, "");
                        endpoint(&w, r.dst.ip())
                    }
                    None => external(r.dst.ip()),
                };
                (client, server, true)
            }
            Side::Server => {
                let server = endpoint(&me, r.dst.ip());
                match self.owners.client_of(&r.src) {
                    Some(pid) => {
                        let w = self.workloads.of(pid, "");
                        (endpoint(&w, r.src.ip()), server, false)
                    }
                    None => (external(r.src.ip()), server, true),
                }
            }
        }
    }

    /// Tells the pipeline that `pid` listens on `addr` though it is not
    /// traced (the agent's own API), so callers of it are not "external".
    pub fn register_listener(&mut self, addr: std::net::SocketAddr, pid: u32) {
        self.owners.listener(addr, pid);
    }

    pub fn requests(&self, q: &RequestQuery) -> Vec<RequestRecord> {
        self.recent.query(q)
    }

    pub fn topology(&self, window_ns: u64) -> Topology {
        self.aggregate.topology(self.now_ns, window_ns)
    }

    pub fn render_metrics(&self, out: &mut String) {
        self.aggregate.render_prometheus(out);
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregate
    }

    pub fn stats(&self) -> PipelineStats {
        let t = self.tracker.stats();
        PipelineStats {
            requests: self.requests,
            connections: self.tracker.connections(),
            sockets: self.sockets.len(),
            socket_table_full: self.sockets.overflow,
            parser_gave_up: t.parser_gave_up,
            responses_without_request: t.orphan_responses,
            pending_requests_full: t.pending_overflow,
            connection_table_full: t.connections_evicted,
            unanswered: t.unanswered,
            series_overflow: self.aggregate.series_overflow(),
            address_index_full: self.owners.overflow(),
        }
    }
}

fn endpoint(w: &Workload, ip: IpAddr) -> Endpoint {
    let kind = w.kind.name();
    let node_id = match w.kind {
        WorkloadKind::Container => format!("container:{}", w.container_id),
        _ => format!("{kind}:{}", w.name),
    };
    Endpoint {
        node_id,
        name: w.name.clone(),
        kind: kind.to_string(),
        workload_kind: kind.to_string(),
        workload_name: w.name.clone(),
        container_id: w.container_id.clone(),
        ip: ip.to_string(),
        labels: Vec::new(),
    }
}

/// An address no traced workload owns.
fn external(ip: IpAddr) -> Endpoint {
    let ip = ip.to_string();
    Endpoint {
        node_id: format!("external:{ip}"),
        name: ip.clone(),
        kind: "external".into(),
        workload_kind: "external".into(),
        workload_name: ip.clone(),
        container_id: String::new(),
        ip,
        labels: Vec::new(),
    }
}
