//! Memcached text protocol (classic and meta commands).
//!
//! Requests are lines, storage commands (`set`/`add`/`replace`/`append`/
//! `prepend`/`cas`, meta `ms`) followed by a data block of `<bytes>` + CRLF
//! that is skipped with [`LengthFramer`], so values may span many chunks.
//! Replies are one line (`STORED`, `NOT_FOUND`, `HD`, a number...), a meta
//! `VA <size>` line with its data block, or a list ended by `END` (`VALUE`
//! entries with data blocks for `get`/`gets`/`gat`/`gats`, `STAT` lines for
//! `stats`).
//!
//! What is reported:
//! - Requests: `method` = `endpoint` = the upper-cased command (`GET`, `SET`,
//!   `MG`...; only known commands are reported), `detail` = the command line,
//!   `id` = None (in order).
//! - Replies: `status` = the reply word (`STORED`, `NOT_STORED`, `EXISTS`,
//!   `NOT_FOUND`, `DELETED`, `TOUCHED`, `OK`, `VERSION`, meta `HD`/`VA`/`EN`/`NF`/
//!   `NS`/`EX`/`MN`/`ME`), `VALUE` for a retrieval with at least one hit and
//!   `END` for one with none, `STAT` for stats, `OK` for the number `incr`/`decr`
//!   return; `is_error` for `ERROR`, `CLIENT_ERROR` and `SERVER_ERROR`, with the
//!   error text as `message`; `OTHER` for a list starting with another line
//!   (`ITEM` for `stats cachedump`). Any other line where a reply should start
//!   is not memcached: the chunk is given up (counted).
//!
//! Requests the server does not answer — `noreply` commands and `quit` — are
//! reported as a request immediately followed by a synthetic reply with status
//! `NOREPLY` (extent Complete, 0 bytes), so in-order pairing never lets them
//! take a later reply (their duration is ~0). Quiet meta commands (`q` flag)
//! are reported the same way; the reply the server sends when a quiet command
//! fails or hits is recognised (a meta code while a quiet command is oldest)
//! and not reported, and `MN` clears quiet commands that got no reply.
//!
//! The parser keeps the kinds of unanswered requests (bounded) and reports
//! only replies that answer one; when a reply chunk's head is cut at the
//! snaplen while requests are waiting, the replies it infers are in the
//! invisible tail are reported with an empty `status` (as for Redis).

use std::collections::VecDeque;

use crate::framing::{LengthFramer, Start};
use crate::{
    truncate_display, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo,
    ResponseInfo, MAX_DETAIL,
};

/// Unanswered requests remembered; older ones are forgotten (and counted).
const MAX_QUEUE: usize = 1024;
/// Largest unfinished message end kept from a fully visible chunk for the next one.
const MAX_CARRY: usize = 1024;
/// Shortest reply (`OK\r\n`, `HD\r\n`, `0\r\n` is 3).
const MIN_REPLY: usize = 3;
/// Most replies inferred in one invisible chunk tail.
const MAX_IMPLIED: usize = 4096;

/// Commands whose data block length is the given token (0-based, command word included).
const STORAGE: &[(&str, usize)] =
    &[("set", 4), ("add", 4), ("replace", 4), ("append", 4), ("prepend", 4), ("cas", 4), ("ms", 2)];
/// Commands answered by a list ended by `END`.
const LISTS: &[&str] = &["get", "gets", "gat", "gats", "stats"];
#[rustfmt::skip]
const OTHER_COMMANDS: &[&str] = &[
    "delete", "incr", "decr", "touch", "flush_all", "version", "quit", "verbosity",
    "mg", "md", "ma", "mn", "me",
];
/// Reply words reported as the status.
#[rustfmt::skip]
const REPLY_WORDS: &[&str] = &[
    "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "VERSION", "END", "VALUE",
    "STAT", "RESET", "ERROR", "CLIENT_ERROR", "SERVER_ERROR", "VA", "HD", "EN", "NF", "NS", "EX", "MN", "ME",
];
const ERROR_WORDS: &[&str] = &["ERROR", "CLIENT_ERROR", "SERVER_ERROR"];
const META_CODES: &[&str] = &["VA", "HD", "EN", "NF", "NS", "EX", "ME"];

pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    if chunk.dir != Direction::Request {
        return false;
    }
    let h = chunk.head;
    let Some(nl) = h.iter().position(|&b| b == b'\n') else { return false };
    let Some(cmd) = parse_request(trim_cr(&h[..nl])) else { return false };
    if server_port == 11211 {
        return true;
    }
    // Off the memcached port, only commands unlikely in other text protocols,
    // and a storage command's data block must end where it says.
    match cmd.data_len {
        Some(n) => h.len() >= nl + n + 3 && h.get(nl + 1 + n..nl + 3 + n) == Some(b"\r\n"),
        None => !matches!(cmd.name, "get" | "stats" | "version" | "quit" | "verbosity" | "me"),
    }
}

/// A request line understood.
#[derive(Clone, Copy, Debug)]
struct Command<'a> {
    name: &'static str,
    /// Data block length that follows the line.
    data_len: Option<usize>,
    /// The server sends no reply.
    noreply: bool,
    /// A quiet meta command: a reply only on failure (or hit).
    quiet: bool,
    line: &'a [u8],
}

fn parse_request(line: &[u8]) -> Option<Command<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let word = words.next()?;
    let name = known_command(word)?;
    let args: Vec<&str> = words.collect();
    // A storage line without a readable length gets an error and no data block.
    let data_len =
        STORAGE.iter().find(|(n, _)| *n == name).and_then(|&(_, at)| args.get(at - 1)?.parse::<usize>().ok());
    let meta = name.len() == 2;
    let noreply = name == "quit" || (!meta && args.last() == Some(&"noreply") && !LISTS.contains(&name));
    let quiet = meta && args.iter().skip(1).any(|f| *f == "q");
    Some(Command { name, data_len, noreply, quiet, line })
}

fn known_command(word: &str) -> Option<&'static str> {
    STORAGE
        .iter()
        .map(|(n, _)| *n)
        .chain(LISTS.iter().copied())
        .chain(OTHER_COMMANDS.iter().copied())
        .find(|n| *n == word)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find_nl(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.iter().position(|&b| b == b'\n').map(|i| from + i)
}

fn first_word(line: &[u8]) -> &[u8] {
    line.split(|&b| b == b' ').next().unwrap_or_default()
}

/// What a request is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// One line (or a meta `VA` line with its data block).
    Line,
    /// A list ended by `END`.
    List,
    /// A quiet meta command: maybe a reply, maybe none.
    Quiet,
}

/// A reply being read.
#[derive(Clone, Debug)]
struct Reply {
    /// A list ended by `END`.
    list: bool,
    /// Answers a request (else it is parsed but not reported).
    report: bool,
    /// The waiting request it was matched with (put back if the reply is read again).
    expect: Option<Expect>,
    /// Where it started in the current buffer while its Start is not out yet.
    start: Option<usize>,
    info: ResponseInfo,
    /// The data block being skipped ends the reply (meta `VA`).
    block_ends: bool,
}

/// Reading state of one direction.
#[derive(Default)]
struct Stream {
    framer: LengthFramer,
    /// The unfinished end of a fully visible chunk, read again with the next one.
    carry: Vec<u8>,
}

impl Stream {
    /// Keeps `buf[from..]` for the next chunk if the chunk was fully visible and it is small.
    fn defer(&mut self, buf: &[u8], from: usize, len: usize) -> bool {
        if buf.len() != len || len - from > MAX_CARRY {
            return false;
        }
        self.carry.extend_from_slice(&buf[from..]);
        true
    }
}

/// Memcached connection parser (see the module docs).
#[derive(Default)]
pub struct MemcachedParser {
    req: Stream,
    resp: Stream,
    /// Unanswered requests, oldest first.
    queue: VecDeque<Expect>,
    /// A reported request whose data block continues in later chunks.
    req_open: bool,
    reply: Option<Reply>,
    lost: u64,
    garbage: u64,
}

impl Parser for MemcachedParser {
    fn protocol(&self) -> Protocol {
        Protocol::Memcached
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let request = chunk.dir == Direction::Request;
        let stream = if request { &mut self.req } else { &mut self.resp };
        // A buffer is only allocated on the rare path of a carry.
        let carry = std::mem::take(&mut stream.carry);
        let base = carry.len();
        let len = chunk.len.max(chunk.head.len());
        let joined = (base > 0).then(|| [&carry[..], chunk.head].concat());
        let buf = joined.as_deref().unwrap_or(chunk.head);
        let ctx = Ctx { buf, len: len + base, base };
        if request {
            self.requests(ctx, out);
        } else {
            self.replies(ctx, out);
        }
    }

    fn gave_up(&self) -> u64 {
        self.lost + self.garbage
    }
}

/// The bytes being read: carried bytes + the chunk head.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    buf: &'a [u8],
    /// Total length (carried bytes + the chunk's syscall length).
    len: usize,
    /// Carried bytes at the start of `buf` (they belong to the previous chunk).
    base: usize,
}

impl Ctx<'_> {
    fn vis(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of this chunk from `start` to `end`.
    fn bytes(&self, start: usize, end: usize) -> usize {
        end - start.max(self.base).min(end)
    }
}

// ---------------------------------------------------------------------------
// Requests

impl MemcachedParser {
    fn requests(&mut self, c: Ctx<'_>, out: &mut Vec<ParseEvent>) {
        let (vis, len) = (c.vis(), c.len);
        let mut pos = match self.req.framer.begin(len) {
            Start::Inside { ended } => return self.end_request(ended, out),
            Start::At { offset, ended } => {
                self.end_request(ended, out);
                offset
            }
        };
        while pos < vis {
            let Some(nl) = find_nl(c.buf, pos) else { return self.request_cut(c, pos, out) };
            let Some(cmd) = parse_request(trim_cr(&c.buf[pos..nl])) else {
                self.garbage += 1;
                return;
            };
            let after = nl + 1;
            let Some(n) = cmd.data_len else {
                self.report_request(&cmd, Extent::Complete, Some(c.bytes(pos, after)), out);
                pos = after;
                continue;
            };
            match self.req.framer.message(after, n.saturating_add(2), len, vis) {
                (Some(end), _) => {
                    self.report_request(&cmd, Extent::Complete, Some(c.bytes(pos, end)), out);
                    pos = end;
                }
                (None, true) => {
                    // The data block ends in bytes we cannot see.
                    let end = after.saturating_add(n).saturating_add(2);
                    self.report_request(&cmd, Extent::Complete, Some(c.bytes(pos, end.min(len))), out);
                    pos = end.min(len);
                }
                (None, false) => {
                    if self.req.defer(c.buf, pos, len) {
                        self.req.framer = LengthFramer::default();
                        return;
                    }
                    self.report_request(&cmd, Extent::Continues, Some(c.bytes(pos, len)), out);
                    self.req_open = true;
                    return;
                }
            }
        }
        if pos < len {
            self.lost += 1;
        }
    }

    /// The line at `pos` has no end in the visible bytes.
    fn request_cut(&mut self, c: Ctx<'_>, pos: usize, out: &mut Vec<ParseEvent>) {
        if self.req.defer(c.buf, pos, c.len) {
            return;
        }
        self.lost += 1;
        // Cut at the snaplen: report the command if its name is readable.
        let line = &c.buf[pos..];
        let word = std::str::from_utf8(first_word(line)).unwrap_or_default();
        let name = known_command(word).filter(|_| word.len() < line.len() && c.vis() < c.len);
        if let Some(name) = name {
            let cmd = Command { name, data_len: None, noreply: false, quiet: false, line };
            self.report_request(&cmd, Extent::Unknown, None, out);
        }
    }

    fn end_request(&mut self, ended: bool, out: &mut Vec<ParseEvent>) {
        if ended && std::mem::take(&mut self.req_open) {
            out.push(ParseEvent::End { dir: Direction::Request, id: None });
        }
    }

    fn report_request(
        &mut self,
        cmd: &Command<'_>,
        extent: Extent,
        bytes: Option<usize>,
        out: &mut Vec<ParseEvent>,
    ) {
        let method = cmd.name.to_ascii_uppercase();
        let info = RequestInfo {
            endpoint: method.clone(),
            method,
            detail: truncate_display(&String::from_utf8_lossy(cmd.line), MAX_DETAIL),
            trace: None,
        };
        out.push(ParseEvent::Start {
            dir: Direction::Request,
            id: None,
            info: Info::Request(info),
            extent,
            bytes,
        });
        if cmd.noreply || cmd.quiet {
            let info = ResponseInfo { status: "NOREPLY".to_string(), ..ResponseInfo::default() };
            out.push(ParseEvent::Start {
                dir: Direction::Response,
                id: None,
                info: Info::Response(info),
                extent: Extent::Complete,
                bytes: Some(0),
            });
        }
        let expect = match cmd {
            c if c.quiet => Expect::Quiet,
            c if c.noreply => return,
            c if LISTS.contains(&c.name) => Expect::List,
            _ => Expect::Line,
        };
        if self.queue.len() >= MAX_QUEUE {
            self.queue.pop_front();
            self.lost += 1;
        }
        self.queue.push_back(expect);
    }
}

// ---------------------------------------------------------------------------
// Replies

/// What follows a reply line.
enum Next {
    Done,
    More,
    /// A data block of this many bytes (CRLF excluded).
    Block(usize),
}

impl MemcachedParser {
    fn replies(&mut self, c: Ctx<'_>, out: &mut Vec<ParseEvent>) {
        let (vis, len) = (c.vis(), c.len);
        let mut pos = match self.resp.framer.begin(len) {
            Start::Inside { ended } => {
                if ended {
                    self.block_done(c, len, out);
                }
                return;
            }
            Start::At { offset, ended } => {
                if ended {
                    self.block_done(c, offset, out);
                }
                offset
            }
        };
        loop {
            if pos >= vis {
                if pos < len {
                    return self.reply_lost(c, pos, out);
                }
                return self.reply_spills(c, out);
            }
            let Some(nl) = find_nl(c.buf, pos) else { return self.reply_cut(c, pos, out) };
            let line = trim_cr(&c.buf[pos..nl]);
            let after = nl + 1;
            if self.reply.is_none() && !self.begin_reply(line, pos) {
                self.garbage += 1;
                return;
            }
            match self.reply_line(line) {
                Next::Done => {
                    self.finish_reply(c, after, out);
                    pos = after;
                }
                Next::More => pos = after,
                Next::Block(n) => match self.resp.framer.message(after, n.saturating_add(2), len, vis) {
                    (Some(end), _) => {
                        pos = end;
                        self.block_done(c, end, out);
                    }
                    (None, true) => {
                        pos = after.saturating_add(n).saturating_add(2).min(len);
                        self.block_done(c, pos, out);
                    }
                    (None, false) => return self.reply_spills(c, out),
                },
            }
        }
    }

    /// Starts a reply with its first line: decides what it answers. False for garbage.
    fn begin_reply(&mut self, line: &[u8], start: usize) -> bool {
        let word = std::str::from_utf8(first_word(line)).unwrap_or_default();
        let number = !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit());
        // Lists may hold other lines (`ITEM` for `stats cachedump`...).
        let list_expected = self.queue.iter().find(|e| **e != Expect::Quiet) == Some(&Expect::List);
        if !number && !REPLY_WORDS.contains(&word) && !list_expected {
            return false;
        }
        // A meta code while a quiet command is oldest answers it; anything else
        // means the quiet commands before it got no reply.
        let mut quiet_reply = false;
        while self.queue.front() == Some(&Expect::Quiet) {
            if META_CODES.contains(&word) {
                quiet_reply = true;
                break;
            }
            self.queue.pop_front();
        }
        let expect = self.queue.pop_front();
        let report = expect.is_some() && !quiet_reply;
        let terminal = word == "END" || ERROR_WORDS.contains(&word);
        let list = !terminal
            && match expect {
                Some(e) => e == Expect::List,
                None => matches!(word, "VALUE" | "STAT"),
            };
        let info = reply_info(line, word, number);
        self.reply = Some(Reply { list, report, expect, start: Some(start), info, block_ends: false });
        true
    }

    /// Reads a line of the reply in progress.
    fn reply_line(&mut self, line: &[u8]) -> Next {
        let Some(r) = self.reply.as_mut() else { return Next::Done };
        let word = first_word(line);
        if !r.list {
            if word == b"VA" {
                r.block_ends = true;
                return block_len(line, 1).map_or(Next::Done, Next::Block);
            }
            return Next::Done;
        }
        match word {
            b"END" => Next::Done,
            b"VALUE" => {
                r.block_ends = false;
                block_len(line, 3).map_or(Next::More, Next::Block)
            }
            _ => Next::More,
        }
    }

    /// A data block ended at `end`.
    fn block_done(&mut self, c: Ctx<'_>, end: usize, out: &mut Vec<ParseEvent>) {
        if self.reply.as_ref().is_some_and(|r| r.block_ends) {
            self.finish_reply(c, end, out);
        }
    }

    fn finish_reply(&mut self, c: Ctx<'_>, end: usize, out: &mut Vec<ParseEvent>) {
        let Some(r) = self.reply.take() else { return };
        if !r.report {
            return;
        }
        match r.start {
            Some(start) => push_reply(out, r.info, Extent::Complete, Some(c.bytes(start, end))),
            None => out.push(ParseEvent::End { dir: Direction::Response, id: None }),
        }
    }

    /// The chunk ends inside the reply in progress (a data block or more lines follow).
    fn reply_spills(&mut self, c: Ctx<'_>, out: &mut Vec<ParseEvent>) {
        let Some(r) = self.reply.as_mut() else { return };
        let Some(start) = r.start else { return };
        if self.resp.defer(c.buf, start, c.len) {
            // Read the whole reply again with the next chunk.
            self.resp.framer = LengthFramer::default();
            self.unread_reply();
            return;
        }
        r.start = None;
        if r.report {
            push_reply(out, r.info.clone(), Extent::Continues, Some(c.bytes(start, c.len)));
        }
    }

    /// The visible bytes end inside a line.
    fn reply_cut(&mut self, c: Ctx<'_>, pos: usize, out: &mut Vec<ParseEvent>) {
        let from = self.reply.as_ref().and_then(|r| r.start).unwrap_or(pos);
        if self.resp.defer(c.buf, from, c.len) {
            if self.reply.as_ref().is_some_and(|r| r.start.is_some()) {
                self.unread_reply();
            }
            return;
        }
        let line = &c.buf[pos..];
        let word_seen = first_word(line).len() < line.len();
        if self.reply.is_none() && c.vis() < c.len && word_seen {
            // Only the start of a reply is visible: report it, end unknown.
            if self.begin_reply(line, pos) {
                if let Some(r) = self.reply.take().filter(|r| r.report) {
                    push_reply(out, r.info, Extent::Unknown, None);
                }
                self.lost += 1;
                return self.implied(c.len - c.vis(), out);
            }
        }
        self.reply_lost(c, pos, out);
    }

    /// Boundaries are lost in bytes we cannot see: the reply in progress ends with the chunk.
    fn reply_lost(&mut self, c: Ctx<'_>, pos: usize, out: &mut Vec<ParseEvent>) {
        self.lost += 1;
        if let Some(r) = self.reply.take().filter(|r| r.report) {
            match r.start {
                Some(_) => push_reply(out, r.info, Extent::Complete, None),
                None => out.push(ParseEvent::End { dir: Direction::Response, id: None }),
            }
        }
        self.implied(c.len - pos.max(c.vis()), out);
    }

    /// Replies inferred in an invisible tail of `tail` bytes.
    fn implied(&mut self, tail: usize, out: &mut Vec<ParseEvent>) {
        let mut n = (tail / MIN_REPLY).min(MAX_IMPLIED);
        while n > 0 {
            match self.queue.pop_front() {
                Some(Expect::Quiet) => continue,
                Some(_) => push_reply(out, ResponseInfo::default(), Extent::Complete, None),
                None => return,
            }
            n -= 1;
        }
    }

    /// Puts a deferred reply's request back: the reply is read again with the next chunk.
    fn unread_reply(&mut self) {
        if let Some(expect) = self.reply.take().and_then(|r| r.expect) {
            self.queue.push_front(expect);
        }
    }
}

fn push_reply(out: &mut Vec<ParseEvent>, info: ResponseInfo, extent: Extent, bytes: Option<usize>) {
    out.push(ParseEvent::Start {
        dir: Direction::Response,
        id: None,
        info: Info::Response(info),
        extent,
        bytes,
    });
}

/// The decimal token `at` (0-based) of a line.
fn block_len(line: &[u8], at: usize) -> Option<usize> {
    let tok = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).nth(at)?;
    std::str::from_utf8(tok).ok()?.parse().ok()
}

fn reply_info(line: &[u8], word: &str, number: bool) -> ResponseInfo {
    let is_error = ERROR_WORDS.contains(&word);
    let status = match word {
        _ if number => "OK",
        w if REPLY_WORDS.contains(&w) => w,
        _ => "OTHER",
    };
    let message =
        if is_error { truncate_display(&String::from_utf8_lossy(line), MAX_DETAIL) } else { String::new() };
    ResponseInfo { status: status.to_string(), is_error, message, protocol: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSIONS: &str = include_str!("../tests/fixtures/kv/memcached_sessions.txt");

    type Chunks = Vec<(Direction, usize, Vec<u8>)>;

    /// Fixture format: `## name` starts a session; `C|S <syscall len> <hex head>` lines.
    fn load(name: &str) -> Chunks {
        let mut on = false;
        let mut chunks = Vec::new();
        for line in SESSIONS.lines() {
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

    fn feed(
        p: &mut MemcachedParser,
        chunks: &[(Direction, usize, Vec<u8>)],
        snaplen: usize,
    ) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, len, head) in chunks {
            let head = &head[..head.len().min(snaplen)];
            p.feed(Chunk { dir: *dir, head, len: *len }, &mut out);
        }
        out
    }

    /// `> METHOD`, `< STATUS` (`!` when an error), `end >`; `~` marks Continues, `?` Unknown.
    fn summary(events: &[ParseEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ParseEvent::Start { info, extent, .. } => {
                    let mark = match extent {
                        Extent::Complete => "",
                        Extent::Continues => "~",
                        Extent::Unknown => "?",
                    };
                    match info {
                        Info::Request(r) => format!("> {}{mark}", r.method),
                        Info::Response(r) => {
                            format!("< {}{}{mark}", r.status, if r.is_error { "!" } else { "" })
                        }
                    }
                }
                ParseEvent::End { dir: Direction::Request, .. } => "end >".to_string(),
                ParseEvent::End { .. } => "end <".to_string(),
            })
            .collect()
    }

    fn run(name: &str) -> Vec<String> {
        summary(&feed(&mut MemcachedParser::default(), &load(name), 1024))
    }

    #[test]
    fn python_session() {
        let s = run("python");
        let expected = [
            "> VERSION",
            "< VERSION",
            "> SET",
            "< STORED",
            "> GET",
            "< VALUE",
            "> GET",
            "< VALUE",
            "> GETS",
            "< VALUE",
            "> ADD",
            "< NOT_STORED",
            "> REPLACE",
            "< NOT_STORED",
            "> APPEND",
            "< STORED",
            "> PREPEND",
            "< STORED",
            "> CAS",
            "< EXISTS",
            "> CAS",
            "< NOT_FOUND",
            "> SET",
            "< STORED",
            "> INCR",
            "< OK",
            "> DECR",
            "< OK",
            "> INCR",
            "< CLIENT_ERROR!",
            "> INCR",
            "< NOT_FOUND",
            "> TOUCH",
            "< TOUCHED",
            "> TOUCH",
            "< NOT_FOUND",
            "> GAT",
            "< VALUE",
            "> GATS",
            "< VALUE",
            "> DELETE",
            "< DELETED",
            "> DELETE",
            "< NOT_FOUND",
            // set ... noreply; get; delete ... noreply + get in one chunk.
            "> SET",
            "< NOREPLY",
            "> GET",
            "< VALUE",
            "> DELETE",
            "< NOREPLY",
            "> GET",
            "< END",
            // `bogus` is not a command (its ERROR is not reported); `set foo 0 0 notnum`; a 300-byte key.
            "> SET",
            "< CLIENT_ERROR!",
            "> GET",
            "< CLIENT_ERROR!",
            // Meta commands; `md mk q` + `mn`: the NF for the quiet md is not a reply to mn.
            "> MN",
            "< MN",
            "> MS",
            "< HD",
            "> MG",
            "< VA",
            "> MG",
            "< EN",
            "> MA",
            "< CLIENT_ERROR!",
            "> MS",
            "< HD",
            "> MA",
            "< HD",
            "> MD",
            "< HD",
            "> MD",
            "< NOREPLY",
            "> MN",
            "< MN",
            // `mg mk v q`, `mg cnt v q`, `mn`: the VA of the hit goes to a quiet command.
            "> MG",
            "< NOREPLY",
            "> MG",
            "< NOREPLY",
            "> MN",
            "< MN",
            // A pipeline of four commands; the replies come in two chunks.
            "> SET",
            "> SET",
            "> GET",
            "> INCR",
            "< STORED",
            "< STORED",
            "< VALUE",
            "< OK",
            // stats (2216 bytes, head cut: its END is not visible), stats slabs.
            "> STATS",
            "< STAT",
            "> STATS",
            "< STAT",
            "> FLUSH_ALL",
            "< OK",
            "> FLUSH_ALL",
            "< NOREPLY",
            "> VERBOSITY",
            "< OK",
            // A 200000-byte value set and read back.
            "> SET~",
            "end >",
            "< STORED",
            "> GET",
            "< VALUE~",
            "end <",
            "> QUIT",
            "< NOREPLY",
        ];
        assert_eq!(s, expected);
    }

    #[test]
    fn reply_fields() {
        let events = feed(&mut MemcachedParser::default(), &load("python"), 1024);
        let replies: Vec<&ResponseInfo> = events
            .iter()
            .filter_map(|e| match e {
                ParseEvent::Start { info: Info::Response(r), .. } => Some(r),
                _ => None,
            })
            .collect();
        let err = replies.iter().find(|r| r.is_error).expect("an error");
        assert_eq!(err.message, "CLIENT_ERROR cannot increment or decrement non-numeric value");
        let noreply = events.iter().find(|e| {
            matches!(e, ParseEvent::Start { info: Info::Response(r), .. }
            if r.status == "NOREPLY")
        });
        assert!(matches!(noreply, Some(ParseEvent::Start { bytes: Some(0), extent: Extent::Complete, .. })));
        let ParseEvent::Start { info: Info::Request(r), bytes, .. } = &events[2] else { panic!() };
        assert_eq!((r.endpoint.as_str(), r.detail.as_str(), *bytes), ("SET", "set foo 5 0 3", Some(20)));
    }

    #[test]
    fn libmemcached_tools() {
        assert_eq!(run("memccp"), ["> SET", "< STORED", "> QUIT", "< NOREPLY"]);
        assert_eq!(run("memccat"), ["> GET", "< VALUE", "> QUIT", "< NOREPLY"]);
        assert_eq!(run("memcrm"), ["> DELETE", "< DELETED", "> QUIT", "< NOREPLY"]);
        assert_eq!(run("memcexist"), ["> ADD", "< STORED", "> QUIT", "< NOREPLY"]);
        assert_eq!(run("memctouch"), ["> TOUCH", "< NOT_FOUND", "> QUIT", "< NOREPLY"]);
    }

    #[test]
    fn values_larger_than_the_snaplen() {
        // memcslap: 1.5-4 KiB values; with 1024-byte heads the data blocks and
        // END of the replies are not visible.
        for snaplen in [64, 1024, 4096] {
            let s = summary(&feed(&mut MemcachedParser::default(), &load("memcslap_load"), snaplen));
            assert_eq!(s.iter().filter(|l| *l == "> SET").count(), 5, "{snaplen}");
            assert_eq!(s.iter().filter(|l| *l == "< STORED").count(), 5, "{snaplen}");
            let s = summary(&feed(&mut MemcachedParser::default(), &load("memcslap_get"), snaplen));
            assert_eq!(s.iter().filter(|l| *l == "> GET").count(), 5, "{snaplen}");
            assert_eq!(s.iter().filter(|l| *l == "< VALUE").count(), 5, "{snaplen}");
        }
    }

    #[test]
    fn split_anywhere_gives_the_same_starts() {
        let chunks = load("python");
        let chunks: Vec<_> = chunks.into_iter().filter(|c| c.1 < 1000).collect();
        let whole = summary(&feed(&mut MemcachedParser::default(), &chunks, 4096));
        for (i, (dir, _, head)) in chunks.iter().enumerate() {
            for cut in 1..head.len() {
                let mut split = chunks[..i].to_vec();
                split.push((*dir, cut, head[..cut].to_vec()));
                split.push((*dir, head.len() - cut, head[cut..].to_vec()));
                split.extend_from_slice(&chunks[i + 1..]);
                let s = summary(&feed(&mut MemcachedParser::default(), &split, 4096));
                assert_eq!(s, whole, "chunk {i} cut at {cut}");
            }
        }
    }

    #[test]
    fn replies_without_requests_are_not_reported() {
        let mut p = MemcachedParser::default();
        let mut out = Vec::new();
        p.feed(Chunk { dir: Direction::Response, head: b"STORED\r\nEND\r\n", len: 13 }, &mut out);
        assert!(out.is_empty());
        p.feed(Chunk { dir: Direction::Request, head: b"\x80\x01\x00\x03", len: 24 }, &mut out);
        assert!(out.is_empty());
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn replies_never_outnumber_requests_at_any_snaplen() {
        let names = SESSIONS.lines().filter_map(|l| l.strip_prefix("## "));
        for name in names {
            for snaplen in [8, 16, 40, 64, 100, 256, 1024, 4096] {
                let mut p = MemcachedParser::default();
                let (mut reqs, mut replies) = (0, 0);
                for (dir, len, head) in load(name) {
                    let mut out = Vec::new();
                    p.feed(Chunk { dir, head: &head[..head.len().min(snaplen)], len }, &mut out);
                    for e in out {
                        match e {
                            ParseEvent::Start { dir: Direction::Request, .. } => reqs += 1,
                            ParseEvent::Start { .. } => replies += 1,
                            ParseEvent::End { .. } => {}
                        }
                    }
                    assert!(replies <= reqs, "{name} at {snaplen}");
                }
                if snaplen >= 1024 {
                    assert_eq!(replies, reqs, "{name} at {snaplen}");
                }
            }
        }
    }

    #[test]
    fn detection() {
        let c = |h: &'static [u8]| Chunk { dir: Direction::Request, head: h, len: h.len() };
        assert!(detect(c(b"get foo\r\n"), 11211));
        assert!(!detect(c(b"get foo\r\n"), 8080));
        assert!(detect(c(b"set foo 0 0 3\r\nbar\r\n"), 8080));
        assert!(!detect(c(b"set foo 0 0 3\r\nbarbaz\r\n"), 8080));
        assert!(detect(c(b"mg foo v\r\n"), 8080));
        assert!(detect(c(b"version\r\n"), 11211));
        assert!(!detect(c(b"GET / HTTP/1.1\r\n"), 11211));
        assert!(!detect(c(b"get foo"), 11211));
    }

    fn arb_chunk() -> impl Strategy<Value = (bool, Vec<u8>, usize)> {
        let parts = prop::collection::vec(
            prop_oneof![
                Just(b"get k\r\n".to_vec()),
                Just(b"set k 0 0 3".to_vec()),
                Just(b" noreply".to_vec()),
                Just(b"mg k v q\r\nmn\r\n".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"VALUE k 0 3\r\n".to_vec()),
                Just(b"END\r\n".to_vec()),
                Just(b"VA 2\r\n".to_vec()),
                Just(b"STORED\r\n".to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..30,
        )
        .prop_map(|p| p.concat());
        (any::<bool>(), parts, 0usize..3000)
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_bounded(chunks in prop::collection::vec(arb_chunk(), 0..30)) {
            let mut p = MemcachedParser::default();
            for (req, head, extra) in chunks {
                let dir = if req { Direction::Request } else { Direction::Response };
                let mut out = Vec::new();
                p.feed(Chunk { dir, head: &head, len: head.len() + extra }, &mut out);
                let bound = 2 * (head.len() + MAX_CARRY) + (head.len() + extra) / MIN_REPLY + 2;
                prop_assert!(out.len() <= bound);
                prop_assert!(p.queue.len() <= MAX_QUEUE);
            }
        }
    }
}
