//! Events of the tcp module (tcp.bpf.c): TCP health per connection.
//! Wire kinds 20-39, all carried by `struct kd_tcp_event`.

use crate::json::JsonEvent;
use crate::model::{format_addr, Event, EventBody, L4Proto};
use crate::wire::{addr, header, ip_bytes, need, put, u16_at, u32_at, u64_at, DecodeError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// `enum kd_event_kind`, tcp range.
pub mod kind {
    pub const RETRANSMIT: u32 = 20;
    pub const RESET: u32 = 21;
    pub const RTT: u32 = 22;
    pub const DROP: u32 = 23;
    pub const CONNECT: u32 = 24;
    pub const CLOSE: u32 = 25;
}

/// `struct kd_tcp_event` field offsets.
pub mod layout {
    pub const SOCK_ID: usize = 40;
    pub const SADDR: usize = 48;
    pub const DADDR: usize = 64;
    pub const SPORT: usize = 80;
    pub const DPORT: usize = 82;
    pub const FAMILY: usize = 84;
    pub const PROTO: usize = 85;
    pub const STATE: usize = 86;
    pub const FLAGS: usize = 87;
    pub const A: usize = 88;
    pub const B: usize = 92;
    pub const C: usize = 96;
    pub const D: usize = 104;
    pub const E: usize = 112;
    pub const SIZE: usize = 120;
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpEvent {
    /// The kernel socket (joins with socket events); 0 when a dropped packet had none.
    pub sock_id: u64,
    pub proto: L4Proto,
    /// The socket's local end; for drops, the packet's sender.
    pub src: SocketAddr,
    /// The socket's remote end; for drops, the packet's destination.
    pub dst: SocketAddr,
    /// Kernel TCP state (1 established, 2 syn_sent, ...).
    pub state: u8,
    pub kind: TcpKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TcpKind {
    /// Segments retransmitted (counted like the kernel's TcpRetransSegs).
    Retransmit { segments: u32 },
    /// A reset sent by this host (`sent`) or received from the peer.
    Reset { sent: bool },
    /// A sample of the connection's smoothed RTT (at most one per second).
    Rtt { srtt_us: u32, rttvar_us: u32, cwnd: u32, total_retrans: u32 },
    /// A packet the kernel dropped, with its drop reason.
    Drop { reason: u32, reason_name: String },
    /// The end of a connection attempt: `error` 0 is success, else the errno
    /// (111 refused, 110 timed out, 113/101 unreachable); latency from SYN sent.
    Connect { error: u32, latency_ns: u64 },
    /// A connection's summary when it closed.
    Close { srtt_us: u32, total_retrans: u32, bytes_acked: u64, bytes_received: u64, lifetime_ns: u64 },
}

impl TcpKind {
    pub fn name(&self) -> &'static str {
        match self {
            TcpKind::Retransmit { .. } => "tcp_retransmit",
            TcpKind::Reset { .. } => "tcp_reset",
            TcpKind::Rtt { .. } => "tcp_rtt",
            TcpKind::Drop { .. } => "tcp_drop",
            TcpKind::Connect { .. } => "tcp_connect",
            TcpKind::Close { .. } => "tcp_close",
        }
    }
}

/// How a failed connect failed.
pub fn connect_result(error: u32) -> &'static str {
    match error {
        0 => "ok",
        111 => "refused",
        110 => "timed_out",
        113 | 101 => "unreachable",
        104 => "reset",
        _ => "failed",
    }
}

impl TcpEvent {
    pub fn json_fields(&self, j: &mut JsonEvent<'_>) {
        let v = |x: u64| serde_json::Value::from(x);
        j.proto = Some(self.proto.name());
        j.family = Some(if self.src.is_ipv6() || self.dst.is_ipv6() { "ipv6" } else { "ipv4" });
        j.src = Some(format_addr(&self.src));
        j.dst = Some(format_addr(&self.dst));
        j.sock_id = Some(self.sock_id);
        j.state = Some(self.state);
        let m = &mut j.extra;
        match &self.kind {
            TcpKind::Retransmit { segments } => {
                m.insert("segments".into(), v(*segments as u64));
            }
            TcpKind::Reset { sent } => {
                m.insert("direction".into(), (if *sent { "sent" } else { "received" }).into());
            }
            TcpKind::Rtt { srtt_us, rttvar_us, cwnd, total_retrans } => {
                m.insert("srtt_us".into(), v(*srtt_us as u64));
                m.insert("rttvar_us".into(), v(*rttvar_us as u64));
                m.insert("cwnd".into(), v(*cwnd as u64));
                m.insert("total_retrans".into(), v(*total_retrans as u64));
            }
            TcpKind::Drop { reason, reason_name } => {
                m.insert("reason".into(), reason_name.clone().into());
                m.insert("reason_code".into(), v(*reason as u64));
            }
            TcpKind::Connect { error, latency_ns } => {
                m.insert("result".into(), connect_result(*error).into());
                m.insert("errno".into(), v(*error as u64));
                j.latency_ns = Some(*latency_ns);
            }
            TcpKind::Close { srtt_us, total_retrans, bytes_acked, bytes_received, lifetime_ns } => {
                m.insert("srtt_us".into(), v(*srtt_us as u64));
                m.insert("total_retrans".into(), v(*total_retrans as u64));
                m.insert("bytes_acked".into(), v(*bytes_acked));
                m.insert("bytes_received".into(), v(*bytes_received));
                m.insert("lifetime_ns".into(), v(*lifetime_ns));
            }
        }
    }
}

/// The kernel's names of `enum skb_drop_reason`, which vary by version: read
/// once from the kfree_skb tracepoint's format (its `__print_symbolic` list).
static DROP_REASON_NAMES: OnceLock<HashMap<u32, String>> = OnceLock::new();

/// Loads the drop-reason names from a tracefs root (call before decoding live events).
pub fn load_drop_reason_names(tracefs: &str) {
    let text = std::fs::read_to_string(format!("{tracefs}/events/skb/kfree_skb/format")).unwrap_or_default();
    let _ = DROP_REASON_NAMES.set(parse_drop_reason_names(&text));
}

/// `{ 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, ...` -> code -> name.
pub fn parse_drop_reason_names(format: &str) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Some(start) = format.find("__print_symbolic(REC->reason") else { return out };
    let mut rest = &format[start..];
    while let Some(open) = rest.find("{ ") {
        rest = &rest[open + 2..];
        let Some((num, tail)) = rest.split_once(',') else { break };
        let Some(q1) = tail.find('"') else { break };
        let Some(q2) = tail[q1 + 1..].find('"') else { break };
        if let Ok(code) = num.trim().parse::<u32>() {
            out.insert(code, tail[q1 + 1..q1 + 1 + q2].to_string());
        }
        rest = &tail[q1 + 1 + q2..];
    }
    out
}

fn drop_reason_name(code: u32) -> String {
    match DROP_REASON_NAMES.get().and_then(|m| m.get(&code)) {
        Some(n) => n.clone(),
        None => format!("REASON_{code}"),
    }
}

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

pub fn decode(buf: &[u8], kind_id: u32) -> Result<TcpEvent, DecodeError> {
    use layout::*;
    need(buf, SIZE)?;
    let family = buf[FAMILY];
    let src = addr(family, &buf[SADDR..SADDR + 16], u16_at(buf, SPORT))?;
    let dst = addr(family, &buf[DADDR..DADDR + 16], u16_at(buf, DPORT))?;
    let proto = match buf[PROTO] {
        IPPROTO_UDP => L4Proto::Udp,
        IPPROTO_TCP => L4Proto::Tcp,
        p => return Err(DecodeError::UnknownProto(p)),
    };
    let (a, b, c, d, e) = (u32_at(buf, A), u32_at(buf, B), u64_at(buf, C), u64_at(buf, D), u64_at(buf, E));
    let kind = match kind_id {
        kind::RETRANSMIT => TcpKind::Retransmit { segments: a },
        kind::RESET => TcpKind::Reset { sent: buf[FLAGS] & 1 != 0 },
        kind::RTT => TcpKind::Rtt { srtt_us: a, rttvar_us: b, cwnd: c as u32, total_retrans: d as u32 },
        kind::DROP => TcpKind::Drop { reason: a, reason_name: drop_reason_name(a) },
        kind::CONNECT => TcpKind::Connect { error: a, latency_ns: c },
        kind::CLOSE => TcpKind::Close { total_retrans: a, srtt_us: b, bytes_acked: c, bytes_received: d, lifetime_ns: e },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(TcpEvent { sock_id: u64_at(buf, SOCK_ID), proto, src, dst, state: buf[STATE], kind })
}

/// The inverse of `decode`, for tests and synthetic captures.
pub fn encode(ev: &Event, t: &TcpEvent, mono: u64) -> Option<Vec<u8>> {
    use layout::*;
    let EventBody::Tcp(_) = &ev.body else { return None };
    let mut b = vec![0u8; SIZE];
    let (kind_id, a, bb, c, d, e, flags) = match &t.kind {
        TcpKind::Retransmit { segments } => (kind::RETRANSMIT, *segments, 0, 0, 0, 0, 0),
        TcpKind::Reset { sent } => (kind::RESET, 0, 0, 0, 0, 0, *sent as u8),
        TcpKind::Rtt { srtt_us, rttvar_us, cwnd, total_retrans } => {
            (kind::RTT, *srtt_us, *rttvar_us, *cwnd as u64, *total_retrans as u64, 0, 0)
        }
        TcpKind::Drop { reason, .. } => (kind::DROP, *reason, 0, 0, 0, 0, 0),
        TcpKind::Connect { error, latency_ns } => (kind::CONNECT, *error, 0, *latency_ns, 0, 0, 0),
        TcpKind::Close { srtt_us, total_retrans, bytes_acked, bytes_received, lifetime_ns } => {
            (kind::CLOSE, *total_retrans, *srtt_us, *bytes_acked, *bytes_received, *lifetime_ns, 0)
        }
    };
    put(&mut b, header::TS_NS, &mono.to_le_bytes());
    put(&mut b, header::KIND, &kind_id.to_le_bytes());
    put(&mut b, header::TGID, &ev.pid.to_le_bytes());
    put(&mut b, header::TID, &ev.tid.to_le_bytes());
    put(&mut b, header::CPU, &ev.cpu.to_le_bytes());
    put(&mut b, header::COMM, ev.comm.as_bytes());
    put(&mut b, SOCK_ID, &t.sock_id.to_le_bytes());
    let v6 = t.src.is_ipv6() || t.dst.is_ipv6();
    b[FAMILY] = if v6 { 10 } else { 2 };
    b[PROTO] = if t.proto == L4Proto::Udp { IPPROTO_UDP } else { IPPROTO_TCP };
    put(&mut b, SADDR, &ip_bytes(t.src.ip(), v6));
    put(&mut b, DADDR, &ip_bytes(t.dst.ip(), v6));
    put(&mut b, SPORT, &t.src.port().to_le_bytes());
    put(&mut b, DPORT, &t.dst.port().to_le_bytes());
    b[STATE] = t.state;
    b[FLAGS] = flags;
    put(&mut b, A, &a.to_le_bytes());
    put(&mut b, B, &bb.to_le_bytes());
    put(&mut b, C, &c.to_le_bytes());
    put(&mut b, D, &d.to_le_bytes());
    put(&mut b, E, &e.to_le_bytes());
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Comm;
    use crate::wire::Decoder;

    fn ev(kind: TcpKind) -> Event {
        Event {
            ts_ns: 1_000,
            pid: 0,
            tid: 0,
            cpu: 1,
            comm: Comm::from("swapper/1"),
            body: EventBody::Tcp(TcpEvent {
                sock_id: 0xffff_8880_0000_1000,
                proto: L4Proto::Tcp,
                src: "10.77.0.2:5001".parse().unwrap(),
                dst: "10.77.0.1:40000".parse().unwrap(),
                state: 1,
                kind,
            }),
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let d = Decoder::new(0);
        for k in [
            TcpKind::Retransmit { segments: 3 },
            TcpKind::Reset { sent: true },
            TcpKind::Reset { sent: false },
            TcpKind::Rtt { srtt_us: 1200, rttvar_us: 300, cwnd: 10, total_retrans: 7 },
            TcpKind::Connect { error: 111, latency_ns: 55_000 },
            TcpKind::Close { srtt_us: 90, total_retrans: 2, bytes_acked: 1 << 20, bytes_received: 77, lifetime_ns: 9 },
        ] {
            let e = ev(k);
            let raw = crate::wire::encode(&e, &d).unwrap();
            assert_eq!(raw.len(), layout::SIZE);
            assert_eq!(d.decode(&raw).unwrap(), e);
        }
    }

    #[test]
    fn drop_reason_names_come_from_the_tracepoint_format() {
        let fmt = r#"print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 12, "NETFILTER_DROP" })"#;
        let m = parse_drop_reason_names(fmt);
        assert_eq!(m.get(&12).map(String::as_str), Some("NETFILTER_DROP"));
        assert_eq!(m.len(), 3);
        assert!(parse_drop_reason_names("garbage").is_empty());
        assert_eq!(connect_result(111), "refused");
        assert_eq!(connect_result(110), "timed_out");
    }
}
