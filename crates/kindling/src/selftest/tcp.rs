//! Checks of the `tcp` module (tcp.bpf.c): connect outcomes, resets, RTT
//! samples, connection summaries, retransmits and packet drops. These hooks
//! run in softirq context for whichever task is on the CPU, so events are
//! matched by address, never by process.

use super::workload::{payload, Conn};
use super::{Observed, Outcome};
use kindling_events::model::{Event, EventBody, L4Proto};
use kindling_events::tcp::{TcpEvent, TcpKind};
use std::net::SocketAddr;

pub fn checks(obs: &Observed) -> Vec<Outcome> {
    let r = &obs.report;
    let mut out = vec![
        Outcome::new("tcp_connect established", connected(obs, &r.tcp)),
        Outcome::new("tcp_connect refused", refused(obs, r.refused)),
        Outcome::new("tcp_reset sent", reset_sent(obs, &r.reset)),
        Outcome::new("tcp_reset received", reset_received(obs, r.refused)),
        Outcome::new("tcp_rtt", rtt(obs, &r.tcp)),
        Outcome::new("tcp_close summary", close(obs, &r.tcp)),
        Outcome::new("tcp_retransmit", retransmit(obs, &r.retransmit)),
    ];
    out.push(if obs.features.skb_drop_reason {
        Outcome::new("tcp_drop", dropped(obs, r.udp_closed))
    } else {
        Outcome::not_applicable("tcp_drop", "kfree_skb has no drop reason on this kernel")
    });
    out
}

fn tcp_events(obs: &Observed) -> impl Iterator<Item = (&Event, &TcpEvent)> {
    obs.events.iter().filter_map(|e| match &e.body {
        EventBody::Tcp(t) => Some((e, t)),
        _ => None,
    })
}

/// The first event of the socket `src` -> `dst` that `pick` accepts.
fn find(
    obs: &Observed,
    src: SocketAddr,
    dst: SocketAddr,
    pick: impl Fn(&TcpKind) -> bool,
) -> Option<(&Event, &TcpEvent)> {
    tcp_events(obs).find(|(_, t)| t.src == src && t.dst == dst && pick(&t.kind))
}

fn sane(obs: &Observed, e: &Event, t: &TcpEvent) -> Result<(), String> {
    obs.sane_header(e)?;
    if t.sock_id == 0 {
        return Err("no socket identity".into());
    }
    Ok(())
}

fn connected(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, t) = find(obs, c.client, c.server, |k| matches!(k, TcpKind::Connect { .. }))
        .ok_or_else(|| format!("no tcp_connect event for {} -> {}", c.client, c.server))?;
    sane(obs, e, t)?;
    let TcpKind::Connect { error, latency_ns } = t.kind else { unreachable!("matched above") };
    if error != 0 || latency_ns == 0 || latency_ns > 5_000_000_000 {
        return Err(format!("error {error}, latency {latency_ns} ns"));
    }
    Ok(format!("{} -> {} in {} us", t.src, t.dst, latency_ns / 1000))
}

fn refused(obs: &Observed, target: SocketAddr) -> Result<String, String> {
    let (e, t) = tcp_events(obs)
        .find(|(_, t)| t.dst == target && matches!(t.kind, TcpKind::Connect { .. }))
        .ok_or_else(|| format!("no tcp_connect event to {target}"))?;
    sane(obs, e, t)?;
    match t.kind {
        TcpKind::Connect { error: 111, .. } => Ok(format!("{} -> {}: refused", t.src, t.dst)),
        ref k => Err(format!("{k:?}, expected error 111")),
    }
}

fn reset_sent(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, t) = find(obs, c.client, c.server, |k| matches!(k, TcpKind::Reset { sent: true }))
        .ok_or_else(|| format!("no reset sent by {} to {}", c.client, c.server))?;
    sane(obs, e, t)?;
    Ok(format!("{} -> {}", t.src, t.dst))
}

fn reset_received(obs: &Observed, target: SocketAddr) -> Result<String, String> {
    let (e, t) = tcp_events(obs)
        .find(|(_, t)| t.dst == target && matches!(t.kind, TcpKind::Reset { sent: false }))
        .ok_or_else(|| format!("no reset received from {target}"))?;
    sane(obs, e, t)?;
    Ok(format!("{} <- {}", t.src, t.dst))
}

fn rtt(obs: &Observed, c: &Conn) -> Result<String, String> {
    let mine = |t: &TcpEvent| (t.src == c.client && t.dst == c.server) || (t.src == c.server && t.dst == c.client);
    let (e, t) = tcp_events(obs)
        .find(|(_, t)| mine(t) && matches!(t.kind, TcpKind::Rtt { .. }))
        .ok_or_else(|| format!("no RTT sample for {} <-> {}", c.client, c.server))?;
    sane(obs, e, t)?;
    let TcpKind::Rtt { srtt_us, cwnd, .. } = t.kind else { unreachable!("matched above") };
    if srtt_us == 0 || srtt_us > 1_000_000 || cwnd == 0 {
        return Err(format!("srtt {srtt_us} us, cwnd {cwnd}"));
    }
    Ok(format!("srtt {srtt_us} us, cwnd {cwnd}"))
}

fn close(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, t) = find(obs, c.client, c.server, |k| matches!(k, TcpKind::Close { .. }))
        .ok_or_else(|| format!("no close summary for {} -> {}", c.client, c.server))?;
    sane(obs, e, t)?;
    let TcpKind::Close { bytes_acked, bytes_received, lifetime_ns, .. } = t.kind else {
        unreachable!("matched above")
    };
    // The client sent each request payload once and got one reply.
    let sent = (payload::WRITE.len() + 9 + payload::SENDTO.len() + payload::SENDMSG.len() + payload::SENDFILE.len())
        as u64;
    let received = payload::REPLY.len() as u64;
    // The kernel counts in sequence space: the SYN and FIN take one each.
    if !(sent..=sent + 2).contains(&bytes_acked) || !(received..=received + 1).contains(&bytes_received) {
        return Err(format!(
            "acked {bytes_acked}, received {bytes_received}: expected {sent} and {received} (+ SYN/FIN)"
        ));
    }
    if lifetime_ns == 0 || lifetime_ns > 10_000_000_000 {
        return Err(format!("lifetime {lifetime_ns} ns"));
    }
    Ok(format!("acked {bytes_acked}, received {bytes_received}, lived {} us", lifetime_ns / 1000))
}

fn retransmit(obs: &Observed, c: &Conn) -> Result<String, String> {
    let (e, t) = find(obs, c.client, c.server, |k| matches!(k, TcpKind::Retransmit { .. }))
        .ok_or_else(|| format!("no retransmit of {} -> {} (its SYN was dropped)", c.client, c.server))?;
    sane(obs, e, t)?;
    let TcpKind::Retransmit { segments } = t.kind else { unreachable!("matched above") };
    if segments == 0 {
        return Err("0 segments".into());
    }
    Ok(format!("{segments} segment(s), state {}", t.state))
}

fn dropped(obs: &Observed, closed: SocketAddr) -> Result<String, String> {
    let (e, t) = tcp_events(obs)
        .find(|(_, t)| t.dst == closed && t.proto == L4Proto::Udp && matches!(t.kind, TcpKind::Drop { .. }))
        .ok_or_else(|| format!("no drop of the datagram to {closed}"))?;
    obs.sane_header(e)?;
    let TcpKind::Drop { reason, reason_name } = &t.kind else { unreachable!("matched above") };
    if *reason <= 1 {
        return Err(format!("reason {reason}"));
    }
    Ok(format!("{} -> {}: {reason_name} ({reason})", t.src, t.dst))
}
