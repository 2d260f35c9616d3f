//! DNS over UDP and TCP (RFC 1035; TCP messages carry a 2-byte length prefix,
//! RFC 7766, and a connection may hold several queries, split or batched).
//!
//! What is reported (both transports):
//! - Queries: `id` = Some(DNS id), `method` = the QTYPE name (`A`, `AAAA`,
//!   `HTTPS`... else `TYPE<n>`), `endpoint` = the query name lower-cased without
//!   the trailing dot (at most 253 bytes, `.` for the root), `detail` = `A example.com`.
//! - Responses: `id` = Some(DNS id), `status` = the RCODE name (`NOERROR`,
//!   `FORMERR`, `SERVFAIL`, `NXDOMAIN`, `NOTIMP`, `REFUSED`... else `RCODE<n>`),
//!   `is_error` = RCODE != 0 (NXDOMAIN included: the name does not exist, which
//!   is usually what an SRE wants to see), `message` = the first answer
//!   (`A 10.0.0.1`, `CNAME web.example.com`, `MX 10 mail.example.com`...) when
//!   visible. Truncated (TC) responses are reported like any other.
//! - Extended RCODEs (EDNS) are not combined in; a message whose id is not
//!   visible is not reported (counted in `gave_up`).
//!
//! [`DnsParser::default`] picks the transport from the first chunk (a UDP
//! datagram is one whole message; a TCP chunk starts with a length prefix
//! that matches it, or is too short to be a datagram); [`DnsParser::udp`] and
//! [`DnsParser::tcp`] fix it when the caller knows.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::framing::{LengthFramer, Start};
use crate::{
    truncate_display, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo,
    ResponseInfo, MAX_DETAIL,
};

const HEADER: usize = 12;
/// Longest name in presentation form (RFC 1035 2.3.4).
const MAX_NAME: usize = 253;
/// Compression pointers followed per name before giving up (loops, long chains).
const MAX_JUMPS: usize = 16;
/// Largest unfinished message kept from a fully visible TCP chunk for the next one.
const MAX_CARRY: usize = 1024;

pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    let h = chunk.head;
    let hinted = matches!(server_port, 53 | 5353);
    let udp = plausible(h, chunk.dir, chunk.len, hinted);
    let tcp = tcp_prefix(h).is_some_and(|n| n + 2 == chunk.len)
        && plausible(&h[2..], chunk.dir, chunk.len - 2, hinted);
    udp || tcp
}

/// The length prefix of a TCP message at the start of `h`.
fn tcp_prefix(h: &[u8]) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([*h.first()?, *h.get(1)?])))
}

/// A DNS message for `dir` at the start of `m` (whose full length is `len`):
/// QR matches the direction, a standard query, one question, sane counts. With
/// no port hint the whole message must walk to exactly its length.
fn plausible(m: &[u8], dir: Direction, len: usize, hinted: bool) -> bool {
    let Some(h) = Header::read(m) else { return false };
    let counts_ok =
        if h.qr { h.an <= 512 && h.ns <= 512 && h.ar <= 512 } else { h.an == 0 && h.ns <= 1 && h.ar <= 2 };
    let sane = h.qr == (dir == Direction::Response) && h.opcode == 0 && !h.z && h.qd == 1 && counts_ok;
    if !sane {
        return false;
    }
    let Some((_, at)) = read_name(m, HEADER) else { return false };
    let Some(class) = be16(m, at + 2) else { return false };
    let class_ok = matches!(class & 0x7fff, 1 | 3 | 254 | 255);
    if !class_ok {
        return false;
    }
    hinted || (m.len() == len && walk_records(m, at + 4, h.an + h.ns + h.ar) == Some(len))
}

/// Skips `count` resource records from `at`; where they end.
fn walk_records(m: &[u8], mut at: usize, count: u16) -> Option<usize> {
    for _ in 0..count {
        let (_, after) = read_name(m, at)?;
        let rdlen = usize::from(be16(m, after + 8)?);
        at = after + 10 + rdlen;
        if at > m.len() {
            return None;
        }
    }
    Some(at)
}

fn be16(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]))
}

#[derive(Clone, Copy, Debug)]
struct Header {
    qr: bool,
    opcode: u8,
    /// The reserved Z bit (must be zero).
    z: bool,
    rcode: u8,
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
}

impl Header {
    fn read(m: &[u8]) -> Option<Header> {
        let flags = be16(m, 2)?;
        Some(Header {
            qr: flags & 0x8000 != 0,
            opcode: ((flags >> 11) & 0xf) as u8,
            z: flags & 0x0040 != 0,
            rcode: (flags & 0xf) as u8,
            qd: be16(m, 4)?,
            an: be16(m, 6)?,
            ns: be16(m, 8)?,
            ar: be16(m, 10)?,
        })
    }
}

/// Reads a (possibly compressed) name at `at`: its presentation form
/// (lower-cased, no trailing dot, at most [`MAX_NAME`] bytes) and the offset
/// after it in the message.
fn read_name(m: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut after = None;
    let mut jumps = 0;
    loop {
        let len = *m.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => break,
            0x00 => {
                let label = m.get(at + 1..at + 1 + usize::from(len))?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|&b| display_byte(b)));
                if name.len() > MAX_NAME + 1 {
                    return None;
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let target = usize::from(be16(m, at)? & 0x3fff);
                // Pointers must go backwards, and not too many times: no loops.
                jumps += 1;
                if target >= at || jumps > MAX_JUMPS {
                    return None;
                }
                after.get_or_insert(at + 2);
                at = target;
            }
            _ => return None,
        }
    }
    name.truncate(MAX_NAME);
    if name.is_empty() {
        name.push('.');
    }
    Some((name, after.unwrap_or(at + 1)))
}

/// Names are shown lower-cased; bytes outside printable ASCII become `?`.
fn display_byte(b: u8) -> char {
    if b.is_ascii_graphic() {
        char::from(b.to_ascii_lowercase())
    } else {
        '?'
    }
}

fn type_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    name.to_string()
}

fn rcode_name(r: u8) -> String {
    let name = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{r}"),
    };
    name.to_string()
}

/// What one message (its visible part `m`) says, for `dir`. None: not a DNS
/// message for this direction, or its id is not visible.
fn message_info(m: &[u8], dir: Direction) -> Option<(u64, Info)> {
    let id = u64::from(be16(m, 0)?);
    let Some(h) = Header::read(m) else {
        // The header is cut: only the id is known.
        let info = match dir {
            Direction::Request => Info::Request(RequestInfo::default()),
            Direction::Response => Info::Response(ResponseInfo::default()),
        };
        return Some((id, info));
    };
    if h.qr != (dir == Direction::Response) {
        return None;
    }
    let question = (h.qd > 0).then(|| read_name(m, HEADER)).flatten();
    let info = match dir {
        Direction::Request => {
            let (name, qtype) = match &question {
                Some((name, at)) => (name.clone(), be16(m, *at).map(type_name).unwrap_or_default()),
                None => (String::new(), String::new()),
            };
            let detail = truncate_display(format!("{qtype} {name}").trim(), MAX_DETAIL);
            Info::Request(RequestInfo { method: qtype, endpoint: name, detail, trace: None })
        }
        Direction::Response => {
            let first = match question {
                Some((_, at)) if h.an > 0 && h.rcode == 0 => first_answer(m, at + 4),
                _ => None,
            };
            Info::Response(ResponseInfo {
                status: rcode_name(h.rcode),
                is_error: h.rcode != 0,
                message: first.map(|a| truncate_display(&a, MAX_DETAIL)).unwrap_or_default(),
                protocol: None,
            })
        }
    };
    Some((id, info))
}

/// The first answer record at `at`, in presentation form (`A 10.0.0.1`).
fn first_answer(m: &[u8], at: usize) -> Option<String> {
    let (_, after) = read_name(m, at)?;
    let rtype = be16(m, after)?;
    let rdlen = usize::from(be16(m, after + 8)?);
    let start = after + 10;
    let rdata = m.get(start..start + rdlen);
    let name_at = |off: usize| read_name(m, start + off).map(|(n, _)| n);
    let value = match rtype {
        1 => rdata.filter(|d| d.len() == 4).map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()),
        28 => rdata.and_then(|d| <[u8; 16]>::try_from(d).ok()).map(|d| Ipv6Addr::from(d).to_string()),
        2 | 5 | 12 => name_at(0),
        15 => Some(format!("{} {}", be16(m, start)?, name_at(2)?)),
        16 => rdata.and_then(|d| {
            let n = usize::from(*d.first()?);
            d.get(1..1 + n).map(|s| String::from_utf8_lossy(s).into_owned())
        }),
        33 => Some(format!(
            "{} {} {} {}",
            be16(m, start)?,
            be16(m, start + 2)?,
            be16(m, start + 4)?,
            name_at(6)?
        )),
        _ => None,
    };
    let t = type_name(rtype);
    Some(match value {
        Some(v) => format!("{t} {v}"),
        None => t,
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Transport {
    /// Decided on the first chunk.
    #[default]
    Auto,
    Udp,
    Tcp,
}

/// TCP reading state of one direction.
#[derive(Default)]
struct TcpSide {
    framer: LengthFramer,
    /// The reported message continuing into later chunks: its id.
    open: Option<u64>,
    /// The unfinished end of a fully visible chunk, read again with the next one.
    carry: Vec<u8>,
}

/// DNS parser for one socket (UDP) or connection (TCP).
#[derive(Default)]
pub struct DnsParser {
    transport: Transport,
    req: TcpSide,
    resp: TcpSide,
    lost: u64,
    garbage: u64,
}

impl DnsParser {
    /// Each chunk is one datagram holding one message.
    pub fn udp() -> DnsParser {
        DnsParser { transport: Transport::Udp, ..DnsParser::default() }
    }

    /// Length-prefixed messages on a stream.
    pub fn tcp() -> DnsParser {
        DnsParser { transport: Transport::Tcp, ..DnsParser::default() }
    }

    /// Picks the transport from the first chunk.
    fn decide(chunk: &Chunk<'_>) -> Transport {
        let h = chunk.head;
        if chunk.len < HEADER {
            // Only a TCP chunk can be this short (a length prefix written on its own).
            return Transport::Tcp;
        }
        let prefix = tcp_prefix(h).filter(|n| n + 2 <= chunk.len);
        let as_udp = plausible(h, chunk.dir, chunk.len, true);
        let as_tcp = prefix.is_some_and(|n| plausible(&h[2..], chunk.dir, n, true));
        let exact = prefix.is_some_and(|n| n + 2 == chunk.len);
        if as_tcp && (!as_udp || exact) {
            Transport::Tcp
        } else {
            Transport::Udp
        }
    }

    fn datagram(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        match message_info(chunk.head, chunk.dir) {
            Some((id, info)) => out.push(ParseEvent::Start {
                dir: chunk.dir,
                id: Some(id),
                info,
                extent: Extent::Complete,
                bytes: Some(chunk.len),
            }),
            None => self.garbage += 1,
        }
    }

    fn stream(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let side = if chunk.dir == Direction::Request { &mut self.req } else { &mut self.resp };
        // A buffer is only allocated on the rare path of a carry.
        let carry = std::mem::take(&mut side.carry);
        let base = carry.len();
        let joined = (base > 0).then(|| [&carry[..], chunk.head].concat());
        let buf = joined.as_deref().unwrap_or(chunk.head);
        let len = chunk.len.max(chunk.head.len()) + base;
        let (lost, garbage) = stream_messages(side, chunk.dir, buf, len, base, out);
        self.lost += lost;
        self.garbage += garbage;
    }
}

/// Reads the length-prefixed messages of one TCP chunk (`buf` = carried bytes +
/// head, `len` = their full length). Returns (boundaries lost, garbage) counts.
fn stream_messages(
    side: &mut TcpSide,
    dir: Direction,
    buf: &[u8],
    len: usize,
    base: usize,
    out: &mut Vec<ParseEvent>,
) -> (u64, u64) {
    let vis = buf.len();
    let mut pos = match side.framer.begin(len) {
        Start::Inside { ended } => {
            end_open(side, dir, ended, out);
            return (0, 0);
        }
        Start::At { offset, ended } => {
            end_open(side, dir, ended, out);
            offset
        }
    };
    while pos < vis {
        let Some(mlen) = tcp_prefix(&buf[pos..]) else {
            return if defer(side, buf, pos, len) { (0, 0) } else { (1, 0) };
        };
        let (next, complete) = side.framer.message(pos, mlen + 2, len, vis);
        if !complete && defer(side, buf, pos, len) {
            side.framer = LengthFramer::default();
            return (0, 0);
        }
        let body = &buf[pos + 2..(pos + 2 + mlen).min(vis)];
        if body.len() < 2 && mlen >= HEADER {
            // Its id is cut: framing goes on, the message is not reported.
            side.open = None;
            match next {
                Some(n) if complete => {
                    pos = n;
                    continue;
                }
                _ => return (1, 0),
            }
        }
        let Some((id, info)) = message_info(body, dir).filter(|_| mlen >= HEADER) else {
            // Not DNS here: forget the boundaries.
            side.framer.resync();
            return (0, 1);
        };
        let bytes = (pos + 2 + mlen).min(len) - pos.max(base).min(len);
        let extent = if complete { Extent::Complete } else { Extent::Continues };
        out.push(ParseEvent::Start { dir, id: Some(id), info, extent, bytes: Some(bytes) });
        if !complete {
            side.open = Some(id);
            return (0, 0);
        }
        match next {
            Some(n) => pos = n,
            None => return (u64::from(pos + 2 + mlen < len), 0),
        }
    }
    (u64::from(pos < len), 0)
}

/// Keeps `buf[from..]` for the next chunk if this one was fully visible and it is small.
fn defer(side: &mut TcpSide, buf: &[u8], from: usize, len: usize) -> bool {
    if buf.len() != len || len - from > MAX_CARRY {
        return false;
    }
    side.carry.extend_from_slice(&buf[from..]);
    true
}

fn end_open(side: &mut TcpSide, dir: Direction, ended: bool, out: &mut Vec<ParseEvent>) {
    if ended {
        if let Some(id) = side.open.take() {
            out.push(ParseEvent::End { dir, id: Some(id) });
        }
    }
}

impl Parser for DnsParser {
    fn protocol(&self) -> Protocol {
        Protocol::Dns
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        if self.transport == Transport::Auto && !chunk.head.is_empty() {
            self.transport = DnsParser::decide(&chunk);
        }
        match self.transport {
            Transport::Udp => self.datagram(chunk, out),
            Transport::Tcp => self.stream(chunk, out),
            Transport::Auto => {}
        }
    }

    fn gave_up(&self) -> u64 {
        self.lost + self.garbage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UDP: &str = include_str!("../tests/fixtures/kv/dns_udp.txt");
    const TCP: &str = include_str!("../tests/fixtures/kv/dns_tcp.txt");

    type Chunks = Vec<(Direction, usize, Vec<u8>)>;

    /// Fixture format: `## name` starts a session; `C|S <syscall len> <hex head>` lines.
    fn load(text: &str, name: &str) -> Chunks {
        let mut on = false;
        let mut chunks = Vec::new();
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("## ") {
                on = n == name;
            } else if on && !line.starts_with('#') {
                let mut it = line.split(' ');
                let dir = if it.next() == Some("C") { Direction::Request } else { Direction::Response };
                let len = it.next().and_then(|l| l.parse().ok()).expect("len");
                chunks.push((dir, len, hex(it.next().unwrap_or_default())));
            }
        }
        assert!(!chunks.is_empty(), "no session {name}");
        chunks
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
    }

    fn feed(p: &mut DnsParser, chunks: &[(Direction, usize, Vec<u8>)], snaplen: usize) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, len, head) in chunks {
            let head = &head[..head.len().min(snaplen)];
            p.feed(Chunk { dir: *dir, head, len: *len }, &mut out);
        }
        out
    }

    /// `> id A name`, `< id STATUS[!] message`, `end < id`; `~` marks Continues.
    fn summary(events: &[ParseEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ParseEvent::Start { info, extent, id, .. } => {
                    let id = id.map(|i| i.to_string()).unwrap_or_default();
                    let mark = if *extent == Extent::Continues { "~" } else { "" };
                    match info {
                        Info::Request(r) => {
                            assert_eq!(r.detail, format!("{} {}", r.method, r.endpoint).trim());
                            format!("> {id} {} {}{mark}", r.method, r.endpoint)
                        }
                        Info::Response(r) => {
                            format!(
                                "< {id} {}{} {}{mark}",
                                r.status,
                                if r.is_error { "!" } else { "" },
                                r.message
                            )
                        }
                    }
                }
                ParseEvent::End { id, .. } => format!("end {id:?}"),
            })
            .collect()
    }

    #[test]
    fn dig_over_udp() {
        let chunks = load(UDP, "udp");
        let mut p = DnsParser::default();
        let s = summary(&feed(&mut p, &chunks, 1024));
        let expected = [
            "> 28704 A web.example.test",
            "< 28704 NOERROR A 10.0.0.1",
            "> 31915 AAAA web.example.test",
            "< 31915 NOERROR AAAA fd00::1",
            "> 43297 A www.example.test",
            "< 43297 NOERROR CNAME web.example.test",
            "> 54257 TXT example.test",
            "< 54257 NOERROR TXT hello world",
            "> 58749 MX example.test",
            "< 58749 NOERROR MX 10 mail.example.test",
            "> 47428 SRV _http._tcp.example.test",
            "< 47428 NOERROR SRV 0 0 80 web.example.test",
            "> 58213 PTR 1.0.0.10.in-addr.arpa",
            "< 58213 NOERROR PTR web.example.test",
            "> 10351 A nope.example.test",
            "< 10351 NXDOMAIN! ",
            "> 58922 SOA example.test",
            "< 58922 NOERROR ",
            "> 39608 HTTPS web.example.test",
            "< 39608 NOERROR ",
            "> 34683 A other.org",
            "< 34683 REFUSED! ",
            // +noedns: the answer does not fit 512 bytes, TC set, no answer.
            "> 57162 TXT big.example.test",
            "< 57162 NOERROR ",
        ];
        assert_eq!(s[..expected.len()], expected);
        // With EDNS the 800-byte answer comes whole in a datagram, its head cut at 1024 or less.
        assert!(
            s[expected.len() + 1].starts_with("< ") && s[expected.len() + 1].contains("NOERROR TXT aaaa")
        );
        assert_eq!(s.len(), expected.len() + 2);
        assert_eq!(p.transport, Transport::Udp);
        assert_eq!(p.gave_up(), 0);
        // A head cut right after the question still gives the query and rcode.
        let s = summary(&feed(&mut DnsParser::udp(), &chunks, 40));
        assert_eq!(s[15], "< 10351 NXDOMAIN! ");
        assert_eq!(s[1], "< 28704 NOERROR ");
    }

    #[test]
    fn dig_over_tcp() {
        let mut p = DnsParser::default();
        assert_eq!(
            summary(&feed(&mut p, &load(TCP, "web_a"), 1024)),
            ["> 46226 A web.example.test", "< 46226 NOERROR A 10.0.0.1"]
        );
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(
            summary(&feed(&mut DnsParser::default(), &load(TCP, "nxdomain"), 1024)),
            ["> 11712 A nope.example.test", "< 11712 NXDOMAIN! "]
        );
        let s = summary(&feed(&mut DnsParser::default(), &load(TCP, "keepopen"), 1024));
        assert_eq!(s.len(), 6);
        assert_eq!(s[2], "> 63021 TXT big.example.test");
        assert!(s[3].starts_with("< 63021 NOERROR TXT aaa"));
        assert_eq!(s[5], "< 23888 NOERROR MX 10 mail.example.test");
    }

    #[test]
    fn tcp_batches_splits_and_cut_heads() {
        let chunks = load(TCP, "keepopen");
        // All three queries in one write, all three answers in one read.
        let reqs: Vec<u8> =
            chunks.iter().filter(|c| c.0 == Direction::Request).flat_map(|c| c.2.clone()).collect();
        let resps: Vec<u8> =
            chunks.iter().filter(|c| c.0 == Direction::Response).flat_map(|c| c.2.clone()).collect();
        let batched = vec![
            (Direction::Request, reqs.len(), reqs.clone()),
            (Direction::Response, resps.len(), resps.clone()),
        ];
        let whole = summary(&feed(&mut DnsParser::tcp(), &batched, 4096));
        assert_eq!(whole.len(), 6);
        // Split anywhere: the same Starts.
        for (i, (dir, _, head)) in batched.iter().enumerate() {
            for cut in 1..head.len() {
                let mut split = batched[..i].to_vec();
                split.push((*dir, cut, head[..cut].to_vec()));
                split.push((*dir, head.len() - cut, head[cut..].to_vec()));
                split.extend_from_slice(&batched[i + 1..]);
                let s = summary(&feed(&mut DnsParser::tcp(), &split, 4096));
                let starts: Vec<_> =
                    s.iter().filter(|l| !l.starts_with("end")).map(|l| l.trim_end_matches('~')).collect();
                assert_eq!(starts, whole, "chunk {i} cut at {cut}");
            }
        }
        // The big answer seen through a 100-byte head: the MX answer after it is invisible.
        let s = summary(&feed(&mut DnsParser::tcp(), &batched, 100));
        assert_eq!(s.len(), 4, "{s:?}");
        // Written in 2 pieces, the answer continues into the next chunk.
        let (a, b) = resps.split_at(700);
        let pieces = vec![
            batched[0].clone(),
            (Direction::Response, 700, a[..600].to_vec()),
            (Direction::Response, b.len(), b.to_vec()),
        ];
        let s = summary(&feed(&mut DnsParser::tcp(), &pieces, 4096));
        assert!(s[4].ends_with('~') && s[5] == "end Some(63021)", "{s:?}");
        assert_eq!(s[6], "< 23888 NOERROR MX 10 mail.example.test");
    }

    #[test]
    fn compression_loops_and_bad_names() {
        // Header + a name pointing at itself, then one pointing forward.
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(read_name(&m, 12).is_none());
        m[13] = 40;
        assert!(read_name(&m, 12).is_none());
        // A chain of backward pointers longer than MAX_JUMPS.
        let mut chain = vec![0u8; 12];
        chain.extend_from_slice(&[1, b'a', 0]);
        for i in 0..40u8 {
            chain.extend_from_slice(&[0xc0, 12 + if i == 0 { 0 } else { 3 + 2 * (i - 1) }]);
        }
        assert!(read_name(&chain, chain.len() - 2).is_none());
        assert_eq!(read_name(&chain, 12 + 3), Some(("a".to_string(), 17)));
        let mut p = DnsParser::udp();
        let mut out = Vec::new();
        p.feed(Chunk { dir: Direction::Request, head: &m, len: m.len() }, &mut out);
        assert_eq!(summary(&out), ["> 4660  "]);
    }

    #[test]
    fn detection() {
        let chunks = load(UDP, "udp");
        let (q, r) = (&chunks[0], &chunks[1]);
        fn c(d: &(Direction, usize, Vec<u8>), dir: Direction) -> Chunk<'_> {
            Chunk { dir, head: &d.2, len: d.1 }
        }
        assert!(detect(c(q, Direction::Request), 53));
        assert!(detect(c(q, Direction::Request), 5391));
        assert!(detect(c(r, Direction::Response), 53));
        assert!(!detect(c(q, Direction::Response), 53));
        assert!(!detect(c(r, Direction::Request), 53));
        let tcp = load(TCP, "web_a");
        assert!(detect(c(&tcp[0], Direction::Request), 53));
        assert!(detect(c(&tcp[0], Direction::Request), 5392));
        let junk = Chunk { dir: Direction::Request, head: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len: 27 };
        assert!(!detect(junk, 53));
    }

    fn arb_chunk() -> impl Strategy<Value = (bool, Vec<u8>, usize)> {
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), 0usize..2000)
    }

    proptest! {
        #[test]
        fn never_panics(chunks in prop::collection::vec(arb_chunk(), 0..20), tcp in any::<bool>()) {
            let mut p = if tcp { DnsParser::tcp() } else { DnsParser::default() };
            for (req, head, extra) in chunks {
                let dir = if req { Direction::Request } else { Direction::Response };
                let mut out = Vec::new();
                p.feed(Chunk { dir, head: &head, len: head.len() + extra }, &mut out);
                prop_assert!(out.len() <= (head.len() + MAX_CARRY) / 14 + 2);
                let _ = detect(Chunk { dir, head: &head, len: head.len() + extra }, 53);
            }
        }

        #[test]
        fn mutated_real_messages_never_panic(
            i in 0usize..26,
            flips in prop::collection::vec((0usize..900, any::<u8>()), 1..8),
            cut in 0usize..900,
        ) {
            let chunks = load(UDP, "udp");
            let (dir, len, mut head) = chunks[i % chunks.len()].clone();
            for (at, b) in flips {
                let n = head.len().max(1);
                if let Some(x) = head.get_mut(at % n) {
                    *x = b;
                }
            }
            head.truncate(cut.max(1));
            let mut out = Vec::new();
            DnsParser::udp().feed(Chunk { dir, head: &head, len }, &mut out);
            prop_assert!(out.len() <= 1);
        }
    }
}
