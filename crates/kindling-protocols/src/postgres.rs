//! PostgreSQL frontend/backend protocol v3.
//!
//! Every message after the startup is a type byte and a 4-byte big-endian
//! length (which counts itself), framed with [`LengthFramer`].
//!
//! What is reported:
//! - **One request per `Query` ('Q'), per `Sync` ('S') and per `FunctionCall`
//!   ('F')**: the server answers each of them with exactly one
//!   `ReadyForQuery` ('Z'), so in-order pairing stays exact even when an
//!   error makes the server skip the rest of an extended-protocol batch.
//!   A batch (the `Parse`/`Bind`/`Describe`/`Execute`/`Close` messages before
//!   a `Sync`) is described by its first `Execute`d statement: method = SQL
//!   verb, endpoint = SQL template, detail = SQL. The SQL comes from a `Parse`
//!   in the batch or, for named prepared statements (`pgbench -M prepared`),
//!   from a bounded map statement name -> SQL filled by earlier `Parse`s (and
//!   emptied by `Close`). A batch that executes nothing is `PREPARE` (it has a
//!   `Parse`), `DESCRIBE`, `CLOSE` or `SYNC`. A statement prepared before the
//!   capture began is `EXECUTE` with the statement name in `detail`.
//!   `FunctionCall` is `FUNCTION_CALL`.
//! - **One response per `ReadyForQuery`**: the backend messages up to and
//!   including 'Z'. Status `OK`, or for an `ErrorResponse` the SQLSTATE
//!   (`42P01`) with `is_error` and the message's `M` field; the first error
//!   seen in the chunk where the response starts wins (an error that arrives
//!   in a later chunk of a long result cannot change what was reported).
//! - Not reported: the startup and authentication exchange (StartupMessage,
//!   SSL/GSS negotiation, password and SASL messages, up to the first 'Z'),
//!   `Terminate` ('X'), `CancelRequest` connections, and backend messages that
//!   answer nothing (`NotificationResponse`, `NoticeResponse`,
//!   `ParameterStatus` or a `FATAL` error while no request is outstanding).
//! - `COPY ... FROM STDIN`: the client's CopyData is part of the exchange; the
//!   response is reported from the server's final `CommandComplete` or error
//!   (the `CopyInResponse` that invites the data is skipped), so the status is
//!   the load's outcome. `COPY TO STDOUT` is an ordinary response.
//!   `CopyBothResponse` (replication) is reported once, then the connection is
//!   ignored. After a TLS/GSS-encrypted upgrade nothing is parsed.
//! - Passwords never reach `detail`: only Query, Parse and ErrorResponse text
//!   is ever copied.
//!
//! Extents: a request is `Complete` when its terminator is in the chunk,
//! `Continues` (with an `End` at the terminator) when the chunk ends at a
//! known message boundary or inside a message, and `Unknown` when the rest of
//! the chunk was not captured. Responses likewise; when the head of a long
//! result set is cut so that message boundaries are lost, the response is
//! `Unknown` and the following server chunks are ignored until the client
//! sends its next request.

use std::sync::Arc;

use crate::framing::{LengthFramer, Start};
use crate::sql::{BoundedMap, Dialect, Statement};
use crate::{Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo, ResponseInfo};

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// Protocol major version 3 (any minor).
const PROTOCOL_3: u32 = 3 << 16;
/// The server rejects messages over 1 GiB.
const MAX_MESSAGE: usize = 1 << 30;
/// Longest startup packet the server accepts.
const MAX_STARTUP: usize = 10_000;
/// Prepared statements remembered per connection (oldest forgotten first).
const MAX_STATEMENTS: usize = 128;
/// Portals remembered per connection.
const MAX_PORTALS: usize = 16;
/// Ports where a PostgreSQL server or pgbouncer usually listens.
const PORTS: [u16; 2] = [5432, 6432];

/// Is this the first chunk of a PostgreSQL connection (or a chunk from the
/// middle of one, on a usual port)?
pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    let h = chunk.head;
    if chunk.dir == Direction::Request && startup_packet(h).is_some() {
        return true;
    }
    let hinted = PORTS.contains(&server_port);
    let chain = match chunk.dir {
        Direction::Request => walk_chain(h, chunk.len, valid_frontend),
        Direction::Response => walk_chain(h, chunk.len, valid_backend),
    };
    let Some(chain) = chain else { return false };
    if hinted {
        return true;
    }
    // Without the port hint, only a chunk made exactly of messages and ending
    // like a client or server turn ends: `Q`, `... S`, `... Z`.
    chain.exact
        && match chunk.dir {
            Direction::Request => chain.last == b'S' || (chain.count == 1 && chain.last == b'Q'),
            Direction::Response => chain.last == b'Z',
        }
}

/// A StartupMessage, SSLRequest, GSSENCRequest or CancelRequest at the start
/// of `h`: returns (length, code).
fn startup_packet(h: &[u8]) -> Option<(usize, u32)> {
    let len = be32(h, 0)? as usize;
    let code = be32(h, 4)?;
    let ok = match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c if c & 0xffff_0000 == PROTOCOL_3 && c & 0xffff < 10 => (9..=MAX_STARTUP).contains(&len),
        _ => false,
    };
    ok.then_some((len, code))
}

struct Chain {
    count: usize,
    last: u8,
    /// The messages cover the chunk exactly, every byte visible.
    exact: bool,
}

/// Walks the visible messages of a chunk; `None` if one is invalid.
fn walk_chain(h: &[u8], len: usize, valid: fn(u8, usize, &[u8]) -> bool) -> Option<Chain> {
    let mut pos = 0;
    let mut chain = Chain { count: 0, last: 0, exact: false };
    while pos + 5 <= h.len() {
        let tag = h[pos];
        let mlen = be32(h, pos + 1)? as usize;
        let body = &h[pos + 5..h.len().min(pos + 1 + mlen).max(pos + 5)];
        if !valid(tag, mlen, body) {
            return None;
        }
        chain.count += 1;
        chain.last = tag;
        pos += 1 + mlen;
        if pos == len && len == h.len() {
            chain.exact = true;
        }
        if chain.count >= 64 {
            break;
        }
    }
    (chain.count > 0).then_some(chain)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Plausible frontend message (type, length field, visible body).
fn valid_frontend(tag: u8, len: usize, body: &[u8]) -> bool {
    if !(4..=MAX_MESSAGE).contains(&len) {
        return false;
    }
    match tag {
        b'S' | b'H' | b'X' | b'c' => len == 4,
        b'Q' => len >= 5,
        b'P' => len >= 8,
        b'B' => len >= 12,
        b'E' => len >= 9,
        b'D' | b'C' => len >= 6 && body.first().is_none_or(|c| matches!(c, b'S' | b'P')),
        b'F' => len >= 14,
        b'd' | b'p' => true,
        b'f' => len >= 5,
        _ => false,
    }
}

/// Plausible backend message.
fn valid_backend(tag: u8, len: usize, body: &[u8]) -> bool {
    if !(4..=MAX_MESSAGE).contains(&len) {
        return false;
    }
    match tag {
        b'Z' => len == 5 && body.first().is_none_or(|c| matches!(c, b'I' | b'T' | b'E')),
        b'1' | b'2' | b'3' | b'n' | b'I' | b'c' | b's' => len == 4,
        b'C' | b'E' | b'N' => len >= 5,
        b'T' | b'D' | b'S' | b't' => len >= 6,
        b'R' | b'V' => len >= 8,
        b'K' => len == 12,
        b'A' => len >= 10,
        b'G' | b'H' | b'W' => len >= 7,
        b'v' => len >= 12,
        b'd' => true,
        _ => false,
    }
}

/// A C string at the start of `b`: the bytes before the NUL (all of `b` if the
/// NUL was not captured) and what follows the NUL.
fn cstr(b: &[u8]) -> (&[u8], Option<&[u8]>) {
    match b.iter().position(|&c| c == 0) {
        Some(n) => (&b[..n], Some(&b[n + 1..])),
        None => (b, None),
    }
}

type NameMap = BoundedMap<Vec<u8>, Arc<Statement>>;

fn unknown_statement(name: &[u8]) -> Statement {
    Statement::unknown(&format!("prepared statement \"{}\"", String::from_utf8_lossy(name)))
}

/// Extended-protocol messages seen since the last Sync.
#[derive(Default)]
struct Batch {
    messages: usize,
    executed: Option<Arc<Statement>>,
    parsed: Option<Arc<Statement>>,
    described: bool,
    closed: bool,
    /// Its Start was emitted (Continues); an End is due at the Sync.
    reported: bool,
    /// Offset in the current chunk where it started (for `bytes`).
    start: usize,
}

impl Batch {
    /// `whole`: the Sync was seen, so a batch without Execute really only
    /// prepares; otherwise the Execute may still come.
    fn info(&self, whole: bool) -> RequestInfo {
        if let Some(s) = self.executed.as_ref() {
            return s.info();
        }
        if let Some(s) = self.parsed.as_ref() {
            let mut info = s.info();
            if whole {
                info.method = "PREPARE".to_string();
            }
            return info;
        }
        let name = if self.described {
            "DESCRIBE"
        } else if self.closed {
            "CLOSE"
        } else {
            "SYNC"
        };
        RequestInfo { method: name.to_string(), endpoint: name.to_string(), ..Default::default() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet, or picked up mid-stream: requests are parsed.
    Ready,
    /// StartupMessage sent: authentication until the first ReadyForQuery.
    Startup,
    /// TLS/GSS encryption or a replication stream: nothing more to parse.
    Opaque,
}

/// The response being read.
#[derive(Debug, Default)]
struct Response {
    /// Start emitted in an earlier chunk (Continues): an End is due at 'Z'.
    reported: bool,
    start: usize,
    status: Option<(String, String)>,
}

#[derive(Default)]
pub struct PostgresParser {
    req: LengthFramer,
    resp: LengthFramer,
    phase: Option<Phase>,
    /// SSLRequest/GSSENCRequest sent: the server answers with one byte.
    awaiting_ssl_answer: bool,
    statements: NameMap,
    portals: NameMap,
    batch: Option<Batch>,
    /// A Query/FunctionCall spilling into later chunks: End when it ends.
    open_message_request: bool,
    response: Option<Response>,
    /// Boundaries were lost inside a response: ignore server chunks until
    /// the client speaks again.
    response_lost: bool,
    /// Requests reported and not yet answered.
    pending: u32,
    /// COPY FROM STDIN in progress: client CopyData is not a request.
    copy_in: bool,
    /// The first bytes of a message header that a fully captured chunk cut
    /// (request, response): joined to the next chunk of that direction.
    carry: [Vec<u8>; 2],
    gave_up: u64,
}

impl PostgresParser {
    fn phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::Ready)
    }

    fn feed_request(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let (head, len) = (chunk.head, chunk.len);
        let mut pos = match self.req.begin(len) {
            Start::Inside { ended } => {
                if ended {
                    self.request_message_ended(out);
                }
                return;
            }
            Start::At { offset, ended } => {
                if ended {
                    self.request_message_ended(out);
                }
                offset
            }
        };
        // Where the last message we could follow ends: the chunk is followed
        // exactly if that is its end or a message spills past it.
        let mut known_end = pos;
        while pos < head.len() {
            if head[pos] == 0 {
                match startup_packet(&head[pos..]) {
                    Some((n, code)) => {
                        self.startup(code);
                        let (next, _) = self.req.message(pos, n, len, head.len());
                        known_end = pos + n;
                        match next {
                            Some(p) => pos = p,
                            None => break,
                        }
                        continue;
                    }
                    None => {
                        self.give_up_request(out);
                        return;
                    }
                }
            }
            // A header cut by the chunk's end, or a whole header whose body is
            // all in later chunks (a client writing tag, length and text
            // separately): carried to the next chunk, so the SQL is read there.
            let body_follows = pos + 5 == head.len() && be32(head, pos + 1).is_some_and(|l| l > 4);
            if pos + 5 > head.len() || body_follows {
                known_end = self.carry_header(0, head, pos, len, known_end);
                if known_end == len {
                    break;
                }
            }
            if pos + 5 > head.len() {
                break;
            }
            let tag = head[pos];
            let mlen = be32(head, pos + 1).unwrap_or(0) as usize;
            let body = &head[pos + 5..head.len().min(pos + 1 + mlen).max(pos + 5)];
            if !valid_frontend(tag, mlen, body) {
                self.give_up_request(out);
                return;
            }
            let (next, complete) = self.req.message(pos, mlen + 1, len, head.len());
            known_end = pos + 1 + mlen;
            let end = if complete { Some(known_end) } else { None };
            self.frontend_message(tag, body, pos, end, len, out);
            match next {
                Some(p) => pos = p,
                None => break,
            }
        }
        let exact = known_end == len || self.req.in_message();
        self.flush_batch_at_chunk_end(exact, len, out);
    }

    /// A header cut by the end of a fully captured chunk is kept for the
    /// next chunk; returns the new known end.
    fn carry_header(&mut self, side: usize, head: &[u8], pos: usize, len: usize, known_end: usize) -> usize {
        if head.len() == len && pos < len {
            self.carry[side] = head[pos..].to_vec();
            return len;
        }
        known_end
    }

    fn startup(&mut self, code: u32) {
        match code {
            SSL_REQUEST | GSSENC_REQUEST => self.awaiting_ssl_answer = true,
            CANCEL_REQUEST => self.phase = Some(Phase::Opaque),
            _ => self.phase = Some(Phase::Startup),
        }
    }

    /// The rest of the chunk is not a frontend message we understand.
    fn give_up_request(&mut self, out: &mut Vec<ParseEvent>) {
        self.req.resync();
        if !self.copy_in && self.phase() == Phase::Ready {
            self.gave_up += 1;
        }
        self.flush_batch_at_chunk_end(false, 0, out);
    }

    /// A message that spilled from an earlier chunk has ended.
    fn request_message_ended(&mut self, out: &mut Vec<ParseEvent>) {
        if self.open_message_request {
            self.open_message_request = false;
            out.push(ParseEvent::End { dir: Direction::Request, id: None });
        }
    }

    /// One frontend message at `pos`; `end` is where it ends in this chunk
    /// (`None`: in a later chunk).
    fn frontend_message(
        &mut self,
        tag: u8,
        body: &[u8],
        pos: usize,
        end: Option<usize>,
        len: usize,
        out: &mut Vec<ParseEvent>,
    ) {
        if self.phase() == Phase::Startup && tag != b'p' {
            // Only a ready server gets queries: the 'Z' that ended the
            // startup was in bytes we could not see.
            self.phase = Some(Phase::Ready);
        }
        if self.phase() != Phase::Ready {
            // Password/SASL messages during startup: never looked at.
            return;
        }
        match tag {
            b'Q' | b'F' => {
                self.close_batch(pos, out);
                let stmt = if tag == b'Q' {
                    Statement::from_sql(cstr(body).0, Dialect::Postgres)
                } else {
                    Statement::command("FUNCTION_CALL", String::new())
                };
                let extent = if end.is_some() { Extent::Complete } else { Extent::Continues };
                self.open_message_request = end.is_none();
                let bytes = end.unwrap_or(len) - pos;
                self.report_request(stmt.info(), extent, bytes, out);
            }
            b'P' | b'B' | b'E' | b'D' | b'C' | b'H' => self.batch_message(tag, body, pos),
            b'S' => {
                self.batch_message(tag, body, pos);
                self.close_batch(end.unwrap_or(len), out);
            }
            // CopyData/CopyDone/CopyFail, Terminate, stray password messages.
            _ => {}
        }
    }

    fn batch_message(&mut self, tag: u8, body: &[u8], pos: usize) {
        let batch = self.batch.get_or_insert_with(|| Batch { start: pos, ..Default::default() });
        batch.messages += 1;
        match tag {
            b'P' => {
                let (name, rest) = cstr(body);
                let stmt =
                    Arc::new(Statement::from_sql(rest.map_or(&[][..], |r| cstr(r).0), Dialect::Postgres));
                self.statements.insert(name.to_vec(), stmt.clone(), MAX_STATEMENTS);
                batch.parsed = Some(stmt);
            }
            b'B' => {
                let (portal, rest) = cstr(body);
                let Some(rest) = rest else { return };
                let (name, _) = cstr(rest);
                let stmt = self.statements.get(name).unwrap_or_else(|| Arc::new(unknown_statement(name)));
                self.portals.insert(portal.to_vec(), stmt, MAX_PORTALS);
            }
            b'E' => {
                let (portal, _) = cstr(body);
                if batch.executed.is_none() {
                    batch.executed = self.portals.get(portal);
                }
            }
            b'D' => batch.described = true,
            b'C' => {
                batch.closed = true;
                let (kind, name) = (body.first().copied(), cstr(body.get(1..).unwrap_or(&[])).0);
                match kind {
                    Some(b'S') => self.statements.remove(name),
                    Some(b'P') => self.portals.remove(name),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// The batch ends at `end` (a Sync, or a Query that implies one).
    fn close_batch(&mut self, end: usize, out: &mut Vec<ParseEvent>) {
        let Some(batch) = self.batch.take() else { return };
        if batch.reported {
            out.push(ParseEvent::End { dir: Direction::Request, id: None });
        } else {
            let bytes = end.saturating_sub(batch.start);
            self.report_request(batch.info(true), Extent::Complete, bytes, out);
        }
    }

    /// At the end of a chunk, a batch without its Sync yet is reported now:
    /// `Continues` if we still know where messages are, else `Unknown` (and
    /// forgotten: the Sync may have been in the bytes we could not see).
    fn flush_batch_at_chunk_end(&mut self, exact: bool, len: usize, out: &mut Vec<ParseEvent>) {
        let Some(batch) = self.batch.as_mut() else { return };
        if batch.reported {
            if !exact {
                self.batch = None;
                out.push(ParseEvent::End { dir: Direction::Request, id: None });
            }
            return;
        }
        let info = batch.info(false);
        let bytes = len.saturating_sub(batch.start);
        if exact {
            batch.reported = true;
            batch.start = 0;
            self.report_request(info, Extent::Continues, bytes, out);
        } else {
            self.batch = None;
            self.report_request(info, Extent::Unknown, bytes, out);
        }
    }

    fn report_request(&mut self, info: RequestInfo, extent: Extent, bytes: usize, out: &mut Vec<ParseEvent>) {
        if self.response_lost {
            // Answers to earlier requests went by unseen.
            self.pending = 0;
            self.response_lost = false;
        }
        self.pending = self.pending.saturating_add(1);
        out.push(ParseEvent::Start {
            dir: Direction::Request,
            id: None,
            info: Info::Request(info),
            extent,
            bytes: (bytes > 0).then_some(bytes),
        });
    }

    fn feed_response(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let (head, len) = (chunk.head, chunk.len);
        let mut pos = match self.resp.begin(len) {
            Start::Inside { .. } => {
                // Inside a message of the open response; it ends at 'Z' only.
                return;
            }
            Start::At { offset, .. } => offset,
        };
        if self.awaiting_ssl_answer && pos == 0 && !head.is_empty() {
            self.awaiting_ssl_answer = false;
            match head[0] {
                b'N' => pos = 1,
                b'S' | b'G' => {
                    self.phase = Some(Phase::Opaque);
                    return;
                }
                _ => {}
            }
        }
        if self.response_lost {
            self.resp.resync();
            return;
        }
        let mut known_end = pos;
        while pos < head.len() {
            if pos + 5 > head.len() {
                known_end = self.carry_header(1, head, pos, len, known_end);
                break;
            }
            let tag = head[pos];
            let mlen = be32(head, pos + 1).unwrap_or(0) as usize;
            let body = &head[pos + 5..head.len().min(pos + 1 + mlen).max(pos + 5)];
            if !valid_backend(tag, mlen, body) {
                self.resp.resync();
                if self.response.is_none() {
                    self.gave_up += 1;
                }
                break;
            }
            let (next, complete) = self.resp.message(pos, mlen + 1, len, head.len());
            known_end = pos + 1 + mlen;
            self.backend_message(tag, body, pos, if complete { known_end } else { len }, out);
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

    fn backend_message(&mut self, tag: u8, body: &[u8], pos: usize, end: usize, out: &mut Vec<ParseEvent>) {
        if self.phase() == Phase::Startup {
            // Authentication, ParameterStatus, BackendKeyData: not a response.
            if tag == b'Z' {
                self.phase = Some(Phase::Ready);
            }
            return;
        }
        if self.response.is_none() {
            let unsolicited = self.pending == 0 && matches!(tag, b'A' | b'N' | b'S' | b'E');
            if unsolicited || (tag == b'G') {
                self.copy_in |= tag == b'G';
                return;
            }
            self.response = Some(Response { start: pos, ..Default::default() });
        }
        let Some(resp) = self.response.as_mut() else { return };
        match tag {
            b'E' if resp.status.is_none() => resp.status = Some(error_fields(body)),
            b'G' => self.copy_in = true,
            b'W' => {
                self.phase = Some(Phase::Opaque);
                self.finish_response(end, Extent::Unknown, out);
            }
            b'Z' => {
                self.copy_in = false;
                self.finish_response(end, Extent::Complete, out);
            }
            _ => {}
        }
    }

    /// The open response ends at `end` (or, for `Unknown`, is given up).
    fn finish_response(&mut self, end: usize, extent: Extent, out: &mut Vec<ParseEvent>) {
        let Some(resp) = self.response.take() else { return };
        self.pending = self.pending.saturating_sub(1);
        if resp.reported {
            out.push(ParseEvent::End { dir: Direction::Response, id: None });
            return;
        }
        let bytes = end.saturating_sub(resp.start);
        out.push(ParseEvent::Start {
            dir: Direction::Response,
            id: None,
            info: Info::Response(response_info(resp.status)),
            extent,
            bytes: (extent != Extent::Unknown && bytes > 0).then_some(bytes),
        });
    }

    fn response_at_chunk_end(&mut self, exact: bool, len: usize, out: &mut Vec<ParseEvent>) {
        let Some(resp) = self.response.as_mut() else { return };
        if exact {
            if !resp.reported {
                resp.reported = true;
                let (start, status) = (resp.start, resp.status.clone());
                out.push(ParseEvent::Start {
                    dir: Direction::Response,
                    id: None,
                    info: Info::Response(response_info(status)),
                    extent: Extent::Continues,
                    bytes: Some(len.saturating_sub(start)).filter(|&b| b > 0),
                });
            }
            return;
        }
        // Boundaries lost: the rest of this response cannot be followed.
        self.response_lost = true;
        self.resp.resync();
        self.finish_response(len, Extent::Unknown, out);
    }
}

/// SQLSTATE and message of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut rest = body;
    while let Some((&field, after)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let (value, next) = cstr(after);
        match field {
            b'C' if value.len() == 5 && value.iter().all(u8::is_ascii_alphanumeric) => {
                code = String::from_utf8_lossy(value).into_owned();
            }
            b'M' => message = crate::truncate_display(&String::from_utf8_lossy(value), crate::MAX_DETAIL),
            _ => {}
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    if code.is_empty() {
        code = "ERROR".to_string();
    }
    (code, message)
}

fn response_info(status: Option<(String, String)>) -> ResponseInfo {
    match status {
        Some((code, message)) => ResponseInfo { status: code, is_error: true, message, protocol: None },
        None => ResponseInfo { status: "OK".to_string(), ..Default::default() },
    }
}

impl Parser for PostgresParser {
    fn protocol(&self) -> Protocol {
        Protocol::Postgresql
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
            // Only whole chunks leave a carry, so the join is contiguous.
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

    const PSQL: &str = include_str!("../tests/fixtures/sql/pg_psql.txt");
    const BENCH_SIMPLE: &str = include_str!("../tests/fixtures/sql/pg_pgbench_simple.txt");
    const BENCH_EXTENDED: &str = include_str!("../tests/fixtures/sql/pg_pgbench_extended.txt");
    const BENCH_PREPARED: &str = include_str!("../tests/fixtures/sql/pg_pgbench_prepared.txt");
    const BENCH_INIT: &str = include_str!("../tests/fixtures/sql/pg_pgbench_init.txt");
    const ERR_EXTENDED: &str = include_str!("../tests/fixtures/sql/pg_error_extended.txt");
    const ERR_PREPARED: &str = include_str!("../tests/fixtures/sql/pg_error_prepared.txt");

    fn run(text: &str, conn: u32, snaplen: usize) -> Vec<String> {
        let caps = load(text);
        let (events, _) = replay::<PostgresParser>(&caps, conn, snaplen);
        describe(&events)
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn feed_all(p: &mut PostgresParser, chunks: &[(Direction, &[u8])]) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, b) in chunks {
            p.feed(Chunk { dir: *dir, head: b, len: b.len() }, &mut out);
        }
        out
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', &[sql.as_bytes(), b"\0"].concat())
    }

    const READY: &[u8] = b"Z\x00\x00\x00\x05I";

    #[test]
    fn pgbench_prepared_reports_named_statements() {
        let got = run(BENCH_PREPARED, 2, 1024);
        // First transaction: each statement is prepared (Parse + Sync) then
        // executed by name (Bind/Describe/Execute/Sync).
        assert_eq!(
            got[..6],
            lines(&[
                "> PREPARE BEGIN",
                "< OK",
                "> BEGIN BEGIN",
                "< OK",
                "> PREPARE UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
                "< OK"
            ])
        );
        // Later transactions only Bind P_0..P_6: the SQL comes from the map.
        let tail = lines(&[
            "> BEGIN BEGIN",
            "< OK",
            "> UPDATE UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
            "< OK",
            "> SELECT SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "< OK",
            "> UPDATE UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            "< OK",
            "> UPDATE UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2",
            "< OK",
            "> INSERT INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
            "< OK",
            "> END END",
            "< OK",
        ]);
        assert_eq!(got.len(), 28 + 2 * 14);
        assert_eq!(got[28..42], tail);
        assert_eq!(got[42..], tail);
    }

    #[test]
    fn pgbench_extended_and_simple() {
        let ext = run(BENCH_EXTENDED, 2, 1024);
        assert_eq!(ext.len(), 3 * 14);
        assert_eq!(ext[4], "> SELECT SELECT abalance FROM pgbench_accounts WHERE aid = $1");
        let simple = run(BENCH_SIMPLE, 2, 1024);
        assert_eq!(simple.len(), 3 * 14);
        assert_eq!(simple[2], "> UPDATE UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?");
        assert_eq!(simple[10], "> INSERT INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP)");
        assert!(simple.iter().filter(|l| l.starts_with('<')).all(|l| l == "< OK"));
    }

    #[test]
    fn errors_carry_the_sqlstate() {
        // The ErrorResponse and the ReadyForQuery came in two recv()s.
        assert_eq!(
            run(ERR_EXTENDED, 2, 1024),
            lines(&[
                "> SELECT SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                "< OK",
                "> SELECT SELECT * FROM no_such_table WHERE id = $1",
                "< 42P01 ERR relation \"no_such_table\" does not exist [continues]",
                "< end",
            ])
        );
        let prep = run(ERR_PREPARED, 2, 1024);
        assert_eq!(prep[4], "> PREPARE SELECT * FROM no_such_table WHERE id = $1");
        assert_eq!(prep[7], "> SELECT SELECT * FROM no_such_table WHERE id = $1");
        assert_eq!(prep[8], "< 26000 ERR prepared statement \"P_1\" does not exist [continues]");
    }

    #[test]
    fn psql_session() {
        assert_eq!(run(PSQL, 1, 1024), lines(&["> SELECT SELECT ?", "< OK"]));
        let got = run(PSQL, 2, 1024);
        assert_eq!(
            got,
            lines(&[
                "> CREATE CREATE TABLE IF NOT EXISTS users (id int PRIMARY key, name text, email text)",
                "< OK",
                "> INSERT INSERT INTO users VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                "< OK",
                "> SELECT SELECT * FROM users WHERE id IN (?) AND name <> ?",
                "< OK",
                "> SELECT SELECT * FROM no_such_table",
                "< 42P01 ERR relation \"no_such_table\" does not exist [continues]",
                "< end",
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
                "> COPY COPY users TO stdout",
                "< OK",
                "> COPY COPY users FROM STDIN",
                "< OK",
                // 240 KB of DataRows: boundaries are lost after the first head.
                "> SELECT SELECT generate_series(?, ?) AS n, repeat(?, ?) AS pad",
                "< OK [unknown]",
            ])
        );
        // With whole chunks visible the big result is followed to its 'Z'.
        let full = run(PSQL, 2, usize::MAX);
        assert_eq!(full.len(), got.len());
    }

    #[test]
    fn details_hold_sql_and_never_auth_data() {
        let caps = load(BENCH_PREPARED);
        let (events, p) = replay::<PostgresParser>(&caps, 2, 4096);
        assert_eq!(p.gave_up(), 0);
        for e in &events {
            if let ParseEvent::Start { info: Info::Request(r), .. } = e {
                assert!(!r.detail.contains("r=") && !r.detail.contains("SCRAM"), "{}", r.detail);
                assert!(r.detail.ends_with(';'), "{}", r.detail);
            }
        }
        let first = events.iter().find_map(|e| match e {
            ParseEvent::Start { info: Info::Request(r), .. } => Some(r.detail.clone()),
            _ => None,
        });
        assert_eq!(first.as_deref(), Some("BEGIN;"));
    }

    #[test]
    fn copy_from_stdin_with_cut_heads() {
        // pgbench -i: 100000 rows of CopyData in 8-64 KiB writes, heads of 256.
        let caps = load(BENCH_INIT);
        let (events, p) = replay::<PostgresParser>(&caps, 1, 256);
        let got = describe(&events);
        assert_eq!(got[0], "> DROP DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers");
        // The NOTICEs and the CommandComplete came in four recv()s.
        assert_eq!(got[1..3], lines(&["< OK [continues]", "< end"]));
        let copy = got.iter().position(|l| l.starts_with("> COPY")).unwrap();
        assert_eq!(
            got[copy..copy + 4],
            lines(&[
                "> COPY COPY pgbench_accounts FROM stdin WITH (freeze ON)",
                "< OK",
                "> COMMIT COMMIT",
                "< OK"
            ])
        );
        assert_eq!(got.len(), 2 * 27 + 1);
        assert_eq!(p.gave_up(), 0, "CopyData that cannot be followed is not a give-up");
    }

    #[test]
    fn ssl_accepted_makes_the_connection_opaque() {
        let mut p = PostgresParser::default();
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Request, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"),
                (Direction::Response, b"S"),
                (Direction::Request, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
                (Direction::Response, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76"),
            ],
        );
        assert!(ev.is_empty());
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn picked_up_mid_stream() {
        // Skip pgbench's startup and its Parse messages: named statements are
        // unknown, later unnamed ones are fine.
        let caps = load(BENCH_PREPARED);
        let conn2: Vec<_> = caps.into_iter().filter(|c| c.conn == 2).skip(40).collect();
        let (events, p) = replay::<PostgresParser>(&conn2, 2, 1024);
        let got = describe(&events);
        assert!(got.contains(&"> EXECUTE EXECUTE".to_string()), "{got:?}");
        assert_eq!(
            got.iter().filter(|l| l.starts_with('>')).count(),
            got.iter().filter(|l| l.starts_with('<')).count()
        );
        assert_eq!(p.gave_up(), 0);
        let detail = events.iter().find_map(|e| match e {
            ParseEvent::Start { info: Info::Request(r), .. } if r.method == "EXECUTE" => {
                Some(r.detail.clone())
            }
            _ => None,
        });
        assert!(detail.unwrap().starts_with("prepared statement \"P_"));
    }

    #[test]
    fn a_query_written_in_pieces_keeps_its_sql() {
        // Tag, length and text in three sends (a hand-written client did this).
        let q = query("SELECT pg_sleep(0.2)");
        let mut p = PostgresParser::default();
        let complete = msg(b'C', b"SELECT 1\0");
        let resp = [complete, READY.to_vec()].concat();
        let ev = feed_all(
            &mut p,
            &[
                (Direction::Request, &q[..1]),
                (Direction::Request, &q[1..5]),
                (Direction::Request, &q[5..]),
                (Direction::Response, &resp),
            ],
        );
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT pg_sleep(?)", "< OK"]));
        let detail = ev.iter().find_map(|e| match e {
            ParseEvent::Start { info: Info::Request(r), .. } => Some(r.detail.clone()),
            _ => None,
        });
        assert_eq!(detail.as_deref(), Some("SELECT pg_sleep(0.2)"));
        assert_eq!(p.gave_up(), 0);
        // The header alone in a chunk, the text in the next one.
        let mut p = PostgresParser::default();
        let chunks: [(Direction, &[u8]); 3] =
            [(Direction::Request, &q[..5]), (Direction::Request, &q[5..]), (Direction::Response, &resp)];
        let ev = feed_all(&mut p, &chunks);
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT pg_sleep(?)", "< OK"]));
    }

    #[test]
    fn pipelined_queries_and_responses() {
        let mut p = PostgresParser::default();
        let reqs = [query("select 1"), query("select 2")].concat();
        let complete = msg(b'C', b"SELECT 1\0");
        let resps = [complete.clone(), READY.to_vec(), complete, READY.to_vec()].concat();
        let ev = feed_all(&mut p, &[(Direction::Request, &reqs), (Direction::Response, &resps)]);
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT ?", "> SELECT SELECT ?", "< OK", "< OK"]));
        let bytes: Vec<_> = ev
            .iter()
            .map(|e| match e {
                ParseEvent::Start { bytes, .. } => *bytes,
                _ => None,
            })
            .collect();
        assert_eq!(bytes, vec![Some(14), Some(14), Some(20), Some(20)]);
    }

    #[test]
    fn long_query_spans_chunks() {
        let sql = format!("SELECT * FROM t WHERE v IN ({})", vec!["1"; 3000].join(","));
        let q = query(&sql);
        let mut p = PostgresParser::default();
        let mut out = Vec::new();
        for part in q.chunks(2048) {
            // Heads cut at 1024 bytes.
            p.feed(
                Chunk { dir: Direction::Request, head: &part[..part.len().min(1024)], len: part.len() },
                &mut out,
            );
        }
        p.feed(
            Chunk {
                dir: Direction::Response,
                head: &[msg(b'C', b"SELECT 0\0"), READY.to_vec()].concat(),
                len: 20,
            },
            &mut out,
        );
        assert_eq!(
            describe(&out),
            lines(&["> SELECT SELECT * FROM t WHERE v IN (? [continues]", "> end", "< OK"])
        );
    }

    #[test]
    fn batch_without_sync_continues_until_sync() {
        // libpq pipeline mode may write P/B/E before the Sync.
        let parse = msg(b'P', b"\0SELECT $1\0\0\0");
        let bind = msg(b'B', b"\0\0\0\0\0\x01\x00\x00\x00\x012\0\0");
        let exec = msg(b'E', b"\0\0\0\0\0");
        let first = [parse, bind, exec].concat();
        let mut p = PostgresParser::default();
        let ev = feed_all(&mut p, &[(Direction::Request, &first), (Direction::Request, b"S\0\0\0\x04")]);
        assert_eq!(describe(&ev), lines(&["> SELECT SELECT $1 [continues]", "> end"]));
    }

    #[test]
    fn unsolicited_messages_are_not_responses() {
        let mut p = PostgresParser::default();
        let notify = msg(b'A', b"\0\0\0\x07chan\0payload\0");
        let fatal = msg(b'E', b"SFATAL\0C57P01\0Mterminating connection due to administrator command\0\0");
        let ev = feed_all(&mut p, &[(Direction::Response, &notify), (Direction::Response, &fatal)]);
        assert!(ev.is_empty());
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn split_at_every_position_gives_the_same_answer() {
        // pgbench -M extended: one P/B/D/E/S batch and its response.
        let caps = load(ERR_EXTENDED);
        let req = &caps.iter().find(|c| c.conn == 2 && c.head.first() == Some(&b'P')).unwrap().head;
        let resp = &caps.iter().find(|c| c.conn == 2 && c.head.first() == Some(&b'1')).unwrap().head;
        let whole = {
            let mut p = PostgresParser::default();
            describe(&feed_all(&mut p, &[(Direction::Request, req), (Direction::Response, resp)]))
        };
        assert_eq!(whole, lines(&["> SELECT SELECT abalance FROM pgbench_accounts WHERE aid = $1", "< OK"]));
        // Where the SQL text ends in the Parse message: splits after it lose
        // nothing; splits before it describe the batch from what was seen.
        let sql_end = 7 + req[6..].iter().position(|&b| b == 0).unwrap();
        for at in 1..req.len() {
            let mut p = PostgresParser::default();
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
            assert_eq!(got.last().map(String::as_str), Some("< OK"), "split at {at}");
            if at >= sql_end {
                assert_eq!(got[0], format!("{} [continues]", whole[0]), "split at {at}");
                assert_eq!(got[1], "> end", "split at {at}");
            }
            assert_eq!(p.gave_up(), 0, "split at {at}");
        }
        for at in 1..resp.len() {
            let mut p = PostgresParser::default();
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
            assert!(
                got[1] == "< OK" || (got[1] == "< OK [continues]" && got[2] == "< end"),
                "split at {at}: {got:?}"
            );
            assert_eq!(p.gave_up(), 0, "split at {at}");
        }
    }

    #[test]
    fn detection() {
        let chunk = |dir, head: &'static [u8]| Chunk { dir, head, len: head.len() };
        let caps = load(BENCH_PREPARED);
        let startup = &caps.iter().find(|c| c.conn == 2 && c.len == 66).unwrap().head;
        assert!(detect(Chunk { dir: Direction::Request, head: startup, len: 66 }, 55432));
        assert!(detect(chunk(Direction::Request, b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), 1));
        let q = query("select 1");
        assert!(detect(Chunk { dir: Direction::Request, head: &q, len: q.len() }, 1));
        assert!(!detect(Chunk { dir: Direction::Request, head: &q, len: q.len() + 10 }, 1));
        assert!(detect(Chunk { dir: Direction::Request, head: &q, len: q.len() + 10 }, 5432));
        let bind = &caps.iter().find(|c| c.conn == 2 && c.head.first() == Some(&b'B')).unwrap().head;
        assert!(detect(Chunk { dir: Direction::Request, head: bind, len: bind.len() }, 1));
        assert!(detect(chunk(Direction::Response, b"C\x00\x00\x00\x0bCOMMIT\x00Z\x00\x00\x00\x05I"), 1));
        assert!(!detect(chunk(Direction::Response, b"C\x00\x00\x00\x0bCOMMIT\x00"), 1));
        // Not PostgreSQL: HTTP, a MySQL greeting and COM_QUERY, Redis.
        assert!(!detect(chunk(Direction::Request, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 5432));
        assert!(!detect(chunk(Direction::Response, b"J\x00\x00\x00\x0a5.7.44\x00"), 1));
        assert!(!detect(chunk(Direction::Request, b"\x09\x00\x00\x00\x03select 1"), 1));
        assert!(!detect(chunk(Direction::Request, b"*1\r\n$4\r\nPING\r\n"), 1));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_chunks_never_panic(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0usize..5000), 0..40))
        {
            let mut p = PostgresParser::default();
            let mut out = Vec::new();
            let mut budget = 0;
            for (req, head, extra) in &chunks {
                let dir = if *req { Direction::Request } else { Direction::Response };
                p.feed(Chunk { dir, head, len: head.len() + extra }, &mut out);
                budget += head.len() / 5 + 2;
            }
            proptest::prop_assert!(out.len() <= budget);
        }

        #[test]
        fn message_soup_never_panics(chunks in proptest::collection::vec(
            (proptest::bool::ANY, proptest::collection::vec(
                (proptest::sample::select(b"QPBEDSCHXdcfp1 2ZTDCEINAGHWsntRKV".to_vec()),
                 proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..6), 0usize..64, 0usize..100), 0..30))
        {
            let mut p = PostgresParser::default();
            let mut out = Vec::new();
            for (req, msgs, cut, extra) in &chunks {
                let bytes: Vec<u8> = msgs.iter().flat_map(|(t, b)| msg(*t, b)).collect();
                let head = &bytes[..bytes.len().saturating_sub(*cut)];
                let dir = if *req { Direction::Request } else { Direction::Response };
                p.feed(Chunk { dir, head, len: bytes.len() + extra }, &mut out);
            }
            proptest::prop_assert!(out.len() <= chunks.len() * 8);
        }
    }
}
