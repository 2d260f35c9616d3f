//! TCP health joined with sockets and requests: which process and role a
//! kernel socket has (TCP events arrive without process context), and per
//! connection the recent retransmits and RTT, so each request record can say
//! what the network did while it was in flight.

use kindling_aggregate::TcpObservation;
use kindling_events::model::Role;
use kindling_events::tcp::{connect_result, TcpEvent, TcpKind};
use kindling_requests::TcpDuring;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Retransmit checkpoints remembered per connection (the newest).
const RETRANS_KEPT: usize = 64;

/// A connection's retransmits as a cumulative count over time: the count
/// during any window is cum(end) - cum(start), exact for windows that start
/// before the oldest checkpoint kept (cum is 0 then) or after it.
#[derive(Default)]
struct ConnHealth {
    /// (time, retransmitted segments so far), oldest first.
    checkpoints: VecDeque<(u64, u64)>,
    /// The newest checkpoint dropped from `checkpoints`.
    forgotten: Option<(u64, u64)>,
    total: u64,
    srtt_us: u32,
}

impl ConnHealth {
    fn add(&mut self, ts: u64, segments: u32) {
        self.total += segments as u64;
        if self.checkpoints.len() == RETRANS_KEPT {
            self.forgotten = self.checkpoints.pop_front();
        }
        self.checkpoints.push_back((ts, self.total));
    }

    /// Retransmitted segments up to time `t`.
    fn cum_at(&self, t: u64) -> u64 {
        match self.checkpoints.iter().rev().find(|(ts, _)| *ts <= t) {
            Some((_, cum)) => *cum,
            // Before the kept checkpoints: the newest forgotten one, if t is after it.
            None => self.forgotten.filter(|(ts, _)| *ts <= t).map_or(0, |(_, cum)| cum),
        }
    }
}

pub struct NetState {
    socks: FxHashMap<u64, (u32, Role)>,
    conns: FxHashMap<(SocketAddr, SocketAddr), ConnHealth>,
    /// Connections TCP saw close, forgotten a while later: the close
    /// syscall that completes their last request often comes after.
    closed: VecDeque<(u64, (SocketAddr, SocketAddr), u64)>,
    capacity: usize,
}

/// How long (event time) a closed connection's health stays joinable.
const CLOSED_KEPT_NS: u64 = 30_000_000_000;

/// The same key for both directions of a connection.
fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl NetState {
    pub fn new(capacity: usize) -> NetState {
        NetState { socks: FxHashMap::default(), conns: FxHashMap::default(), closed: VecDeque::new(), capacity }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// A socket syscall told us who uses `sock_id`.
    pub fn socket(&mut self, sock_id: u64, pid: u32, role: Role) {
        if self.socks.len() >= self.capacity && !self.socks.contains_key(&sock_id) {
            // Bounded: start over rather than grow (roles are relearnt on the next syscall).
            self.socks.clear();
        }
        self.socks.insert(sock_id, (pid, role));
    }

    pub fn pid_of(&self, sock_id: u64) -> Option<u32> {
        self.socks.get(&sock_id).map(|s| s.0)
    }

    pub fn role_of(&self, sock_id: u64) -> Option<Role> {
        self.socks.get(&sock_id).map(|s| s.1)
    }

    pub fn observe(&mut self, ts: u64, t: &TcpEvent) {
        if matches!(t.kind, TcpKind::Drop { .. } | TcpKind::Connect { .. }) {
            return;
        }
        if self.conns.len() >= self.capacity {
            self.conns.clear();
            self.closed.clear();
        }
        let c = self.conns.entry(key(t.src, t.dst)).or_default();
        match &t.kind {
            TcpKind::Retransmit { segments } => c.add(ts, *segments),
            TcpKind::Rtt { srtt_us, .. } => c.srtt_us = *srtt_us,
            TcpKind::Close { .. } => self.closed.push_back((ts, key(t.src, t.dst), t.sock_id)),
            _ => {}
        }
        while self.closed.front().is_some_and(|(at, _, _)| at + CLOSED_KEPT_NS <= ts) {
            if let Some((_, k, sock)) = self.closed.pop_front() {
                self.conns.remove(&k);
                self.socks.remove(&sock);
            }
        }
    }

    /// The network during a request on the connection src <-> dst.
    pub fn during(&self, src: &SocketAddr, dst: &SocketAddr, start: u64, end: u64) -> TcpDuring {
        let Some(c) = self.conns.get(&key(*src, *dst)) else { return TcpDuring::default() };
        let before = if start == 0 { 0 } else { c.cum_at(start - 1) };
        let retransmits = c.cum_at(end).saturating_sub(before).min(u32::MAX as u64) as u32;
        TcpDuring { retransmits, srtt_us: c.srtt_us }
    }
}

/// What a TCP event contributes to its edge's health.
pub fn observation(t: &TcpEvent) -> Option<TcpObservation> {
    Some(match &t.kind {
        TcpKind::Retransmit { segments } => TcpObservation::Retransmit { segments: *segments },
        TcpKind::Drop { reason_name, .. } => TcpObservation::Drop { reason: reason_name.clone() },
        TcpKind::Reset { sent } => TcpObservation::Reset { direction: if *sent { "sent" } else { "received" } },
        TcpKind::Rtt { srtt_us, .. } => TcpObservation::Rtt { srtt_us: *srtt_us },
        TcpKind::Connect { error, latency_ns } => {
            TcpObservation::Connect { result: connect_result(*error), latency_ns: *latency_ns }
        }
        TcpKind::Close { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmits_in_a_window_stay_exact_past_the_checkpoints_kept() {
        let mut c = ConnHealth::default();
        for i in 0..200u64 {
            c.add(1000 + i * 10, 2);
        }
        // A window covering everything (a long bulk request): all of them.
        assert_eq!(c.cum_at(u64::MAX) - c.cum_at(0), 400);
        // A recent window: exact.
        assert_eq!(c.cum_at(1000 + 199 * 10) - c.cum_at(1000 + 189 * 10), 20);
        assert_eq!(c.cum_at(999), 0);
    }
}
