//! MySQL / MariaDB client/server protocol.
//!
//! Packets are a 3-byte little-endian payload length and a sequence id, framed
//! with [`LengthFramer`]. A command is one packet with sequence id 0 from the
//! client; everything the server sends until that command is answered is one
//! response, which for a result set spans many packets and chunks. Result sets
//! are followed with a small state machine that works with and without
//! `CLIENT_DEPRECATE_EOF` and with MariaDB's skipped metadata
//! (`MARIADB_CLIENT_CACHE_METADATA`) without needing the handshake: column
//! definitions are recognised by their `def` catalog, EOF packets by their
//! 5-byte payload, OK-as-terminator packets by their `0xfe` header and length.
//!
//! What is reported (`id` is always `None`: responses answer commands in order):
//! - `COM_QUERY`: method = SQL verb, endpoint = SQL template, detail = SQL.
//!   Query attributes (`CLIENT_QUERY_ATTRIBUTES`, MySQL 8) before the SQL are
//!   skipped, using the capabilities from the handshake or, for a connection
//!   picked up mid-stream, the unmistakable `00 01` prefix.
//! - `COM_STMT_PREPARE`: method `PREPARE`, endpoint/detail from its SQL; the
//!   statement id from the server's PREPARE_OK is remembered (bounded map) so
//!   `COM_STMT_EXECUTE` (and MariaDB's bulk execute) report the SQL's verb and
//!   template; a statement prepared before the capture began is `EXECUTE`.
//!   `COM_STMT_FETCH` is `COM_STMT_FETCH` with the statement's template.
//! - Other commands: method and endpoint are the command name (`COM_PING`,
//!   `COM_INIT_DB` with the database in detail, `COM_FIELD_LIST`,
//!   `COM_STATISTICS`, `COM_STMT_RESET`, `COM_RESET_CONNECTION`,
//!   `COM_CHANGE_USER`, `COM_SET_OPTION`, `COM_BINLOG_DUMP`...).
//! - Not reported, because the server never answers them (reporting them
//!   would shift in-order pairing): `COM_QUIT`, `COM_STMT_CLOSE`,
//!   `COM_STMT_SEND_LONG_DATA`. The handshake and authentication exchange is
//!   not reported either; a TLS upgrade (`CLIENT_SSL`) ends parsing.
//! - Responses: OK -> status `OK`; ERR -> status = error code (`1146`),
//!   `is_error`, message = the error text; a result set (or several, with
//!   `SERVER_MORE_RESULTS_EXISTS`) is one response with status `OK` unless an
//!   ERR ends it within the chunk where it starts. `COM_STATISTICS` answers
//!   with a bare string: `OK`.
//! - `LOAD DATA LOCAL INFILE`: the server's `0xfb` file request and the
//!   client's upload are part of the exchange; the response is reported from
//!   the server's final OK/ERR, so its status is the load's outcome. MariaDB
//!   progress reports (ERR packets with code 0xffff) are skipped anywhere.
//! - `COM_BINLOG_DUMP`: the first event is reported as an `Unknown` response,
//!   then the connection is ignored.
//!
//! Extents and lost boundaries are handled as for PostgreSQL: `Continues` with
//! an `End` when the response's last packet is seen; `Unknown` when the head of
//! a long result is cut so packet boundaries are lost, and the following
//! server chunks are ignored until the next command.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::framing::{LengthFramer, Start};
use crate::sql::{BoundedMap, Dialect, Statement};
use crate::{Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, ResponseInfo};

/// Ports where MySQL/MariaDB usually listen.
const PORTS: [u16; 2] = [3306, 3307];
/// A payload of this length continues in the next packet.
const MAX_PAYLOAD: usize = 0xff_ffff;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 128;
/// Commands awaiting an answer that we keep track of.
const MAX_PENDING: usize = 64;

const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_SSL: u32 = 0x800;
const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
const CLIENT_QUERY_ATTRIBUTES: u32 = 1 << 27;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
/// MariaDB reports progress as an ERR packet with this code.
const PROGRESS_REPORT: u16 = 0xffff;

const COM_QUIT: u8 = 0x01;
const COM_INIT_DB: u8 = 0x02;
const COM_QUERY: u8 = 0x03;
const COM_FIELD_LIST: u8 = 0x04;
const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;
const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
const COM_STMT_CLOSE: u8 = 0x19;
const COM_STMT_FETCH: u8 = 0x1c;
const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// Is this the first chunk of a MySQL connection (the server greeting), or a
/// chunk from the middle of one?
pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    let h = chunk.head;
    let hinted = PORTS.contains(&server_port);
    let Some((plen, seq)) = header(h, 0) else { return false };
    let payload = &h[4..h.len().min(4 + plen)];
    let exact = 4 + plen == chunk.len;
    match chunk.dir {
        Direction::Response => {
            if seq == 0 && is_greeting(payload, plen) {
                return true;
            }
            if seq == 0 && hinted && payload.first() == Some(&0xff) {
                return true; // "Too many connections", "Host is blocked"...
            }
            seq == 1 && response_chain(h, chunk.len, hinted)
        }
        Direction::Request => {
            if seq != 0 || plen == 0 || plen >= MAX_PAYLOAD {
                return false;
            }
            if command_kind(payload[0]).is_none() {
                return false;
            }
            if hinted {
                return 4 + plen <= chunk.len || h.len() < chunk.len;
            }
            // Without the port hint: one SQL command whose text starts with a verb.
            exact && matches!(payload[0], COM_QUERY | COM_STMT_PREPARE) && plausible_sql(&payload[1..])
        }
    }
}

/// Protocol 10 greeting: version, then a NUL-terminated printable server version.
fn is_greeting(payload: &[u8], plen: usize) -> bool {
    if payload.first() != Some(&10) || !(30..=1024).contains(&plen) {
        return false;
    }
    let version = &payload[1..];
    // The version may run past a cut head.
    let n = match version.iter().position(|&b| b == 0) {
        Some(n) => n,
        None if payload.len() < plen => version.len(),
        None => return false,
    };
    n >= 3 && version[..n].iter().all(|b| b.is_ascii_graphic()) && version[0].is_ascii_digit()
}

/// Server packets with consecutive sequence ids from 1 that end the chunk
/// exactly with an OK, EOF or ERR (or, with the port hint, just chain).
fn response_chain(h: &[u8], len: usize, hinted: bool) -> bool {
    let (mut pos, mut expect_seq, mut last_ok) = (0usize, 1u8, false);
    while let Some((plen, seq)) = header(h, pos) {
        if seq != expect_seq || plen == 0 {
            return false;
        }
        let p = &h[pos + 4..h.len().min(pos + 4 + plen)];
        last_ok = match p.first() {
            Some(0x00) => plen >= 7,
            Some(0xfe) => plen < 9,
            Some(0xff) => plen >= 9 && p.get(3) == Some(&b'#'),
            _ => false,
        };
        pos += 4 + plen;
        expect_seq = expect_seq.wrapping_add(1);
        if pos >= h.len() {
            break;
        }
    }
    if hinted {
        return pos > 0;
    }
    pos == len && h.len() == len && last_ok
}

fn plausible_sql(text: &[u8]) -> bool {
    const VERBS: [&str; 16] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "SET", "SHOW", "BEGIN", "COMMIT", "ROLLBACK",
        "START", "CREATE", "DROP", "ALTER", "USE", "CALL",
    ];
    let text = String::from_utf8_lossy(&text[..text.len().min(256)]);
    let verb = crate::sql::verb(&text);
    VERBS.contains(&verb.as_str())
}

/// Payload length and sequence id of the packet at `pos`, if its header is visible.
fn header(h: &[u8], pos: usize) -> Option<(usize, u8)> {
    let b = h.get(pos..pos.checked_add(4)?)?;
    Some((usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16, b[3]))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A length-encoded integer at `at`: (value, bytes used).
fn lenenc(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let n = match first {
        0..=0xfa => return Some((u64::from(first), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(at + 1..at + 1 + n)?;
    let v = bytes.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x));
    Some((v, 1 + n))
}

/// How the server answers a command.
#[derive(Clone, Debug)]
enum Expect {
    /// OK, ERR or result set(s) (`COM_QUERY`, `COM_STMT_EXECUTE`...).
    Query,
    /// PREPARE_OK and its parameter/column definitions; the statement.
    Prepare(Arc<Statement>),
    /// Binary rows then a terminator (`COM_STMT_FETCH`).
    Rows,
    /// Column definitions then EOF (`COM_FIELD_LIST`).
    FieldList,
    /// One packet of any kind (`COM_PING`, `COM_STATISTICS`...).
    Single,
    /// Authentication until OK or ERR (`COM_CHANGE_USER`).
    Auth,
    /// A stream that does not end (`COM_BINLOG_DUMP`).
    Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommandKind {
    Query,
    Prepare,
    Execute,
    Fetch,
    Silent,
    Other(&'static str, ExpectKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExpectKind {
    Query,
    FieldList,
    Single,
    Auth,
    Stream,
}

fn command_kind(cmd: u8) -> Option<CommandKind> {
    use CommandKind::Other;
    use ExpectKind as E;
    Some(match cmd {
        COM_QUERY => CommandKind::Query,
        COM_STMT_PREPARE => CommandKind::Prepare,
        COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => CommandKind::Execute,
        COM_STMT_FETCH => CommandKind::Fetch,
        COM_QUIT | COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA => CommandKind::Silent,
        COM_INIT_DB => Other("COM_INIT_DB", E::Single),
        COM_FIELD_LIST => Other("COM_FIELD_LIST", E::FieldList),
        0x05 => Other("COM_CREATE_DB", E::Single),
        0x06 => Other("COM_DROP_DB", E::Single),
        0x07 => Other("COM_REFRESH", E::Single),
        0x08 => Other("COM_SHUTDOWN", E::Single),
        0x09 => Other("COM_STATISTICS", E::Single),
        0x0a => Other("COM_PROCESS_INFO", E::Query),
        0x0c => Other("COM_PROCESS_KILL", E::Single),
        0x0d => Other("COM_DEBUG", E::Single),
        0x0e => Other("COM_PING", E::Single),
        0x11 => Other("COM_CHANGE_USER", E::Auth),
        0x12 => Other("COM_BINLOG_DUMP", E::Stream),
        0x15 => Other("COM_REGISTER_SLAVE", E::Single),
        0x1a => Other("COM_STMT_RESET", E::Single),
        0x1b => Other("COM_SET_OPTION", E::Single),
        0x1e => Other("COM_BINLOG_DUMP_GTID", E::Stream),
        0x1f => Other("COM_RESET_CONNECTION", E::Single),
        _ => return None,
    })
}

/// Where the response being read is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The first packet of a result (OK, ERR, column count...).
    First,
    /// Column definitions of a result set (at most `left` more).
    Columns {
        left: u64,
    },
    /// After the definitions: the metadata EOF or the first row.
    AfterColumns,
    Rows,
    /// Parameter and column definitions of a PREPARE_OK, then `eofs` EOFs.
    PrepareDefs {
        left: u64,
        eofs: u8,
    },
    FieldList,
    Auth,
}

/// Whether a server packet starts a response.
enum Opened {
    Yes,
    /// Progress reports and LOCAL INFILE requests answer nothing by themselves.
    Skipped,
    /// No command awaits an answer and it does not look like the start of one.
    Unattributable,
}

/// What one packet does to the response.
enum Step {
    More,
    Done,
    /// Not part of this response: it ends before the packet.
    Foreign,
}

#[derive(Debug)]
struct Response {
    expect: Expect,
    state: State,
    /// Start emitted in an earlier chunk (Continues): an End is due.
    reported: bool,
    start: usize,
    error: Option<(String, String)>,
    /// The previous packet had the maximum length: this one continues it.
    continued: bool,
    /// Statement id from a PREPARE_OK, to remember with its SQL.
    prepared: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Greeting and authentication: not requests.
    Handshake,
    Command,
    /// TLS or a binlog stream: nothing more to parse.
    Opaque,
}

#[derive(Default)]
pub struct MysqlParser {
    req: LengthFramer,
    resp: LengthFramer,
    phase: Option<Phase>,
    /// Client capabilities from the handshake response.
    caps: Option<u32>,
    statements: BoundedMap<u32, Arc<Statement>>,
    expect: VecDeque<Expect>,
    response: Option<Response>,
    /// Boundaries lost inside a response: ignore server chunks until the
    /// client sends its next command.
    response_lost: bool,
    /// A command spilling into later chunks: End when it ends.
    open_request: bool,
    /// Header bytes cut by the end of a fully captured chunk (request, response).
    carry: [Vec<u8>; 2],
    gave_up: u64,
}

impl MysqlParser {
    fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Command)
    }

    fn deprecate_eof(&self) -> bool {
        self.caps.is_some_and(|c| c & CLIENT_DEPRECATE_EOF != 0)
    }

    fn feed_request(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let (head, len) = (chunk.head, chunk.len);
        let mut pos = match self.req.begin(len) {
            Start::Inside { ended } => {
                if ended {
                    self.request_ended(out);
                }
                return;
            }
            Start::At { offset, ended } => {
                if ended {
                    self.request_ended(out);
                }
                offset
            }
        };
        while pos < head.len() {
            // Header and command byte are needed; a whole chunk that cuts
            // them leaves them for the next one.
            if pos + 5 > len && head.len() == len {
                self.carry_header(0, head, pos, len);
                break;
            }
            let Some((plen, seq)) = header(head, pos) else { break };
            let payload = &head[pos + 4..head.len().min(pos + 4 + plen)];
            let (next, complete) = self.req.message(pos, 4 + plen, len, head.len());
            let end = complete.then_some(pos + 4 + plen);
            if !self.client_packet(payload, plen, seq, pos, end, len, out) {
                self.req.resync();
                self.gave_up += 1;
                return;
            }
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
    }

    fn carry_header(&mut self, side: usize, head: &[u8], pos: usize, len: usize) {
        if head.len() == len && pos < len {
            self.carry[side] = head[pos..].to_vec();
        }
    }

    fn request_ended(&mut self, out: &mut Vec<ParseEvent>) {
        if self.open_request {
            self.open_request = false;
            out.push(ParseEvent::End { dir: Direction::Request, id: None });
        }
    }

    /// One client packet; false if it makes no sense as a command.
    #[allow(clippy::too_many_arguments)]
    fn client_packet(
        &mut self,
        payload: &[u8],
        plen: usize,
        seq: u8,
        pos: usize,
        end: Option<usize>,
        len: usize,
        out: &mut Vec<ParseEvent>,
    ) -> bool {
        if self.phase() == Phase::Handshake {
            if seq == 0 && plen > 0 {
                // A command: the OK that ended authentication was not seen.
                self.phase = Some(Phase::Command);
            } else {
                self.handshake_response(payload, seq);
                return true;
            }
        }
        if seq != 0 {
            // File upload for LOAD DATA LOCAL, auth continuation, the rest of
            // a 16 MiB payload: part of the current exchange.
            return true;
        }
        let Some(&cmd) = payload.first() else { return plen == 0 };
        let Some(kind) = command_kind(cmd) else { return false };
        let (stmt, expect) = match kind {
            CommandKind::Silent => {
                if cmd == COM_STMT_CLOSE {
                    if let Some(id) = le32(payload, 1) {
                        self.statements.remove(&id);
                    }
                }
                return true;
            }
            CommandKind::Query => {
                let sql = self.query_text(&payload[1..]);
                (Arc::new(Statement::from_sql(sql, Dialect::Mysql)), Expect::Query)
            }
            CommandKind::Prepare => {
                let stmt = Statement::from_sql(&payload[1..], Dialect::Mysql);
                let info = Statement { method: "PREPARE".to_string(), ..stmt.clone() };
                (Arc::new(info), Expect::Prepare(Arc::new(stmt)))
            }
            CommandKind::Execute | CommandKind::Fetch => {
                let id = le32(payload, 1);
                let stmt = id.and_then(|id| self.statements.get(&id)).unwrap_or_else(|| {
                    Arc::new(Statement::unknown(&format!("statement {}", id.unwrap_or(0))))
                });
                if kind == CommandKind::Fetch {
                    let s = Statement { method: "COM_STMT_FETCH".to_string(), ..(*stmt).clone() };
                    (Arc::new(s), Expect::Rows)
                } else {
                    (stmt, Expect::Query)
                }
            }
            CommandKind::Other(name, e) => {
                let detail = match cmd {
                    COM_INIT_DB | COM_FIELD_LIST => {
                        let arg = &payload[1..];
                        let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
                        String::from_utf8_lossy(arg).into_owned()
                    }
                    _ => String::new(),
                };
                let expect = match e {
                    ExpectKind::Query => Expect::Query,
                    ExpectKind::FieldList => Expect::FieldList,
                    ExpectKind::Single => Expect::Single,
                    ExpectKind::Auth => Expect::Auth,
                    ExpectKind::Stream => Expect::Stream,
                };
                (Arc::new(Statement::command(name, detail)), expect)
            }
        };
        if self.response_lost {
            // Answers to earlier commands went by unseen.
            self.expect.clear();
            self.response_lost = false;
        }
        if self.expect.len() >= MAX_PENDING {
            self.expect.pop_front();
        }
        self.expect.push_back(expect);
        let extent = if end.is_some() { Extent::Complete } else { Extent::Continues };
        self.open_request = end.is_none();
        let bytes = end.unwrap_or(len) - pos;
        out.push(ParseEvent::Start {
            dir: Direction::Request,
            id: None,
            info: Info::Request(stmt.info()),
            extent,
            bytes: Some(bytes),
        });
        true
    }

    /// The SQL of a COM_QUERY payload (after the command byte), skipping
    /// query attributes when they are there.
    fn query_text<'a>(&self, p: &'a [u8]) -> &'a [u8] {
        let attrs = match self.caps {
            Some(c) => c & CLIENT_QUERY_ATTRIBUTES != 0,
            // Mid-stream: SQL never starts with a small count then 0x01.
            None => p.len() >= 2 && p[0] < 0x20 && p[1] == 1,
        };
        if !attrs {
            return p;
        }
        skip_query_attributes(p).unwrap_or(p)
    }

    fn handshake_response(&mut self, payload: &[u8], seq: u8) {
        if seq != 1 {
            return;
        }
        let Some(caps) = le32(payload, 0) else { return };
        if caps & CLIENT_PROTOCOL_41 == 0 {
            return;
        }
        self.caps = Some(caps);
        if caps & CLIENT_SSL != 0 {
            self.phase = Some(Phase::Opaque);
        }
    }

    fn feed_response(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let (head, len) = (chunk.head, chunk.len);
        let mut pos = match self.resp.begin(len) {
            Start::Inside { .. } => return,
            Start::At { offset, .. } => offset,
        };
        if self.response_lost {
            self.resp.resync();
            return;
        }
        let mut known_end = pos;
        while pos < head.len() {
            if pos + 5 > len && head.len() == len {
                self.carry_header(1, head, pos, len);
                known_end = len;
                break;
            }
            let Some((plen, seq)) = header(head, pos) else { break };
            let payload = &head[pos + 4..head.len().min(pos + 4 + plen)];
            let (next, complete) = self.resp.message(pos, 4 + plen, len, head.len());
            known_end = pos + 4 + plen;
            let end = if complete { known_end } else { len };
            if !self.server_packet(payload, plen, seq, pos, end, out) {
                self.resp.resync();
                if self.response.is_none() {
                    self.gave_up += 1;
                }
                known_end = 0;
                break;
            }
            if self.phase() == Phase::Opaque {
                return;
            }
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
        let exact = known_end == len || self.resp.in_message();
        self.response_at_chunk_end(exact, len, out);
    }

    /// One server packet; false if it cannot be one.
    fn server_packet(
        &mut self,
        payload: &[u8],
        plen: usize,
        seq: u8,
        pos: usize,
        end: usize,
        out: &mut Vec<ParseEvent>,
    ) -> bool {
        match self.phase {
            None if seq == 0 && is_greeting(payload, plen) => {
                self.phase = Some(Phase::Handshake);
                return true;
            }
            Some(Phase::Handshake) => {
                if payload.first() == Some(&0x00) && seq > 0 {
                    self.phase = Some(Phase::Command);
                }
                return true;
            }
            _ => {}
        }
        if self.phase.is_none() {
            self.phase = Some(Phase::Command);
        }
        if self.response.is_none() {
            match self.open_response(payload, plen, seq, pos) {
                Opened::Yes => {}
                Opened::Skipped => return true,
                Opened::Unattributable => return false,
            }
        }
        let deprecate_eof = self.deprecate_eof();
        let Some(resp) = self.response.as_mut() else { return true };
        if resp.continued {
            resp.continued = plen == MAX_PAYLOAD;
            return true;
        }
        resp.continued = plen == MAX_PAYLOAD;
        let step = step(resp, payload, plen, deprecate_eof);
        if let (Some(id), Expect::Prepare(stmt)) = (resp.prepared.take(), &resp.expect) {
            self.statements.insert(id, stmt.clone(), MAX_STATEMENTS);
        }
        match step {
            Step::More => {}
            Step::Done => self.finish_response(end, Extent::Complete, out),
            Step::Foreign => {
                // The response ended before this packet; it starts the next.
                self.finish_response(pos, Extent::Complete, out);
                return self.server_packet(payload, plen, seq, pos, end, out);
            }
        }
        if matches!(self.response.as_ref().map(|r| &r.expect), Some(Expect::Stream)) {
            self.phase = Some(Phase::Opaque);
            self.finish_response(end, Extent::Unknown, out);
        }
        true
    }

    /// Starts a response with this packet unless it answers nothing.
    fn open_response(&mut self, payload: &[u8], plen: usize, seq: u8, pos: usize) -> Opened {
        let first = payload.first().copied();
        if first == Some(0xff) && le16(payload, 1) == Some(PROGRESS_REPORT) {
            return Opened::Skipped;
        }
        if first == Some(0xfb) && plen > 1 && matches!(self.expect.front(), Some(Expect::Query) | None) {
            // LOCAL INFILE request: the response is the OK/ERR after the upload.
            return Opened::Skipped;
        }
        let expect = match self.expect.pop_front() {
            Some(e) => e,
            // Picked up mid-stream: only a packet that starts an answer.
            None if seq == 1 => Expect::Query,
            None => return Opened::Unattributable,
        };
        let state = match expect {
            Expect::Rows => State::Rows,
            Expect::FieldList => State::FieldList,
            Expect::Auth => State::Auth,
            _ => State::First,
        };
        self.response = Some(Response {
            expect,
            state,
            reported: false,
            start: pos,
            error: None,
            continued: false,
            prepared: None,
        });
        Opened::Yes
    }

    fn finish_response(&mut self, end: usize, extent: Extent, out: &mut Vec<ParseEvent>) {
        let Some(resp) = self.response.take() else { return };
        if resp.reported {
            out.push(ParseEvent::End { dir: Direction::Response, id: None });
            return;
        }
        let bytes = end.saturating_sub(resp.start);
        out.push(ParseEvent::Start {
            dir: Direction::Response,
            id: None,
            info: Info::Response(response_info(resp.error)),
            extent,
            bytes: (extent != Extent::Unknown && bytes > 0).then_some(bytes),
        });
    }

    fn response_at_chunk_end(&mut self, exact: bool, len: usize, out: &mut Vec<ParseEvent>) {
        let Some(resp) = self.response.as_mut() else { return };
        if exact {
            if !resp.reported {
                resp.reported = true;
                out.push(ParseEvent::Start {
                    dir: Direction::Response,
                    id: None,
                    info: Info::Response(response_info(resp.error.clone())),
                    extent: Extent::Continues,
                    bytes: Some(len.saturating_sub(resp.start)).filter(|&b| b > 0),
                });
            }
            return;
        }
        self.response_lost = true;
        self.resp.resync();
        self.finish_response(len, Extent::Unknown, out);
    }
}

/// The `def` catalog that starts every column definition (or as much of it
/// as the head shows).
fn is_column_def(p: &[u8]) -> bool {
    !p.is_empty() && (p.starts_with(b"\x03def") || b"\x03def".starts_with(p))
}

/// An EOF packet (5-byte payload in protocol 4.1; shorter in 4.0).
fn is_eof(p: &[u8], plen: usize) -> bool {
    p.first() == Some(&0xfe) && plen < 9
}

/// Server status flags of an OK (header 0x00 or 0xfe) or EOF packet.
fn status_flags(p: &[u8], plen: usize) -> u16 {
    if is_eof(p, plen) && plen == 5 {
        return le16(p, 3).unwrap_or(0);
    }
    let Some((_, a)) = lenenc(p, 1) else { return 0 };
    let Some((_, b)) = lenenc(p, 1 + a) else { return 0 };
    le16(p, 1 + a + b).unwrap_or(0)
}

/// Error code and message of an ERR packet.
fn error_fields(p: &[u8]) -> (String, String) {
    let code = le16(p, 1).map_or_else(|| "ERROR".to_string(), |c| c.to_string());
    let mut msg = p.get(3..).unwrap_or(&[]);
    if msg.first() == Some(&b'#') && msg.len() >= 6 {
        msg = &msg[6..];
    }
    (code, crate::truncate_display(&String::from_utf8_lossy(msg), crate::MAX_DETAIL))
}

/// Advances the response state machine by one packet.
fn step(resp: &mut Response, p: &[u8], plen: usize, deprecate_eof: bool) -> Step {
    let first = p.first().copied();
    if first == Some(0xff) {
        if le16(p, 1) == Some(PROGRESS_REPORT) {
            return Step::More;
        }
        if resp.error.is_none() {
            resp.error = Some(error_fields(p));
        }
        return Step::Done;
    }
    match resp.state {
        State::First => first_packet(resp, p, plen, deprecate_eof),
        State::Columns { left } => {
            if left > 0 && is_column_def(p) {
                resp.state = State::Columns { left: left - 1 };
                return Step::More;
            }
            resp.state = State::AfterColumns;
            step(resp, p, plen, deprecate_eof)
        }
        State::AfterColumns => {
            if is_eof(p, plen) {
                if status_flags(p, plen) & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    return Step::Done;
                }
                resp.state = State::Rows;
                return Step::More;
            }
            resp.state = State::Rows;
            step(resp, p, plen, deprecate_eof)
        }
        State::Rows => {
            if first == Some(0xfe) && plen < MAX_PAYLOAD {
                return end_of_result(resp, p, plen);
            }
            Step::More
        }
        State::PrepareDefs { left, eofs } => {
            if left > 0 && is_column_def(p) {
                resp.state = State::PrepareDefs { left: left - 1, eofs };
            } else if eofs > 0 && is_eof(p, plen) {
                resp.state = State::PrepareDefs { left, eofs: eofs - 1 };
            } else {
                return Step::Foreign;
            }
            match resp.state {
                State::PrepareDefs { left: 0, eofs: 0 } => Step::Done,
                // Without the handshake we cannot know whether EOFs follow:
                // end at the last definition unless one is already seen.
                _ => Step::More,
            }
        }
        State::FieldList => {
            if is_eof(p, plen) || (first == Some(0xfe) && plen < MAX_PAYLOAD) {
                Step::Done
            } else {
                Step::More
            }
        }
        State::Auth => {
            if first == Some(0x00) {
                Step::Done
            } else {
                Step::More
            }
        }
    }
}

fn first_packet(resp: &mut Response, p: &[u8], plen: usize, deprecate_eof: bool) -> Step {
    match (p.first().copied(), &resp.expect) {
        (_, Expect::Single) | (_, Expect::Stream) => Step::Done,
        (Some(0x00), Expect::Prepare(_)) if plen >= 12 => {
            let (Some(cols), Some(params)) = (le16(p, 5), le16(p, 7)) else { return Step::Done };
            let eofs = if deprecate_eof { 0 } else { u8::from(cols > 0) + u8::from(params > 0) };
            let left = u64::from(cols) + u64::from(params);
            resp.prepared = le32(p, 1);
            resp.state = State::PrepareDefs { left, eofs };
            if left + u64::from(eofs) == 0 {
                Step::Done
            } else {
                Step::More
            }
        }
        (Some(0x00), _) if plen >= 7 => end_of_result(resp, p, plen),
        (Some(0xfe), _) if plen < 9 => Step::Done,
        (Some(0xfb), _) => Step::More,
        _ => {
            // Column count (MySQL's optional metadata may put a flag first).
            let count = match lenenc(p, 0) {
                Some((0, _)) => lenenc(p, 1).map_or(0, |(c, _)| c),
                Some((c, _)) => c,
                None => 0,
            };
            resp.state = State::Columns { left: count };
            Step::More
        }
    }
}

/// A terminator (OK or EOF): more results follow, or the response is done.
fn end_of_result(resp: &mut Response, p: &[u8], plen: usize) -> Step {
    if status_flags(p, plen) & SERVER_MORE_RESULTS_EXISTS != 0 {
        resp.state = State::First;
        return Step::More;
    }
    Step::Done
}

fn response_info(error: Option<(String, String)>) -> ResponseInfo {
    match error {
        Some((code, message)) => ResponseInfo { status: code, is_error: true, message, protocol: None },
        None => ResponseInfo { status: "OK".to_string(), ..Default::default() },
    }
}

/// The SQL after MySQL 8 query attributes: parameter count, parameter set
/// count, then (if any) null bitmap, bind flag, types and names, values.
fn skip_query_attributes(p: &[u8]) -> Option<&[u8]> {
    let (count, a) = lenenc(p, 0)?;
    let (_sets, b) = lenenc(p, a)?;
    let mut at = a + b;
    if count == 0 {
        return p.get(at..);
    }
    let count = usize::try_from(count).ok().filter(|&c| c <= 1024)?;
    let bitmap = p.get(at..at + count.div_ceil(8))?;
    at += count.div_ceil(8);
    if *p.get(at)? != 1 {
        return None; // Types must be sent with attributes.
    }
    at += 1;
    let mut types = Vec::with_capacity(count);
    for _ in 0..count {
        types.push(*p.get(at)?);
        at += 2;
    }
    for _ in 0..count {
        let (n, used) = lenenc(p, at)?;
        at = at.checked_add(used)?.checked_add(usize::try_from(n).ok()?)?;
    }
    for (i, t) in types.iter().enumerate() {
        if bitmap[i / 8] & (1 << (i % 8)) != 0 {
            continue;
        }
        at = at.checked_add(binary_value_len(*t, p, at)?)?;
    }
    p.get(at..)
}

/// Bytes taken by one binary-protocol value of MySQL type `t` at `at`.
fn binary_value_len(t: u8, p: &[u8], at: usize) -> Option<usize> {
    Some(match t {
        0x06 => 0,
        0x01 => 1,
        0x02 | 0x0d => 2,
        0x03 | 0x09 | 0x04 => 4,
        0x08 | 0x05 => 8,
        0x07 | 0x0a | 0x0b | 0x0c => 1 + usize::from(*p.get(at)?),
        _ => {
            let (n, used) = lenenc(p, at)?;
            used.checked_add(usize::try_from(n).ok()?)?
        }
    })
}

impl Parser for MysqlParser {
    fn protocol(&self) -> Protocol {
        Protocol::Mysql
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        if self.phase() == Phase::Opaque || chunk.len == 0 {
            return;
        }
        let chunk = Chunk { head: &chunk.head[..chunk.head.len().min(chunk.len)], ..chunk };
        let side = usize::from(chunk.dir == Direction::Response);
        let carry = std::mem::take(&mut self.carry[side]);
        let joined;
        let chunk = if carry.is_empty() {
            chunk
        } else {
            joined = [carry.as_slice(), chunk.head].concat();
            Chunk { head: &joined, len: chunk.len + carry.len(), ..chunk }
        };
        match chunk.dir {
            Direction::Request => self.feed_request(chunk, out),
            Direction::Response => self.feed_response(chunk, out),
        }
    }

    fn gave_up(&self) -> u64 {
        self.gave_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::test_support::{describe, load, replay};

    const CLIENT: &str = include_str!("../tests/fixtures/sql/my_client.txt");
    const PREPARED: &str = include_str!("../tests/fixtures/sql/my_prepared.txt");
    const SLAP: &str = include_str!("../tests/fixtures/sql/my_mysqlslap.txt");

    fn run(text: &str, conn: u32, snaplen: usize) -> Vec<String> {
        let caps = load(text);
        let (events, _) = replay::<MysqlParser>(&caps, conn, snaplen);
        describe(&events)
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        p.extend_from_slice(payload);
        p
    }

    fn feed_all(p: &mut MysqlParser, chunks: &[(Direction, &[u8])]) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, b) in chunks {
            p.feed(Chunk { dir: *dir, head: b, len: b.len() }, &mut out);
        }
        out
    }

    /// A greeting and a handshake response with these client capabilities.
    fn handshake(p: &mut MysqlParser, caps: u32) {
        let caps_p = load(PREPARED);
        let greeting = &caps_p[0].head;
        let mut resp = caps.to_le_bytes().to_vec();
        resp.extend_from_slice(&[0, 0, 0, 1, 33]);
        resp.extend_from_slice(&[0; 23]);
        resp.extend_from_slice(b"app\0");
        let ev = feed_all(p, &[(Direction::Response, greeting), (Direction::Request, &pkt(1, &resp))]);
        let ok = pkt(2, b"\x00\x00\x00\x02\x00\x00\x00");
        let ev2 = feed_all(p, &[(Direction::Response, &ok)]);
        assert!(ev.is_empty() && ev2.is_empty());
    }

    fn column_def(name: &str) -> Vec<u8> {
        let mut d = b"\x03def\x00\x00\x00".to_vec();
        d.push(name.len() as u8);
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(b"\x00\x0c\x3f\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00");
        d
    }

    #[test]
    fn mariadb_client_session() {
        let got = run(CLIENT, 1, 1024);
        assert_eq!(
            got,
            lines(&[
                "> CREATE CREATE TABLE IF NOT EXISTS users (id int PRIMARY key, name varchar(?), email varchar(?))",
                "< OK",
                "> INSERT INSERT IGNORE INTO users VALUES (?, ?, ?)",
                "< OK",
                "> SELECT SELECT * FROM users WHERE id IN (?) AND name <> ?",
                "< OK",
                "> SELECT SELECT * FROM no_such_table",
                "< 1146 ERR Table 'shop.no_such_table' doesn't exist",
                "> BEGIN BEGIN",
                "< OK",
                "> UPDATE UPDATE users SET name = ? WHERE id = ?",
                "< OK",
                "> COMMIT COMMIT",
                "< OK",
                "> SELECT SELECT ?",
                "< OK",
                "> SELECT SELECT ?",
                "< OK",
                // The 0xfb file request, the upload and a progress report are
                // one exchange; the status is the final OK's.
                "> LOAD LOAD data local INFILE ? INTO TABLE users (id, name)",
                "< OK",
                "> SELECT SELECT DATABASE()",
                "< OK",
                "> COM_INIT_DB COM_INIT_DB",
                "< OK",
                // 260 KB of rows: boundaries are lost after the first head.
                "> SELECT SELECT repeat(?, ?) AS pad, seq FROM seq_1_to_2000",
                "< OK [unknown]",
            ])
        );
        // The largest heads (4096 bytes) make no difference.
        assert_eq!(run(CLIENT, 1, 4096), got);
        assert_eq!(
            run(CLIENT, 2, 1024),
            lines(&["> COM_PING COM_PING", "< OK", "> COM_STATISTICS COM_STATISTICS", "< OK"])
        );
    }

    #[test]
    fn server_side_prepared_statements() {
        let caps = load(PREPARED);
        let (events, p) = replay::<MysqlParser>(&caps, 1, 1024);
        assert_eq!(
            describe(&events),
            lines(&[
                "> SET SET NAMES ?",
                "< OK",
                "> SET SET character_set_server = ?",
                "< OK",
                "> SET SET collation_connection = ?",
                "< OK",
                "> SET SET collation_server = ?",
                "< OK",
                "> PREPARE SELECT id, name FROM users WHERE id = ? AND name <> ?",
                "< OK",
                // COM_STMT_EXECUTE by id; binary rows after skipped metadata.
                "> SELECT SELECT id, name FROM users WHERE id = ? AND name <> ?",
                "< OK",
                "> SELECT SELECT id, name FROM users WHERE id = ? AND name <> ?",
                "< OK",
                "> PREPARE INSERT INTO users (id, name) VALUES (?, ?)",
                "< OK",
                "> INSERT INSERT INTO users (id, name) VALUES (?, ?)",
                "< 1062 ERR Duplicate entry '2' for key 'PRIMARY'",
                "> COM_STMT_RESET COM_STMT_RESET",
                "< OK",
                // Two COM_STMT_CLOSE (no answer) are not reported.
                "> PREPARE SELECT * FROM no_such_table WHERE id = ?",
                "< 1146 ERR Table 'shop.no_such_table' doesn't exist",
                "> COM_PING COM_PING",
                "< OK",
                // COM_QUIT: not reported.
            ])
        );
        assert_eq!(p.gave_up(), 0);
        assert_eq!(p.statements.len(), 0, "both statements were closed");
        let detail = events.iter().find_map(|e| match e {
            ParseEvent::Start { info: Info::Request(r), .. } if r.method == "PREPARE" => {
                Some(r.detail.clone())
            }
            _ => None,
        });
        assert_eq!(detail.as_deref(), Some("SELECT id, name FROM users WHERE id = ? AND name <> ?"));
    }

    #[test]
    fn mysqlslap_load() {
        let caps = load(SLAP);
        for conn in [1, 2] {
            let (events, p) = replay::<MysqlParser>(&caps, conn, 1024);
            let got = describe(&events);
            let reqs = got.iter().filter(|l| l.starts_with("> ")).count();
            let resps = got.iter().filter(|l| l.starts_with("< ")).count();
            assert_eq!(reqs, resps, "{got:?}");
            assert!(got
                .iter()
                .filter(|l| l.starts_with("> INSERT"))
                .all(|l| l == "> INSERT INSERT INTO t1 VALUES (?,?,?,?)"));
            assert_eq!(p.gave_up(), 0);
        }
        assert_eq!(run(SLAP, 1, 1024).len(), 2 * (4 + 100));
    }

    #[test]
    fn deprecate_eof_result_sets_and_prepares() {
        let mut p = MysqlParser::default();
        handshake(&mut p, CLIENT_PROTOCOL_41 | CLIENT_DEPRECATE_EOF | 0x0008_a685);
        assert!(p.deprecate_eof());
        let q = pkt(0, b"\x03SELECT a, b FROM t");
        let resp = [
            pkt(1, b"\x02"),
            pkt(2, &column_def("a")),
            pkt(3, &column_def("b")),
            pkt(4, b"\x011\x012"),
            pkt(5, b"\xfe\x00\x00\x02\x00\x00\x00"),
        ]
        .concat();
        // The terminator is an OK with a 0xfe header; no EOF after the columns.
        let prep = pkt(0, b"\x16SELECT ? + ?");
        let prep_ok = [
            pkt(1, b"\x00\x07\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00"),
            pkt(2, &column_def("?")),
            pkt(3, &column_def("?")),
            pkt(4, &column_def("x")),
        ]
        .concat();
        let exec = pkt(0, b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00");
        let exec_ok = pkt(1, b"\x00\x00\x00\x02\x00\x00\x00");
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Request, &q),
                (Direction::Response, &resp),
                (Direction::Request, &prep),
                (Direction::Response, &prep_ok),
                (Direction::Request, &exec),
                (Direction::Response, &exec_ok),
            ],
        );
        assert_eq!(
            describe(&ev),
            lines(&[
                "> SELECT SELECT a, b FROM t",
                "< OK",
                "> PREPARE SELECT ? + ?",
                "< OK",
                "> SELECT SELECT ? + ?",
                "< OK"
            ])
        );
    }

    #[test]
    fn query_attributes_are_skipped() {
        let mut p = MysqlParser::default();
        handshake(&mut p, CLIENT_PROTOCOL_41 | CLIENT_QUERY_ATTRIBUTES);
        // No attribute: count 0, one parameter set.
        let plain = pkt(0, b"\x03\x00\x01SELECT 1");
        // One LONGLONG attribute named "trace" = 42.
        let mut attr = b"\x03\x01\x01\x00\x01\x08\x00\x05trace".to_vec();
        attr.extend_from_slice(&42u64.to_le_bytes());
        attr.extend_from_slice(b"UPDATE t SET a = 1");
        let attr = pkt(0, &attr);
        let ok = pkt(1, b"\x00\x00\x00\x02\x00\x00\x00");
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Request, &plain),
                (Direction::Response, &ok),
                (Direction::Request, &attr),
                (Direction::Response, &ok),
            ],
        );
        assert_eq!(
            describe(&ev),
            lines(&["> SELECT SELECT ?", "< OK", "> UPDATE UPDATE t SET a = ?", "< OK"])
        );
        // Mid-stream, without the handshake: the 00 01 prefix gives it away.
        let mut fresh = MysqlParser::default();
        let ev = feed_all(&mut fresh, &[(Direction::Request, &plain)]);
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT ?"]));
    }

    #[test]
    fn multiple_results_are_one_response() {
        // `select 1; select 2` with CLIENT_MULTI_STATEMENTS (no DEPRECATE_EOF).
        let one = |seq: u8, v: &[u8], more: bool| {
            let flags: &[u8] = if more { b"\x0a\x00" } else { b"\x02\x00" };
            [
                pkt(seq, b"\x01"),
                pkt(seq + 1, &column_def("1")),
                pkt(seq + 2, b"\xfe\x00\x00\x02\x00"),
                pkt(seq + 3, v),
                pkt(seq + 4, &[b"\xfe\x00\x00".as_slice(), flags].concat()),
            ]
            .concat()
        };
        let resp = [one(1, b"\x011", true), one(6, b"\x012", false)].concat();
        let mut p = MysqlParser::default();
        let ev = feed_all(
            &mut p,
            &[(Direction::Request, &pkt(0, b"\x03select 1; select 2")), (Direction::Response, &resp)],
        );
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT ?; SELECT ?", "< OK"]));
        // Split between the two results: the response goes on.
        let mut p = MysqlParser::default();
        let at = one(1, b"\x011", true).len();
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Request, &pkt(0, b"\x03select 1; select 2")),
                (Direction::Response, &resp[..at]),
                (Direction::Response, &resp[at..]),
            ],
        );
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT ?; SELECT ?", "< OK [continues]", "< end"]));
    }

    #[test]
    fn error_after_rows_is_the_status() {
        let resp = [
            pkt(1, b"\x01"),
            pkt(2, &column_def("a")),
            pkt(3, b"\xfe\x00\x00\x02\x00"),
            pkt(4, b"\x011"),
            pkt(5, b"\xff\x25\x05#70100Query execution was interrupted"),
        ]
        .concat();
        let mut p = MysqlParser::default();
        let ev = feed_all(
            &mut p,
            &[(Direction::Request, &pkt(0, b"\x03SELECT SLEEP(10)")), (Direction::Response, &resp)],
        );
        assert_eq!(
            describe(&ev),
            lines(&["> SELECT SELECT SLEEP(?)", "< 1317 ERR Query execution was interrupted"])
        );
    }

    #[test]
    fn silent_commands_and_tls() {
        let mut p = MysqlParser::default();
        let close = pkt(0, b"\x19\x01\x00\x00\x00");
        let long_data = pkt(0, b"\x18\x01\x00\x00\x00\x00\x00abc");
        let quit = pkt(0, b"\x01");
        assert!(feed_all(&mut p, &[(Direction::Request, &[close, long_data, quit].concat())]).is_empty());
        // An SSL request (CLIENT_SSL in a short handshake response): TLS follows.
        let mut p = MysqlParser::default();
        let caps_p = load(PREPARED);
        let mut ssl = (CLIENT_PROTOCOL_41 | CLIENT_SSL).to_le_bytes().to_vec();
        ssl.extend_from_slice(&[0; 28]);
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Response, &caps_p[0].head),
                (Direction::Request, &pkt(1, &ssl)),
                (Direction::Request, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
                (Direction::Response, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76"),
            ],
        );
        assert!(ev.is_empty());
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn split_at_every_position_gives_the_same_answer() {
        let caps = load(CLIENT);
        let req = &caps.iter().find(|c| c.conn == 1 && c.len == 64).unwrap().head;
        let resp = &caps.iter().find(|c| c.conn == 1 && c.len == 209).unwrap().head;
        let whole = {
            let mut p = MysqlParser::default();
            describe(&feed_all(&mut p, &[(Direction::Request, req), (Direction::Response, resp)]))
        };
        assert_eq!(whole, lines(&["> SELECT SELECT * FROM users WHERE id IN (?) AND name <> ?", "< OK"]));
        for at in 1..req.len() {
            let mut p = MysqlParser::default();
            let ev = feed_all(
                &mut p,
                &[
                    (Direction::Request, &req[..at]),
                    (Direction::Request, &req[at..]),
                    (Direction::Response, resp),
                ],
            );
            let got = describe(&ev);
            assert_eq!(
                got.iter().filter(|l| l.starts_with("> ") && *l != "> end").count(),
                1,
                "split at {at}: {got:?}"
            );
            assert_eq!(got.last().map(String::as_str), Some("< OK"), "split at {at}: {got:?}");
            assert_eq!(p.gave_up(), 0, "split at {at}");
        }
        for at in 1..resp.len() {
            let mut p = MysqlParser::default();
            let ev = feed_all(
                &mut p,
                &[
                    (Direction::Request, req),
                    (Direction::Response, &resp[..at]),
                    (Direction::Response, &resp[at..]),
                ],
            );
            let got = describe(&ev);
            assert_eq!(got[0], whole[0], "split at {at}");
            // Under 5 bytes nothing is known yet: they wait for the next chunk.
            // Once the final EOF's header is seen, the response is over.
            let whole_here = at < 5 || at >= resp.len() - 4;
            let expect: &[&str] = if whole_here { &["< OK"] } else { &["< OK [continues]", "< end"] };
            assert_eq!(got[1..], lines(expect), "split at {at}: {got:?}");
            assert_eq!(p.gave_up(), 0, "split at {at}");
        }
    }

    #[test]
    fn picked_up_mid_stream() {
        // Start after the handshake and the PREPAREs: executions are EXECUTE.
        let caps: Vec<_> = load(PREPARED).into_iter().skip(13).collect();
        let (events, p) = replay::<MysqlParser>(&caps, 1, 1024);
        let got = describe(&events);
        assert_eq!(got[0], "> EXECUTE EXECUTE");
        assert_eq!(got[1], "< OK");
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn detection() {
        let caps = load(CLIENT);
        let greeting = &caps[0].head;
        assert!(detect(Chunk { dir: Direction::Response, head: greeting, len: greeting.len() }, 33070));
        let q = pkt(0, b"\x03select 1");
        assert!(detect(Chunk { dir: Direction::Request, head: &q, len: q.len() }, 1));
        assert!(!detect(Chunk { dir: Direction::Request, head: &q, len: q.len() + 1 }, 1));
        let ping = pkt(0, b"\x0e");
        assert!(detect(Chunk { dir: Direction::Request, head: &ping, len: 5 }, 3306));
        assert!(!detect(Chunk { dir: Direction::Request, head: &ping, len: 5 }, 1));
        let ok = pkt(1, b"\x00\x00\x00\x02\x00\x00\x00");
        assert!(detect(Chunk { dir: Direction::Response, head: &ok, len: ok.len() }, 1));
        let resp = &caps.iter().find(|c| c.conn == 1 && c.len == 209).unwrap().head;
        assert!(detect(Chunk { dir: Direction::Response, head: resp, len: 209 }, 1));
        // Not MySQL: PostgreSQL, HTTP, Redis, TLS.
        assert!(!detect(
            Chunk { dir: Direction::Request, head: b"Q\x00\x00\x00\x0dselect 1\x00", len: 14 },
            1
        ));
        assert!(!detect(Chunk { dir: Direction::Request, head: b"GET / HTTP/1.1\r\n\r\n", len: 18 }, 3306));
        assert!(!detect(Chunk { dir: Direction::Request, head: b"*1\r\n$4\r\nPING\r\n", len: 14 }, 1));
        assert!(!detect(
            Chunk { dir: Direction::Response, head: b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76", len: 9 },
            1
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_chunks_never_panic(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0usize..5000), 0..40))
        {
            let mut p = MysqlParser::default();
            let mut out = Vec::new();
            let mut budget = 0;
            for (req, head, extra) in &chunks {
                let dir = if *req { Direction::Request } else { Direction::Response };
                p.feed(Chunk { dir, head, len: head.len() + extra }, &mut out);
                budget += head.len() / 4 + 2;
            }
            proptest::prop_assert!(out.len() <= budget);
            proptest::prop_assert!(p.expect.len() <= MAX_PENDING);
        }

        #[test]
        fn packet_soup_never_panics(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(
                (0u8..4, proptest::sample::select(vec![0x00u8, 0x01, 0x03, 0x0e, 0x16, 0x17, 0x19, 0xfb, 0xfe, 0xff]),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..30)), 0..6), 0usize..32, 0usize..100), 0..30))
        {
            let mut p = MysqlParser::default();
            let mut out = Vec::new();
            for (req, pkts, cut, extra) in &chunks {
                let bytes: Vec<u8> = pkts.iter().flat_map(|(seq, first, rest)| pkt(*seq, &[&[*first][..], rest].concat())).collect();
                let head = &bytes[..bytes.len().saturating_sub(*cut)];
                let dir = if *req { Direction::Request } else { Direction::Response };
                p.feed(Chunk { dir, head, len: bytes.len() + extra }, &mut out);
            }
            proptest::prop_assert!(out.len() <= chunks.len() * 8);
        }
    }
}
