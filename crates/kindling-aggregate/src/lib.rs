//! Requests to RED metrics and the service map.
//!
//! [`Aggregator`] is fed request records whose two ends the caller has
//! resolved to [`Endpoint`]s. It keeps:
//!
//! - Prometheus counters and latency histograms, server side (`kindling_entity_*`)
//!   and client side (`kindling_topology_*`), capped per family: past
//!   [`AggregateConfig::max_series`] a record folds into a series whose content
//!   (and client) labels are `{overflow}`, so totals stay exact;
//! - the service map: per edge (client node, server node, protocol, server port)
//!   a ring of time buckets (default 10 s over 15 min) with counts, bytes and a
//!   latency histogram fine enough for percentiles within 5%
//!   ([`LATENCY_RELATIVE_ERROR`], 1 µs to 100 s).
//!
//! # Label sets
//!
//! | family | labels |
//! |---|---|
//! | `kindling_entity_request_total` | `protocol`, `ip`, `port` (the server's), `workload_kind`, `workload_name`, `container_id`, extra endpoint labels, `request_content` (endpoint), `response_content` (status), `is_slow` |
//! | `kindling_entity_request_{duration_nanoseconds,send_bytes,receive_bytes}_total` | the same without `is_slow` |
//! | `kindling_entity_request_duration_seconds` (histogram) | the same without `response_content` |
//! | `kindling_topology_request_{total,duration_nanoseconds_total,request_bytes_total,response_bytes_total}` | `src_workload_kind`, `src_workload_name`, `src_container_id`, `src_ip`, extra `src_*`, `dst_workload_kind`, `dst_workload_name`, `dst_container_id`, `dst_ip`, extra `dst_*`, `dst_port`, `protocol`, `status_code` |
//! | `kindling_topology_request_duration_seconds` (histogram) | the same without `status_code` |
//!
//! Entity families count server-side records; topology families and the map
//! count records passed with `edge == true`. Past the cap an entity record
//! folds into `request_content`/`response_content` = `{overflow}` (same
//! server), a topology record into `src_*`/`status_code` = `{overflow}` (same
//! server); past `max_overflow_series` into one catch-all per protocol with
//! every other label `{overflow}`.
//!
//! Pure: no clock, no threads, no I/O. Time is the records' `end_ts_ns`, and
//! the `now_ns` of queries must be on the same clock. Memory is bounded by the
//! configuration; series and edges idle past their TTL are evicted as records
//! advance the clock, or by [`Aggregator::evict`].

mod family;
mod labels;
mod latency;
mod metrics;
mod tcp;
mod topology;

pub use labels::OVERFLOW;
pub use latency::{LATENCY_MAX_NS, LATENCY_MIN_NS, LATENCY_RELATIVE_ERROR};
pub use metrics::{
    ENTITY_DURATION, ENTITY_HISTOGRAM, ENTITY_RECEIVE, ENTITY_SEND, ENTITY_TOTAL, TOPOLOGY_DURATION,
    TOPOLOGY_HISTOGRAM, TOPOLOGY_REQUEST_BYTES, TOPOLOGY_RESPONSE_BYTES, TOPOLOGY_TOTAL,
};
pub use tcp::{Health, TcpObservation};
pub use topology::{Direction, Edge, Node, Point, Topology};

use kindling_protocols::Protocol;
use kindling_requests::RequestRecord;
use metrics::{seconds_to_ns, Metrics};
use serde::{Deserialize, Serialize};
use topology::Topo;

/// One end of an edge, resolved by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// Stable id: `process:python3 orders_api.py`, `systemd_service:nginx`,
    /// `container:0123456789ab`, `external:10.0.0.5`.
    pub node_id: String,
    /// Display name.
    pub name: String,
    /// `process` | `systemd_service` | `container` | `external` (| `pod`).
    pub kind: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub container_id: String,
    pub ip: String,
    /// Extra labels (Kubernetes); names are sanitized for Prometheus, and
    /// ones that would shadow a fixed label are left out of the metrics.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AggregateConfig {
    /// Series per metric family before records fold into `{overflow}` series.
    pub max_series: usize,
    /// `{overflow}` series per family; past them one catch-all per protocol.
    pub max_overflow_series: usize,
    /// The `*_duration_seconds` histograms.
    pub histograms: bool,
    /// Histogram upper bounds in seconds (`+Inf` is implied).
    pub histogram_buckets_s: Vec<f64>,
    /// Time resolution of the service map.
    pub time_bucket_ns: u64,
    /// How long the service map keeps an edge's buckets (and an idle edge).
    pub retention_ns: u64,
    /// Edges on the service map; records of further edges are counted, not kept.
    pub max_edges: usize,
    /// Metric series untouched this long are dropped (0: never).
    pub series_idle_ttl_ns: u64,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            max_series: 20_000,
            max_overflow_series: 1_000,
            histograms: true,
            histogram_buckets_s: vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            time_bucket_ns: 10_000_000_000,
            retention_ns: 15 * 60 * 1_000_000_000,
            max_edges: 10_000,
            series_idle_ttl_ns: 60 * 60 * 1_000_000_000,
        }
    }
}

/// The most time buckets an edge may keep.
const MAX_SLOTS: u64 = 100_000;
const MIN_TIME_BUCKET_NS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("histogram bucket {0} is not a positive, finite number of seconds")]
    BadBucket(f64),
    #[error("histogram buckets must be strictly increasing (at nanosecond precision)")]
    UnsortedBuckets,
    #[error("time bucket must be at least 1ms")]
    TimeBucketTooSmall,
    #[error("retention must be at least one time bucket and at most {MAX_SLOTS} of them")]
    BadRetention,
}

impl AggregateConfig {
    /// What [`Aggregator::new`] would silently correct.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut prev = 0u64;
        for &b in &self.histogram_buckets_s {
            if !(b.is_finite() && b > 0.0) || seconds_to_ns(b) == 0 {
                return Err(ConfigError::BadBucket(b));
            }
            let ns = seconds_to_ns(b);
            if ns <= prev {
                return Err(ConfigError::UnsortedBuckets);
            }
            prev = ns;
        }
        if self.time_bucket_ns < MIN_TIME_BUCKET_NS {
            return Err(ConfigError::TimeBucketTooSmall);
        }
        if self.retention_ns < self.time_bucket_ns || self.retention_ns.div_ceil(self.time_bucket_ns) > MAX_SLOTS {
            return Err(ConfigError::BadRetention);
        }
        Ok(())
    }

    fn sanitized(mut self) -> Self {
        let mut b: Vec<f64> =
            self.histogram_buckets_s.iter().copied().filter(|b| b.is_finite() && seconds_to_ns(*b) > 0).collect();
        b.sort_by(f64::total_cmp);
        b.dedup_by_key(|b| seconds_to_ns(*b));
        self.histogram_buckets_s = b;
        self.time_bucket_ns = self.time_bucket_ns.max(MIN_TIME_BUCKET_NS);
        self.retention_ns = self.retention_ns.clamp(self.time_bucket_ns, self.time_bucket_ns.saturating_mul(MAX_SLOTS));
        self
    }
}

/// Sizes and counters of an aggregator, for self-telemetry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateStats {
    pub records: u64,
    /// Records folded into an `{overflow}` series (in any family).
    pub series_overflow: u64,
    pub entity_series: usize,
    pub entity_histogram_series: usize,
    pub topology_series: usize,
    pub topology_histogram_series: usize,
    /// Distinct endpoint label sets the series share.
    pub label_sets: usize,
    pub edges: usize,
    pub nodes: usize,
    /// Edge records left off the map because it had `max_edges` edges.
    pub edges_dropped: u64,
    /// Edge records outside their edge's time buckets: older than the ring,
    /// or newer than the clock (counted in metrics only).
    pub late_records: u64,
}

pub struct Aggregator {
    cfg: AggregateConfig,
    metrics: Metrics,
    topo: Topo,
    tcp: tcp::TcpHealth,
    records: u64,
    overflow: u64,
    clock_ns: u64,
    /// An unconfirmed jump of the clock.
    jump_ns: u64,
    next_sweep_ns: u64,
}

impl Aggregator {
    /// Invalid settings are corrected (bad histogram bounds dropped, sizes
    /// clamped); [`AggregateConfig::validate`] reports them.
    pub fn new(cfg: AggregateConfig) -> Self {
        let cfg = cfg.sanitized();
        let metrics = Metrics::new(cfg.max_series, cfg.max_overflow_series, cfg.histograms, &cfg.histogram_buckets_s);
        let nslots = cfg.retention_ns.div_ceil(cfg.time_bucket_ns).clamp(1, MAX_SLOTS);
        let topo = Topo::new(cfg.time_bucket_ns, nslots, cfg.max_edges);
        let tcp = tcp::TcpHealth::new(cfg.time_bucket_ns, nslots, cfg.max_edges, cfg.max_series);
        Aggregator { cfg, metrics, topo, tcp, records: 0, overflow: 0, clock_ns: 0, jump_ns: 0, next_sweep_ns: 0 }
    }

    /// The configuration in use (after corrections).
    pub fn config(&self) -> &AggregateConfig {
        &self.cfg
    }

    /// Counts one request. Server-side records feed the entity families;
    /// `edge` records (the caller counts each call once: from the client when
    /// it is observed) feed the topology families and the service map.
    pub fn record(&mut self, r: &RequestRecord, client: &Endpoint, server: &Endpoint, edge: bool) {
        self.records += 1;
        self.tick(r.end_ts_ns);
        let seen = r.end_ts_ns.min(self.clock_ns);
        if self.metrics.record(r, client, server, edge, seen) {
            self.overflow += 1;
        }
        if edge {
            self.topo.record(r, client, server, seen);
        }
    }

    /// Advances the clock (the newest record time) and sweeps once per time
    /// bucket. A jump of more than the retention is only believed when a
    /// second record confirms it, so one bad timestamp cannot evict everything.
    fn tick(&mut self, ts: u64) {
        if ts <= self.clock_ns {
            return;
        }
        if self.clock_ns != 0 && ts - self.clock_ns > self.cfg.retention_ns {
            let confirmed = self.jump_ns != 0 && ts.abs_diff(self.jump_ns) <= self.cfg.retention_ns;
            self.jump_ns = if confirmed { 0 } else { ts };
            if !confirmed {
                return;
            }
        }
        self.clock_ns = ts;
        if ts >= self.next_sweep_ns {
            self.evict(ts);
            self.next_sweep_ns = ts.saturating_add(self.cfg.time_bucket_ns.max(1_000_000_000));
        }
    }

    /// Drops what is idle at `now_ns`: metric series past
    /// `series_idle_ttl_ns`, edges past `retention_ns`. `record` does this by
    /// itself as the records' time advances.
    pub fn evict(&mut self, now_ns: u64) {
        if self.cfg.series_idle_ttl_ns > 0 {
            self.metrics.expire(now_ns.saturating_sub(self.cfg.series_idle_ttl_ns));
        }
        self.topo.expire(now_ns, now_ns.saturating_sub(self.cfg.retention_ns));
        self.tcp.expire(now_ns.saturating_sub(self.cfg.retention_ns) / self.cfg.time_bucket_ns.max(1));
    }

    /// Counts one TCP observation on the edge client -> server:port.
    pub fn record_tcp(&mut self, client: &Endpoint, server: &Endpoint, dst_port: u16, ts_ns: u64, obs: &TcpObservation) {
        self.tick(ts_ns);
        self.tcp.record(client, server, dst_port, ts_ns.min(self.clock_ns.max(ts_ns)), obs);
    }

    /// Text exposition format 0.0.4 of every family.
    pub fn render_prometheus(&self, out: &mut String) {
        self.metrics.render(out);
        self.tcp.render(out);
    }

    /// The service map over the `window_ns` before `now_ns` (rounded up to
    /// whole time buckets, the current one included). `rps` divides by the
    /// time the buckets cover up to `now_ns`, reported as `window_s`.
    pub fn topology(&self, now_ns: u64, window_ns: u64) -> Topology {
        let mut t = self.topo.view(now_ns, window_ns);
        let (first, last, _) = self.topo.window(now_ns, window_ns);
        let fill = |e: &mut topology::Edge, h: tcp::Health| {
            e.retransmits = Some(h.retransmits);
            e.rtt_ms = h.rtt_ms;
            e.resets = Some(h.resets);
            e.connect_failures = Some(h.connect_failures);
            e.drops = Some(h.drops);
        };
        let mut covered = std::collections::HashSet::new();
        for e in t.edges.iter_mut() {
            let id = tcp::EdgeId { src: e.src.clone(), dst: e.dst.clone(), port: e.dst_port };
            if let Some(h) = self.tcp.health(&id, first, last) {
                fill(e, h);
                covered.insert(id);
            }
        }
        // Connections with TCP health but no request (failed connects,
        // nothing parsed yet): edges of their own, protocol `tcp`.
        for (id, info, h) in tcp::edges_in(&self.tcp, first, last) {
            if covered.contains(id) || t.edges.iter().any(|e| e.src == id.src && e.dst == id.dst && e.dst_port == id.port) {
                continue;
            }
            for ep in [&info.client, &info.server] {
                if !t.nodes.iter().any(|n| n.id == ep.node_id) {
                    t.nodes.push(topology::node_of(ep));
                }
            }
            let mut e = topology::Edge::empty(&id.src, &id.dst, id.port);
            fill(&mut e, h);
            t.edges.push(e);
        }
        t.nodes.sort_by(|a, b| a.id.cmp(&b.id));
        t
    }

    /// One edge's requests, errors, slow requests and p99 per `step_ns`
    /// (rounded up to whole time buckets) over the window, oldest first.
    /// Empty steps have zero counts; an unknown edge gives all-empty steps.
    #[allow(clippy::too_many_arguments)]
    pub fn edge_series(
        &self,
        src: &str,
        dst: &str,
        protocol: Protocol,
        dst_port: u16,
        now_ns: u64,
        window_ns: u64,
        step_ns: u64,
    ) -> Vec<Point> {
        self.topo.edge_series(src, dst, protocol, dst_port, now_ns, window_ns, step_ns)
    }

    /// The same summed over a node's inbound or outbound edges.
    pub fn node_series(&self, node_id: &str, dir: Direction, now_ns: u64, window_ns: u64, step_ns: u64) -> Vec<Point> {
        self.topo.node_series(node_id, dir, now_ns, window_ns, step_ns)
    }

    /// Records folded into an `{overflow}` series (in at least one family).
    pub fn series_overflow(&self) -> u64 {
        self.overflow
    }

    pub fn stats(&self) -> AggregateStats {
        let s = self.metrics.series();
        AggregateStats {
            records: self.records,
            series_overflow: self.overflow,
            entity_series: s.entity,
            entity_histogram_series: s.entity_histogram,
            topology_series: s.topology,
            topology_histogram_series: s.topology_histogram,
            label_sets: self.metrics.label_sets(),
            edges: self.topo.edges(),
            nodes: self.topo.nodes(),
            edges_dropped: self.topo.dropped,
            late_records: self.topo.late,
        }
    }
}
