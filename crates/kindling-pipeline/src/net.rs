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

/// Retransmits remembered per connection (the newest).
const RETRANS_KEPT: usize = 32;

#[derive(Default)]
struct ConnHealth {
    retransmits: VecDeque<(u64, u32)>,
    srtt_us: u32,
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
            TcpKind::Retransmit { segments } => {
                if c.retransmits.len() == RETRANS_KEPT {
                    c.retransmits.pop_front();
                }
                c.retransmits.push_back((ts, *segments));
            }
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
        let retransmits =
            c.retransmits.iter().filter(|(ts, _)| *ts >= start && *ts <= end).map(|(_, n)| *n).sum();
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
