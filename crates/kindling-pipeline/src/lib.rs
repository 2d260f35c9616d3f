//! The analysis pipeline, the same live and in replay:
//!
//! ```text
//! Event -> SocketTable (role) -> Tracker (request records) -> Workloads (who)
//!       -> Aggregator (RED metrics, service map) + recent requests (API)
//! ```
//!
//! Synchronous and single-threaded: the caller feeds events in order and
//! reads results between batches. Every stage is bounded.

mod net;
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
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub tracker: TrackerConfig,
    pub aggregate: AggregateConfig,
    /// Request records kept for `/api/v1/requests`.
    pub recent_requests: usize,
    pub workloads_capacity: usize,
    pub traceprof: kindling_traceprof::TraceProfConfig,
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
            traceprof: kindling_traceprof::TraceProfConfig::default(),
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
    pub tcp_connections: usize,
    pub tcp_queue_full: u64,
}

pub struct Pipeline {
    sockets: SocketTable,
    tracker: Tracker,
    workloads: Workloads,
    aggregate: Aggregator,
    recent: Recent,
    owners: Owners,
    endpoints: EndpointCache,
    net: net::NetState,
    /// TCP events wait a moment (event time) before attribution: they come
    /// from their own ring buffer, often ahead of the socket events that say
    /// which process owns the connection. What is known when they arrive is
    /// kept with them (an owner may close its socket meanwhile).
    tcp_queue: std::collections::VecDeque<PendingTcp>,
    tcp_queue_full: u64,
    /// Thread timelines and followed processes (sched events), for profiling.
    profiling: kindling_profile::Profiling,
    /// Trace-profiling: which server requests keep a profile, built from the timelines.
    traceprof: kindling_traceprof::TraceProfiler,
    out: Vec<RequestRecord>,
    emitted: Vec<Arc<RequestRecord>>,
    /// With `track_edges`: (client node, server node) of each emitted record.
    emitted_edges: Vec<(String, String)>,
    track_edges: bool,
    requests: u64,
    now_ns: u64,
}

/// How long (event time) TCP events wait for their sockets' owners to be known.
const TCP_ATTRIBUTION_DELAY_NS: u64 = 200_000_000;
/// TCP events waiting for attribution at most (beyond: counted, not attributed).
const TCP_QUEUE_MAX: usize = 100_000;

/// A TCP event waiting for attribution, oriented when it arrived.
struct PendingTcp {
    ts: u64,
    client: std::net::SocketAddr,
    server: std::net::SocketAddr,
    client_pid: Option<u32>,
    server_pid: Option<u32>,
    event: kindling_events::tcp::TcpEvent,
}

/// Service-map endpoints are built once per (workload, ip), not per record.
#[derive(Default)]
struct EndpointCache {
    workloads: FxHashMap<(usize, IpAddr), (Arc<Workload>, Endpoint)>,
    external: FxHashMap<IpAddr, Endpoint>,
}

impl EndpointCache {
    const CAP: usize = 16_384;

    fn of(&mut self, w: &Arc<Workload>, ip: IpAddr) -> &Endpoint {
        if self.workloads.len() >= Self::CAP {
            self.workloads.clear();
        }
        let key = (Arc::as_ptr(w) as usize, ip);
        let entry = self.workloads.entry(key).or_insert_with(|| (w.clone(), endpoint(w, ip)));
        // The pointer is the key; holding the Arc keeps it from being reused.
        &entry.1
    }

    fn external(&mut self, ip: IpAddr) -> &Endpoint {
        if self.external.len() >= Self::CAP {
            self.external.clear();
        }
        self.external.entry(ip).or_insert_with(|| external(ip))
    }
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
            endpoints: EndpointCache::default(),
            net: net::NetState::new(200_000),
            tcp_queue: std::collections::VecDeque::new(),
            tcp_queue_full: 0,
            profiling: kindling_profile::Profiling::default(),
            traceprof: kindling_traceprof::TraceProfiler::new(cfg.traceprof.clone()),
            out: Vec::new(),
            emitted: Vec::new(),
            emitted_edges: Vec::new(),
            track_edges: false,
            requests: 0,
            now_ns: 0,
        }
    }

    /// Feeds one event; returns the request records it completed (already
    /// aggregated and kept for the API).
    pub fn process(&mut self, ev: &mut Event) -> &[Arc<RequestRecord>] {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        self.sockets.observe(ev);
        self.workloads.observe(ev);
        match &ev.body {
            EventBody::Socket(s) => {
                match (s.op, s.role) {
                    // A closed client's address stays known (a later connect from
                    // the same port overwrites it): the records and TCP events of
                    // the connection are often completed after its close.
                    (SocketOp::Accept, _) => self.owners.listener(s.src, ev.pid),
                    (_, Role::Client) => self.owners.client(s.src, ev.pid),
                    _ => {}
                }
                self.net.socket(s.sock_id, ev.pid, s.role);
            }
            EventBody::SocketSnapshot(s) if s.is_listening() => self.owners.listener(s.src, ev.pid),
            EventBody::Tcp(t) => {
                self.net.observe(ev.ts_ns, t);
                if self.tcp_queue.len() >= TCP_QUEUE_MAX {
                    self.tcp_queue_full += 1;
                } else {
                    let p = self.orient(ev.ts_ns, t);
                    self.tcp_queue.push_back(p);
                }
            }
            EventBody::Sched(_) => self.profiling.observe(ev),
            _ => {}
        }
        self.attribute_tcp(self.now_ns.saturating_sub(TCP_ATTRIBUTION_DELAY_NS));
        self.tracker.observe(ev, &mut self.out);
        self.absorb()
    }

    /// Time passes without events: completes what went quiet.
    pub fn tick(&mut self, now_ns: u64) -> &[Arc<RequestRecord>] {
        self.now_ns = self.now_ns.max(now_ns);
        self.attribute_tcp(self.now_ns.saturating_sub(TCP_ATTRIBUTION_DELAY_NS));
        self.tracker.tick(self.now_ns, &mut self.out);
        self.aggregate.evict(self.now_ns);
        self.profiling.tick(self.now_ns);
        self.traceprof.tick(self.now_ns);
        if let Some(pids) = self.traceprof.take_followed_change() {
            if !self.profiling.interest.hold("traceprof", &pids) {
                tracing::warn!("trace-profiling: cannot follow {} server processes (profiling capacity)", pids.len());
            }
        }
        self.absorb()
    }

    /// End of input: reports what is complete.
    pub fn finish(&mut self) -> &[Arc<RequestRecord>] {
        self.attribute_tcp(u64::MAX);
        self.tracker.finish(&mut self.out);
        self.absorb()
    }

    /// Attributes the queued TCP events that happened up to `until`.
    fn attribute_tcp(&mut self, until: u64) {
        while self.tcp_queue.front().is_some_and(|p| p.ts <= until) {
            let Some(p) = self.tcp_queue.pop_front() else { break };
            self.tcp_event(p);
        }
    }

    /// Which end of a TCP event's connection is the server, and who owns
    /// each end as far as we know now: a known listener, else the socket's
    /// role, else the lower port is the server.
    fn orient(&self, ts: u64, t: &kindling_events::tcp::TcpEvent) -> PendingTcp {
        let (a, b) = (t.src, t.dst);
        let (client, server) = if self.owners.listener_of(&a).is_some() {
            (b, a)
        } else if self.owners.listener_of(&b).is_some() {
            (a, b)
        } else {
            match self.net.role_of(t.sock_id) {
                Some(Role::Server) => (b, a),
                Some(Role::Client) => (a, b),
                _ if a.port() < b.port() => (b, a),
                _ => (a, b),
            }
        };
        // Every event but drops reports the socket's own end first.
        let local_pid = self.net.pid_of(t.sock_id);
        let owner = |addr: &std::net::SocketAddr| {
            self.owners
                .listener_of(addr)
                .or_else(|| self.owners.client_of(addr))
                .or(if *addr == a { local_pid } else { None })
        };
        PendingTcp { ts, client, server, client_pid: owner(&client), server_pid: owner(&server), event: t.clone() }
    }

    /// Attributes a TCP health event to its edge, filling what was unknown
    /// when it arrived.
    fn tcp_event(&mut self, p: PendingTcp) {
        let Some(obs) = net::observation(&p.event) else { return };
        let client_pid = p.client_pid.or_else(|| self.owners.client_of(&p.client));
        let server_pid = p.server_pid.or_else(|| self.owners.listener_of(&p.server));
        let client_ep = self.endpoint_of(&p.client, client_pid);
        let server_ep = self.endpoint_of(&p.server, server_pid);
        self.aggregate.record_tcp(&client_ep, &server_ep, p.server.port(), p.ts, &obs);
    }

    /// The endpoint of an address owned by `pid` (else external).
    fn endpoint_of(&mut self, addr: &std::net::SocketAddr, pid: Option<u32>) -> Endpoint {
        match pid {
            Some(pid) => {
                let w = self.workloads.of(pid, "");
                self.endpoints.of(&w, addr.ip()).clone()
            }
            None => self.endpoints.external(addr.ip()).clone(),
        }
    }

    /// Aggregates and keeps the records the tracker completed; returns them.
    fn absorb(&mut self) -> &[Arc<RequestRecord>] {
        self.emitted.clear();
        self.emitted_edges.clear();
        let mut out = std::mem::take(&mut self.out);
        for mut r in out.drain(..) {
            r.tcp = self.net.during(&r.src, &r.dst, r.start_ts_ns, r.end_ts_ns);
            let me = self.workloads.of(r.pid, &r.comm);
            let edge = self.aggregate_one(&r, &me);
            if self.track_edges {
                self.emitted_edges.push(edge);
            }
            let r = Arc::new(r);
            self.traceprof.observe(&r, &me.name, &self.profiling.timelines);
            self.recent.push(r.clone());
            self.emitted.push(r);
            self.requests += 1;
        }
        self.out = out;
        &self.emitted
    }

    /// Names both ends of a request and counts it. A call seen from both
    /// ends counts once on the service map, from its client.
    /// Returns the edge's (client node, server node) ids when edges are tracked.
    fn aggregate_one(&mut self, r: &RequestRecord, me: &Arc<Workload>) -> (String, String) {
        let track = self.track_edges;
        let ids = |c: &Endpoint, s: &Endpoint| if track { (c.node_id.clone(), s.node_id.clone()) } else { Default::default() };
        match r.side {
            Side::Client => {
                let server_w = self.owners.listener_of(&r.dst).map(|pid| self.workloads.of(pid, ""));
                let client = self.endpoints.of(me, r.src.ip()).clone();
                let server = match &server_w {
                    Some(w) => self.endpoints.of(w, r.dst.ip()),
                    None => self.endpoints.external(r.dst.ip()),
                };
                let edge = ids(&client, server);
                self.aggregate.record(r, &client, server, true);
                edge
            }
            Side::Server => {
                let client_w = self.owners.client_of(&r.src).map(|pid| self.workloads.of(pid, ""));
                let server = self.endpoints.of(me, r.dst.ip()).clone();
                let (client, edge) = match &client_w {
                    Some(w) => (self.endpoints.of(w, r.src.ip()), false),
                    None => (self.endpoints.external(r.src.ip()), true),
                };
                let ids = ids(client, &server);
                self.aggregate.record(r, client, &server, edge);
                ids
            }
        }
    }

    /// Names the service-map edge of every record from now on (for the
    /// store); see [`Pipeline::emitted_edges`].
    pub fn track_edges(&mut self, on: bool) {
        self.track_edges = on;
    }

    /// The records the last `process`, `tick` or `finish` returned, each with
    /// its edge's (client node id, server node id) — empty unless
    /// [`Pipeline::track_edges`] is on.
    pub fn emitted_edges(&self) -> impl Iterator<Item = (&Arc<RequestRecord>, &str, &str)> {
        self.emitted.iter().zip(&self.emitted_edges).map(|(r, (c, s))| (r, c.as_str(), s.as_str()))
    }

    /// Tells the pipeline that `pid` listens on `addr` though it is not
    /// traced (the agent's own API), so callers of it are not "external".
    pub fn register_listener(&mut self, addr: std::net::SocketAddr, pid: u32) {
        self.owners.listener(addr, pid);
    }

    pub fn requests(&self, q: &RequestQuery) -> Vec<Arc<RequestRecord>> {
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

    /// Thread timelines and the processes followed (see kindling-profile).
    pub fn profiling(&self) -> &kindling_profile::Profiling {
        &self.profiling
    }

    pub fn profiling_mut(&mut self) -> &mut kindling_profile::Profiling {
        &mut self.profiling
    }

    /// Builds the kept trace-profiles whose requests have settled; then
    /// [`Pipeline::take_profile_actions`] says what to store.
    pub fn build_profiles(&mut self, sym: &mut kindling_profile::Symbolizer) {
        if self.traceprof.has_settled() {
            let period = self.profiling.sample_period_ns;
            self.traceprof.build_settled(&self.profiling.timelines, period, sym);
        }
    }

    /// Trace-profiles to store and displaced ones to remove, since the last call.
    pub fn take_profile_actions(&mut self) -> Vec<kindling_traceprof::Action> {
        self.traceprof.take_actions()
    }

    pub fn traceprof_stats(&self) -> kindling_traceprof::TraceProfStats {
        self.traceprof.stats()
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
            tcp_connections: self.net.len(),
            tcp_queue_full: self.tcp_queue_full,
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
