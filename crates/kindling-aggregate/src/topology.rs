//! The service map: per edge (client node, server node, protocol, server
//! port) a ring of time buckets with counts, bytes and a latency histogram,
//! merged over a window on request.

use crate::family::{Family, Kind};
use crate::latency::{bucket_of, DenseHist, SparseHist};
use crate::Endpoint;
use kindling_protocols::Protocol;
use kindling_requests::RequestRecord;
use serde::{Deserialize, Serialize};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};

/// `/api/v1/topology` body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// The seconds the rates were computed over (the window rounded to time buckets).
    pub window_s: f64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub container_id: String,
    pub ip: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// One edge of the map over the window. `bytes_sent` is what the client sent
/// (requests), `bytes_received` what it got back (responses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub src: String,
    pub dst: String,
    pub protocol: Protocol,
    pub dst_port: u16,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub slow: u64,
    pub rps: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// TCP health of the edge's connections over the window (absent when
    /// none was observed): segments retransmitted, mean smoothed RTT, resets,
    /// packets dropped, failed connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmits: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_failures: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<u64>,
}

/// One step of a time series; `ts_ns` is the step's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub ts_ns: u64,
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    /// `None` when the step has no requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
}

/// Which edges of a node a node series sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Calls the node served (it is the edge's `dst`).
    Inbound,
    /// Calls the node made (it is the edge's `src`).
    Outbound,
}

#[derive(Default)]
struct TimeSlot {
    bucket: u64,
    requests: u32,
    errors: u32,
    slow: u32,
    bytes_sent: u64,
    bytes_received: u64,
    duration_ns: u64,
    min_ns: u64,
    max_ns: u64,
    hist: SparseHist,
}

impl TimeSlot {
    fn reset(&mut self, bucket: u64) {
        let hist = std::mem::take(&mut self.hist);
        *self = TimeSlot { bucket, min_ns: u64::MAX, hist, ..TimeSlot::default() };
        self.hist.clear();
    }

    #[inline]
    fn add(&mut self, r: &RequestRecord) {
        let d = r.duration_ns;
        self.requests = self.requests.saturating_add(1);
        self.errors = self.errors.saturating_add(u32::from(r.is_error));
        self.slow = self.slow.saturating_add(u32::from(r.is_slow));
        self.bytes_sent = self.bytes_sent.saturating_add(r.request_bytes);
        self.bytes_received = self.bytes_received.saturating_add(r.response_bytes);
        self.duration_ns = self.duration_ns.saturating_add(d);
        self.min_ns = self.min_ns.min(d);
        self.max_ns = self.max_ns.max(d);
        self.hist.add(bucket_of(d));
    }
}

struct EdgeKey {
    src: u32,
    dst: u32,
    proto: Protocol,
    port: u16,
}

#[derive(Default)]
struct EdgeState {
    /// Ascending by bucket, all within `nslots` of the newest.
    ring: VecDeque<TimeSlot>,
}

struct NodeEntry {
    node: Node,
    /// Edges that reference the node.
    refs: u32,
}

#[derive(Default)]
struct Nodes {
    index: HashMap<Box<str>, u32>,
    slab: Vec<Option<NodeEntry>>,
    free: Vec<u32>,
}

impl Nodes {
    fn get(&self, id: u32) -> Option<&Node> {
        self.slab.get(id as usize)?.as_ref().map(|n| &n.node)
    }

    #[inline]
    fn id_is(&self, id: u32, node_id: &str) -> bool {
        self.get(id).is_some_and(|n| n.id == node_id)
    }

    fn acquire(&mut self, e: &Endpoint) -> u32 {
        if let Some(&id) = self.index.get(e.node_id.as_str()) {
            if let Some(Some(n)) = self.slab.get_mut(id as usize) {
                n.refs += 1;
                return id;
            }
        }
        let entry = NodeEntry { node: node_of(e), refs: 1 };
        let id = match self.free.pop() {
            Some(id) => {
                self.slab[id as usize] = Some(entry);
                id
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(e.node_id.as_str().into(), id);
        id
    }

    fn release(&mut self, id: u32) {
        let Some(slot) = self.slab.get_mut(id as usize) else { return };
        let Some(n) = slot else { return };
        n.refs = n.refs.saturating_sub(1);
        if n.refs == 0 {
            self.index.remove(n.node.id.as_str());
            *slot = None;
            self.free.push(id);
        }
    }

    /// Keeps the node's display fields current (an exec renames a process).
    #[inline]
    fn refresh(&mut self, id: u32, e: &Endpoint) {
        let Some(Some(n)) = self.slab.get_mut(id as usize) else { return };
        let n = &mut n.node;
        if n.name != e.name
            || n.kind != e.kind
            || n.ip != e.ip
            || n.workload_name != e.workload_name
            || n.workload_kind != e.workload_kind
            || n.container_id != e.container_id
            || n.labels.len() != e.labels.len()
            || !e.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v))
        {
            *n = node_of(e);
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }
}

pub(crate) fn node_of(e: &Endpoint) -> Node {
    Node {
        id: e.node_id.clone(),
        name: e.name.clone(),
        kind: e.kind.clone(),
        workload_kind: e.workload_kind.clone(),
        workload_name: e.workload_name.clone(),
        container_id: e.container_id.clone(),
        ip: e.ip.clone(),
        labels: e.labels.iter().cloned().collect(),
    }
}

impl Edge {
    /// An edge with no requests (only TCP health).
    pub fn empty(src: &str, dst: &str, dst_port: u16) -> Edge {
        Edge {
            src: src.to_string(),
            dst: dst.to_string(),
            protocol: Protocol::Tcp,
            dst_port,
            requests: 0,
            errors: 0,
            error_rate: 0.0,
            slow: 0,
            rps: 0.0,
            avg_ms: 0.0,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            bytes_sent: 0,
            bytes_received: 0,
            retransmits: None,
            rtt_ms: None,
            resets: None,
            connect_failures: None,
            drops: None,
        }
    }
}

/// Sums of a set of time slots.
#[derive(Default)]
struct Sums {
    requests: u64,
    errors: u64,
    slow: u64,
    bytes_sent: u64,
    bytes_received: u64,
    duration_ns: u128,
}

impl Sums {
    fn add(&mut self, s: &TimeSlot, hist: &mut DenseHist) {
        self.requests += u64::from(s.requests);
        self.errors += u64::from(s.errors);
        self.slow += u64::from(s.slow);
        self.bytes_sent = self.bytes_sent.saturating_add(s.bytes_sent);
        self.bytes_received = self.bytes_received.saturating_add(s.bytes_received);
        self.duration_ns += u128::from(s.duration_ns);
        hist.merge(&s.hist, s.min_ns, s.max_ns);
    }
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

pub(crate) struct Topo {
    rs: RandomState,
    bucket_ns: u64,
    nslots: u64,
    max_edges: usize,
    nodes: Nodes,
    edges: Family<EdgeKey, EdgeState>,
    /// Records not on the map because it had `max_edges` edges.
    pub dropped: u64,
    /// Records outside the time range of their edge's ring.
    pub late: u64,
}

impl Topo {
    pub fn new(bucket_ns: u64, nslots: u64, max_edges: usize) -> Self {
        Topo {
            rs: RandomState::new(),
            bucket_ns,
            nslots,
            max_edges,
            nodes: Nodes::default(),
            edges: Family::default(),
            dropped: 0,
            late: 0,
        }
    }

    fn edge_hash(&self, src: &str, dst: &str, proto: Protocol, port: u16) -> u64 {
        let mut h = self.rs.build_hasher();
        src.hash(&mut h);
        dst.hash(&mut h);
        proto.hash(&mut h);
        h.write_u16(port);
        h.finish()
    }

    fn find(&self, hash: u64, src: &str, dst: &str, proto: Protocol, port: u16) -> Option<u32> {
        let nodes = &self.nodes;
        self.edges
            .find(hash, |k| k.proto == proto && k.port == port && nodes.id_is(k.src, src) && nodes.id_is(k.dst, dst))
    }

    /// `seen_ns`: the record's time, at most the clock (when the edge was last
    /// seen). A record newer than the clock (an unconfirmed jump) updates the
    /// node but not the time buckets, which it could otherwise push forward.
    pub fn record(&mut self, r: &RequestRecord, client: &Endpoint, server: &Endpoint, seen_ns: u64) {
        let ts = r.end_ts_ns;
        let port = r.dst_port();
        let h = self.edge_hash(&client.node_id, &server.node_id, r.protocol, port);
        let id = match self.find(h, &client.node_id, &server.node_id, r.protocol, port) {
            Some(id) => id,
            None => {
                if self.edges.len() >= self.max_edges {
                    self.dropped += 1;
                    return;
                }
                let src = self.nodes.acquire(client);
                let dst = self.nodes.acquire(server);
                let key = EdgeKey { src, dst, proto: r.protocol, port };
                self.edges.insert(h, Kind::Exact, key, EdgeState::default(), seen_ns)
            }
        };
        let Some(e) = self.edges.get_mut(id) else { return };
        e.last_ns = e.last_ns.max(seen_ns);
        if ts > seen_ns {
            self.late += 1;
            return;
        }
        let bucket = ts / self.bucket_ns;
        let (src, dst) = (e.key.src, e.key.dst);
        let fresh = e.stats.ring.back().is_none_or(|s| s.bucket != bucket);
        match slot_for(&mut e.stats.ring, bucket, self.nslots) {
            Some(slot) => slot.add(r),
            None => self.late += 1,
        }
        // Display fields follow the endpoints, checked once per time bucket.
        if fresh {
            self.nodes.refresh(src, client);
            self.nodes.refresh(dst, server);
        }
    }

    /// Drops edges with no record since `cutoff_ns` (and nodes no edge uses)
    /// and time slots that fell out of the ring.
    pub fn expire(&mut self, now_ns: u64, cutoff_ns: u64) {
        let nodes = &mut self.nodes;
        self.edges.retain(
            |e| e.last_ns >= cutoff_ns,
            |e| {
                nodes.release(e.key.src);
                nodes.release(e.key.dst);
            },
        );
        let oldest = (now_ns / self.bucket_ns).saturating_sub(self.nslots - 1);
        for e in self.edges.iter_mut() {
            while e.stats.ring.front().is_some_and(|s| s.bucket < oldest) {
                e.stats.ring.pop_front();
            }
        }
    }

    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// (first bucket, last bucket, seconds covered) of a window ending at
    /// `now_ns`: the buckets from the one holding `now - window` to the one
    /// holding `now`, at most the ring; they cover `now - start of first`.
    pub(crate) fn window(&self, now_ns: u64, window_ns: u64) -> (u64, u64, f64) {
        let b = self.bucket_ns;
        let cur = now_ns / b;
        let first = (now_ns.saturating_sub(window_ns) / b).max(cur.saturating_sub(self.nslots - 1));
        // At least a second (or a bucket, when shorter): rates over a few
        // nanoseconds would mean nothing.
        let span_ns = (now_ns - first * b).max(window_ns.min(b)).max(b.min(1_000_000_000));
        (first, cur, span_ns as f64 / 1e9)
    }

    pub fn view(&self, now_ns: u64, window_ns: u64) -> Topology {
        let (first, cur, span_s) = self.window(now_ns, window_ns);
        let mut hist = DenseHist::default();
        let mut used: Vec<u32> = Vec::new();
        let mut edges = Vec::new();
        for e in self.edges.iter() {
            hist.clear();
            let mut sums = Sums::default();
            for s in e.stats.ring.iter().rev().take_while(|s| s.bucket >= first) {
                if s.bucket <= cur {
                    sums.add(s, &mut hist);
                }
            }
            if sums.requests == 0 {
                continue;
            }
            let (Some(src), Some(dst)) = (self.nodes.get(e.key.src), self.nodes.get(e.key.dst)) else {
                continue;
            };
            used.push(e.key.src);
            used.push(e.key.dst);
            let q = |q: f64| ms(hist.quantile(q).unwrap_or(0.0));
            let n = sums.requests as f64;
            edges.push(Edge {
                src: src.id.clone(),
                dst: dst.id.clone(),
                protocol: e.key.proto,
                dst_port: e.key.port,
                requests: sums.requests,
                errors: sums.errors,
                error_rate: sums.errors as f64 / n,
                slow: sums.slow,
                rps: n / span_s,
                avg_ms: ms(sums.duration_ns as f64 / n),
                p50_ms: q(0.5),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                max_ms: q(1.0),
                bytes_sent: sums.bytes_sent,
                bytes_received: sums.bytes_received,
                retransmits: None,
                rtt_ms: None,
                resets: None,
                connect_failures: None,
                drops: None,
            });
        }
        edges.sort_by(|a, b| (&a.src, &a.dst, a.protocol, a.dst_port).cmp(&(&b.src, &b.dst, b.protocol, b.dst_port)));
        used.sort_unstable();
        used.dedup();
        let mut nodes: Vec<Node> = used.iter().filter_map(|&id| self.nodes.get(id).cloned()).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Topology { window_s: span_s, nodes, edges }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn edge_series(
        &self,
        src: &str,
        dst: &str,
        proto: Protocol,
        port: u16,
        now_ns: u64,
        window_ns: u64,
        step_ns: u64,
    ) -> Vec<Point> {
        let h = self.edge_hash(src, dst, proto, port);
        let edge = self.find(h, src, dst, proto, port).and_then(|id| self.edges.get(id)).map(|e| &e.stats);
        self.series(edge.into_iter(), now_ns, window_ns, step_ns)
    }

    pub fn node_series(&self, node_id: &str, dir: Direction, now_ns: u64, window_ns: u64, step_ns: u64) -> Vec<Point> {
        let Some(&nid) = self.nodes.index.get(node_id) else {
            return self.series(std::iter::empty(), now_ns, window_ns, step_ns);
        };
        let edges = self.edges.iter().filter(|e| match dir {
            Direction::Inbound => e.key.dst == nid,
            Direction::Outbound => e.key.src == nid,
        });
        self.series(edges.map(|e| &e.stats), now_ns, window_ns, step_ns)
    }

    /// Points over the window, one per `step_ns` (rounded up to whole time
    /// buckets, aligned to multiples of the step), oldest first.
    fn series<'a>(
        &self,
        edges: impl Iterator<Item = &'a EdgeState> + Clone,
        now_ns: u64,
        window_ns: u64,
        step_ns: u64,
    ) -> Vec<Point> {
        let (first, cur, _) = self.window(now_ns, window_ns);
        let per = step_ns.div_ceil(self.bucket_ns).max(1);
        let mut hist = DenseHist::default();
        let mut out = Vec::new();
        for g in first / per..=cur / per {
            let lo = (g * per).max(first);
            let hi = (g * per + per - 1).min(cur);
            hist.clear();
            let mut sums = Sums::default();
            for e in edges.clone() {
                for s in e.ring.iter().filter(|s| s.bucket >= lo && s.bucket <= hi) {
                    sums.add(s, &mut hist);
                }
            }
            out.push(Point {
                ts_ns: g * per * self.bucket_ns,
                requests: sums.requests,
                errors: sums.errors,
                slow: sums.slow,
                p99_ms: hist.quantile(0.99).map(ms),
            });
        }
        out
    }
}

/// The slot of `bucket` in an edge's ring, made when missing; `None` when the
/// bucket is older than the ring holds. Reuses expired slots (and their
/// histogram allocations) so a steady edge allocates nothing.
#[inline]
fn slot_for(ring: &mut VecDeque<TimeSlot>, bucket: u64, nslots: u64) -> Option<&mut TimeSlot> {
    let newest = ring.back().map(|s| s.bucket);
    match newest {
        Some(b) if b == bucket => ring.back_mut(),
        Some(b) if b > bucket => {
            if bucket.saturating_add(nslots) <= b {
                return None;
            }
            match ring.binary_search_by_key(&bucket, |s| s.bucket) {
                Ok(i) => ring.get_mut(i),
                Err(i) => {
                    let mut s = TimeSlot::default();
                    s.reset(bucket);
                    ring.insert(i, s);
                    ring.get_mut(i)
                }
            }
        }
        _ => {
            let mut reuse = None;
            while ring.front().is_some_and(|s| s.bucket.saturating_add(nslots) <= bucket) {
                reuse = ring.pop_front();
            }
            let mut s = reuse.unwrap_or_default();
            s.reset(bucket);
            ring.push_back(s);
            ring.back_mut()
        }
    }
}
