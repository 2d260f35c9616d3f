//! TCP health per edge: the `kindling_tcp_*` Prometheus families and
//! time-bucketed counters merged into the service map's edges.
//!
//! An edge here is (client node, server node, server port) — TCP health is
//! below the L7 protocol, so it applies to every protocol edge between the
//! two, and stands alone (protocol `tcp`) where no request was seen (a
//! connect that failed, a connection that carried nothing we parse).

use crate::labels::{escape_value, OVERFLOW};
use crate::Endpoint;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

pub const SRTT: &str = "kindling_tcp_srtt_microseconds";
pub const RETRANSMIT: &str = "kindling_tcp_retransmit_total";
pub const PACKET_LOSS: &str = "kindling_tcp_packet_loss_total";
pub const CONNECT: &str = "kindling_tcp_connect_total";
pub const CONNECT_DURATION: &str = "kindling_tcp_connect_duration_nanoseconds_total";
pub const RESET: &str = "kindling_tcp_reset_total";

/// One thing TCP told us about a connection of an edge.
#[derive(Clone, Debug, PartialEq)]
pub enum TcpObservation {
    Retransmit { segments: u32 },
    Drop { reason: String },
    /// `direction`: "sent" or "received", from the socket's side.
    Reset { direction: &'static str },
    Rtt { srtt_us: u32 },
    /// `result`: "ok", "refused", "timed_out", "unreachable", ...
    Connect { result: &'static str, latency_ns: u64 },
}

/// Health of one edge over a window (what the service map shows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Health {
    pub retransmits: u64,
    pub drops: u64,
    pub resets: u64,
    pub connects: u64,
    pub connect_failures: u64,
    /// Mean of the RTT samples in the window (ms), if any.
    pub rtt_ms: Option<f64>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    bucket: u64,
    retransmits: u64,
    drops: u64,
    resets: u64,
    connects: u64,
    connect_failures: u64,
    srtt_sum_us: u64,
    srtt_n: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EdgeId {
    pub src: String,
    pub dst: String,
    pub port: u16,
}

/// The edge's endpoints as they were last seen (for standalone edges).
pub(crate) struct EdgeInfo {
    pub client: Endpoint,
    pub server: Endpoint,
    ring: VecDeque<Slot>,
}

/// Prometheus series: (family, rendered labels) -> value.
type Series = BTreeMap<(&'static str, String), f64>;

pub(crate) struct TcpHealth {
    bucket_ns: u64,
    nslots: u64,
    max_edges: usize,
    max_series: usize,
    pub edges: HashMap<EdgeId, EdgeInfo>,
    series: Series,
    /// Observations folded into `{overflow}` series past `max_series`.
    pub overflow: u64,
}

impl TcpHealth {
    pub fn new(bucket_ns: u64, nslots: u64, max_edges: usize, max_series: usize) -> TcpHealth {
        TcpHealth { bucket_ns, nslots, max_edges, max_series, edges: HashMap::new(), series: Series::new(), overflow: 0 }
    }

    pub fn record(&mut self, client: &Endpoint, server: &Endpoint, port: u16, ts_ns: u64, obs: &TcpObservation) {
        self.metric(client, server, port, obs);
        let id = EdgeId { src: client.node_id.clone(), dst: server.node_id.clone(), port };
        if !self.edges.contains_key(&id) && self.edges.len() >= self.max_edges {
            return;
        }
        let bucket = ts_ns / self.bucket_ns;
        let nslots = self.nslots;
        let e = self.edges.entry(id).or_insert_with(|| EdgeInfo {
            client: client.clone(),
            server: server.clone(),
            ring: VecDeque::new(),
        });
        let slot = match e.ring.back() {
            Some(s) if s.bucket == bucket => e.ring.back_mut(),
            Some(s) if s.bucket > bucket => e.ring.iter_mut().rev().find(|s| s.bucket == bucket),
            _ => {
                e.ring.push_back(Slot { bucket, ..Slot::default() });
                while e.ring.len() as u64 > nslots {
                    e.ring.pop_front();
                }
                e.ring.back_mut()
            }
        };
        let Some(s) = slot else { return };
        match obs {
            TcpObservation::Retransmit { segments } => s.retransmits += *segments as u64,
            TcpObservation::Drop { .. } => s.drops += 1,
            TcpObservation::Reset { .. } => s.resets += 1,
            TcpObservation::Rtt { srtt_us } => {
                s.srtt_sum_us += *srtt_us as u64;
                s.srtt_n += 1;
            }
            TcpObservation::Connect { result, .. } => {
                s.connects += 1;
                if *result != "ok" {
                    s.connect_failures += 1;
                }
            }
        }
    }

    fn metric(&mut self, client: &Endpoint, server: &Endpoint, port: u16, obs: &TcpObservation) {
        let edge = edge_labels(client, server, port);
        let add = |series: &mut Series, overflow: &mut u64, family: &'static str, extra: String, v: f64, set: bool| {
            let mut labels = format!("{edge}{extra}");
            if !series.contains_key(&(family, labels.clone())) && series.len() >= self.max_series {
                *overflow += 1;
                labels = format!("src_workload_name=\"{OVERFLOW}\",dst_workload_name=\"{OVERFLOW}\"");
            }
            let slot = series.entry((family, labels)).or_insert(0.0);
            if set {
                *slot = v;
            } else {
                *slot += v;
            }
        };
        let (s, o) = (&mut self.series, &mut self.overflow);
        match obs {
            TcpObservation::Retransmit { segments } => add(s, o, RETRANSMIT, String::new(), *segments as f64, false),
            TcpObservation::Drop { reason } => {
                add(s, o, PACKET_LOSS, format!(",reason=\"{}\"", escaped(reason)), 1.0, false)
            }
            TcpObservation::Reset { direction } => {
                add(s, o, RESET, format!(",direction=\"{direction}\""), 1.0, false)
            }
            TcpObservation::Rtt { srtt_us } => add(s, o, SRTT, String::new(), *srtt_us as f64, true),
            TcpObservation::Connect { result, latency_ns } => {
                let ok = *result == "ok";
                add(s, o, CONNECT, format!(",success=\"{ok}\",result=\"{result}\""), 1.0, false);
                if ok {
                    add(s, o, CONNECT_DURATION, String::new(), *latency_ns as f64, false);
                }
            }
        }
    }

    /// The health of an edge over the buckets `first..=last`.
    pub fn health(&self, id: &EdgeId, first: u64, last: u64) -> Option<Health> {
        let e = self.edges.get(id)?;
        Some(sum(e, first, last))
    }

    pub fn expire(&mut self, cutoff_bucket: u64) {
        self.edges.retain(|_, e| e.ring.back().is_some_and(|s| s.bucket >= cutoff_bucket));
    }

    pub fn render(&self, out: &mut String) {
        let families: [(&str, &str, &str); 6] = [
            (SRTT, "gauge", "Smoothed round-trip time of the edge's connections (last sample), microseconds."),
            (RETRANSMIT, "counter", "TCP segments retransmitted on the edge's connections."),
            (PACKET_LOSS, "counter", "Packets of the edge's connections the kernel dropped, by drop reason."),
            (CONNECT, "counter", "TCP connection attempts, by outcome."),
            (CONNECT_DURATION, "counter", "Time of successful TCP handshakes (SYN sent to established), nanoseconds."),
            (RESET, "counter", "TCP resets on the edge's connections, sent or received by the local socket."),
        ];
        for (name, kind, help) in families {
            let mut any = false;
            for ((family, labels), v) in self.series.range((name, String::new())..) {
                if *family != name {
                    break;
                }
                if !any {
                    let _ = writeln!(out, "# HELP {name} {help}");
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    any = true;
                }
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
}

/// Edges that have TCP health in the window, with their endpoints.
pub(crate) fn edges_in<'a>(
    h: &'a TcpHealth,
    first: u64,
    last: u64,
) -> impl Iterator<Item = (&'a EdgeId, &'a EdgeInfo, Health)> + 'a {
    h.edges.iter().filter_map(move |(id, e)| {
        let s = sum(e, first, last);
        (s != Health::default()).then_some((id, e, s))
    })
}

fn sum(e: &EdgeInfo, first: u64, last: u64) -> Health {
    let mut h = Health::default();
    let (mut srtt, mut n) = (0u64, 0u64);
    for s in e.ring.iter().filter(|s| s.bucket >= first && s.bucket <= last) {
        h.retransmits += s.retransmits;
        h.drops += s.drops;
        h.resets += s.resets;
        h.connects += s.connects;
        h.connect_failures += s.connect_failures;
        srtt += s.srtt_sum_us;
        n += s.srtt_n;
    }
    h.rtt_ms = (n > 0).then(|| srtt as f64 / n as f64 / 1000.0);
    h
}

fn escaped(v: &str) -> String {
    let mut s = String::new();
    escape_value(&mut s, v);
    s
}

fn edge_labels(client: &Endpoint, server: &Endpoint, port: u16) -> String {
    format!(
        "src_workload_kind=\"{}\",src_workload_name=\"{}\",src_container_id=\"{}\",src_ip=\"{}\",\
         dst_workload_kind=\"{}\",dst_workload_name=\"{}\",dst_container_id=\"{}\",dst_ip=\"{}\",dst_port=\"{port}\"",
        escaped(&client.workload_kind),
        escaped(&client.workload_name),
        escaped(&client.container_id),
        escaped(&client.ip),
        escaped(&server.workload_kind),
        escaped(&server.workload_name),
        escaped(&server.container_id),
        escaped(&server.ip),
    )
}
