//! Checks of the `kindling` module (kindling.bpf.c): socket syscalls with
//! their payload heads, connects, accepts, closes, and process lifecycle.

use super::workload::{payload, Conn, COMM, GRANDCHILD_EXIT};
use super::{Observed, Outcome};
use kindling_events::model::{Event, EventBody, L4Proto, SocketEvent, SocketOp, Syscall};
use std::net::SocketAddr;

/// Longest plausible syscall on an idle loopback (the retransmit wait is not a syscall).
const MAX_LATENCY_NS: u64 = 10_000_000_000;

/// Which end of a connection an event should come from.
#[derive(Clone, Copy)]
enum End {
    Client,
    Server,
}

impl End {
    fn addrs(self, c: &Conn) -> (SocketAddr, SocketAddr) {
        match self {
            End::Client => (c.client, c.server),
            End::Server => (c.server, c.client),
        }
    }
}

pub fn checks(obs: &Observed) -> Vec<Outcome> {
    let r = &obs.report;
    let mut out = Vec::new();
    let data: [(Syscall, &[u8], End); 10] = [
        (Syscall::Write, payload::WRITE, End::Client),
        (Syscall::Read, payload::WRITE, End::Server),
        (Syscall::Writev, b"KD:writev", End::Client),
        (Syscall::Readv, b"KD:writev", End::Server),
        (Syscall::Sendto, payload::SENDTO, End::Client),
        (Syscall::Recvfrom, payload::SENDTO, End::Server),
        (Syscall::Sendmsg, payload::SENDMSG, End::Client),
        (Syscall::Recvmsg, payload::SENDMSG, End::Server),
        // sendfile moves no user buffer: only its byte count.
        (Syscall::Sendfile, b"", End::Client),
        (Syscall::Read, payload::SENDFILE, End::Server),
    ];
    for (sys, head, end) in data {
        let want_len = if head.is_empty() { payload::SENDFILE.len() } else { head.len() };
        let (src, dst) = end.addrs(&r.tcp);
        let name = format!("{} {}", sys.name(), if head.is_empty() { "(bytes only)".into() } else { show(head) });
        out.push(Outcome::new(
            name,
            transfer(obs, sys, L4Proto::Tcp, src, Some(dst), head, want_len, None),
        ));
    }
    out.push(Outcome::new(
        "udp sendto with peer address",
        transfer(obs, Syscall::Sendto, L4Proto::Udp, r.udp_a, Some(r.udp_b), payload::UDP, payload::UDP.len(), None),
    ));
    out.push(Outcome::new(
        "udp recvfrom with peer address",
        transfer(obs, Syscall::Recvfrom, L4Proto::Udp, r.udp_b, Some(r.udp_a), payload::UDP, payload::UDP.len(), None),
    ));
    for (i, p) in payload::MMSG.iter().enumerate() {
        out.push(Outcome::new(
            format!("sendmmsg message {i}"),
            transfer(obs, Syscall::Sendmmsg, L4Proto::Udp, r.udp_a, Some(r.udp_b), p, p.len(), Some(i as u32)),
        ));
        out.push(Outcome::new(
            format!("recvmmsg message {i}"),
            transfer(obs, Syscall::Recvmmsg, L4Proto::Udp, r.udp_b, Some(r.udp_a), p, p.len(), Some(i as u32)),
        ));
    }
    out.push(Outcome::new("connect", connect(obs, &r.tcp)));
    out.push(Outcome::new("accept4", accepted(obs, Syscall::Accept4, &r.tcp)));
    out.push(Outcome::new("accept", accepted(obs, Syscall::Accept, &r.plain_accept)));
    out.push(Outcome::new("non-blocking connect completes", connect_done(obs, &r.nonblocking)));
    out.push(Outcome::new("refused connect", refused(obs, r.refused)));
    out.push(Outcome::new("close", closed(obs, &r.tcp)));
    match &r.tcp6 {
        Some(c) => out.push(Outcome::new(
            "ipv6 write",
            transfer(obs, Syscall::Sendto, L4Proto::Tcp, c.client, Some(c.server), payload::V6, payload::V6.len(), None),
        )),
        None => out.push(Outcome::not_applicable("ipv6", "no ::1 on this host")),
    }
    out.push(Outcome::new("fork", fork(obs)));
    out.push(Outcome::new("exec", exec(obs)));
    out.push(Outcome::new("exit", exit(obs)));
    out.push(Outcome::new("rename", rename(obs)));
    out
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// The workload's socket events.
fn sockets(obs: &Observed) -> impl Iterator<Item = (&Event, &SocketEvent)> {
    obs.of_workload().filter_map(|e| e.as_socket().map(|s| (e, s)))
}

/// What every socket event of the workload must satisfy.
fn sane(obs: &Observed, e: &Event, s: &SocketEvent) -> Result<(), String> {
    obs.sane_header(e)?;
    if e.comm.to_string_lossy() != COMM {
        return Err(format!("comm {:?}, expected {COMM:?}", e.comm.to_string_lossy()));
    }
    if e.tid == 0 {
        return Err("tid 0".into());
    }
    if s.latency_ns > MAX_LATENCY_NS {
        return Err(format!("latency {} ns", s.latency_ns));
    }
    if s.sock_id == 0 {
        return Err("no socket identity".into());
    }
    if s.fd < 0 {
        return Err(format!("fd {}", s.fd));
    }
    Ok(())
}

/// A send or receive of `head` (a prefix of the payload) and `len` bytes on
/// the socket `src` (peer `dst`), message `index` of an mmsg call.
#[allow(clippy::too_many_arguments)]
fn transfer(
    obs: &Observed,
    sys: Syscall,
    proto: L4Proto,
    src: SocketAddr,
    dst: Option<SocketAddr>,
    head: &[u8],
    len: usize,
    index: Option<u32>,
) -> Result<String, String> {
    let candidates: Vec<_> = sockets(obs)
        .filter(|(_, s)| s.syscall == sys && s.src == src && s.proto == proto)
        .filter(|(_, s)| index.is_none_or(|i| s.msg_index == i))
        .collect();
    if candidates.is_empty() {
        return Err(format!("no {} event on {src}", sys.name()));
    }
    let Some((e, s)) = candidates.iter().find(|(_, s)| s.payload.starts_with(head) && s.bytes as usize == len) else {
        let (_, s) = candidates[0];
        return Err(format!(
            "{} event on {src} has {} bytes and head {}, expected {len} and {}",
            sys.name(),
            s.bytes,
            show(&s.payload),
            show(head)
        ));
    };
    sane(obs, e, s)?;
    if let Some(d) = dst {
        if s.dst != d {
            return Err(format!("peer {} instead of {d}", s.dst));
        }
    }
    if index.is_none() && s.ret != len as i64 {
        return Err(format!("returned {} for {len} bytes", s.ret));
    }
    let op = if matches!(s.op, SocketOp::Send) { "sent" } else { "received" };
    Ok(format!("{op} {} bytes {} -> {}, {} us", s.bytes, s.src, s.dst, s.latency_ns / 1000))
}

fn connect(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, s) = sockets(obs)
        .find(|(_, s)| s.op == SocketOp::Connect && s.src == c.client)
        .ok_or_else(|| format!("no connect event from {}", c.client))?;
    sane(obs, e, s)?;
    if s.ret != 0 || s.dst != c.server {
        return Err(format!("connect to {} returned {}, expected {} and 0", s.dst, s.ret, c.server));
    }
    Ok(format!("{} -> {}, {} us", s.src, s.dst, s.latency_ns / 1000))
}

fn accepted(obs: &Observed, sys: Syscall, c: &Conn) -> Result<String, String> {
    let (e, s) = sockets(obs)
        .find(|(_, s)| s.syscall == sys && s.src == c.server && s.dst == c.client)
        .ok_or_else(|| format!("no {} event for {} -> {}", sys.name(), c.client, c.server))?;
    sane(obs, e, s)?;
    if s.ret < 0 || s.ret as i32 != s.fd {
        return Err(format!("returned {} but reports fd {}", s.ret, s.fd));
    }
    Ok(format!("fd {} for {} -> {}", s.fd, s.dst, s.src))
}

fn connect_done(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (_, call) = sockets(obs)
        .find(|(_, s)| s.op == SocketOp::Connect && s.dst == c.server)
        .ok_or_else(|| format!("no connect event to {}", c.server))?;
    match call.ret {
        -115 => {}
        // Finished within the call: nothing left to complete.
        0 => return Ok(format!("{} -> {} completed within connect()", call.src, call.dst)),
        r => return Err(format!("connect returned {r}, expected -115 (in progress) or 0")),
    }
    let (e, s) = sockets(obs)
        .find(|(_, s)| s.op == SocketOp::ConnectDone && s.sock_id == call.sock_id)
        .ok_or("no connect_done event for the socket")?;
    obs.sane_header(e)?;
    if s.ret != 0 || s.src != c.client || s.dst != c.server {
        return Err(format!("connect_done {} -> {} ret {}, expected {} -> {} ret 0", s.src, s.dst, s.ret, c.client, c.server));
    }
    Ok(format!("{} -> {} in {} us", s.src, s.dst, s.latency_ns / 1000))
}

fn refused(obs: &Observed, target: SocketAddr) -> Result<String, String> {
    let (e, s) = sockets(obs)
        .find(|(_, s)| s.op == SocketOp::Connect && s.dst == target)
        .ok_or_else(|| format!("no connect event to {target}"))?;
    obs.sane_header(e)?;
    if s.ret != -111 {
        return Err(format!("returned {}, expected -111 (refused)", s.ret));
    }
    Ok(format!("to {target}: {}", s.ret))
}

fn closed(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, s) = sockets(obs)
        .find(|(_, s)| s.op == SocketOp::Close && s.src == c.client)
        .ok_or_else(|| format!("no close event for {}", c.client))?;
    sane(obs, e, s)?;
    if s.dst != c.server {
        return Err(format!("peer {} instead of {}", s.dst, c.server));
    }
    Ok(format!("fd {} ({} -> {})", s.fd, s.src, s.dst))
}

fn fork(obs: &Observed) -> Result<String, String> {
    let g = obs.report.grandchild;
    let e = obs
        .of_workload()
        .find(|e| matches!(&e.body, EventBody::Fork(f) if f.child_pid == g))
        .ok_or_else(|| format!("no fork event for child {g}"))?;
    obs.sane_header(e)?;
    Ok(format!("{} -> {g}", e.pid))
}

fn exec(obs: &Observed) -> Result<String, String> {
    let r = &obs.report;
    let (e, x) = obs
        .events
        .iter()
        .filter(|e| e.pid == r.grandchild)
        .find_map(|e| match &e.body {
            EventBody::Exec(x) => Some((e, x)),
            _ => None,
        })
        .ok_or_else(|| format!("no exec event for {}", r.grandchild))?;
    obs.sane_header(e)?;
    if x.filename != r.grandchild_exe {
        return Err(format!("filename {:?}, expected {:?}", x.filename, r.grandchild_exe));
    }
    if x.ppid != r.pid {
        return Err(format!("parent {}, expected {}", x.ppid, r.pid));
    }
    if !x.args.iter().any(|a| a == "--exit-with") {
        return Err(format!("arguments {:?} lack --exit-with", x.args));
    }
    Ok(format!("{} {}", x.filename, x.args.join(" ")))
}

fn exit(obs: &Observed) -> Result<String, String> {
    let g = obs.report.grandchild;
    let (e, x) = obs
        .events
        .iter()
        .filter(|e| e.pid == g)
        .find_map(|e| match &e.body {
            EventBody::Exit(x) => Some((e, x)),
            _ => None,
        })
        .ok_or_else(|| format!("no exit event for {g}"))?;
    obs.sane_header(e)?;
    if x.exit_code != GRANDCHILD_EXIT << 8 || !x.group_dead {
        return Err(format!("status {} group_dead {}, expected {} and true", x.exit_code, x.group_dead, GRANDCHILD_EXIT << 8));
    }
    Ok(format!("pid {g} status {}", x.exit_code))
}

fn rename(obs: &Observed) -> Result<String, String> {
    let e = obs
        .of_workload()
        .find(|e| matches!(&e.body, EventBody::Rename(r) if r.new_comm.to_string_lossy() == COMM))
        .ok_or("no rename event")?;
    obs.sane_header(e)?;
    Ok(format!("{} -> {COMM}", e.comm))
}
