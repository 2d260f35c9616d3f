//! The Prometheus families: server-side (entity) and client-side (topology)
//! RED counters and latency histograms, bounded per family.

use crate::family::{Family, Kind};
use crate::labels::{push_label, EpLabels, EpRef, EpTable, OVERFLOW};
use crate::Endpoint;
use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};
use std::collections::hash_map::{DefaultHasher, RandomState};
use std::fmt::{Display, Write as _};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// The port of catch-all series (renders as `{overflow}`).
const OVERFLOW_PORT: u32 = u32::MAX;

pub const ENTITY_TOTAL: &str = "kindling_entity_request_total";
pub const ENTITY_DURATION: &str = "kindling_entity_request_duration_nanoseconds_total";
pub const ENTITY_SEND: &str = "kindling_entity_request_send_bytes_total";
pub const ENTITY_RECEIVE: &str = "kindling_entity_request_receive_bytes_total";
pub const ENTITY_HISTOGRAM: &str = "kindling_entity_request_duration_seconds";
pub const TOPOLOGY_TOTAL: &str = "kindling_topology_request_total";
pub const TOPOLOGY_DURATION: &str = "kindling_topology_request_duration_nanoseconds_total";
pub const TOPOLOGY_REQUEST_BYTES: &str = "kindling_topology_request_request_bytes_total";
pub const TOPOLOGY_RESPONSE_BYTES: &str = "kindling_topology_request_response_bytes_total";
pub const TOPOLOGY_HISTOGRAM: &str = "kindling_topology_request_duration_seconds";

/// Borrowed key parts of a series, able to build the owned key on a miss.
trait Probe: Copy {
    type Key;
    /// The hasher fed with everything but the status; the status-less
    /// (histogram) and the status-ful (counter) families share it.
    fn prefix(&self, rs: &RandomState) -> DefaultHasher;
    fn status(&self) -> Option<&str>;
    #[inline]
    fn hash(&self, rs: &RandomState) -> u64 {
        finish(self.prefix(rs), self.status())
    }
    fn matches(&self, k: &Self::Key) -> bool;
    fn make(&self, eps: &mut EpTable) -> Self::Key;
    /// The series a record folds into past the cap.
    fn overflowed(&self) -> Self;
    /// The last resort when the overflow series are capped too.
    fn catch_all(&self) -> Self;
}

#[derive(Clone, Copy)]
struct EntityProbe<'a> {
    proto: Protocol,
    ep: EpRef<'a>,
    port: u32,
    req: &'a str,
    /// `None` for the histogram family (no status label).
    resp: Option<&'a str>,
}

pub(crate) struct EntityKey {
    proto: Protocol,
    ep: Arc<EpLabels>,
    port: u32,
    req: Box<str>,
    resp: Option<Box<str>>,
}

impl Probe for EntityProbe<'_> {
    type Key = EntityKey;

    #[inline]
    fn prefix(&self, rs: &RandomState) -> DefaultHasher {
        let mut h = rs.build_hasher();
        self.proto.hash(&mut h);
        self.ep.hash_into(&mut h);
        h.write_u32(self.port);
        self.req.hash(&mut h);
        h
    }

    fn status(&self) -> Option<&str> {
        self.resp
    }

    #[inline]
    fn matches(&self, k: &EntityKey) -> bool {
        k.proto == self.proto
            && k.port == self.port
            && *k.req == *self.req
            && k.resp.as_deref() == self.resp
            && self.ep.matches(&k.ep)
    }

    fn make(&self, eps: &mut EpTable) -> EntityKey {
        EntityKey {
            proto: self.proto,
            ep: eps.intern(self.ep),
            port: self.port,
            req: self.req.into(),
            resp: self.resp.map(Into::into),
        }
    }

    fn overflowed(&self) -> Self {
        EntityProbe { req: OVERFLOW, resp: self.resp.map(|_| OVERFLOW), ..*self }
    }

    fn catch_all(&self) -> Self {
        EntityProbe { ep: EpRef::Overflow, port: OVERFLOW_PORT, ..self.overflowed() }
    }
}

#[derive(Clone, Copy)]
struct TopoProbe<'a> {
    proto: Protocol,
    src: EpRef<'a>,
    dst: EpRef<'a>,
    port: u32,
    /// `None` for the histogram family (no status label).
    status: Option<&'a str>,
}

pub(crate) struct TopoKey {
    proto: Protocol,
    src: Arc<EpLabels>,
    dst: Arc<EpLabels>,
    port: u32,
    status: Option<Box<str>>,
}

impl Probe for TopoProbe<'_> {
    type Key = TopoKey;

    #[inline]
    fn prefix(&self, rs: &RandomState) -> DefaultHasher {
        let mut h = rs.build_hasher();
        self.proto.hash(&mut h);
        self.src.hash_into(&mut h);
        self.dst.hash_into(&mut h);
        h.write_u32(self.port);
        h
    }

    fn status(&self) -> Option<&str> {
        self.status
    }

    #[inline]
    fn matches(&self, k: &TopoKey) -> bool {
        k.proto == self.proto
            && k.port == self.port
            && k.status.as_deref() == self.status
            && self.src.matches(&k.src)
            && self.dst.matches(&k.dst)
    }

    fn make(&self, eps: &mut EpTable) -> TopoKey {
        TopoKey {
            proto: self.proto,
            src: eps.intern(self.src),
            dst: eps.intern(self.dst),
            port: self.port,
            status: self.status.map(Into::into),
        }
    }

    /// Calls into the same server from any client, any status.
    fn overflowed(&self) -> Self {
        TopoProbe { src: EpRef::Overflow, status: self.status.map(|_| OVERFLOW), ..*self }
    }

    fn catch_all(&self) -> Self {
        TopoProbe { dst: EpRef::Overflow, port: OVERFLOW_PORT, ..self.overflowed() }
    }
}

#[inline]
fn finish(mut h: DefaultHasher, status: Option<&str>) -> u64 {
    status.hash(&mut h);
    h.finish()
}

#[derive(Default)]
pub(crate) struct EntityStats {
    fast: u64,
    slow: u64,
    duration_ns: u128,
    send_bytes: u64,
    receive_bytes: u64,
}

#[derive(Default)]
pub(crate) struct TopoStats {
    count: u64,
    duration_ns: u128,
    request_bytes: u64,
    response_bytes: u64,
}

pub(crate) struct PromHist {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[u64]>,
    count: u64,
    sum_ns: u128,
}

impl PromHist {
    fn new(buckets: usize) -> Self {
        PromHist { counts: vec![0; buckets + 1].into(), count: 0, sum_ns: 0 }
    }

    #[inline]
    fn observe(&mut self, les_ns: &[u64], d: u64) {
        let i = les_ns.partition_point(|&le| le < d);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum_ns += u128::from(d);
    }
}

#[derive(Clone, Copy)]
struct Limits {
    exact: usize,
    overflow: usize,
}

/// Finds the record's series, creating it under the cap, else folds into the
/// overflow series, else into the catch-all. `h` is `p.hash()`. Returns
/// (series, folded).
#[allow(clippy::too_many_arguments)]
fn upsert<P: Probe, S>(
    fam: &mut Family<P::Key, S>,
    eps: &mut EpTable,
    rs: &RandomState,
    lim: Limits,
    p: P,
    h: u64,
    now_ns: u64,
    stats: impl Fn() -> S,
) -> (u32, bool) {
    if let Some(id) = fam.find(h, |k| p.matches(k)) {
        return (id, false);
    }
    if fam.count(Kind::Exact) < lim.exact {
        return (fam.insert(h, Kind::Exact, p.make(eps), stats(), now_ns), false);
    }
    let o = p.overflowed();
    let h = o.hash(rs);
    if let Some(id) = fam.find(h, |k| o.matches(k)) {
        return (id, true);
    }
    if fam.count(Kind::Overflow) < lim.overflow {
        return (fam.insert(h, Kind::Overflow, o.make(eps), stats(), now_ns), true);
    }
    let c = p.catch_all();
    let h = c.hash(rs);
    if let Some(id) = fam.find(h, |k| c.matches(k)) {
        return (id, true);
    }
    (fam.insert(h, Kind::CatchAll, c.make(eps), stats(), now_ns), true)
}

fn touch<K, S>(fam: &mut Family<K, S>, id: u32, now_ns: u64) -> Option<&mut S> {
    let e = fam.get_mut(id)?;
    e.last_ns = e.last_ns.max(now_ns);
    Some(&mut e.stats)
}

/// Series counts per family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SeriesCounts {
    pub entity: usize,
    pub entity_histogram: usize,
    pub topology: usize,
    pub topology_histogram: usize,
}

pub(crate) struct Metrics {
    rs: RandomState,
    eps: EpTable,
    lim: Limits,
    histograms: bool,
    les_ns: Vec<u64>,
    le_text: Vec<String>,
    entity: Family<EntityKey, EntityStats>,
    entity_hist: Family<EntityKey, PromHist>,
    topo: Family<TopoKey, TopoStats>,
    topo_hist: Family<TopoKey, PromHist>,
}

impl Metrics {
    /// `buckets_s`: sorted, positive, finite, distinct in nanoseconds.
    pub fn new(max_series: usize, max_overflow_series: usize, histograms: bool, buckets_s: &[f64]) -> Self {
        Metrics {
            rs: RandomState::new(),
            eps: EpTable::default(),
            lim: Limits { exact: max_series, overflow: max_overflow_series },
            histograms,
            les_ns: buckets_s.iter().map(|&s| seconds_to_ns(s)).collect(),
            le_text: buckets_s.iter().map(|s| s.to_string()).collect(),
            entity: Family::default(),
            entity_hist: Family::default(),
            topo: Family::default(),
            topo_hist: Family::default(),
        }
    }

    /// Returns whether the record was folded into an overflow series anywhere.
    /// `now` is when the series were last seen (the record's time, at most the clock).
    pub fn record(&mut self, r: &RequestRecord, client: &Endpoint, server: &Endpoint, edge: bool, now: u64) -> bool {
        let d = r.duration_ns;
        let port = u32::from(r.dst_port());
        let sh = EpRef::new(server, &self.rs, &self.eps);
        let mut folded = false;
        if r.side == Side::Server {
            let p = EntityProbe { proto: r.protocol, ep: sh, port, req: &r.endpoint, resp: Some(&r.status) };
            let prefix = p.prefix(&self.rs);
            let h = finish(prefix.clone(), p.resp);
            let (id, f) = upsert(&mut self.entity, &mut self.eps, &self.rs, self.lim, p, h, now, EntityStats::default);
            folded |= f;
            if let Some(s) = touch(&mut self.entity, id, now) {
                if r.is_slow {
                    s.slow += 1;
                } else {
                    s.fast += 1;
                }
                s.duration_ns += u128::from(d);
                s.send_bytes = s.send_bytes.saturating_add(r.response_bytes);
                s.receive_bytes = s.receive_bytes.saturating_add(r.request_bytes);
            }
            if self.histograms {
                let p = EntityProbe { resp: None, ..p };
                let h = finish(prefix, None);
                let n = self.les_ns.len();
                let (id, f) =
                    upsert(&mut self.entity_hist, &mut self.eps, &self.rs, self.lim, p, h, now, || PromHist::new(n));
                folded |= f;
                if let Some(h) = touch(&mut self.entity_hist, id, now) {
                    h.observe(&self.les_ns, d);
                }
            }
        }
        if edge {
            let ch = EpRef::new(client, &self.rs, &self.eps);
            let p = TopoProbe { proto: r.protocol, src: ch, dst: sh, port, status: Some(&r.status) };
            let prefix = p.prefix(&self.rs);
            let h = finish(prefix.clone(), p.status);
            let (id, f) = upsert(&mut self.topo, &mut self.eps, &self.rs, self.lim, p, h, now, TopoStats::default);
            folded |= f;
            if let Some(s) = touch(&mut self.topo, id, now) {
                s.count += 1;
                s.duration_ns += u128::from(d);
                s.request_bytes = s.request_bytes.saturating_add(r.request_bytes);
                s.response_bytes = s.response_bytes.saturating_add(r.response_bytes);
            }
            if self.histograms {
                let p = TopoProbe { status: None, ..p };
                let h = finish(prefix, None);
                let n = self.les_ns.len();
                let (id, f) =
                    upsert(&mut self.topo_hist, &mut self.eps, &self.rs, self.lim, p, h, now, || PromHist::new(n));
                folded |= f;
                if let Some(h) = touch(&mut self.topo_hist, id, now) {
                    h.observe(&self.les_ns, d);
                }
            }
        }
        folded
    }

    /// Drops series untouched since `cutoff_ns`.
    pub fn expire(&mut self, cutoff_ns: u64) {
        self.entity.retain(|e| e.last_ns >= cutoff_ns, drop);
        self.entity_hist.retain(|e| e.last_ns >= cutoff_ns, drop);
        self.topo.retain(|e| e.last_ns >= cutoff_ns, drop);
        self.topo_hist.retain(|e| e.last_ns >= cutoff_ns, drop);
        self.eps.collect();
    }

    pub fn series(&self) -> SeriesCounts {
        SeriesCounts {
            entity: self.entity.len(),
            entity_histogram: self.entity_hist.len(),
            topology: self.topo.len(),
            topology_histogram: self.topo_hist.len(),
        }
    }

    pub fn label_sets(&self) -> usize {
        self.eps.len()
    }

    pub fn render(&self, out: &mut String) {
        let mut l = String::new();

        header(out, ENTITY_TOTAL, "Requests served, by the server's endpoint and response (server side).", "counter");
        for e in self.entity.iter() {
            entity_labels(&mut l, &e.key);
            if e.stats.fast > 0 {
                sample(out, ENTITY_TOTAL, &l, ",is_slow=\"false\"", e.stats.fast);
            }
            if e.stats.slow > 0 {
                sample(out, ENTITY_TOTAL, &l, ",is_slow=\"true\"", e.stats.slow);
            }
        }
        header(out, ENTITY_DURATION, "Time spent serving requests, in nanoseconds (server side).", "counter");
        for e in self.entity.iter() {
            entity_labels(&mut l, &e.key);
            sample(out, ENTITY_DURATION, &l, "", e.stats.duration_ns);
        }
        header(out, ENTITY_SEND, "Response bytes the server sent (server side).", "counter");
        for e in self.entity.iter() {
            entity_labels(&mut l, &e.key);
            sample(out, ENTITY_SEND, &l, "", e.stats.send_bytes);
        }
        header(out, ENTITY_RECEIVE, "Request bytes the server received (server side).", "counter");
        for e in self.entity.iter() {
            entity_labels(&mut l, &e.key);
            sample(out, ENTITY_RECEIVE, &l, "", e.stats.receive_bytes);
        }
        if self.histograms {
            header(out, ENTITY_HISTOGRAM, "Latency of requests served, in seconds (server side).", "histogram");
            for e in self.entity_hist.iter() {
                entity_labels(&mut l, &e.key);
                self.histogram(out, ENTITY_HISTOGRAM, &l, &e.stats);
            }
        }

        header(out, TOPOLOGY_TOTAL, "Requests between workloads (client side, one count per call).", "counter");
        for e in self.topo.iter() {
            topo_labels(&mut l, &e.key);
            sample(out, TOPOLOGY_TOTAL, &l, "", e.stats.count);
        }
        header(out, TOPOLOGY_DURATION, "Time spent in requests between workloads, in nanoseconds.", "counter");
        for e in self.topo.iter() {
            topo_labels(&mut l, &e.key);
            sample(out, TOPOLOGY_DURATION, &l, "", e.stats.duration_ns);
        }
        header(out, TOPOLOGY_REQUEST_BYTES, "Request bytes sent from client to server.", "counter");
        for e in self.topo.iter() {
            topo_labels(&mut l, &e.key);
            sample(out, TOPOLOGY_REQUEST_BYTES, &l, "", e.stats.request_bytes);
        }
        header(out, TOPOLOGY_RESPONSE_BYTES, "Response bytes sent from server to client.", "counter");
        for e in self.topo.iter() {
            topo_labels(&mut l, &e.key);
            sample(out, TOPOLOGY_RESPONSE_BYTES, &l, "", e.stats.response_bytes);
        }
        if self.histograms {
            header(out, TOPOLOGY_HISTOGRAM, "Latency of requests between workloads, in seconds.", "histogram");
            for e in self.topo_hist.iter() {
                topo_labels(&mut l, &e.key);
                self.histogram(out, TOPOLOGY_HISTOGRAM, &l, &e.stats);
            }
        }
    }

    fn histogram(&self, out: &mut String, name: &str, labels: &str, h: &PromHist) {
        let mut cum = 0u64;
        let mut le = String::new();
        for (i, text) in self.le_text.iter().enumerate() {
            cum += h.counts.get(i).copied().unwrap_or(0);
            le.clear();
            le.push_str(",le=\"");
            le.push_str(text);
            le.push('"');
            sample_suffixed(out, name, "_bucket", labels, &le, cum);
        }
        sample_suffixed(out, name, "_bucket", labels, ",le=\"+Inf\"", h.count);
        sample_suffixed(out, name, "_sum", labels, "", h.sum_ns as f64 / 1e9);
        sample_suffixed(out, name, "_count", labels, "", h.count);
    }
}

pub(crate) fn seconds_to_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, extra: &str, v: impl Display) {
    sample_suffixed(out, name, "", labels, extra, v);
}

fn sample_suffixed(out: &mut String, name: &str, suffix: &str, labels: &str, extra: &str, v: impl Display) {
    let _ = writeln!(out, "{name}{suffix}{{{labels}{extra}}} {v}");
}

fn push_port(out: &mut String, name: &str, port: u32) {
    if port == OVERFLOW_PORT {
        push_label(out, name, OVERFLOW);
    } else {
        let _ = write!(out, ",{name}=\"{port}\"");
    }
}

fn entity_labels(l: &mut String, k: &EntityKey) {
    l.clear();
    push_label(l, "protocol", k.proto.name());
    l.push(',');
    l.push_str(&k.ep.entity);
    push_port(l, "port", k.port);
    push_label(l, "request_content", &k.req);
    if let Some(resp) = &k.resp {
        push_label(l, "response_content", resp);
    }
}

fn topo_labels(l: &mut String, k: &TopoKey) {
    l.clear();
    l.push_str(&k.src.src);
    l.push(',');
    l.push_str(&k.dst.dst);
    push_port(l, "dst_port", k.port);
    push_label(l, "protocol", k.proto.name());
    if let Some(status) = &k.status {
        push_label(l, "status_code", status);
    }
}
