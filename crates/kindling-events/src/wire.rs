//! Decoding of the kernel's ring-buffer records (`crates/kindling-probe/src/bpf/kindling.h`).
//!
//! The layout constants below mirror the C structs; `kindling-probe` asserts at
//! compile time that they equal the offsets of the types libbpf-cargo generates
//! from the header, so a change on one side without the other does not build.
//! Decoding never panics: every read is bounds-checked and bad input is an error.

use crate::model::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use thiserror::Error;

/// `KD_WIRE_VERSION` in kindling.h.
pub const WIRE_VERSION: u32 = 1;
pub const COMM_LEN: usize = 16;
pub const MAX_PAYLOAD: usize = 4096;

/// `enum kd_event_kind`.
pub mod kind {
    pub const SOCK: u32 = 1;
    pub const CONNECT_DONE: u32 = 2;
    pub const EXEC: u32 = 3;
    pub const EXIT: u32 = 4;
    pub const FORK: u32 = 5;
    pub const RENAME: u32 = 6;
}

/// `enum kd_drop_reason`, with the label each reason has in telemetry
/// (indices 5-9 belong to the tcp module, 10-19 to the sched module; an
/// empty name is an index not in use).
pub const DROP_REASONS: [&str; 20] = [
    "ringbuf_full",
    "inflight_map_full",
    "connect_map_full",
    "pid_filter_full",
    "mmsg_truncated",
    // tcp module
    "tcp_drop_rate_limited",
    "tcp_map_full",
    "",
    "",
    "",
    // sched module
    "sched_ringbuf_full",
    "sched_thread_map_full",
    "sched_stack_lost",
    "sched_busy",
    "sched_go_params",
    "sched_go_unreadable",
    "sched_go_inject_truncated",
    "",
    "",
    "",
];

/// `struct kd_header` field offsets.
pub mod header {
    pub const TS_NS: usize = 0;
    pub const KIND: usize = 8;
    pub const TGID: usize = 12;
    pub const TID: usize = 16;
    pub const CPU: usize = 20;
    pub const COMM: usize = 24;
    pub const SIZE: usize = 40;
}

/// `struct kd_sock_event` field offsets.
pub mod sock {
    pub const LATENCY_NS: usize = 40;
    pub const RET: usize = 48;
    pub const SOCK_ID: usize = 56;
    pub const FD: usize = 64;
    pub const SYSCALL: usize = 68;
    pub const FAMILY: usize = 70;
    pub const PROTO: usize = 71;
    pub const SADDR: usize = 72;
    pub const DADDR: usize = 88;
    pub const SPORT: usize = 104;
    pub const DPORT: usize = 106;
    pub const MSG_INDEX: usize = 108;
    pub const BYTES: usize = 112;
    pub const PAYLOAD_LEN: usize = 116;
    pub const SIZE: usize = 120;
}

/// `struct kd_exec_event` field offsets.
pub mod exec {
    pub const PPID: usize = 40;
    pub const FILENAME_LEN: usize = 44;
    pub const ARGS_LEN: usize = 48;
    pub const FILENAME: usize = 56;
    pub const FILENAME_CAP: usize = 256;
    pub const ARGS: usize = 312;
    pub const ARGS_CAP: usize = 512;
    pub const SIZE: usize = 824;
}

/// `struct kd_exit_event` field offsets.
pub mod exit {
    pub const EXIT_CODE: usize = 40;
    pub const GROUP_DEAD: usize = 44;
    pub const SIZE: usize = 48;
}

/// `struct kd_fork_event` field offsets.
pub mod fork {
    pub const CHILD_TGID: usize = 40;
    pub const CHILD_TID: usize = 44;
    pub const SIZE: usize = 48;
}

/// `struct kd_rename_event` field offsets.
pub mod rename {
    pub const NEWCOMM: usize = 40;
    pub const SIZE: usize = 56;
}

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need} bytes its kind needs")]
    Truncated { len: usize, need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("unknown syscall id {0}")]
    UnknownSyscall(u16),
    #[error("unknown address family {0}")]
    UnknownFamily(u8),
    #[error("unknown transport protocol {0}")]
    UnknownProto(u8),
    #[error("payload length {claimed} exceeds the {available} bytes present")]
    BadPayloadLength { claimed: usize, available: usize },
}

/// Turns kernel records into events; knows how to map the kernel's monotonic
/// clock onto wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    /// realtime_ns = monotonic_ns + offset
    pub realtime_offset_ns: i64,
}

impl Decoder {
    pub fn new(realtime_offset_ns: i64) -> Decoder {
        Decoder { realtime_offset_ns }
    }

    fn wall(&self, mono: u64) -> u64 {
        (mono as i64).wrapping_add(self.realtime_offset_ns) as u64
    }

    pub fn decode(&self, buf: &[u8]) -> Result<Event, DecodeError> {
        need(buf, header::SIZE)?;
        let kind = u32_at(buf, header::KIND);
        let body = match kind {
            kind::SOCK | kind::CONNECT_DONE => EventBody::Socket(decode_sock(buf, kind)?),
            kind::EXEC => {
                need(buf, exec::SIZE)?;
                let flen = (u32_at(buf, exec::FILENAME_LEN) as usize).min(exec::FILENAME_CAP);
                let alen = (u32_at(buf, exec::ARGS_LEN) as usize).min(exec::ARGS_CAP);
                let filename = &buf[exec::FILENAME..exec::FILENAME + flen];
                let args = &buf[exec::ARGS..exec::ARGS + alen];
                EventBody::Exec(ExecEvent {
                    ppid: u32_at(buf, exec::PPID),
                    filename: String::from_utf8_lossy(filename).into_owned(),
                    args: split_nul(args),
                })
            }
            kind::EXIT => {
                need(buf, exit::SIZE)?;
                EventBody::Exit(ExitEvent {
                    exit_code: u32_at(buf, exit::EXIT_CODE) as i32,
                    group_dead: u32_at(buf, exit::GROUP_DEAD) != 0,
                })
            }
            kind::FORK => {
                need(buf, fork::SIZE)?;
                EventBody::Fork(ForkEvent { child_pid: u32_at(buf, fork::CHILD_TGID) })
            }
            kind::RENAME => {
                need(buf, rename::SIZE)?;
                EventBody::Rename(RenameEvent {
                    new_comm: Comm::from_bytes(&buf[rename::NEWCOMM..rename::NEWCOMM + COMM_LEN]),
                })
            }
            20..=39 => EventBody::Tcp(crate::tcp::decode(buf, kind)?),
            40..=59 => EventBody::Sched(crate::sched::decode(buf, kind, self)?),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        Ok(Event {
            ts_ns: self.wall(u64_at(buf, header::TS_NS)),
            pid: u32_at(buf, header::TGID),
            tid: u32_at(buf, header::TID),
            cpu: u32_at(buf, header::CPU),
            comm: Comm::from_bytes(&buf[header::COMM..header::COMM + COMM_LEN]),
            body,
        })
    }
}

fn decode_sock(buf: &[u8], kind: u32) -> Result<SocketEvent, DecodeError> {
    need(buf, sock::SIZE)?;
    let sys_id = u16_at(buf, sock::SYSCALL);
    let syscall = syscall_from_id(sys_id).ok_or(DecodeError::UnknownSyscall(sys_id))?;
    let family = buf[sock::FAMILY];
    let proto = match buf[sock::PROTO] {
        IPPROTO_TCP => L4Proto::Tcp,
        IPPROTO_UDP => L4Proto::Udp,
        p => return Err(DecodeError::UnknownProto(p)),
    };
    let src = addr(family, &buf[sock::SADDR..sock::SADDR + 16], u16_at(buf, sock::SPORT))?;
    let dst = addr(family, &buf[sock::DADDR..sock::DADDR + 16], u16_at(buf, sock::DPORT))?;
    let plen = u32_at(buf, sock::PAYLOAD_LEN) as usize;
    let available = buf.len() - sock::SIZE;
    if plen > available || plen > MAX_PAYLOAD {
        return Err(DecodeError::BadPayloadLength { claimed: plen, available });
    }
    let payload = buf[sock::SIZE..sock::SIZE + plen].to_vec();
    let op = if kind == kind::CONNECT_DONE { SocketOp::ConnectDone } else { syscall.op() };
    Ok(SocketEvent {
        op,
        syscall,
        fd: u32_at(buf, sock::FD) as i32,
        sock_id: u64_at(buf, sock::SOCK_ID),
        proto,
        src,
        dst,
        bytes: u32_at(buf, sock::BYTES),
        latency_ns: u64_at(buf, sock::LATENCY_NS),
        ret: u64_at(buf, sock::RET) as i64,
        msg_index: u32_at(buf, sock::MSG_INDEX),
        payload,
        role: Role::Unknown,
    })
}

pub(crate) fn addr(family: u8, raw: &[u8], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&raw[..16]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        f => return Err(DecodeError::UnknownFamily(f)),
    };
    Ok(canonical_addr(SocketAddr::new(ip, port)))
}

/// `enum kd_syscall` id -> syscall.
pub fn syscall_from_id(id: u16) -> Option<Syscall> {
    Syscall::ALL.get((id as usize).checked_sub(1)?).copied()
}

/// syscall -> `enum kd_syscall` id.
pub fn syscall_id(s: Syscall) -> u16 {
    Syscall::ALL.iter().position(|&x| x == s).map(|i| i as u16 + 1).unwrap_or(0)
}

fn split_nul(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

pub(crate) fn need(buf: &[u8], n: usize) -> Result<(), DecodeError> {
    if buf.len() < n {
        Err(DecodeError::Truncated { len: buf.len(), need: n })
    } else {
        Ok(())
    }
}

// Callers check the length first (`need`), so these index within bounds.
pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
pub(crate) fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// Encodes an event into the kernel's wire format: the inverse of `decode`,
/// for tests, benchmarks and synthetic captures. Snapshot events have no wire
/// form and give `None`.
pub fn encode(ev: &Event, decoder: &Decoder) -> Option<Vec<u8>> {
    let mono = (ev.ts_ns as i64).wrapping_sub(decoder.realtime_offset_ns) as u64;
    let (kind_id, size) = match &ev.body {
        // Module events encode themselves (below, by early return).
        EventBody::Socket(s) if s.op == SocketOp::ConnectDone => (kind::CONNECT_DONE, sock::SIZE),
        EventBody::Socket(_) => (kind::SOCK, sock::SIZE),
        EventBody::Exec(_) => (kind::EXEC, exec::SIZE),
        EventBody::Exit(_) => (kind::EXIT, exit::SIZE),
        EventBody::Fork(_) => (kind::FORK, fork::SIZE),
        EventBody::Rename(_) => (kind::RENAME, rename::SIZE),
        EventBody::Tcp(t) => return crate::tcp::encode(ev, t, mono),
        EventBody::Sched(t) => return crate::sched::encode(ev, t, mono),
        EventBody::ProcessSnapshot(_) | EventBody::SocketSnapshot(_) => return None,
    };
    let mut b = vec![0u8; size];
    put(&mut b, header::TS_NS, &mono.to_le_bytes());
    put(&mut b, header::KIND, &kind_id.to_le_bytes());
    put(&mut b, header::TGID, &ev.pid.to_le_bytes());
    put(&mut b, header::TID, &ev.tid.to_le_bytes());
    put(&mut b, header::CPU, &ev.cpu.to_le_bytes());
    put(&mut b, header::COMM, ev.comm.as_bytes());
    match &ev.body {
        EventBody::Socket(s) => {
            put(&mut b, sock::LATENCY_NS, &s.latency_ns.to_le_bytes());
            put(&mut b, sock::RET, &s.ret.to_le_bytes());
            put(&mut b, sock::SOCK_ID, &s.sock_id.to_le_bytes());
            put(&mut b, sock::FD, &s.fd.to_le_bytes());
            put(&mut b, sock::SYSCALL, &syscall_id(s.syscall).to_le_bytes());
            let v6 = s.src.is_ipv6() || s.dst.is_ipv6();
            b[sock::FAMILY] = if v6 { AF_INET6 } else { AF_INET };
            b[sock::PROTO] = match s.proto {
                L4Proto::Tcp => IPPROTO_TCP,
                L4Proto::Udp => IPPROTO_UDP,
            };
            put(&mut b, sock::SADDR, &ip_bytes(s.src.ip(), v6));
            put(&mut b, sock::DADDR, &ip_bytes(s.dst.ip(), v6));
            put(&mut b, sock::SPORT, &s.src.port().to_le_bytes());
            put(&mut b, sock::DPORT, &s.dst.port().to_le_bytes());
            put(&mut b, sock::MSG_INDEX, &s.msg_index.to_le_bytes());
            put(&mut b, sock::BYTES, &s.bytes.to_le_bytes());
            let plen = s.payload.len().min(MAX_PAYLOAD);
            put(&mut b, sock::PAYLOAD_LEN, &(plen as u32).to_le_bytes());
            b.extend_from_slice(&s.payload[..plen]);
        }
        EventBody::Exec(e) => {
            put(&mut b, exec::PPID, &e.ppid.to_le_bytes());
            let f = &e.filename.as_bytes()[..e.filename.len().min(exec::FILENAME_CAP - 1)];
            put(&mut b, exec::FILENAME_LEN, &(f.len() as u32).to_le_bytes());
            put(&mut b, exec::FILENAME, f);
            let mut args = Vec::new();
            for a in &e.args {
                args.extend_from_slice(a.as_bytes());
                args.push(0);
            }
            args.truncate(exec::ARGS_CAP);
            put(&mut b, exec::ARGS_LEN, &(args.len() as u32).to_le_bytes());
            put(&mut b, exec::ARGS, &args);
        }
        EventBody::Exit(e) => {
            put(&mut b, exit::EXIT_CODE, &e.exit_code.to_le_bytes());
            put(&mut b, exit::GROUP_DEAD, &(e.group_dead as u32).to_le_bytes());
        }
        EventBody::Fork(f) => {
            put(&mut b, fork::CHILD_TGID, &f.child_pid.to_le_bytes());
            put(&mut b, fork::CHILD_TID, &f.child_pid.to_le_bytes());
        }
        EventBody::Rename(r) => put(&mut b, rename::NEWCOMM, r.new_comm.as_bytes()),
        EventBody::Tcp(_) | EventBody::Sched(_) | EventBody::ProcessSnapshot(_) | EventBody::SocketSnapshot(_) => {}
    }
    Some(b)
}

pub(crate) fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

pub(crate) fn ip_bytes(ip: IpAddr, v6: bool) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) if v6 => out = v4.to_ipv6_mapped().octets(),
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6a) => out = v6a.octets(),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_socket(payload: &[u8]) -> Event {
        Event {
            ts_ns: 1_700_000_000_000_000_000,
            pid: 42,
            tid: 43,
            cpu: 1,
            comm: Comm::from("nginx"),
            body: EventBody::Socket(SocketEvent {
                op: SocketOp::Recv,
                syscall: Syscall::Recvfrom,
                fd: 7,
                sock_id: 0xffff_8880_1234_5678,
                proto: L4Proto::Tcp,
                src: "127.0.0.1:80".parse().unwrap(),
                dst: "127.0.0.1:51234".parse().unwrap(),
                bytes: payload.len() as u32,
                latency_ns: 1234,
                ret: payload.len() as i64,
                msg_index: 0,
                payload: payload.to_vec(),
                role: Role::Unknown,
            }),
        }
    }

    #[test]
    fn socket_event_round_trips() {
        let d = Decoder::new(1_000);
        let ev = sample_socket(b"GET / HTTP/1.1\r\n\r\n");
        let raw = encode(&ev, &d).unwrap();
        assert_eq!(raw.len(), sock::SIZE + 18);
        assert_eq!(d.decode(&raw).unwrap(), ev);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let d = Decoder::new(0);
        let mut ev = sample_socket(b"");
        if let EventBody::Socket(s) = &mut ev.body {
            s.src = "[::1]:8080".parse().unwrap();
            s.dst = "[fe80::1]:40000".parse().unwrap();
        }
        assert_eq!(d.decode(&encode(&ev, &d).unwrap()).unwrap(), ev);
        // A v4-mapped peer of a v6 socket comes out as IPv4.
        let mut raw = encode(&ev, &d).unwrap();
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        raw[sock::DADDR..sock::DADDR + 16].copy_from_slice(&mapped.octets());
        let s = d.decode(&raw).unwrap();
        assert_eq!(s.as_socket().unwrap().dst, "10.0.0.1:40000".parse().unwrap());
    }

    #[test]
    fn exec_event_round_trips() {
        let d = Decoder::new(0);
        let ev = Event {
            ts_ns: 5,
            pid: 10,
            tid: 10,
            cpu: 0,
            comm: Comm::from("python3"),
            body: EventBody::Exec(ExecEvent {
                ppid: 1,
                filename: "/usr/bin/python3".into(),
                args: vec!["python3".into(), "orders_api.py".into()],
            }),
        };
        assert_eq!(d.decode(&encode(&ev, &d).unwrap()).unwrap(), ev);
    }

    #[test]
    fn bad_records_are_errors() {
        let d = Decoder::new(0);
        assert!(matches!(d.decode(&[0u8; 10]), Err(DecodeError::Truncated { .. })));
        let mut raw = encode(&sample_socket(b"abc"), &d).unwrap();
        raw[sock::PAYLOAD_LEN] = 200;
        assert!(matches!(d.decode(&raw), Err(DecodeError::BadPayloadLength { .. })));
        raw[header::KIND] = 99;
        assert_eq!(d.decode(&raw), Err(DecodeError::UnknownKind(99)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = Decoder::new(0).decode(&bytes);
        }

        /// Valid records with random field values and a mutated byte never panic
        /// and, unmutated, round-trip exactly.
        #[test]
        fn valid_records_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..600),
                                    fd in any::<i32>(), ret in any::<i64>(), lat in any::<u64>(),
                                    pos in any::<usize>(), byte in any::<u8>()) {
            let d = Decoder::new(0);
            let mut ev = sample_socket(&[]);
            if let EventBody::Socket(s) = &mut ev.body {
                s.fd = fd; s.ret = ret; s.latency_ns = lat;
                s.payload = payload.clone();
            }
            let raw = encode(&ev, &d).unwrap();
            prop_assert_eq!(d.decode(&raw).unwrap(), ev);
            let mut bad = raw.clone();
            let i = pos % bad.len();
            bad[i] = byte;
            let _ = d.decode(&bad);
        }
    }
}
