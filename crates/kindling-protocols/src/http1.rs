//! HTTP/1.0 and HTTP/1.1, both directions.
//!
//! Requests report `method`, `endpoint` = [`normalize::path`] of the target (`CONNECT`: the
//! authority), `detail` = the raw target with secret-looking query values masked, truncated,
//! and the trace context of `traceparent`/`sw8`/`Pinpoint-TraceID`/B3 headers. Responses report
//! `status` = the code (`"200"`), `is_error` = code >= 400, `message` = the reason phrase.
//! HTTP/1 has no message ids: `id` is always `None` and responses answer requests in order.
//!
//! Framing follows RFC 9112: `Transfer-Encoding: chunked` (followed chunk by chunk, also when
//! the body arrives in later chunks), `Content-Length` (via [`LengthFramer`]), no body for
//! 1xx/204/304 and responses to `HEAD` (a FIFO of pending request kinds tells), and a
//! close-delimited body ([`Extent::Unknown`]) for responses with neither header. Interim 1xx
//! responses (`100 Continue`) are skipped: the final response that follows is the answer.
//! After `101 Switching Protocols` or a 2xx answer to `CONNECT` the connection no longer
//! speaks HTTP/1: every later chunk is counted in `gave_up()` and nothing is reported.
//!
//! Only the visible head of a chunk is parsed, lazily: header lines are scanned once, and only
//! the framing and trace headers are looked at (no allocation per header). When a header block
//! is cut by the snaplen the message is reported with what is visible and `Extent::Unknown`.
//! `End` is reported only when the parser sees where a `Continues` message ends; when it loses
//! track (a chunked body whose next size line is hidden) no `End` follows and the message
//! ends like an `Unknown` one.

use std::borrow::Cow;

use crate::framing::{LengthFramer, Start};
use crate::{
    normalize, trace, truncate_display, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol,
    RequestInfo, ResponseInfo, TraceContext, MAX_DETAIL,
};

/// Messages parsed from one chunk at most (bounds the output on hostile input).
const MAX_PER_CHUNK: usize = 256;
/// Partial header line kept across chunks; framing headers are short, longer lines are skipped.
const CARRY: usize = 48;
/// Requests remembered for response framing (pipelining depth).
const PENDING: usize = 32;
/// Longest method token accepted.
const MAX_METHOD: usize = 20;
/// Longest chunk-size line (with extensions) before we call the body garbage.
const MAX_SIZE_LINE: u16 = 1024;
/// Longest unfinished start line carried over to the next chunk.
const MAX_PREFIX: usize = 512;
/// Longest reason phrase kept.
const MAX_REASON: usize = 64;

const KNOWN_METHODS: [&[u8]; 9] =
    [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE"];

/// Does this chunk start with an HTTP/1 request line or status line?
pub fn detect(chunk: Chunk<'_>) -> bool {
    let h = chunk.head;
    request_line(h).is_some_and(|l| l.known) || status_line(h).is_some()
}

#[derive(Default)]
pub struct Http1Parser {
    req: Side,
    resp: Side,
    pending: Pending,
    /// The connection switched protocols (101, CONNECT tunnel).
    upgraded: bool,
    gave_up: u64,
}

impl Parser for Http1Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        if self.upgraded {
            self.gave_up += 1;
            return;
        }
        let len = chunk.len.max(chunk.head.len());
        let side = self.side(chunk.dir);
        if side.prefix.is_empty() {
            self.feed_bytes(chunk.dir, chunk.head, len, out);
            return;
        }
        // A start line began at the end of the previous chunk: parse it joined with this one.
        let mut joined = std::mem::take(&mut side.prefix);
        let skew = joined.len();
        joined.extend_from_slice(chunk.head);
        let first = out.len();
        self.feed_bytes(chunk.dir, &joined, skew + len, out);
        // The prefix's bytes belong to the previous chunk.
        if let Some(ParseEvent::Start { bytes: Some(b), .. }) = out.get_mut(first) {
            *b = b.saturating_sub(skew);
        }
    }

    fn gave_up(&self) -> u64 {
        self.gave_up
    }
}

/// Per-direction framing state.
#[derive(Default)]
struct Side {
    body: Body,
    framer: LengthFramer,
    /// An unfinished start line from the end of the previous chunk (rare: empty, no
    /// allocation, unless a syscall split a start line).
    prefix: Vec<u8>,
}

#[derive(Clone, Copy, Debug, Default)]
enum Body {
    /// Between messages: the next chunk should start one.
    #[default]
    Idle,
    /// A `Content-Length` body spills into later chunks; the framer counts it. `End` is owed.
    Length,
    /// A chunked body. `synced`: we know where we are in it; `open`: an `End` is owed.
    Chunked { dec: Chunked, synced: bool, open: bool },
    /// The header block continues in the next chunk.
    Headers(Headers),
    /// The body runs until the connection closes.
    Close,
}

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Empty,
    Length(u64),
    Chunked,
    Close,
    /// Malformed framing: boundaries are lost.
    Unknown,
}

/// Where a body that starts in this chunk ends.
enum Framed {
    /// At this offset of the chunk (maybe beyond the visible head).
    Ends(usize),
    /// In a later chunk; the side's state follows it and `End` will be reported.
    Continues,
    /// Cannot tell.
    Unknown,
}

impl Http1Parser {
    /// Parses the visible `head` of `len` bytes of one direction.
    fn feed_bytes(&mut self, dir: Direction, head: &[u8], len: usize, out: &mut Vec<ParseEvent>) {
        if len == 0 {
            return;
        }
        let Some(mut pos) = self.resume(dir, head, len, out) else { return };
        if head.is_empty() {
            self.gave_up += 1;
            return;
        }
        for _ in 0..MAX_PER_CHUNK {
            // Stray CRLFs between messages are tolerated (RFC 9112 section 2.2).
            while head.get(pos).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
                pos += 1;
            }
            if pos >= head.len() {
                return;
            }
            let next = match dir {
                Direction::Request => self.request(head, len, pos, out),
                Direction::Response => self.response(head, len, pos, out),
            };
            match next {
                Some(n) if n > pos && n < head.len() && !self.upgraded => pos = n,
                _ => return,
            }
        }
    }

    /// Keeps an unfinished start line that ends a fully visible chunk for the next chunk.
    fn stash(&mut self, dir: Direction, bytes: &[u8]) {
        let side = self.side(dir);
        side.body = Body::Idle;
        side.prefix.clear();
        side.prefix.extend_from_slice(bytes);
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Request => &mut self.req,
            Direction::Response => &mut self.resp,
        }
    }

    /// Continues what the previous chunks of this direction left open. Returns where a new
    /// message starts in this chunk, if one may.
    fn resume(
        &mut self,
        dir: Direction,
        head: &[u8],
        len: usize,
        out: &mut Vec<ParseEvent>,
    ) -> Option<usize> {
        let end = ParseEvent::End { dir, id: None };
        // Where a body was expected, a message start wins: e.g. a HEAD response whose request
        // we never saw promised a body that never comes.
        let starts = |h: &[u8]| looks_like_start(dir, h);
        let side = self.side(dir);
        match side.body {
            Body::Idle => Some(0),
            Body::Close => starts(head).then(|| {
                side.body = Body::Idle;
                0
            }),
            Body::Length => {
                let begin = side.framer.begin(len);
                if starts(head) {
                    if side.framer.in_message() {
                        side.framer.resync();
                    }
                    side.body = Body::Idle;
                    return Some(0);
                }
                match begin {
                    Start::Inside { ended } => {
                        if ended {
                            side.body = Body::Idle;
                            out.push(end);
                        }
                        None
                    }
                    Start::At { offset, .. } => {
                        side.body = Body::Idle;
                        out.push(end);
                        (offset < head.len()).then_some(offset)
                    }
                }
            }
            Body::Chunked { mut dec, synced, open } => {
                if starts(head) {
                    side.body = Body::Idle;
                    return Some(0);
                }
                if !synced {
                    if !size_line_start(head) {
                        self.gave_up += 1;
                        return None;
                    }
                    dec = Chunked::START;
                }
                match dec.advance(head, 0, len) {
                    Progress::Done(e) => {
                        side.body = Body::Idle;
                        if open {
                            out.push(end);
                        }
                        (e < head.len()).then_some(e)
                    }
                    Progress::More => {
                        side.body = Body::Chunked { dec, synced: true, open };
                        None
                    }
                    Progress::Lost => {
                        side.body = Body::Chunked { dec: Chunked::START, synced: false, open: false };
                        None
                    }
                }
            }
            Body::Headers(mut hs) => {
                if starts(head) {
                    side.body = Body::Idle;
                    return Some(0);
                }
                match hs.resume(head) {
                    Scan::Open(p) => {
                        side.body = if head.len() < len {
                            // Cut by the snaplen: the rest of the header block is out of sight.
                            Body::Idle
                        } else {
                            hs.keep(&head[p..]);
                            Body::Headers(hs)
                        };
                        None
                    }
                    Scan::At(h) => {
                        side.body = Body::Idle;
                        let mode = body_mode(dir, &hs.framing, hs.no_body);
                        match self.frame_body(dir, head, len, h, mode) {
                            Framed::Ends(e) => {
                                if hs.open {
                                    out.push(end);
                                }
                                (e < head.len()).then_some(e)
                            }
                            Framed::Continues | Framed::Unknown => None,
                        }
                    }
                }
            }
        }
    }

    /// Sets up the side's state for a body starting at `at` and says where it ends.
    fn frame_body(&mut self, dir: Direction, head: &[u8], len: usize, at: usize, mode: Mode) -> Framed {
        let side = self.side(dir);
        side.body = Body::Idle;
        match mode {
            Mode::Empty => Framed::Ends(at),
            Mode::Length(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                match side.framer.message(at, n, len, head.len()) {
                    (_, true) => Framed::Ends(at.saturating_add(n)),
                    (_, false) => {
                        side.body = Body::Length;
                        Framed::Continues
                    }
                }
            }
            Mode::Chunked => {
                let mut dec = Chunked::START;
                match dec.advance(head, at, len) {
                    Progress::Done(e) => Framed::Ends(e),
                    Progress::More => {
                        side.body = Body::Chunked { dec, synced: true, open: true };
                        Framed::Continues
                    }
                    Progress::Lost => {
                        side.body = Body::Chunked { dec, synced: false, open: false };
                        Framed::Unknown
                    }
                }
            }
            Mode::Close => {
                side.body = Body::Close;
                Framed::Unknown
            }
            Mode::Unknown => Framed::Unknown,
        }
    }

    /// Extent, bytes and next message offset of a message starting at `start` whose header
    /// scan gave `scan`.
    #[allow(clippy::too_many_arguments)]
    fn after_headers(
        &mut self,
        dir: Direction,
        head: &[u8],
        len: usize,
        start: usize,
        scan: Scan,
        framing: Framing,
        no_body: bool,
    ) -> (Extent, usize, Option<usize>) {
        match scan {
            Scan::At(h) => match self.frame_body(dir, head, len, h, body_mode(dir, &framing, no_body)) {
                Framed::Ends(e) => (Extent::Complete, e - start, (e < head.len()).then_some(e)),
                Framed::Continues => (Extent::Continues, len - start, None),
                Framed::Unknown => (Extent::Unknown, len - start, None),
            },
            Scan::Open(_) if head.len() < len => {
                // Header block cut by the snaplen: report what is visible.
                self.side(dir).body = Body::Idle;
                (Extent::Unknown, len - start, None)
            }
            Scan::Open(p) => {
                // The chunk ended inside the header block: it goes on in the next chunk.
                let mut hs = Headers::new(framing, no_body, true);
                hs.keep(&head[p..]);
                self.side(dir).body = Body::Headers(hs);
                (Extent::Continues, len - start, None)
            }
        }
    }

    /// Parses the request starting at `pos`; returns where the next one starts.
    fn request(&mut self, head: &[u8], len: usize, pos: usize, out: &mut Vec<ParseEvent>) -> Option<usize> {
        let h = &head[pos..];
        let whole = head.len() == len && h.len() <= MAX_PREFIX;
        let Some(rl) = request_line(h) else {
            if whole && request_prefix(h) {
                self.stash(Direction::Request, h);
            } else {
                self.give_up(Direction::Request);
            }
            return None;
        };
        if rl.end.is_none() && whole {
            self.stash(Direction::Request, h);
            return None;
        }
        self.pending.push(ReqKind::of(rl.method));
        let mut framing = Framing::default();
        let mut tr = TraceAcc::default();
        let scan = match rl.end {
            Some(e) if rl.http09 => Scan::At(pos + e),
            Some(e) => scan_headers(head, pos + e, &mut framing, Some(&mut tr)),
            None => Scan::Open(pos),
        };
        let info = Info::Request(request_info(&rl, tr.finish()));
        let (extent, bytes, next) =
            self.after_headers(Direction::Request, head, len, pos, scan, framing, false);
        out.push(start_event(Direction::Request, info, extent, bytes));
        next
    }

    /// Parses the response starting at `pos`; returns where the next one starts.
    fn response(&mut self, head: &[u8], len: usize, pos: usize, out: &mut Vec<ParseEvent>) -> Option<usize> {
        let h = &head[pos..];
        let whole = head.len() == len && h.len() <= MAX_PREFIX;
        let Some(sl) = status_line(h) else {
            if whole && status_prefix(h) {
                self.stash(Direction::Response, h);
            } else {
                self.give_up(Direction::Response);
            }
            return None;
        };
        if sl.end.is_none() && whole {
            self.stash(Direction::Response, h);
            return None;
        }
        let mut framing = Framing::default();
        let scan = match sl.end {
            Some(e) => scan_headers(head, pos + e, &mut framing, None),
            None => Scan::Open(pos),
        };
        let code = sl.code;
        if (100..200).contains(&code) && code != 101 {
            return self.interim(head, len, scan, framing);
        }
        let kind = self.pending.pop();
        let info = Info::Response(response_info(&sl));
        if code == 101 || (kind == ReqKind::Connect && (200..300).contains(&code)) {
            // The connection now speaks another protocol (websocket, h2c, a tunnel).
            self.upgraded = true;
            let (extent, bytes) = match scan {
                Scan::At(h) => (Extent::Complete, h - pos),
                Scan::Open(_) => (Extent::Unknown, len - pos),
            };
            out.push(start_event(Direction::Response, info, extent, bytes));
            return None;
        }
        let no_body = kind == ReqKind::Head || code == 204 || code == 304;
        let (extent, bytes, next) =
            self.after_headers(Direction::Response, head, len, pos, scan, framing, no_body);
        out.push(start_event(Direction::Response, info, extent, bytes));
        next
    }

    /// A 1xx interim response is skipped; the final response follows it.
    fn interim(&mut self, head: &[u8], len: usize, scan: Scan, framing: Framing) -> Option<usize> {
        match scan {
            Scan::At(h) => (h < head.len()).then_some(h),
            Scan::Open(p) => {
                if head.len() == len {
                    let mut hs = Headers::new(framing, true, false);
                    hs.keep(&head[p..]);
                    self.resp.body = Body::Headers(hs);
                }
                None
            }
        }
    }

    /// The bytes at a message boundary are not a message: skip the rest of the chunk.
    fn give_up(&mut self, dir: Direction) {
        self.gave_up += 1;
        self.side(dir).body = Body::Idle;
    }
}

fn start_event(dir: Direction, info: Info, extent: Extent, bytes: usize) -> ParseEvent {
    ParseEvent::Start { dir, id: None, info, extent, bytes: Some(bytes) }
}

fn body_mode(dir: Direction, f: &Framing, no_body: bool) -> Mode {
    let response = dir == Direction::Response;
    if no_body {
        Mode::Empty
    } else if f.chunked {
        // Transfer-Encoding overrides Content-Length.
        Mode::Chunked
    } else if f.other_te {
        if response {
            Mode::Close
        } else {
            Mode::Unknown
        }
    } else if f.bad_length {
        Mode::Unknown
    } else if let Some(n) = f.length {
        if n == 0 {
            Mode::Empty
        } else {
            Mode::Length(n)
        }
    } else if response {
        Mode::Close
    } else {
        Mode::Empty
    }
}

// ---------------------------------------------------------------------------------------------
// Start lines

struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    /// A method from the standard list (others need a visible `HTTP/1.x`).
    known: bool,
    /// The line ends with a visible `HTTP/1.x` version.
    versioned: bool,
    /// A complete line without version: an HTTP/0.9 request, which has no headers.
    http09: bool,
    /// Offset just past the line's `\n`, if visible.
    end: Option<usize>,
}

/// `METHOD SP target [SP HTTP/1.x] CRLF`, possibly cut short by the end of `h`.
fn request_line(h: &[u8]) -> Option<RequestLine<'_>> {
    let sp = h.iter().take(MAX_METHOD + 1).position(|&b| b == b' ')?;
    let method = &h[..sp];
    let known = KNOWN_METHODS.contains(&method);
    if !known && !is_token_method(method) {
        return None;
    }
    let rest = &h[sp + 1..];
    let first = *rest.first()?;
    if !(first == b'/' || first == b'*' || first == b'[' || first.is_ascii_alphanumeric()) {
        return None;
    }
    let nl = find_nl(rest);
    let line = &rest[..nl.unwrap_or(rest.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (target, version) = match line.iter().rposition(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    let versioned = version.is_some_and(|v| v.len() == 8 && v.starts_with(b"HTTP/1.") && nl.is_some());
    let version_ok = match version {
        Some(v) if nl.is_none() => v.starts_with(b"HTTP/1.") || b"HTTP/1.".starts_with(v),
        Some(_) => versioned,
        // HTTP/0.9 simple request, or a line cut before the version.
        None => known,
    };
    if !version_ok || target.is_empty() {
        return None;
    }
    let end = nl.map(|i| sp + 1 + i + 1);
    let http09 = version.is_none() && nl.is_some();
    Some(RequestLine { method, target, known, versioned, http09, end })
}

/// Could `h` be the beginning of a request line cut before its target (`POS`, `GET `)?
/// Only standard methods: a stray upper-case word must not glue onto the next request.
fn request_prefix(h: &[u8]) -> bool {
    match h.strip_suffix(b" ") {
        Some(m) => KNOWN_METHODS.contains(&m),
        None => KNOWN_METHODS.iter().any(|m| m.starts_with(h)),
    }
}

/// Could `h` be the beginning of a status line (`HTTP/1.1 2`)?
fn status_prefix(h: &[u8]) -> bool {
    h.len() < 12
        && h.iter().enumerate().all(|(i, &b)| match i {
            0..=6 => b == b"HTTP/1."[i],
            7 => matches!(b, b'0' | b'1'),
            8 => b == b' ',
            _ => b.is_ascii_digit(),
        })
}

fn is_token_method(m: &[u8]) -> bool {
    !m.is_empty() && m.iter().all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

struct StatusLine<'a> {
    code: u16,
    reason: &'a [u8],
    /// Offset just past the line's `\n`, if visible.
    end: Option<usize>,
}

/// `HTTP/1.x SP NNN [SP reason] CRLF`.
fn status_line(h: &[u8]) -> Option<StatusLine<'_>> {
    if h.len() < 12 || !h.starts_with(b"HTTP/1.") || !matches!(h[7], b'0' | b'1') || h[8] != b' ' {
        return None;
    }
    let digits = &h[9..12];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if code < 100 || !matches!(h.get(12), None | Some(b' ' | b'\r' | b'\n')) {
        return None;
    }
    let nl = find_nl(&h[12..]).map(|i| 12 + i);
    let reason = trim(&h[12..nl.unwrap_or(h.len())]);
    Some(StatusLine { code, reason, end: nl.map(|i| i + 1) })
}

/// Would a message of this direction start at the beginning of `h`? Stricter than parsing
/// (a complete, versioned request line) since it overrides the body framing.
fn looks_like_start(dir: Direction, h: &[u8]) -> bool {
    match dir {
        Direction::Request => request_line(h).is_some_and(|l| l.versioned),
        Direction::Response => status_line(h).is_some(),
    }
}

/// The first `\n` of `h`, eight bytes at a time (header lines are tens of bytes long and
/// this is the parser's inner loop).
fn find_nl(h: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = ONES * b'\n' as u64;
    let words = h.chunks_exact(8);
    let tail = words.remainder();
    for (i, c) in words.enumerate() {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ NL;
        // Zero bytes of `w` are newlines; the lowest flagged byte is exact.
        let zeros = w.wrapping_sub(ONES) & !w & HIGHS;
        if zeros != 0 {
            return Some(i * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let base = h.len() - tail.len();
    tail.iter().position(|&b| b == b'\n').map(|i| base + i)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\r', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Headers

/// What the framing headers said so far.
#[derive(Clone, Copy, Debug, Default)]
struct Framing {
    length: Option<u64>,
    bad_length: bool,
    chunked: bool,
    /// A transfer coding other than chunked is last.
    other_te: bool,
}

impl Framing {
    fn content_length(&mut self, v: &[u8]) {
        // `5` or a repeated list `5, 5`; any disagreement makes the framing unreliable.
        for part in v.split(|&b| b == b',') {
            let part = trim(part);
            let n = parse_decimal(part);
            match (n, self.length) {
                (None, _) => self.bad_length = true,
                (Some(n), Some(old)) if n != old => self.bad_length = true,
                (Some(n), _) => self.length = Some(n),
            }
        }
    }

    fn transfer_encoding(&mut self, v: &[u8]) {
        let last = v.split(|&b| b == b',').map(trim).rfind(|t| !t.is_empty());
        let Some(last) = last else { return };
        self.chunked = last.eq_ignore_ascii_case(b"chunked");
        self.other_te = !self.chunked;
    }
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

enum Scan {
    /// The header block ends (after its empty line) at this offset.
    At(usize),
    /// The visible bytes end inside the header block; the unfinished line starts here.
    Open(usize),
}

/// Reads header lines of `buf` from `pos` up to the empty line.
fn scan_headers(buf: &[u8], mut pos: usize, f: &mut Framing, mut tr: Option<&mut TraceAcc>) -> Scan {
    loop {
        let Some(i) = find_nl(&buf[pos..]) else { return Scan::Open(pos) };
        let line = &buf[pos..pos + i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += i + 1;
        if line.is_empty() {
            return Scan::At(pos);
        }
        header_line(line, f, tr.as_deref_mut());
    }
}

/// Looks at one header line; only framing and trace headers matter.
fn header_line(line: &[u8], f: &mut Framing, tr: Option<&mut TraceAcc>) {
    let Some(&first) = line.first() else { return };
    match first.to_ascii_lowercase() {
        b'c' => {
            if let Some(v) = header_value(line, b"content-length") {
                f.content_length(v);
            }
        }
        b't' => {
            if let Some(v) = header_value(line, b"transfer-encoding") {
                f.transfer_encoding(v);
            } else if let Some(tr) = tr {
                tr.line(line);
            }
        }
        b's' | b'p' | b'x' | b'b' => {
            if let Some(tr) = tr {
                tr.line(line);
            }
        }
        _ => {}
    }
}

/// The trimmed value of `line` if its name is `name` (lower-case).
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let n = name.len();
    (line.len() > n && line[n] == b':' && line[..n].eq_ignore_ascii_case(name)).then(|| trim(&line[n + 1..]))
}

/// A header block that continues in the next chunk.
#[derive(Clone, Copy, Debug)]
struct Headers {
    framing: Framing,
    no_body: bool,
    /// Its `Start` said `Continues`: an `End` is owed.
    open: bool,
    /// The unfinished last line (when short enough to matter).
    carry: [u8; CARRY],
    carry_len: u8,
    /// The unfinished line was too long to keep: skip it.
    overflow: bool,
}

impl Headers {
    fn new(framing: Framing, no_body: bool, open: bool) -> Self {
        Headers { framing, no_body, open, carry: [0; CARRY], carry_len: 0, overflow: false }
    }

    /// Appends unfinished line bytes.
    fn keep(&mut self, bytes: &[u8]) {
        let have = usize::from(self.carry_len);
        if self.overflow || have + bytes.len() > CARRY {
            self.overflow = true;
            self.carry_len = 0;
            return;
        }
        self.carry[have..have + bytes.len()].copy_from_slice(bytes);
        self.carry_len = (have + bytes.len()) as u8;
    }

    /// Continues the header block with the next chunk's bytes.
    fn resume(&mut self, head: &[u8]) -> Scan {
        let mut pos = 0;
        if self.carry_len > 0 || self.overflow {
            let Some(nl) = find_nl(head) else { return Scan::Open(0) };
            if !self.overflow {
                // Finish the line begun in the previous chunk.
                let have = usize::from(self.carry_len);
                let mut line = [0u8; 2 * CARRY];
                let total = have + nl;
                if total <= line.len() {
                    line[..have].copy_from_slice(&self.carry[..have]);
                    line[have..total].copy_from_slice(&head[..nl]);
                    let l = &line[..total];
                    let l = l.strip_suffix(b"\r").unwrap_or(l);
                    if l.is_empty() {
                        return Scan::At(nl + 1);
                    }
                    header_line(l, &mut self.framing, None);
                }
            }
            self.carry_len = 0;
            self.overflow = false;
            pos = nl + 1;
        }
        scan_headers(head, pos, &mut self.framing, None)
    }
}

/// The trace context found in a request's headers (one allocation only when found).
#[derive(Default)]
struct TraceAcc {
    ctx: Option<TraceContext>,
    rank: u8,
    b3_span: Option<String>,
    pinpoint_span: Option<String>,
}

impl TraceAcc {
    /// Several trace headers may coexist; W3C wins, then SkyWalking, Pinpoint, B3.
    fn line(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        let rank = match name.len() {
            11 if name.eq_ignore_ascii_case(b"traceparent") => 4,
            3 if name.eq_ignore_ascii_case(b"sw8") => 3,
            16 if name.eq_ignore_ascii_case(b"pinpoint-traceid") => 2,
            12 if name.eq_ignore_ascii_case(b"x-b3-traceid") => 1,
            2 if name.eq_ignore_ascii_case(b"b3") => 1,
            11 | 15 => return self.span(name, value),
            _ => return,
        };
        if rank <= self.rank {
            return;
        }
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else { return };
        if let Some(ctx) = trace::from_header(name, value) {
            self.ctx = Some(ctx);
            self.rank = rank;
        }
    }

    /// `X-B3-SpanId` and `Pinpoint-SpanID` complete a trace id from another header.
    fn span(&mut self, name: &[u8], value: &[u8]) {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else { return };
        match trace::span_header(name, value) {
            Some(("b3", span)) => self.b3_span = Some(span),
            Some((_, span)) => self.pinpoint_span = Some(span),
            None => {}
        }
    }

    fn finish(self) -> Option<TraceContext> {
        let mut ctx = self.ctx?;
        if ctx.span_id.is_empty() {
            let span = match ctx.trace_type.as_str() {
                "b3" => self.b3_span,
                "pinpoint" => self.pinpoint_span,
                _ => None,
            };
            ctx.span_id = span.unwrap_or_default();
        }
        Some(ctx)
    }
}

// ---------------------------------------------------------------------------------------------
// Infos

fn request_info(rl: &RequestLine<'_>, trace: Option<TraceContext>) -> RequestInfo {
    let target = String::from_utf8_lossy(rl.target);
    let endpoint = if rl.method == b"CONNECT" {
        // host:port — bounded by the peers a client tunnels to.
        truncate_display(&target, 64)
    } else {
        normalize::path(&target)
    };
    RequestInfo {
        method: String::from_utf8_lossy(rl.method).into_owned(),
        endpoint,
        detail: truncate_display(&mask_query(&target), MAX_DETAIL),
        trace,
    }
}

fn response_info(sl: &StatusLine<'_>) -> ResponseInfo {
    ResponseInfo {
        status: code_string(sl.code),
        is_error: sl.code >= 400,
        message: truncate_display(&String::from_utf8_lossy(sl.reason), MAX_REASON),
        protocol: None,
    }
}

/// `200` -> `"200"` without the formatting machinery (codes are 100..=999).
fn code_string(code: u16) -> String {
    let digits = [code / 100 % 10, code / 10 % 10, code % 10];
    digits.iter().map(|&d| char::from(b'0' + d as u8)).collect()
}

/// Query parameter names whose values are not shown.
const SECRET_KEYS: [&[u8]; 8] =
    [b"token", b"passw", b"secret", b"key", b"auth", b"sig", b"session", b"credential"];

fn is_secret_key(k: &str) -> bool {
    let k = k.as_bytes();
    SECRET_KEYS.iter().any(|s| k.windows(s.len()).any(|w| w.eq_ignore_ascii_case(s)))
}

/// `/login?user=a&token=xyz` -> `/login?user=a&token=***`.
fn mask_query(target: &str) -> Cow<'_, str> {
    let Some(q) = target.find('?') else { return Cow::Borrowed(target) };
    let (path, query) = target.split_at(q + 1);
    let secret = |kv: &str| kv.split_once('=').is_some_and(|(k, _)| is_secret_key(k));
    if !query.split('&').any(secret) {
        return Cow::Borrowed(target);
    }
    let mut s = String::with_capacity(target.len());
    s.push_str(path);
    for (i, kv) in query.split('&').enumerate() {
        if i > 0 {
            s.push('&');
        }
        match kv.split_once('=') {
            Some((k, _)) if is_secret_key(k) => {
                s.push_str(k);
                s.push_str("=***");
            }
            _ => s.push_str(kv),
        }
    }
    Cow::Owned(s)
}

// ---------------------------------------------------------------------------------------------
// Pending requests

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ReqKind {
    #[default]
    Other,
    Head,
    Connect,
}

impl ReqKind {
    fn of(method: &[u8]) -> Self {
        match method {
            b"HEAD" => ReqKind::Head,
            b"CONNECT" => ReqKind::Connect,
            _ => ReqKind::Other,
        }
    }
}

/// FIFO of the requests awaiting a response, as a fixed ring (no allocation). When full,
/// the oldest is forgotten.
#[derive(Default)]
struct Pending {
    kinds: [ReqKind; PENDING],
    first: usize,
    len: usize,
}

impl Pending {
    fn push(&mut self, k: ReqKind) {
        if self.len == PENDING {
            self.first = (self.first + 1) % PENDING;
            self.len -= 1;
        }
        self.kinds[(self.first + self.len) % PENDING] = k;
        self.len += 1;
    }

    /// The oldest pending request (`Other` when we saw none: picked up mid-stream).
    fn pop(&mut self) -> ReqKind {
        if self.len == 0 {
            return ReqKind::Other;
        }
        let k = self.kinds[self.first];
        self.first = (self.first + 1) % PENDING;
        self.len -= 1;
        k
    }
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

/// Where we are in a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk-size line: its value so far, digits, and whether we are past the
    /// digits (extensions, CR) and how long the line is.
    Size { value: u64, digits: u8, ext: bool, line: u16 },
    /// Chunk data bytes still to come.
    Data { left: u64 },
    /// The CRLF after chunk data.
    DataEnd { cr: bool },
    /// Trailer lines after the last chunk; `empty`: the current line has no content yet.
    Trailer { empty: bool },
}

enum Progress {
    /// The body ends at this offset of the chunk.
    Done(usize),
    /// The body goes on in the next chunk.
    More,
    /// We no longer know where we are.
    Lost,
}

impl Chunked {
    const START: Chunked = Chunked::Size { value: 0, digits: 0, ext: false, line: 0 };

    /// Follows the body through `buf[pos..]`, the visible head of a chunk of `len` bytes.
    fn advance(&mut self, buf: &[u8], mut pos: usize, len: usize) -> Progress {
        let vis = buf.len();
        while pos < vis {
            if let Chunked::Data { left } = *self {
                // Skip data in one step.
                let take = left.min((vis - pos) as u64);
                pos += take as usize;
                *self = Chunked::data(left - take);
                continue;
            }
            let b = buf[pos];
            pos += 1;
            match self.byte(b) {
                Step::Go => {}
                Step::Done => return Progress::Done(pos),
                Step::Bad => return Progress::Lost,
            }
        }
        self.hidden(len, vis)
    }

    fn data(left: u64) -> Chunked {
        if left == 0 {
            Chunked::DataEnd { cr: false }
        } else {
            Chunked::Data { left }
        }
    }

    /// One byte of framing (not data).
    fn byte(&mut self, b: u8) -> Step {
        match *self {
            Chunked::Size { value, digits, ext, line } => {
                if line >= MAX_SIZE_LINE {
                    return Step::Bad;
                }
                let line = line + 1;
                match b {
                    b'\n' if digits == 0 => return Step::Bad,
                    b'\n' => {
                        *self = if value == 0 {
                            Chunked::Trailer { empty: true }
                        } else {
                            Chunked::Data { left: value }
                        }
                    }
                    _ if ext => *self = Chunked::Size { value, digits, ext, line },
                    b'\r' | b';' | b' ' | b'\t' if digits > 0 => {
                        *self = Chunked::Size { value, digits, ext: true, line }
                    }
                    _ => {
                        let Some(d) = hex_value(b) else { return Step::Bad };
                        if digits >= 15 {
                            return Step::Bad;
                        }
                        *self =
                            Chunked::Size { value: value * 16 + u64::from(d), digits: digits + 1, ext, line };
                    }
                }
            }
            Chunked::Data { .. } => {}
            Chunked::DataEnd { cr } => match b {
                b'\r' if !cr => *self = Chunked::DataEnd { cr: true },
                b'\n' => *self = Chunked::START,
                _ => return Step::Bad,
            },
            Chunked::Trailer { empty } => match b {
                b'\n' if empty => return Step::Done,
                b'\n' => *self = Chunked::Trailer { empty: true },
                b'\r' => {}
                _ => *self = Chunked::Trailer { empty: false },
            },
        }
        Step::Go
    }

    /// The chunk of `len` bytes goes on past the `vis` bytes of its head.
    fn hidden(&mut self, len: usize, vis: usize) -> Progress {
        let hidden = (len - vis) as u64;
        if hidden == 0 {
            return Progress::More;
        }
        let Chunked::Data { left } = *self else { return Progress::Lost };
        if left >= hidden {
            *self = Chunked::data(left - hidden);
            Progress::More
        } else if left + 2 == hidden {
            // The write ends with this chunk's CRLF: the next write starts a size line.
            *self = Chunked::START;
            Progress::More
        } else if left + 2 + 5 == hidden {
            // ...followed by exactly the last chunk `0\r\n\r\n`.
            Progress::Done(len)
        } else {
            Progress::Lost
        }
    }
}

enum Step {
    Go,
    Done,
    Bad,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Does `h` start with a chunk-size line (`1a\r\n`, `1a;ext\r\n`)? Used to pick a chunked
/// body up again after losing track of it.
fn size_line_start(h: &[u8]) -> bool {
    let digits = h.iter().take(17).take_while(|b| b.is_ascii_hexdigit()).count();
    (1..=15).contains(&digits) && matches!(h.get(digits), Some(b'\r' | b';' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Direction::{Request as Req, Response as Resp};

    /// Captured with nginx 1.22.1 + curl + python sockets through a logging loopback proxy.
    const NGINX: &str = include_str!("../tests/fixtures/http1/nginx.txt");
    /// Captured with a python http.server backend (chunked, 100-continue, close, websocket).
    const BACKEND: &str = include_str!("../tests/fixtures/http1/backend.txt");

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    /// The recv()s of one connection of a fixture: `conn dir len hex` lines.
    fn conn(text: &str, id: u32) -> Vec<(Direction, Vec<u8>)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let dir = if f[1] == "req" { Req } else { Resp };
                (f[0].parse::<u32>().unwrap() == id).then(|| (dir, unhex(f[3])))
            })
            .collect()
    }

    /// Feeds whole messages as chunks whose head is cut at `snaplen`.
    fn run(chunks: &[(Direction, Vec<u8>)], snaplen: usize) -> (Vec<ParseEvent>, Http1Parser) {
        let mut p = Http1Parser::default();
        let mut out = Vec::new();
        for (dir, b) in chunks {
            let head = &b[..b.len().min(snaplen)];
            p.feed(Chunk { dir: *dir, head, len: b.len() }, &mut out);
        }
        (out, p)
    }

    fn summary(ev: &[ParseEvent]) -> Vec<String> {
        ev.iter()
            .map(|e| match e {
                ParseEvent::Start { info: Info::Request(r), extent, bytes, .. } => {
                    format!("> {} {} {:?} {}", r.method, r.endpoint, extent, bytes.unwrap_or(0))
                }
                ParseEvent::Start { info: Info::Response(r), extent, bytes, .. } => {
                    format!("< {} {:?} {}", r.status, extent, bytes.unwrap_or(0))
                }
                ParseEvent::End { dir, .. } => format!("end {dir:?}"),
            })
            .collect()
    }

    fn expect(text: &str, id: u32, snaplen: usize, want: &[&str]) -> (Vec<ParseEvent>, Http1Parser) {
        let (ev, p) = run(&conn(text, id), snaplen);
        assert_eq!(summary(&ev), want, "conn {id} snaplen {snaplen}");
        (ev, p)
    }

    fn req_info(ev: &[ParseEvent], n: usize) -> RequestInfo {
        ev.iter()
            .filter_map(|e| match e {
                ParseEvent::Start { info: Info::Request(r), .. } => Some(r.clone()),
                _ => None,
            })
            .nth(n)
            .expect("request")
    }

    fn resp_info(ev: &[ParseEvent], n: usize) -> ResponseInfo {
        ev.iter()
            .filter_map(|e| match e {
                ParseEvent::Start { info: Info::Response(r), .. } => Some(r.clone()),
                _ => None,
            })
            .nth(n)
            .expect("response")
    }

    fn trace_of(r: &RequestInfo) -> (String, String, String) {
        let t = r.trace.clone().expect("trace");
        (t.trace_type, t.trace_id, t.span_id)
    }

    fn s3(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.to_string(), b.to_string(), c.to_string())
    }

    /// Feeds raw (head, len) pairs.
    fn feed_all(p: &mut Http1Parser, chunks: &[(Direction, &[u8], usize)]) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for &(dir, head, len) in chunks {
            p.feed(Chunk { dir, head, len }, &mut out);
        }
        out
    }

    fn feed1(chunks: &[(Direction, &[u8])]) -> (Vec<String>, Http1Parser) {
        let mut p = Http1Parser::default();
        let v: Vec<_> = chunks.iter().map(|&(d, b)| (d, b, b.len())).collect();
        let ev = feed_all(&mut p, &v);
        (summary(&ev), p)
    }

    const SNAPLENS: [usize; 2] = [4096, 1024];

    #[test]
    fn nginx_get_404_with_traceparent() {
        for snap in SNAPLENS {
            let (ev, p) =
                expect(NGINX, 0, snap, &["> GET /api/users/{id} Complete 168", "< 404 Complete 308"]);
            let r = req_info(&ev, 0);
            assert_eq!(r.detail, "/api/users/12345?x=1");
            let want = s3("w3c", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
            assert_eq!(trace_of(&r), want);
            let resp = resp_info(&ev, 0);
            assert_eq!(
                (resp.status.as_str(), resp.is_error, resp.message.as_str()),
                ("404", true, "Not Found")
            );
            assert_eq!(p.gave_up(), 0);
        }
    }

    #[test]
    fn nginx_head_response_has_no_body() {
        for snap in SNAPLENS {
            expect(NGINX, 1, snap, &["> HEAD /big.txt Complete 87", "< 200 Complete 240"]);
        }
    }

    #[test]
    fn nginx_errors() {
        let (ev, _) = expect(NGINX, 2, 4096, &["> GET /missing/page Complete 91", "< 404 Complete 308"]);
        assert!(resp_info(&ev, 0).is_error);
        let (ev, _) = expect(NGINX, 3, 4096, &["> GET /boom Complete 83", "< 500 Complete 339"]);
        let r = resp_info(&ev, 0);
        assert_eq!((r.status.as_str(), r.is_error), ("500", true));
        assert_eq!(r.message, "Internal Server Error");
        assert!(req_info(&ev, 0).trace.is_none());
    }

    #[test]
    fn nginx_keep_alive() {
        for snap in SNAPLENS {
            let (ev, _) = expect(
                NGINX,
                4,
                snap,
                &[
                    "> GET / Complete 79",
                    "< 200 Complete 240",
                    "> GET /big.txt Complete 86",
                    "< 200 Complete 3241",
                    "> GET /nocontent Complete 88",
                    "< 204 Complete 110",
                ],
            );
            assert!(!resp_info(&ev, 2).is_error);
        }
    }

    #[test]
    fn nginx_gzip_chunked_in_one_write_with_sw8() {
        for snap in SNAPLENS {
            let (ev, _) = expect(NGINX, 5, snap, &["> GET /gz/page.txt Complete 249", "< 200 Complete 349"]);
            let want = s3("skywalking", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7-3");
            assert_eq!(trace_of(&req_info(&ev, 0)), want);
        }
        // The snaplen hides the end of the data, the CRLF and the last-chunk, but the hidden
        // byte count matches them exactly.
        expect(NGINX, 5, 300, &["> GET /gz/page.txt Complete 249", "< 200 Complete 349"]);
        // Cut inside the headers: reported with what is visible.
        expect(NGINX, 5, 250, &["> GET /gz/page.txt Complete 249", "< 200 Unknown 349"]);
    }

    #[test]
    fn chunked_body_over_several_writes() {
        let want = ["> GET /up/chunked Complete 168", "< 200 Continues 156", "end Response"];
        for snap in [4096, 1024, 512] {
            let (ev, p) = expect(NGINX, 6, snap, &want);
            let b3 = s3("b3", "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1");
            assert_eq!(trace_of(&req_info(&ev, 0)), b3);
            assert_eq!(p.gave_up(), 0);
            let want = ["> GET /chunked Complete 86", "< 200 Continues 146", "end Response"];
            expect(BACKEND, 0, snap, &want);
        }
    }

    #[test]
    fn expect_100_continue_is_interim() {
        for snap in SNAPLENS {
            expect(NGINX, 7, snap, &["> POST /post Continues 177", "end Request", "< 201 Complete 142"]);
            let (ev, _) = expect(
                BACKEND,
                1,
                snap,
                &["> POST /post Continues 257", "end Request", "< 201 Continues 117", "end Response"],
            );
            let want = s3("pinpoint", "myagent^1700000000000^42", "-8372672893489212");
            assert_eq!(trace_of(&req_info(&ev, 0)), want);
            assert_eq!(resp_info(&ev, 0).message, "Created");
        }
        // Interim and final response in one chunk.
        let both = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (s, _) = feed1(&[(Req, b"POST /p HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"), (Resp, both)]);
        assert_eq!(s, ["> POST /p Complete 40", "< 200 Complete 40"]);
    }

    #[test]
    fn pipelined_requests_and_responses() {
        for snap in SNAPLENS {
            let (ev, _) = expect(
                NGINX,
                8,
                snap,
                &[
                    "> GET /index.html Complete 37",
                    "> HEAD /big.txt Complete 35",
                    "> GET /boom Complete 31",
                    "> GET /static/app.js Complete 116",
                    "< 200 Complete 240",
                    "< 200 Complete 240",
                    "< 500 Complete 339",
                ],
            );
            let b3 = s3("b3", "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1");
            assert_eq!(trace_of(&req_info(&ev, 3)), b3);
            expect(
                NGINX,
                12,
                snap,
                &[
                    "> GET /index.html Complete 37",
                    "> HEAD /big.txt Complete 35",
                    "> GET /gz/page.txt Complete 61",
                    "> GET /nocontent Complete 36",
                    "> GET /static/app.js Complete 116",
                    "< 200 Complete 240",
                    "< 200 Complete 240",
                    "< 200 Complete 349",
                    "< 204 Complete 110",
                    "< 200 Complete 246",
                ],
            );
        }
        // With a small snaplen the responses past it are out of sight (boundary lost, not garbage).
        let (ev, p) = run(&conn(NGINX, 12), 300);
        let want = ["< 200 Complete 240", "< 200 Unknown 699", "< 200 Complete 246"];
        assert_eq!(summary(&ev)[5..], want);
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn http10_chunked_request_and_h2c_offer() {
        expect(NGINX, 9, 4096, &["> GET /created Complete 86", "< 201 Complete 152"]);
        expect(NGINX, 10, 4096, &["> POST /post Complete 198", "< 201 Complete 140"]);
        // nginx ignores the h2c offer: still HTTP/1.
        expect(NGINX, 11, 4096, &["> GET /index.html Complete 182", "< 200 Complete 240"]);
    }

    #[test]
    fn headers_cut_by_the_snaplen() {
        let (ev, _) =
            expect(NGINX, 13, 4096, &["> GET /api/v1/orders/{id} Complete 1737", "< 404 Complete 308"]);
        let r = req_info(&ev, 0);
        assert_eq!(r.detail, "/api/v1/orders/550e8400-e29b-41d4-a716-446655440000?token=***&page=2");
        assert_eq!(trace_of(&r).1, "0af7651916cd43dd8448eb211c80319c");
        // The traceparent header is past the 1024-byte snaplen.
        let (ev, p) =
            expect(NGINX, 13, 1024, &["> GET /api/v1/orders/{id} Unknown 1737", "< 404 Complete 308"]);
        assert!(req_info(&ev, 0).trace.is_none());
        assert_eq!(p.gave_up(), 0);
        // Cut inside the request line: method and partial target still reported.
        let (ev, _) = run(&conn(NGINX, 13), 30);
        assert_eq!(summary(&ev)[0], "> GET /api/v1/orders/550e8400-e2 Unknown 1737");
    }

    #[test]
    fn close_delimited_response() {
        expect(BACKEND, 2, 4096, &["> GET /close Complete 84", "< 200 Unknown 307"]);
        // HTTP/1.0 style: more body chunks are not garbage; a new status line resyncs.
        let (s, p) = feed1(&[
            (Req, b"GET /a HTTP/1.0\r\n\r\n"),
            (Resp, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"),
            (Resp, b"more body"),
            (Req, b"GET /b HTTP/1.0\r\n\r\n"),
            (Resp, b"HTTP/1.0 404 Not Found\r\n\r\n"),
        ]);
        assert_eq!(
            s,
            ["> GET /a Complete 19", "< 200 Unknown 50", "> GET /b Complete 19", "< 404 Unknown 26"]
        );
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn websocket_upgrade_stops_parsing() {
        let (_, p) = expect(BACKEND, 3, 4096, &["> GET /ws/chat Complete 161", "< 101 Complete 202"]);
        assert_eq!(p.gave_up(), 2);
        // 101 and the first frame in one chunk; later HTTP-looking bytes are not parsed.
        let (s, p) = feed1(&[
            (Req, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
            (Resp, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
            (Req, b"GET /x HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(s, ["> GET /ws Complete 61", "< 101 Complete 56"]);
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn h2c_upgrade_stops_parsing() {
        let (s, p) = feed1(&[
            (
                Req,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n",
            ),
            (Resp, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
            (Req, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            (Resp, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(p.gave_up(), 2);
    }

    #[test]
    fn connect_tunnel() {
        let (s, p) = feed1(&[
            (Req, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
            (Resp, b"HTTP/1.1 200 Connection established\r\n\r\n"),
            (Req, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        ]);
        assert_eq!(s, ["> CONNECT example.com:443 Complete 59", "< 200 Complete 39"]);
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn head_response_promising_a_body_is_not_swallowed() {
        // Picked up mid-stream: the HEAD request was never seen, so the response seems to
        // announce 3001 body bytes; the next chunk is clearly a new response.
        let head_resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3001\r\n\r\n";
        let next = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let (s, p) = feed1(&[(Resp, head_resp), (Req, b"GET /x HTTP/1.1\r\n\r\n"), (Resp, next)]);
        assert_eq!(s, ["< 200 Continues 41", "> GET /x Complete 19", "< 404 Complete 45"]);
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn midstream_pickup_and_garbage() {
        let (s, p) = feed1(&[
            (Resp, b"tail of a body we never saw the start of"),
            (Req, b"\x00\x01garbage"),
            (Req, b"GET /ok HTTP/1.1\r\n\r\n"),
            (Resp, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(s, ["> GET /ok Complete 20", "< 200 Complete 38"]);
        assert_eq!(p.gave_up(), 2);
        // Stray CRLFs between messages are skipped.
        let (s, p) = feed1(&[
            (Req, b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\r\n"),
            (Req, b"\r\n"),
            (Req, b"\r\nGET /b HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(s, ["> POST /a Complete 41", "> GET /b Complete 19"]);
        assert_eq!(p.gave_up(), 0);
        // A stray word is not glued onto the next request; a split method is.
        let (s, p) = feed1(&[
            (Req, b"OK"),
            (Req, b"GET /a HTTP/1.1\r\n\r\n"),
            (Req, b"PO"),
            (Req, b"ST /b HTTP/1.1\r\n\r\n"),
        ]);
        assert_eq!(s, ["> GET /a Complete 19", "> POST /b Complete 18"]);
        assert_eq!(p.gave_up(), 1);
        // Garbage after a complete message in the same chunk.
        let (s, p) = feed1(&[(Req, b"GET / HTTP/1.1\r\n\r\n\x16\x03junk")]);
        assert_eq!(s, ["> GET / Complete 18"]);
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn content_length_body_spills_over_chunks() {
        let mut p = Http1Parser::default();
        let hdr = b"POST /upload HTTP/1.1\r\nCONTENT-length: 5000\r\n\r\n";
        let ev = feed_all(
            &mut p,
            &[(Req, hdr, hdr.len() + 1000), (Req, b"xxxx", 2000), (Req, b"xxxx", 1000), (Req, b"xxxx", 1000)],
        );
        assert_eq!(summary(&ev), ["> POST /upload Continues 1047", "end Request"]);
        // The last body bytes and the next request in one chunk.
        let mut p = Http1Parser::default();
        let mut tail = vec![b'x'; 10];
        tail.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let ev = feed_all(&mut p, &[(Req, hdr, hdr.len() + 4990), (Req, &tail, tail.len())]);
        assert_eq!(summary(&ev), ["> POST /upload Continues 5037", "end Request", "> GET /next Complete 22"]);
    }

    #[test]
    fn chunked_edge_cases() {
        // Size line split across chunks, extensions, trailers, upper-case hex.
        let (s, _) = feed1(&[
            (Resp, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n1"),
            (Resp, b"A;name=v\r\n0123456789abcdefghijklmnop\r\n0\r\nX-Checksum: 1\r\n"),
            (Resp, b"\r\nHTTP/1.1 204 No Content\r\n\r\n"),
        ]);
        assert_eq!(s, ["< 200 Continues 54", "end Response", "< 204 Complete 27"]);
        // Chunked overrides Content-Length.
        let (s, _) = feed1(&[(
            Resp,
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n\
              2\r\nok\r\n0\r\n\r\n",
        )]);
        assert_eq!(s, ["< 200 Complete 79"]);
        // Bad size line: lost, and the next response resyncs.
        let (s, p) = feed1(&[
            (Resp, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            (Resp, b"more"),
            (Resp, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ]);
        assert_eq!(s, ["< 200 Unknown 51", "< 200 Complete 38"]);
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn chunked_tracking_lost_then_found() {
        // A write with several chunks cut by the snaplen: the next size line is hidden.
        let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let hdr_len = body.len();
        for _ in 0..3 {
            body.extend_from_slice(b"190\r\n");
            body.extend_from_slice(&[b'y'; 400]);
            body.extend_from_slice(b"\r\n");
        }
        let mut p = Http1Parser::default();
        let ev = feed_all(&mut p, &[(Resp, &body[..600], body.len()), (Resp, b"0\r\n\r\n", 5)]);
        // Reported as Unknown; the last chunk is followed silently (no End owed).
        assert_eq!(summary(&ev), [format!("< 200 Unknown {}", body.len())]);
        // Headers alone first, then the lossy write: Continues without End, and the next
        // response still parses.
        let mut p = Http1Parser::default();
        let ev = feed_all(
            &mut p,
            &[
                (Resp, &body[..hdr_len], hdr_len),
                (Resp, &body[hdr_len..hdr_len + 500], body.len() - hdr_len),
                (Resp, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 49),
            ],
        );
        assert_eq!(summary(&ev), ["< 200 Continues 47", "< 304 Complete 49"]);
        // A write holding exactly one data chunk and its CRLF, then the last chunk with it.
        let mut w = b"3e8\r\n".to_vec();
        w.extend_from_slice(&[b'z'; 1000]);
        w.extend_from_slice(b"\r\n");
        let mut last = w.clone();
        last.extend_from_slice(b"0\r\n\r\n");
        let mut p = Http1Parser::default();
        let ev = feed_all(
            &mut p,
            &[
                (Resp, &body[..hdr_len], hdr_len),
                (Resp, &w[..100], w.len()),
                (Resp, &last[..100], last.len()),
            ],
        );
        assert_eq!(summary(&ev), ["< 200 Continues 47", "end Response"]);
    }

    #[test]
    fn framing_header_variants() {
        // Names are case-insensitive; conflicting lengths make the framing unknown.
        let (s, _) =
            feed1(&[(Req, b"PUT /k HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n")]);
        assert_eq!(s, ["> PUT /k Complete 41", "> GET / Complete 18"]);
        let (s, _) =
            feed1(&[(Req, b"PUT /k HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")]);
        assert_eq!(s, ["> PUT /k Unknown 61"]);
        let (s, _) = feed1(&[(Req, b"PUT /k HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc")]);
        assert_eq!(s, ["> PUT /k Complete 44"]);
        let (s, _) = feed1(&[(Req, b"PUT /k HTTP/1.1\r\nContent-Length: -1\r\n\r\n")]);
        assert_eq!(s, ["> PUT /k Unknown 39"]);
        // A response with a non-chunked transfer coding is close-delimited.
        let (s, _) = feed1(&[(Resp, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b")]);
        assert_eq!(s, ["< 200 Unknown 46"]);
        // Bare LF line endings.
        let (s, _) =
            feed1(&[(Resp, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 304 Not Modified\n\n")]);
        assert_eq!(s, ["< 200 Complete 37", "< 304 Complete 27"]);
    }

    #[test]
    fn methods_and_targets() {
        let (s, _) = feed1(&[
            (Req, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
            (Req, b"GET http://example.com/users/42?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"),
            (Req, b"PROPFIND /dav/file.txt HTTP/1.1\r\nDepth: 1\r\n\r\n"),
            (Req, b"GET /legacy\r\n"),
        ]);
        assert_eq!(
            s,
            [
                "> OPTIONS * Complete 31",
                "> GET /users/{id} Complete 67",
                "> PROPFIND /dav/file.txt Complete 45",
                "> GET /legacy Complete 13",
            ]
        );
        // An unknown method needs a visible version.
        let (s, p) = feed1(&[(Req, b"FOO /x\r\n\r\n")]);
        assert!(s.is_empty());
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn secrets_in_the_query_are_masked() {
        assert_eq!(mask_query("/login?user=a&token=xyz&page=2"), "/login?user=a&token=***&page=2");
        assert_eq!(mask_query("/s?API_KEY=1&Password=2"), "/s?API_KEY=***&Password=***");
        assert!(matches!(mask_query("/s?q=1"), Cow::Borrowed(_)));
        assert!(matches!(mask_query("/s"), Cow::Borrowed(_)));
        let long = format!("/x?q={}", "a".repeat(1000));
        let (s, _) = feed1(&[(Req, format!("GET {long} HTTP/1.1\r\n\r\n").as_bytes())]);
        assert_eq!(s, ["> GET /x Complete 1022"]);
        let mut p = Http1Parser::default();
        let mut out = Vec::new();
        let msg = format!("GET {long} HTTP/1.1\r\n\r\n");
        p.feed(Chunk { dir: Req, head: msg.as_bytes(), len: msg.len() }, &mut out);
        let ParseEvent::Start { info: Info::Request(r), .. } = &out[0] else { panic!() };
        assert!(r.detail.len() <= MAX_DETAIL + 3);
    }

    #[test]
    fn trace_header_priority_and_spans() {
        let mut p = Http1Parser::default();
        let msg = b"GET / HTTP/1.1\r\nX-B3-TraceId: 80f198ee56343ba864fe8b2a57d3eff7\r\n\
                    traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let ev = feed_all(&mut p, &[(Req, msg, msg.len())]);
        assert_eq!(trace_of(&req_info(&ev, 0)).0, "w3c");
        // A malformed traceparent does not hide a valid B3 id.
        let msg = b"GET / HTTP/1.1\r\ntraceparent: 00-zz-00\r\nx-b3-spanid: e457b5a2e4d86bd1\r\n\
                    X-B3-TRACEID: 80f198ee56343ba864fe8b2a57d3eff7\r\n\r\n";
        let ev = feed_all(&mut p, &[(Req, msg, msg.len())]);
        let want = s3("b3", "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1");
        assert_eq!(trace_of(&req_info(&ev, 0)), want);
    }

    #[test]
    fn newline_search() {
        for len in 0..40 {
            for at in 0..=len {
                let mut v: Vec<u8> =
                    (0..len).map(|i| b'a' + (i % 7) as u8 + if i % 3 == 0 { 128 } else { 0 }).collect();
                if at < len {
                    v[at] = b'\n';
                    if at + 1 < len {
                        v[at + 1] = b'\n';
                    }
                }
                let want = v.iter().position(|&b| b == b'\n');
                assert_eq!(find_nl(&v), want, "{v:?}");
            }
        }
        assert_eq!(find_nl(b"\x0b\x0a"), Some(1));
        assert_eq!(find_nl(b"\x09\x09\x09\x09\x09\x09\x09\x09\x0a"), Some(8));
    }

    #[test]
    fn detection() {
        for (text, n) in [(NGINX, 14), (BACKEND, 4)] {
            for c in 0..n {
                let chunks = conn(text, c);
                for (_, b) in chunks.iter().take(2) {
                    assert!(detect(Chunk { dir: Req, head: b, len: b.len() }), "conn {c}");
                }
            }
        }
        let yes: [&[u8]; 4] = [b"GET /", b"HTTP/1.0 200 OK\r\n", b"DELETE /x HTTP/1.1", b"HTTP/1.1 404"];
        for h in yes {
            assert!(detect(Chunk { dir: Req, head: h, len: h.len() }), "{h:?}");
        }
        let no: [&[u8]; 10] = [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"*1\r\n$4\r\nPING\r\n",
            b"get / HTTP/1.1",
            b"GET",
            b"GET  /",
            b"GETX / HTTP/1.1",
            b"HTTP/2 200",
            b"HTTP/1.1 20",
            b"HTTP/1.1 099 x",
            b"\x16\x03\x01\x00",
        ];
        for h in no {
            assert!(!detect(Chunk { dir: Req, head: h, len: h.len() }), "{h:?}");
        }
    }

    /// A request with a body and trace header, then a second request.
    const PIPE_REQ: &[u8] = b"POST /api/orders/77 HTTP/1.1\r\nHost: shop\r\nContent-Length: 11\r\n\
        traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n{\"qty\": 12}\
        GET /api/orders HTTP/1.1\r\nHost: shop\r\n\r\n";
    /// A chunked response, an interim response and a Content-Length response.
    const PIPE_RESP: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n\
        0\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwxyz";

    /// Checks the invariants of a fully visible conversation split anywhere: the same
    /// messages in order, an End for every Continues, nothing given up.
    fn check_split(dir: Direction, msg: &[u8], cuts: &[usize], want: &[String]) {
        let mut p = Http1Parser::default();
        let mut out = Vec::new();
        let mut last = 0;
        for &c in cuts.iter().chain([msg.len()].iter()) {
            p.feed(Chunk { dir, head: &msg[last..c], len: c - last }, &mut out);
            last = c;
        }
        let starts: Vec<String> = summary(&out).into_iter().filter(|s| !s.starts_with("end")).collect();
        let names: Vec<String> =
            starts.iter().map(|s| s.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(names, want, "cuts {cuts:?}");
        let cont =
            out.iter().filter(|e| matches!(e, ParseEvent::Start { extent: Extent::Continues, .. })).count();
        let ends = out.iter().filter(|e| matches!(e, ParseEvent::End { .. })).count();
        assert_eq!(cont, ends, "cuts {cuts:?}: {out:#?}");
        assert!(!out.iter().any(|e| matches!(e, ParseEvent::Start { extent: Extent::Unknown, .. })));
        assert_eq!(p.gave_up(), 0, "cuts {cuts:?}");
    }

    #[test]
    fn split_anywhere_gives_the_same_messages() {
        let reqs = ["> POST".to_string(), "> GET".to_string()];
        let resps = ["< 201".to_string(), "< 200".to_string()];
        for i in 1..PIPE_REQ.len() {
            check_split(Req, PIPE_REQ, &[i], &reqs);
        }
        for i in 1..PIPE_RESP.len() {
            check_split(Resp, PIPE_RESP, &[i], &resps);
        }
        for i in 1..PIPE_RESP.len() {
            for j in i + 1..PIPE_RESP.len() {
                check_split(Resp, PIPE_RESP, &[i, j], &resps);
            }
        }
    }

    #[test]
    fn split_after_the_request_line_keeps_the_info() {
        let mut one = Http1Parser::default();
        let whole = feed_all(&mut one, &[(Req, PIPE_REQ, PIPE_REQ.len())]);
        let want = req_info(&whole, 0);
        let line_end = PIPE_REQ.iter().position(|&b| b == b'\n').unwrap() + 1;
        let trace_end = PIPE_REQ.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
        for i in line_end..PIPE_REQ.len() {
            let mut p = Http1Parser::default();
            let ev = feed_all(&mut p, &[(Req, &PIPE_REQ[..i], i), (Req, &PIPE_REQ[i..], PIPE_REQ.len() - i)]);
            let got = req_info(&ev, 0);
            assert_eq!(
                (&got.method, &got.endpoint, &got.detail),
                (&want.method, &want.endpoint, &want.detail)
            );
            if i >= trace_end {
                assert_eq!(got.trace, want.trace, "split {i}");
            }
            assert_eq!(req_info(&ev, 1), req_info(&whole, 1), "split {i}");
        }
    }

    #[test]
    fn fixtures_survive_any_snaplen() {
        for (text, n) in [(NGINX, 14), (BACKEND, 4)] {
            for c in 0..n {
                for snap in [0, 1, 8, 17, 64, 100, 200, 333, 1000] {
                    let (ev, _) = run(&conn(text, c), snap);
                    for e in &ev {
                        if let ParseEvent::Start { info: Info::Request(r), .. } = e {
                            assert!(KNOWN_METHODS.contains(&r.method.as_bytes()), "{r:?}");
                        }
                    }
                }
            }
        }
    }

    /// Pieces that make HTTP-like byte soup for the fuzz test.
    const PIECES: [&[u8]; 16] = [
        b"GET / HTTP/1.1\r\n",
        b"HEAD /x HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 100 Continue\r\n",
        b"HTTP/1.1 101 Switching\r\n",
        b"HTTP/1.1 204 No\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
        b"\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"ffffffffffffffff\r\n",
        b"abc",
        b"\n",
    ];

    fn soup() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                (0..PIECES.len()).prop_map(|i| PIECES[i].to_vec()),
                prop::collection::vec(any::<u8>(), 0..8),
            ],
            0..12,
        )
        .prop_map(|v| v.concat())
    }

    fn chunks() -> impl Strategy<Value = Vec<(bool, Vec<u8>, usize)>> {
        prop::collection::vec((any::<bool>(), soup(), 0usize..5000), 0..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_output_is_bounded(cs in chunks()) {
            let mut p = Http1Parser::default();
            let mut out = Vec::new();
            for (i, (req, head, extra)) in cs.iter().enumerate() {
                let dir = if *req { Req } else { Resp };
                let before = out.len();
                p.feed(Chunk { dir, head, len: head.len() + extra }, &mut out);
                prop_assert!(out.len() - before <= MAX_PER_CHUNK + 1);
                prop_assert!(p.gave_up() <= i as u64 + 1);
                for e in &out[before..] {
                    if let ParseEvent::Start { bytes: Some(b), .. } = e {
                        prop_assert!(*b <= head.len() + extra);
                    }
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(cs in prop::collection::vec((any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..300), 0usize..100), 0..16)) {
            let mut p = Http1Parser::default();
            let mut out = Vec::new();
            for (req, head, extra) in &cs {
                let dir = if *req { Req } else { Resp };
                p.feed(Chunk { dir, head, len: head.len() + extra }, &mut out);
            }
            prop_assert!(out.len() <= cs.len() * (MAX_PER_CHUNK + 1));
        }

        #[test]
        fn real_streams_cut_anywhere(cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            // nginx pipelining (HEAD, chunked, 204) and a chunked python backend response.
            let nginx_reqs =
                ["GET /index.html", "HEAD /big.txt", "GET /gz/page.txt", "GET /nocontent",
                 "GET /static/app.js"];
            for (text, id, reqs, resps) in [
                (NGINX, 12, nginx_reqs.as_slice(), ["200", "200", "200", "204", "200"].as_slice()),
                (BACKEND, 0, ["GET /chunked"].as_slice(), ["200"].as_slice()),
                (BACKEND, 1, ["POST /post"].as_slice(), ["201"].as_slice()),
            ] {
                let mut p = Http1Parser::default();
                let mut out = Vec::new();
                for dir in [Req, Resp] {
                    let stream: Vec<u8> =
                        conn(text, id).into_iter().filter(|c| c.0 == dir).flat_map(|c| c.1).collect();
                    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
                    at.push(stream.len());
                    at.sort_unstable();
                    let mut last = 0;
                    for c in at {
                        p.feed(Chunk { dir, head: &stream[last..c], len: c - last }, &mut out);
                        last = c;
                    }
                }
                let s = summary(&out);
                let got: Vec<String> = s
                    .iter()
                    .filter(|l| l.starts_with('>'))
                    .map(|l| l[2..].split(' ').take(2).collect::<Vec<_>>().join(" "))
                    .collect();
                prop_assert_eq!(got, reqs, "{:?}", s);
                let got: Vec<&str> = s.iter().filter(|l| l.starts_with('<')).map(|l| &l[2..5]).collect();
                prop_assert_eq!(got, resps, "{:?}", s);
                let cont = s.iter().filter(|l| l.contains("Continues")).count();
                prop_assert_eq!(cont, s.iter().filter(|l| l.starts_with("end")).count(), "{:?}", s);
                prop_assert!(!s.iter().any(|l| l.contains("Unknown")), "{:?}", s);
                prop_assert_eq!(p.gave_up(), 0);
            }
        }

        #[test]
        fn len_smaller_than_head_is_tolerated(head in soup(), len in 0usize..10) {
            let mut p = Http1Parser::default();
            let mut out = Vec::new();
            p.feed(Chunk { dir: Resp, head: &head, len }, &mut out);
            p.feed(Chunk { dir: Req, head: &head, len }, &mut out);
        }
    }
}
