//! The connection tracker: socket events in, request records out.
//!
//! Per connection it detects the protocol from the first bytes, feeds every
//! send/receive to that protocol's parser, and pairs the messages the parser
//! reports: by id when the protocol has one (DNS, Kafka, HTTP/2), else in
//! order (keep-alive and pipelining). Each message keeps the times of the
//! syscalls that carried it, which give the network breakdown.
//!
//! Time only moves with the events (and `tick`), never with a wall clock of
//! its own, so a replayed recording gives the same records every time.
//! Memory is bounded: connections and pending requests per connection are
//! capped, idle connections are flushed, and every drop is counted.

use crate::record::{Breakdown, RequestRecord, Side, TcpDuring};
use kindling_events::model::*;
use kindling_protocols::{
    detect, new_parser, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo, ResponseInfo,
};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;
use std::net::SocketAddr;

const EINPROGRESS: i64 = -115;
/// Bytes of small, fully visible chunks kept while a connection's protocol is
/// unknown, to detect it on the next chunk of the same direction: peers that
/// read a length prefix on its own (dnsmasq reads a DNS-over-TCP query's two
/// length bytes one at a time, Kafka's Java clients read the 4-byte size first).
const DETECT_CARRY: usize = 64;

/// Per-protocol slow thresholds (ms). Defaults: HTTP/HTTP2/gRPC 500, the rest 100.
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowThresholds {
    pub http: u64,
    pub http2: u64,
    pub grpc: u64,
    pub mysql: u64,
    pub postgresql: u64,
    pub redis: u64,
    pub kafka: u64,
    pub dns: u64,
    pub memcached: u64,
}

impl Default for SlowThresholds {
    fn default() -> Self {
        SlowThresholds {
            http: 500,
            http2: 500,
            grpc: 500,
            mysql: 100,
            postgresql: 100,
            redis: 100,
            kafka: 100,
            dns: 100,
            memcached: 100,
        }
    }
}

impl SlowThresholds {
    pub fn ms(&self, p: Protocol) -> u64 {
        match p {
            Protocol::Http => self.http,
            Protocol::Http2 => self.http2,
            Protocol::Grpc => self.grpc,
            Protocol::Mysql => self.mysql,
            Protocol::Postgresql => self.postgresql,
            Protocol::Redis => self.redis,
            Protocol::Kafka => self.kafka,
            Protocol::Dns => self.dns,
            Protocol::Memcached => self.memcached,
            // A `tcp` record spans a whole connection: its length is not slowness.
            Protocol::Tcp => u64::MAX / 1_000_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrackerConfig {
    pub slow: SlowThresholds,
    /// A request with no response after this long is reported as `timeout`.
    pub response_timeout_ns: u64,
    /// A response whose end the protocol cannot signal is complete once no
    /// more of it arrived for this long (or the next request starts).
    pub idle_flush_ns: u64,
    /// Connections silent this long are flushed and forgotten (UDP peers, or
    /// sockets whose close we never saw).
    pub conn_idle_ns: u64,
    pub max_connections: usize,
    pub max_pending: usize,
    /// Chunks a connection gets to show a known protocol before it is `tcp`.
    pub detect_chunks: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            slow: SlowThresholds::default(),
            response_timeout_ns: 30_000_000_000,
            idle_flush_ns: 1_000_000_000,
            conn_idle_ns: 300_000_000_000,
            max_connections: 200_000,
            max_pending: 1024,
            detect_chunks: 4,
        }
    }
}

/// What the tracker lost or could not use, for telemetry (`dropped{reason}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Responses with no request to pair with (connection picked up mid-way).
    pub orphan_responses: u64,
    /// Requests dropped because a connection had too many outstanding.
    pub pending_overflow: u64,
    /// Connections forgotten because the table was full.
    pub connections_evicted: u64,
    /// Chunks parsers could not make sense of.
    pub parser_gave_up: u64,
    /// Requests reported without a response (timeout or connection closed).
    pub unanswered: u64,
    /// Requests still waiting when input ended (not reported).
    pub unfinished: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConnKey {
    sock_id: u64,
    /// The peer, for UDP sockets that talk to many (unconnected servers).
    peer: Option<SocketAddr>,
}

/// The syscalls that carried one message.
#[derive(Clone, Copy, Debug)]
struct Msg {
    /// Start of the first syscall.
    start_ns: u64,
    /// End of the first syscall (first bytes handed over).
    first_end_ns: u64,
    /// End of the last syscall.
    last_end_ns: u64,
    bytes: u64,
    tid: u32,
    done: bool,
    /// The parser cannot tell where it ends (ends by silence or the next message).
    open_ended: bool,
}

impl Msg {
    fn new(c: &ChunkMeta, bytes: u64, extent: Extent) -> Msg {
        Msg {
            start_ns: c.start_ns,
            first_end_ns: c.first_end_ns,
            last_end_ns: c.end_ns,
            bytes,
            tid: c.tid,
            done: extent == Extent::Complete,
            open_ended: extent == Extent::Unknown,
        }
    }

    fn extend(&mut self, c: &ChunkMeta, bytes: u64) {
        self.last_end_ns = c.end_ns;
        self.bytes += bytes;
    }
}

struct Pending {
    id: Option<u64>,
    req: RequestInfo,
    reqm: Msg,
    resp: Option<(ResponseInfo, Msg)>,
    connect_ns: u64,
}

enum ParserState {
    /// `carry`: the chunks of one direction seen so far, when small and fully
    /// visible; the next chunk in that direction is detected (and parsed)
    /// joined to them.
    Detecting { attempts: u32, carry: Option<Carry> },
    Parsing(Box<dyn Parser>),
    /// No known protocol: reported at the TCP level.
    Opaque,
}

struct Conn {
    sock_id: u64,
    role: Role,
    udp: bool,
    pid: u32,
    comm: Comm,
    local: SocketAddr,
    peer: SocketAddr,
    protocol: Protocol,
    parser: ParserState,
    pending: VecDeque<Pending>,
    /// Handshake time, given to the connection's first request.
    connect_ns: u64,
    first_ns: u64,
    last_ns: u64,
    /// Bytes client -> server and server -> client (for `tcp` records).
    up_bytes: u64,
    down_bytes: u64,
    gave_up_seen: u64,
}

/// Chunks kept while detecting (see [`DETECT_CARRY`]).
struct Carry {
    dir: Direction,
    bytes: Vec<u8>,
    start_ns: u64,
    first_end_ns: u64,
}

struct ChunkMeta {
    start_ns: u64,
    /// End of the first syscall of the chunk (chunks joined during detection).
    first_end_ns: u64,
    end_ns: u64,
    len: u64,
    tid: u32,
}

pub struct Tracker {
    cfg: TrackerConfig,
    conns: FxHashMap<ConnKey, Conn>,
    by_pid: FxHashMap<u32, FxHashSet<ConnKey>>,
    stats: TrackerStats,
    events: Vec<ParseEvent>,
    now_ns: u64,
    last_sweep_ns: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        Tracker {
            cfg,
            conns: FxHashMap::default(),
            by_pid: FxHashMap::default(),
            stats: TrackerStats::default(),
            events: Vec::with_capacity(16),
            now_ns: 0,
            last_sweep_ns: 0,
        }
    }

    pub fn stats(&self) -> &TrackerStats {
        &self.stats
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one event (role already set by the socket table); finished
    /// requests are appended to `out`.
    pub fn observe(&mut self, ev: &Event, out: &mut Vec<RequestRecord>) {
        self.now_ns = self.now_ns.max(ev.ts_ns);
        match &ev.body {
            EventBody::Socket(s) => self.on_socket(ev, s, out),
            EventBody::Exit(e) if e.group_dead => self.close_process(ev.pid, ev.ts_ns, out),
            _ => {}
        }
        // Time-driven work runs on event time, at most every 100 ms of it.
        if self.now_ns >= self.last_sweep_ns + 100_000_000 {
            self.sweep(self.now_ns, out);
        }
    }

    /// Advances time without an event (live, when the stream is quiet).
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<RequestRecord>) {
        self.now_ns = self.now_ns.max(now_ns);
        self.sweep(self.now_ns, out);
    }

    /// End of input (a replay's end, a capture's duration): reports what is
    /// complete as far as we know; requests still waiting for their response
    /// were merely in flight and are counted as `unfinished`, not reported.
    pub fn finish(&mut self, out: &mut Vec<RequestRecord>) {
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for k in keys {
            self.close_as(k, self.now_ns, out, false);
        }
    }

    fn key_of(s: &SocketEvent) -> ConnKey {
        ConnKey { sock_id: s.sock_id, peer: (s.proto == L4Proto::Udp).then_some(s.dst) }
    }

    fn on_socket(&mut self, ev: &Event, s: &SocketEvent, out: &mut Vec<RequestRecord>) {
        let key = Self::key_of(s);
        match s.op {
            SocketOp::Connect => {
                // A (re)connect starts a new connection on this socket.
                if self.conns.contains_key(&key) {
                    self.close(key, ev.ts_ns, out);
                }
                if s.ret == 0 || s.ret == EINPROGRESS {
                    let c = self.conn_mut(key, ev, s);
                    c.first_ns = s.start_ns(ev.ts_ns);
                    if s.ret == 0 {
                        c.connect_ns = s.latency_ns;
                    }
                }
            }
            SocketOp::ConnectDone => {
                if s.ret == 0 {
                    if let Some(c) = self.conns.get_mut(&key) {
                        c.connect_ns = s.latency_ns;
                    }
                }
            }
            SocketOp::Accept => {
                if self.conns.contains_key(&key) {
                    self.close(key, ev.ts_ns, out);
                }
                let c = self.conn_mut(key, ev, s);
                c.first_ns = ev.ts_ns;
            }
            SocketOp::Close => {
                // A forked process closing its copy of a socket another one
                // still uses (a server handing a connection to a child) does
                // not end the connection: only its latest user's close does.
                if self.conns.get(&key).is_some_and(|c| c.pid != ev.pid) {
                    return;
                }
                if s.proto == L4Proto::Udp {
                    self.close_socket(ev.pid, s.sock_id, ev.ts_ns, out);
                } else {
                    self.close(key, ev.ts_ns, out);
                }
            }
            SocketOp::Send | SocketOp::Recv => {
                if s.bytes == 0 {
                    // EOF or an error: whatever had no known end, ended.
                    if let Some(c) = self.conns.get_mut(&key) {
                        c.last_ns = ev.ts_ns;
                        end_open_ended(c);
                        emit_done(c, &self.cfg, out);
                    }
                    return;
                }
                self.on_data(key, ev, s, out);
            }
        }
    }

    fn conn_mut(&mut self, key: ConnKey, ev: &Event, s: &SocketEvent) -> &mut Conn {
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= self.cfg.max_connections {
                self.evict_oldest();
            }
            self.by_pid.entry(ev.pid).or_default().insert(key);
        }
        self.conns.entry(key).or_insert_with(|| Conn {
            sock_id: s.sock_id,
            role: s.role,
            udp: s.proto == L4Proto::Udp,
            pid: ev.pid,
            comm: ev.comm,
            local: s.src,
            peer: s.dst,
            protocol: Protocol::Tcp,
            parser: ParserState::Detecting { attempts: 0, carry: None },
            pending: VecDeque::new(),
            connect_ns: 0,
            first_ns: s.start_ns(ev.ts_ns),
            last_ns: ev.ts_ns,
            up_bytes: 0,
            down_bytes: 0,
            gave_up_seen: 0,
        })
    }

    fn evict_oldest(&mut self) {
        // Rare (the table is sized for the host); a linear scan keeps the
        // common path free of LRU bookkeeping.
        if let Some((&k, _)) = self.conns.iter().min_by_key(|(_, c)| c.last_ns) {
            if let Some(c) = self.conns.remove(&k) {
                self.unindex(c.pid, k);
            }
            self.stats.connections_evicted += 1;
        }
    }

    /// The connection's latest user is `pid` (a socket shared across fork).
    fn adopt(&mut self, key: ConnKey, pid: u32) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        if c.pid == pid {
            return;
        }
        let old = std::mem::replace(&mut c.pid, pid);
        self.unindex(old, key);
        self.by_pid.entry(pid).or_default().insert(key);
    }

    fn unindex(&mut self, pid: u32, key: ConnKey) {
        if let Some(set) = self.by_pid.get_mut(&pid) {
            set.remove(&key);
            if set.is_empty() {
                self.by_pid.remove(&pid);
            }
        }
    }

    fn on_data(&mut self, key: ConnKey, ev: &Event, s: &SocketEvent, out: &mut Vec<RequestRecord>) {
        self.conn_mut(key, ev, s);
        self.adopt(key, ev.pid);
        let Tracker { conns, events, stats, cfg, .. } = self;
        let Some(c) = conns.get_mut(&key) else { return };
        if c.role == Role::Unknown && s.role != Role::Unknown {
            c.role = s.role;
        }
        c.last_ns = ev.ts_ns;
        let client = c.role != Role::Server;
        let dir = match (client, s.op) {
            (true, SocketOp::Send) | (false, SocketOp::Recv) => Direction::Request,
            _ => Direction::Response,
        };
        match dir {
            Direction::Request => c.up_bytes += s.bytes as u64,
            Direction::Response => c.down_bytes += s.bytes as u64,
        }
        let len = (s.bytes as usize).max(s.payload.len());
        let start_ns = s.start_ns(ev.ts_ns);
        let mut meta = ChunkMeta { start_ns, first_end_ns: ev.ts_ns, end_ns: ev.ts_ns, len: len as u64, tid: ev.tid };
        // While detecting, small chunks of the same direction are joined.
        let mut joined = Vec::new();
        if let ParserState::Detecting { carry, .. } = &mut c.parser {
            if let Some(k) = carry.take().filter(|k| k.dir == dir) {
                meta.start_ns = k.start_ns;
                meta.first_end_ns = k.first_end_ns;
                meta.len += k.bytes.len() as u64;
                joined = k.bytes;
                joined.extend_from_slice(&s.payload);
            }
        }
        let head: &[u8] = if joined.is_empty() { &s.payload } else { &joined };
        let chunk = Chunk { dir, head, len: meta.len as usize };
        if let ParserState::Detecting { attempts, carry } = &mut c.parser {
            let server_port = if client { c.peer.port() } else { c.local.port() };
            match detect(chunk, server_port, c.udp).and_then(|p| new_parser(p).map(|parser| (p, parser))) {
                Some((p, parser)) => {
                    c.protocol = p;
                    c.parser = ParserState::Parsing(parser);
                }
                None => {
                    *attempts += 1;
                    if !c.udp && chunk.head.len() == chunk.len && chunk.len <= DETECT_CARRY {
                        let bytes = chunk.head.to_vec();
                        *carry = Some(Carry { dir, bytes, start_ns: meta.start_ns, first_end_ns: meta.first_end_ns });
                    }
                    if *attempts >= cfg.detect_chunks {
                        c.parser = ParserState::Opaque;
                    }
                    return;
                }
            }
        }
        let ParserState::Parsing(parser) = &mut c.parser else { return };
        events.clear();
        parser.feed(chunk, events);
        let gave_up = parser.gave_up();
        stats.parser_gave_up += gave_up.saturating_sub(c.gave_up_seen);
        c.gave_up_seen = gave_up;
        let (orphans, overflow) = apply(c, dir, &meta, events, cfg.max_pending);
        stats.orphan_responses += orphans;
        stats.pending_overflow += overflow;
        emit_done(c, cfg, out);
    }

    /// Time-driven completion: open-ended responses that went quiet,
    /// requests that never got a response, connections that went silent.
    fn sweep(&mut self, now: u64, out: &mut Vec<RequestRecord>) {
        self.last_sweep_ns = now;
        let mut idle = Vec::new();
        for (k, c) in self.conns.iter_mut() {
            for p in c.pending.iter_mut() {
                if let Some((_, m)) = &mut p.resp {
                    if !m.done && m.last_end_ns + self.cfg.idle_flush_ns <= now {
                        m.done = true;
                    }
                }
            }
            emit_done(c, &self.cfg, out);
            while let Some(p) = c.pending.front() {
                if p.resp.is_none() && p.reqm.start_ns + self.cfg.response_timeout_ns <= now {
                    let p = c.pending.pop_front().expect("front exists");
                    self.stats.unanswered += 1;
                    out.push(build(c, p, &self.cfg, Some("timeout")));
                } else {
                    break;
                }
            }
            if c.last_ns + self.cfg.conn_idle_ns <= now {
                idle.push(*k);
            }
        }
        for k in idle {
            self.close(k, now, out);
        }
    }

    fn close(&mut self, key: ConnKey, ts: u64, out: &mut Vec<RequestRecord>) {
        self.close_as(key, ts, out, true)
    }

    /// Forgets a connection. `closed`: it really ended, so requests without
    /// a response failed; else input ended and they are just unfinished.
    fn close_as(&mut self, key: ConnKey, ts: u64, out: &mut Vec<RequestRecord>, closed: bool) {
        let Some(mut c) = self.conns.remove(&key) else { return };
        self.unindex(c.pid, key);
        // Every response ends with its connection (open-ended ones included).
        for p in c.pending.iter_mut() {
            if let Some((_, m)) = &mut p.resp {
                m.done = true;
            }
        }
        emit_done(&mut c, &self.cfg, out);
        while let Some(p) = c.pending.pop_front() {
            if closed {
                self.stats.unanswered += 1;
                out.push(build(&c, p, &self.cfg, Some("closed")));
            } else {
                self.stats.unfinished += 1;
            }
        }
        if matches!(c.parser, ParserState::Opaque | ParserState::Detecting { .. })
            && !c.udp
            && c.up_bytes + c.down_bytes > 0
        {
            out.push(tcp_record(&c, ts));
        }
    }

    fn close_socket(&mut self, pid: u32, sock_id: u64, ts: u64, out: &mut Vec<RequestRecord>) {
        let keys: Vec<ConnKey> = self
            .by_pid
            .get(&pid)
            .map(|s| s.iter().filter(|k| k.sock_id == sock_id).copied().collect())
            .unwrap_or_default();
        for k in keys {
            self.close(k, ts, out);
        }
    }

    fn close_process(&mut self, pid: u32, ts: u64, out: &mut Vec<RequestRecord>) {
        let keys: Vec<ConnKey> = self.by_pid.get(&pid).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for k in keys {
            self.close(k, ts, out);
        }
    }
}

/// Applies one chunk's parse events to the connection. Returns (orphan
/// responses, requests dropped for overflow).
fn apply(c: &mut Conn, dir: Direction, m: &ChunkMeta, events: &mut Vec<ParseEvent>, max_pending: usize) -> (u64, u64) {
    let (mut orphans, mut overflow) = (0, 0);
    // Bytes of the chunk not claimed by messages starting in it continue the
    // message that was open in this direction before it. A start that does
    // not say its size takes the rest of the chunk.
    let mut claimed = 0u64;
    let mut has_unsized = false;
    for e in events.iter() {
        if let ParseEvent::Start { dir: d, bytes, .. } = e {
            if *d == dir {
                match bytes {
                    Some(b) => claimed += *b as u64,
                    None => has_unsized = true,
                }
            }
        }
    }
    let starts_here = claimed > 0 || has_unsized;
    let carry = if has_unsized { 0 } else { m.len.saturating_sub(claimed) };
    if carry > 0 || !starts_here {
        if let Some(open) = open_msg(c, dir, None) {
            open.extend(m, carry);
        }
    }
    let mut rest = m.len.saturating_sub(claimed);
    for e in events.drain(..) {
        match e {
            ParseEvent::Start { dir: Direction::Request, id, info: Info::Request(req), extent, bytes } => {
                // In-order protocols: a new request means the previous one was
                // fully sent and an open-ended response before it is over.
                if id.is_none() {
                    for p in c.pending.iter_mut() {
                        p.reqm.done = true;
                        if let Some((_, rm)) = &mut p.resp {
                            if rm.open_ended {
                                rm.done = true;
                            }
                        }
                    }
                }
                if c.pending.len() >= max_pending {
                    c.pending.pop_front();
                    overflow += 1;
                }
                let b = bytes.map(|b| b as u64).unwrap_or_else(|| std::mem::take(&mut rest));
                c.pending.push_back(Pending {
                    id,
                    req,
                    reqm: Msg::new(m, b, extent),
                    resp: None,
                    connect_ns: std::mem::take(&mut c.connect_ns),
                });
            }
            ParseEvent::Start { dir: Direction::Response, id, info: Info::Response(resp), extent, bytes } => {
                let target = match id {
                    Some(id) => c.pending.iter_mut().find(|p| p.id == Some(id) && p.resp.is_none()),
                    None => c.pending.iter_mut().find(|p| p.resp.is_none()),
                };
                let Some(p) = target else {
                    orphans += 1;
                    continue;
                };
                p.reqm.done = true;
                let b = bytes.map(|b| b as u64).unwrap_or_else(|| std::mem::take(&mut rest));
                p.resp = Some((resp, Msg::new(m, b, extent)));
            }
            ParseEvent::End { dir: d, id } => {
                if let Some(open) = open_msg(c, d, id) {
                    open.last_end_ns = m.end_ns;
                    open.done = true;
                }
            }
            // A Start whose info does not match its direction: ignore.
            ParseEvent::Start { .. } => {}
        }
    }
    (orphans, overflow)
}

/// The message currently open in `dir` (by id when given).
fn open_msg(c: &mut Conn, dir: Direction, id: Option<u64>) -> Option<&mut Msg> {
    let matches_id = |p: &Pending| id.is_none() || p.id == id;
    match dir {
        Direction::Request => c.pending.iter_mut().rev().filter(|p| matches_id(p)).find(|p| !p.reqm.done).map(|p| &mut p.reqm),
        Direction::Response => c
            .pending
            .iter_mut()
            .filter(|p| matches_id(p))
            .filter_map(|p| p.resp.as_mut().map(|(_, m)| m))
            .find(|m| !m.done),
    }
}

/// Ends every response whose end only silence or the next message can tell.
fn end_open_ended(c: &mut Conn) {
    for p in c.pending.iter_mut() {
        if let Some((_, m)) = &mut p.resp {
            if m.open_ended {
                m.done = true;
            }
        }
    }
}

/// Emits every request whose response is complete, keeping the order of
/// the others.
fn emit_done(c: &mut Conn, cfg: &TrackerConfig, out: &mut Vec<RequestRecord>) {
    if !c.pending.iter().any(|p| p.resp.as_ref().is_some_and(|(_, m)| m.done)) {
        return;
    }
    // Rotates in place: each pending request is looked at once, the
    // unfinished ones go back in their order.
    for _ in 0..c.pending.len() {
        let Some(p) = c.pending.pop_front() else { break };
        if p.resp.as_ref().is_some_and(|(_, m)| m.done) {
            out.push(build(c, p, cfg, None));
        } else {
            c.pending.push_back(p);
        }
    }
}

fn build(c: &Conn, p: Pending, cfg: &TrackerConfig, missing: Option<&str>) -> RequestRecord {
    let side = if c.role == Role::Server { Side::Server } else { Side::Client };
    let (src, dst) = if side == Side::Server { (c.peer, c.local) } else { (c.local, c.peer) };
    let r = p.reqm;
    let (resp_info, resp) = match p.resp {
        Some((info, m)) => (Some(info), Some(m)),
        None => (None, None),
    };
    let (start, end, bd) = match (side, resp) {
        (Side::Client, Some(rm)) => {
            let start = r.start_ns.saturating_sub(p.connect_ns);
            let req_end = r.last_end_ns.max(r.start_ns);
            let first = rm.first_end_ns.max(req_end);
            let end = rm.last_end_ns.max(first);
            let bd = Breakdown {
                connect_ns: p.connect_ns,
                request_sent_ns: req_end - r.start_ns,
                waiting_ttfb_ns: first - req_end,
                content_download_ns: end - first,
            };
            (start, end, bd)
        }
        (Side::Server, Some(rm)) => {
            let start = r.first_end_ns;
            let req_end = r.last_end_ns.max(start);
            let first = rm.start_ns.max(req_end);
            let end = rm.last_end_ns.max(first);
            let bd = Breakdown {
                connect_ns: 0,
                request_sent_ns: req_end - start,
                waiting_ttfb_ns: first - req_end,
                content_download_ns: end - first,
            };
            (start, end, bd)
        }
        (_, None) => {
            let start = if side == Side::Server { r.first_end_ns } else { r.start_ns.saturating_sub(p.connect_ns) };
            (start, r.last_end_ns.max(start), Breakdown::default())
        }
    };
    let protocol = resp_info.as_ref().and_then(|i| i.protocol).unwrap_or(c.protocol);
    let duration = end - start;
    let (status, is_error, error) = match (&resp_info, missing) {
        (Some(i), _) => {
            let status = if i.status.is_empty() { "unknown".to_string() } else { i.status.clone() };
            (status, i.is_error, i.message.clone())
        }
        (None, Some(why)) => (why.to_string(), true, String::new()),
        (None, None) => ("unknown".to_string(), false, String::new()),
    };
    let trace = p.req.trace.unwrap_or_default();
    // Parsers copy these from the payload: mask what must not be kept.
    let mut detail = p.req.detail;
    let mut error = error;
    kindling_events::redact::redact_string(&mut detail);
    kindling_events::redact::redact_string(&mut error);
    RequestRecord {
        start_ts_ns: start,
        end_ts_ns: end,
        protocol,
        side,
        pid: c.pid,
        tid: r.tid,
        response_tid: resp.map_or(r.tid, |m| m.tid),
        comm: c.comm.to_string_lossy(),
        src,
        dst,
        method: p.req.method,
        endpoint: p.req.endpoint,
        detail,
        status,
        is_error,
        is_slow: duration >= cfg.slow.ms(protocol) * 1_000_000,
        error,
        duration_ns: duration,
        breakdown: bd,
        request_bytes: r.bytes,
        response_bytes: resp.map_or(0, |m| m.bytes),
        trace_id: trace.trace_id,
        trace_type: trace.trace_type,
        sock_id: c.sock_id,
        tcp: TcpDuring::default(),
    }
}

/// A connection with no protocol we parse: one record for its whole life.
fn tcp_record(c: &Conn, ts: u64) -> RequestRecord {
    let side = if c.role == Role::Server { Side::Server } else { Side::Client };
    let (src, dst) = if side == Side::Server { (c.peer, c.local) } else { (c.local, c.peer) };
    let end = ts.max(c.last_ns).max(c.first_ns);
    let duration = end - c.first_ns;
    RequestRecord {
        start_ts_ns: c.first_ns,
        end_ts_ns: end,
        protocol: Protocol::Tcp,
        side,
        pid: c.pid,
        tid: 0,
        response_tid: 0,
        comm: c.comm.to_string_lossy(),
        src,
        dst,
        method: String::new(),
        endpoint: String::new(),
        detail: String::new(),
        status: String::new(),
        is_error: false,
        is_slow: false,
        error: String::new(),
        duration_ns: duration,
        breakdown: Breakdown { connect_ns: c.connect_ns, ..Breakdown::default() },
        request_bytes: c.up_bytes,
        response_bytes: c.down_bytes,
        trace_id: String::new(),
        trace_type: String::new(),
        sock_id: c.sock_id,
        tcp: TcpDuring::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Builds socket events for one connection.
    struct Conv {
        pid: u32,
        sock_id: u64,
        role: Role,
        local: SocketAddr,
        peer: SocketAddr,
        proto: L4Proto,
    }

    impl Conv {
        fn tcp_client() -> Conv {
            Conv {
                pid: 10,
                sock_id: 0xa1,
                role: Role::Client,
                local: "127.0.0.1:40000".parse().unwrap(),
                peer: "127.0.0.1:8080".parse().unwrap(),
                proto: L4Proto::Tcp,
            }
        }
        fn tcp_server() -> Conv {
            Conv {
                pid: 20,
                sock_id: 0xb2,
                role: Role::Server,
                local: "127.0.0.1:8080".parse().unwrap(),
                peer: "127.0.0.1:40000".parse().unwrap(),
                proto: L4Proto::Tcp,
            }
        }
        fn ev(&self, op: SocketOp, end_ns: u64, lat: u64, bytes: usize, payload: &[u8], ret: i64) -> Event {
            let syscall = match op {
                SocketOp::Send => Syscall::Write,
                SocketOp::Recv => Syscall::Read,
                SocketOp::Connect | SocketOp::ConnectDone => Syscall::Connect,
                SocketOp::Accept => Syscall::Accept4,
                SocketOp::Close => Syscall::Close,
            };
            Event {
                ts_ns: end_ns,
                pid: self.pid,
                tid: self.pid + 1,
                cpu: 0,
                comm: Comm::from("t"),
                body: EventBody::Socket(SocketEvent {
                    op,
                    syscall,
                    fd: 3,
                    sock_id: self.sock_id,
                    proto: self.proto,
                    src: self.local,
                    dst: self.peer,
                    bytes: bytes as u32,
                    latency_ns: lat,
                    ret,
                    msg_index: 0,
                    payload: payload[..payload.len().min(1024)].to_vec(), // the agent's default snaplen
                    role: self.role,
                }),
            }
        }
        fn send(&self, end: u64, lat: u64, p: &[u8]) -> Event {
            self.ev(SocketOp::Send, end, lat, p.len(), p, p.len() as i64)
        }
        fn recv(&self, end: u64, lat: u64, p: &[u8]) -> Event {
            self.ev(SocketOp::Recv, end, lat, p.len(), p, p.len() as i64)
        }
        fn close(&self, end: u64) -> Event {
            self.ev(SocketOp::Close, end, 0, 0, b"", 0)
        }
    }

    fn run(events: &[Event]) -> Vec<RequestRecord> {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut out = Vec::new();
        for e in events {
            t.observe(e, &mut out);
        }
        t.finish(&mut out);
        out
    }

    const GET: &[u8] = b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn client_keep_alive_with_breakdown() {
        let c = Conv::tcp_client();
        let mut evs = vec![c.ev(SocketOp::Connect, MS, MS / 2, 0, b"", 0)];
        // request written 2.0-2.1 ms, response read 5.0 (first byte), body fully at 5.0
        evs.push(c.send(2 * MS + MS / 10, MS / 10, GET));
        evs.push(c.recv(5 * MS, 2 * MS, OK));
        evs.push(c.send(10 * MS, MS / 10, GET));
        evs.push(c.recv(12 * MS, MS, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
        let out = run(&evs);
        assert_eq!(out.len(), 2);
        let r = &out[0];
        assert_eq!((r.protocol, r.side), (Protocol::Http, Side::Client));
        assert_eq!((r.method.as_str(), r.endpoint.as_str(), r.status.as_str()), ("GET", "/users/{id}", "200"));
        assert_eq!(r.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r.trace_type, "w3c");
        assert_eq!(r.breakdown.connect_ns, MS / 2);
        assert_eq!(r.breakdown.request_sent_ns, MS / 10);
        assert_eq!(r.breakdown.waiting_ttfb_ns, 5 * MS - (2 * MS + MS / 10));
        assert_eq!(r.breakdown.content_download_ns, 0);
        assert_eq!(r.start_ts_ns, 2 * MS - MS / 2);
        assert_eq!(r.duration_ns, r.end_ts_ns - r.start_ts_ns);
        assert_eq!(r.duration_ns, 5 * MS - (2 * MS - MS / 2));
        assert_eq!((r.request_bytes, r.response_bytes), (GET.len() as u64, OK.len() as u64));
        assert_eq!(r.src, c.local);
        assert_eq!(r.dst, c.peer);
        // The second request on the connection has no connect time.
        assert_eq!(out[1].breakdown.connect_ns, 0);
        assert_eq!(out[1].status, "404");
        assert!(out[1].is_error);
    }

    #[test]
    fn server_side_timings_and_split_response() {
        let s = Conv::tcp_server();
        let body = vec![b'x'; 3000];
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n".to_vec();
        head.extend_from_slice(&body[..1000]);
        let evs = vec![
            s.ev(SocketOp::Accept, MS, 0, 0, b"", 5),
            s.recv(2 * MS, 10, GET),
            // response written in two syscalls: headers+1000, then 2000
            s.send(7 * MS, MS, &head),
            s.ev(SocketOp::Send, 9 * MS, MS, 2000, &body[..512], 2000),
        ];
        let out = run(&evs);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.side, Side::Server);
        assert_eq!(r.src, s.peer, "src is the client");
        assert_eq!(r.start_ts_ns, 2 * MS);
        assert_eq!(r.breakdown.request_sent_ns, 0);
        assert_eq!(r.breakdown.waiting_ttfb_ns, 4 * MS, "processing until the response starts");
        assert_eq!(r.breakdown.content_download_ns, 3 * MS, "writing the response");
        assert_eq!(r.duration_ns, 7 * MS);
        assert_eq!(r.response_bytes, head.len() as u64 + 2000);
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let s = Conv::tcp_server();
        let mut batch = Vec::new();
        for i in 0..3 {
            batch.extend_from_slice(format!("GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        }
        let mut resp = Vec::new();
        for code in [200, 201, 503] {
            resp.extend_from_slice(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
        let out = run(&[s.recv(MS, 10, &batch), s.send(2 * MS, 10, &resp)]);
        let got: Vec<(&str, &str)> = out.iter().map(|r| (r.endpoint.as_str(), r.status.as_str())).collect();
        assert_eq!(got, vec![("/r0", "200"), ("/r1", "201"), ("/r2", "503")]);
    }

    #[test]
    fn no_response_is_an_error_on_close_and_on_timeout() {
        let c = Conv::tcp_client();
        let out = run(&[c.send(MS, 10, GET), c.close(2 * MS)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, "closed");
        assert!(out[0].is_error);

        let mut t = Tracker::new(TrackerConfig::default());
        let mut out = Vec::new();
        t.observe(&c.send(MS, 10, GET), &mut out);
        t.tick(MS + 29_000 * MS, &mut out);
        assert!(out.is_empty());
        t.tick(MS + 31_000 * MS, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, "timeout");
        assert_eq!(t.stats().unanswered, 1);
    }

    #[test]
    fn close_delimited_response_ends_by_silence_or_eof() {
        let c = Conv::tcp_client();
        let mut t = Tracker::new(TrackerConfig::default());
        let mut out = Vec::new();
        t.observe(&c.send(MS, 10, b"GET / HTTP/1.0\r\n\r\n"), &mut out);
        t.observe(&c.recv(3 * MS, 10, b"HTTP/1.0 200 OK\r\n\r\nbody..."), &mut out);
        t.observe(&c.recv(4 * MS, 10, b"more body"), &mut out);
        assert!(out.is_empty(), "the body may go on");
        t.tick(4 * MS + 999 * MS, &mut out);
        assert!(out.is_empty());
        t.tick(4 * MS + 1001 * MS, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].end_ts_ns, 4 * MS);
        assert_eq!(out[0].response_bytes, 26 + 9);
    }

    #[test]
    fn dns_over_udp_pairs_by_id_out_of_order() {
        let c = Conv {
            pid: 5,
            sock_id: 9,
            role: Role::Client,
            local: "127.0.0.1:50000".parse().unwrap(),
            peer: "127.0.0.1:53".parse().unwrap(),
            proto: L4Proto::Udp,
        };
        let q = |id: u16, name: &[u8]| {
            let mut v = id.to_be_bytes().to_vec();
            v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
            for label in name.split(|&b| b == b'.') {
                v.push(label.len() as u8);
                v.extend_from_slice(label);
            }
            v.extend_from_slice(&[0, 0, 1, 0, 1]);
            v
        };
        let a = |id: u16, name: &[u8], rcode: u8| {
            let mut v = q(id, name);
            v[2] = 0x81;
            v[3] = 0x80 | rcode;
            v
        };
        let out = run(&[
            c.send(MS, 10, &q(1, b"one.test")),
            c.send(2 * MS, 10, &q(2, b"two.test")),
            c.recv(3 * MS, 10, &a(2, b"two.test", 3)),
            c.recv(4 * MS, 10, &a(1, b"one.test", 0)),
        ]);
        let got: Vec<(&str, &str)> = out.iter().map(|r| (r.endpoint.as_str(), r.status.as_str())).collect();
        assert_eq!(got, vec![("two.test", "NXDOMAIN"), ("one.test", "NOERROR")]);
        assert_eq!(out[0].protocol, Protocol::Dns);
        assert!(out[0].is_error && !out[1].is_error);
    }

    /// dnsmasq reads a DNS-over-TCP query's 2-byte length prefix one byte at a
    /// time: neither byte can be detected alone, the three reads together can.
    #[test]
    fn length_prefix_read_on_its_own_is_joined_for_detection() {
        let s = Conv { local: "127.0.0.1:40903".parse().unwrap(), ..Conv::tcp_server() }; // no port hint
        let mut q = vec![0x2a, 0x38, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        for label in ["b", "kindling", "test"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q.extend_from_slice(&[0, 0, 0x29, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // OPT
        let mut a = q.clone();
        a[2] = 0x85;
        a[3] = 0x80;
        a[7] = 1; // one answer
        let opt = a.split_off(a.len() - 11);
        a.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 10, 1, 2, 3]);
        a.extend_from_slice(&opt);
        let prefixed = |m: &[u8]| [&(m.len() as u16).to_be_bytes()[..], m].concat();
        let out = run(&[
            s.ev(SocketOp::Accept, MS, 0, 0, b"", 9),
            s.recv(2 * MS, 10, &[0]),
            s.recv(3 * MS, 10, &[q.len() as u8]),
            s.recv(4 * MS, 10, &q),
            s.send(5 * MS, 10, &prefixed(&a)),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        let r = &out[0];
        assert_eq!(r.protocol, Protocol::Dns);
        assert_eq!((r.method.as_str(), r.endpoint.as_str(), r.status.as_str()), ("A", "b.kindling.test", "NOERROR"));
        assert_eq!((r.request_bytes, r.response_bytes), (q.len() as u64 + 2, a.len() as u64 + 2));
        assert_eq!(r.start_ts_ns, 2 * MS, "the request arrived with its first byte");
        assert_eq!(r.end_ts_ns, 5 * MS);
        assert_eq!(r.breakdown.request_sent_ns, 2 * MS, "reading the request took three reads");

        // Small chunks of the other direction are not joined; a protocol
        // never seen within the detection budget is still `tcp`.
        let junk = run(&[s.recv(MS, 10, &[0]), s.send(2 * MS, 10, &[1]), s.recv(3 * MS, 10, &[2]), s.close(4 * MS)]);
        assert_eq!(junk.len(), 1);
        assert_eq!(junk[0].protocol, Protocol::Tcp);
    }

    #[test]
    fn unknown_protocol_gives_one_tcp_record_per_connection() {
        let c = Conv::tcp_client();
        let junk = [0x17u8, 0x03, 0x03, 0x00, 0x20, 9, 9, 9];
        let out = run(&[
            c.ev(SocketOp::Connect, MS, MS / 2, 0, b"", 0),
            c.send(2 * MS, 10, &junk),
            c.recv(3 * MS, 10, &junk),
            c.send(4 * MS, 10, &junk),
            c.recv(5 * MS, 10, &junk[..5]),
            c.send(6 * MS, 10, &junk),
            c.close(7 * MS),
        ]);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!((r.request_bytes, r.response_bytes), (24, 13));
        assert_eq!(r.breakdown.connect_ns, MS / 2);
        assert_eq!(r.duration_ns, 7 * MS - MS / 2);
    }

    #[test]
    fn redis_pipeline_counts_every_command() {
        let c = Conv { peer: "127.0.0.1:6379".parse().unwrap(), ..Conv::tcp_client() };
        let mut batch = Vec::new();
        for i in 0..16 {
            let k = format!("key:{i:012}");
            batch.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n$3\r\nxxx\r\n", k.len()).as_bytes());
        }
        let replies = b"+OK\r\n".repeat(16);
        let e = c.ev(SocketOp::Send, MS, 10, batch.len(), &batch, batch.len() as i64);
        let out = run(&[e, c.recv(2 * MS, 10, &replies)]);
        assert_eq!(out.len(), 16);
        assert!(out.iter().all(|r| r.method == "SET" && r.status == "OK" && r.protocol == Protocol::Redis));
    }

    #[test]
    fn secrets_never_reach_the_record() {
        let c = Conv::tcp_client();
        let req = b"GET /login?user=bob&password=hunter2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let out = run(&[c.send(MS, 10, req), c.recv(2 * MS, 10, OK)]);
        assert_eq!(out.len(), 1);
        assert!(!out[0].detail.contains("hunter2"), "{}", out[0].detail);
        assert_eq!(out[0].endpoint, "/login");
    }

    #[test]
    fn a_forked_copy_closing_does_not_end_the_connection() {
        let parent = Conv::tcp_server();
        let child = Conv { pid: 21, ..Conv::tcp_server() };
        let mut t = Tracker::new(TrackerConfig::default());
        let mut out = Vec::new();
        t.observe(&parent.recv(MS, 10, GET), &mut out);
        t.observe(&parent.send(2 * MS, 10, OK), &mut out);
        // The child takes over; the parent closes its copy mid-request.
        t.observe(&child.recv(3 * MS, 10, GET), &mut out);
        t.observe(&parent.close(4 * MS), &mut out);
        t.observe(&child.send(5 * MS, 10, OK), &mut out);
        t.observe(&child.close(6 * MS), &mut out);
        let statuses: Vec<(&str, u32)> = out.iter().map(|r| (r.status.as_str(), r.pid)).collect();
        assert_eq!(statuses, vec![("200", 20), ("200", 21)]);
        assert_eq!(t.connections(), 0);
    }

    #[test]
    fn process_exit_flushes_its_connections_and_memory_is_bounded() {
        let c = Conv::tcp_client();
        let mut t = Tracker::new(TrackerConfig { max_connections: 2, ..TrackerConfig::default() });
        let mut out = Vec::new();
        for i in 0..5u64 {
            let conv = Conv { sock_id: 100 + i, ..Conv::tcp_client() };
            t.observe(&conv.send(MS * (i + 1), 10, GET), &mut out);
        }
        assert_eq!(t.connections(), 2);
        assert_eq!(t.stats().connections_evicted, 3);
        let exit = Event {
            ts_ns: 10 * MS,
            pid: c.pid,
            tid: c.pid,
            cpu: 0,
            comm: Comm::from("t"),
            body: EventBody::Exit(ExitEvent { exit_code: 0, group_dead: true }),
        };
        t.observe(&exit, &mut out);
        assert_eq!(t.connections(), 0);
        assert_eq!(out.len(), 2, "the two remaining requests end as `closed`");
    }
}
