//! Redis: RESP2 and RESP3, both directions.
//!
//! Each direction is scanned as a stream of RESP values with a small explicit
//! stack of open aggregates (bounded depth), so pipelined batches, nested
//! replies and values spanning many chunks are all followed. Bulk payloads
//! are skipped with [`LengthFramer`]; the visible head of a chunk is only read
//! for the command name, first key and error text.
//!
//! What is reported:
//! - Requests (RESP arrays, or inline commands such as `PING\r\n`): `method` =
//!   `endpoint` = the upper-cased command name from a known list (two-word
//!   commands such as `CONFIG GET`, `CLIENT SETNAME`, `XINFO STREAM` keep their
//!   subcommand; unknown, garbage or unreadable names become `OTHER`),
//!   `detail` = command + first key (`AUTH` arguments are never shown), `id` = None.
//! - Replies: `status` = `OK`, or for an error reply (RESP2 `-`, RESP3 `!`)
//!   its prefix word (`ERR`, `WRONGTYPE`, `MOVED`...) with `is_error` and the
//!   error text as `message`. An `EXEC` array is `OK` even when a queued
//!   command inside it failed (`-EXECABORT` is an error).
//! - MULTI/EXEC needs nothing special: every queued command gets its `+QUEUED`.
//! - Out-of-band data is never reported as a reply: RESP3 push messages (`>`),
//!   and in RESP2 subscribe mode the `message`/`pmessage`/`smessage` arrays.
//!   A (P|S)(UN)SUBSCRIBE request is answered by its first confirmation (a
//!   push in RESP3, an array in RESP2); confirmations for further channels are
//!   out-of-band too.
//!
//! Pairing is in order (`id` None). The parser never reports more replies
//! than there are unanswered requests (so a reply-looking fragment after lost
//! boundaries, or a reply to a request it never saw, is dropped), and when a
//! reply chunk's tail is invisible (head cut at the snaplen) while requests are
//! still unanswered, it reports the replies it infers are in that tail with an
//! empty `status` (see [`RedisParser`]).

use crate::framing::{LengthFramer, Start};
use crate::{
    truncate_display, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo,
    ResponseInfo, MAX_DETAIL,
};

/// Deepest nesting of aggregates followed; deeper input is treated as garbage.
const MAX_DEPTH: usize = 16;
/// Scalars remembered per message: command, subcommand, key (or reply kind).
const MAX_TOKENS: usize = 3;
/// Most replies inferred in one invisible chunk tail.
const MAX_IMPLIED: u64 = 4096;
/// Unanswered requests are counted up to this (a client that never reads).
const MAX_OUTSTANDING: u64 = 1 << 20;
/// Largest unfinished message end kept from a fully visible chunk for the next one.
const MAX_CARRY: usize = 1024;
/// Shortest RESP reply (`:0\r\n` is 4; `_\r\n` is 3).
const MIN_REPLY: usize = 3;

pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    if chunk.dir != Direction::Request {
        return false;
    }
    let h = chunk.head;
    match h.first() {
        Some(b'*') => detect_array(h, server_port),
        Some(_) => server_port == 6379 && inline_command(h).is_some_and(command_known),
        None => false,
    }
}

/// `*<n>\r\n$<len>\r\n<name>\r\n` with a known command name (any name on 6379).
fn detect_array(h: &[u8], port: u16) -> bool {
    let Some((n, p)) = int_line(h, 1) else { return false };
    if !(1..=1 << 20).contains(&n) || h.get(p) != Some(&b'$') {
        return false;
    }
    let Some((len, q)) = int_line(h, p + 1) else { return false };
    let Ok(len) = usize::try_from(len) else { return false };
    if !(1..=32).contains(&len) {
        return false;
    }
    let Some(name) = h.get(q..q + len) else { return port == 6379 };
    if h.len() >= q + len + 2 && &h[q + len..q + len + 2] != b"\r\n" {
        return false;
    }
    command_known(name) || (port == 6379 && name.iter().all(|b| b.is_ascii_alphabetic()))
}

/// The first word of an inline command line (not an HTTP request line).
fn inline_command(h: &[u8]) -> Option<&[u8]> {
    let end = h.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let name = &h[..end];
    let line = h.split(|&b| b == b'\n').next().unwrap_or_default();
    let http = line.windows(6).any(|w| w == b" HTTP/");
    (!name.is_empty() && name.len() <= 32 && !http).then_some(name)
}

/// A decimal integer line starting at `at` and ending in CRLF: (value, offset after the CRLF).
fn int_line(h: &[u8], at: usize) -> Option<(i64, usize)> {
    let cr = find_cr(h, at)?;
    if h.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    Some((parse_int(&h[at..cr])?, cr + 2))
}

fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Some(if neg { -v } else { v })
}

fn find_cr(h: &[u8], from: usize) -> Option<usize> {
    h.get(from..)?.iter().position(|&b| b == b'\r').map(|i| from + i)
}

// ---------------------------------------------------------------------------
// Command names

fn upper(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    Some(s.to_ascii_uppercase())
}

fn command_known(name: &[u8]) -> bool {
    upper(name).is_some_and(|n| COMMANDS.binary_search(&n.as_str()).is_ok() || module_command(&n))
}

/// Commands of the common Redis Stack modules: `JSON.GET`, `FT.SEARCH`...
fn module_command(n: &str) -> bool {
    let Some((module, cmd)) = n.split_once('.') else { return false };
    MODULES.contains(&module)
        && (1..=24).contains(&cmd.len())
        && cmd.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

/// Commands whose first argument is a subcommand (`CONFIG GET`).
fn is_container(n: &str) -> bool {
    CONTAINERS.binary_search(&n).is_ok()
}

const MODULES: &[&str] = &["BF", "CF", "CMS", "FT", "GRAPH", "JSON", "TDIGEST", "TOPK", "TS"];

const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE", "OBJECT",
    "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Redis 7.0 `COMMAND LIST`, plus the hash-field expiry commands of 7.4.
#[rustfmt::skip]
const COMMANDS: &[&str] = &[
    "ACL", "APPEND", "ASKING", "AUTH", "BGREWRITEAOF", "BGSAVE", "BITCOUNT", "BITFIELD", "BITFIELD_RO",
    "BITOP", "BITPOS", "BLMOVE", "BLMPOP", "BLPOP", "BRPOP", "BRPOPLPUSH", "BZMPOP", "BZPOPMAX", "BZPOPMIN",
    "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "COPY", "DBSIZE", "DEBUG", "DECR", "DECRBY", "DEL", "DISCARD",
    "DUMP", "ECHO", "EVAL", "EVALSHA", "EVALSHA_RO", "EVAL_RO", "EXEC", "EXISTS", "EXPIRE", "EXPIREAT",
    "EXPIRETIME", "FAILOVER", "FCALL", "FCALL_RO", "FLUSHALL", "FLUSHDB", "FUNCTION", "GEOADD", "GEODIST",
    "GEOHASH", "GEOPOS", "GEORADIUS", "GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO", "GEORADIUS_RO",
    "GEOSEARCH", "GEOSEARCHSTORE", "GET", "GETBIT", "GETDEL", "GETEX", "GETRANGE", "GETSET", "HDEL",
    "HELLO", "HEXISTS", "HEXPIRE", "HEXPIREAT", "HEXPIRETIME", "HGET", "HGETALL", "HGETDEL", "HGETEX",
    "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET", "HPERSIST", "HPEXPIRE", "HPEXPIREAT",
    "HPEXPIRETIME", "HPTTL", "HRANDFIELD", "HSCAN", "HSET", "HSETEX", "HSETNX", "HSTRLEN", "HTTL", "HVALS",
    "INCR", "INCRBY", "INCRBYFLOAT", "INFO", "KEYS", "LASTSAVE", "LATENCY", "LCS", "LINDEX", "LINSERT",
    "LLEN", "LMOVE", "LMPOP", "LOLWUT", "LPOP", "LPOS", "LPUSH", "LPUSHX", "LRANGE", "LREM", "LSET",
    "LTRIM", "MEMORY", "MGET", "MIGRATE", "MODULE", "MONITOR", "MOVE", "MSET", "MSETNX", "MULTI", "OBJECT",
    "PERSIST", "PEXPIRE", "PEXPIREAT", "PEXPIRETIME", "PFADD", "PFCOUNT", "PFDEBUG", "PFMERGE",
    "PFSELFTEST", "PING", "PSETEX", "PSUBSCRIBE", "PSYNC", "PTTL", "PUBLISH", "PUBSUB", "PUNSUBSCRIBE",
    "QUIT", "RANDOMKEY", "READONLY", "READWRITE", "RENAME", "RENAMENX", "REPLCONF", "REPLICAOF", "RESET",
    "RESTORE", "RESTORE-ASKING", "ROLE", "RPOP", "RPOPLPUSH", "RPUSH", "RPUSHX", "SADD", "SAVE", "SCAN",
    "SCARD", "SCRIPT", "SDIFF", "SDIFFSTORE", "SELECT", "SET", "SETBIT", "SETEX", "SETNX", "SETRANGE",
    "SHUTDOWN", "SINTER", "SINTERCARD", "SINTERSTORE", "SISMEMBER", "SLAVEOF", "SLOWLOG", "SMEMBERS",
    "SMISMEMBER", "SMOVE", "SORT", "SORT_RO", "SPOP", "SPUBLISH", "SRANDMEMBER", "SREM", "SSCAN",
    "SSUBSCRIBE", "STRLEN", "SUBSCRIBE", "SUBSTR", "SUNION", "SUNIONSTORE", "SUNSUBSCRIBE", "SWAPDB",
    "SYNC", "TIME", "TOUCH", "TTL", "TYPE", "UNLINK", "UNSUBSCRIBE", "UNWATCH", "WAIT", "WAITAOF", "WATCH",
    "XACK", "XADD", "XAUTOCLAIM", "XCLAIM", "XDEL", "XGROUP", "XINFO", "XLEN", "XPENDING", "XRANGE",
    "XREAD", "XREADGROUP", "XREVRANGE", "XSETID", "XTRIM", "ZADD", "ZCARD", "ZCOUNT", "ZDIFF", "ZDIFFSTORE",
    "ZINCRBY", "ZINTER", "ZINTERCARD", "ZINTERSTORE", "ZLEXCOUNT", "ZMPOP", "ZMSCORE", "ZPOPMAX", "ZPOPMIN",
    "ZRANDMEMBER", "ZRANGE", "ZRANGEBYLEX", "ZRANGEBYSCORE", "ZRANGESTORE", "ZRANK", "ZREM",
    "ZREMRANGEBYLEX", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE", "ZREVRANK", "ZSCAN", "ZSCORE", "ZUNION", "ZUNIONSTORE",
];

/// Known subcommands of the containers, as `CONTAINER SUB`.
#[rustfmt::skip]
const SUBCOMMANDS: &[&str] = &[
    "ACL CAT", "ACL DELUSER", "ACL DRYRUN", "ACL GENPASS", "ACL GETUSER", "ACL HELP", "ACL LIST",
    "ACL LOAD", "ACL LOG", "ACL SAVE", "ACL SETUSER", "ACL USERS", "ACL WHOAMI", "CLIENT CACHING",
    "CLIENT GETNAME", "CLIENT GETREDIR", "CLIENT HELP", "CLIENT ID", "CLIENT INFO", "CLIENT KILL",
    "CLIENT LIST", "CLIENT NO-EVICT", "CLIENT NO-TOUCH", "CLIENT PAUSE", "CLIENT REPLY", "CLIENT SETINFO",
    "CLIENT SETNAME", "CLIENT TRACKING", "CLIENT TRACKINGINFO", "CLIENT UNBLOCK", "CLIENT UNPAUSE",
    "CLUSTER ADDSLOTS", "CLUSTER ADDSLOTSRANGE", "CLUSTER BUMPEPOCH", "CLUSTER COUNT-FAILURE-REPORTS",
    "CLUSTER COUNTKEYSINSLOT", "CLUSTER DELSLOTS", "CLUSTER DELSLOTSRANGE", "CLUSTER FAILOVER",
    "CLUSTER FLUSHSLOTS", "CLUSTER FORGET", "CLUSTER GETKEYSINSLOT", "CLUSTER HELP", "CLUSTER INFO",
    "CLUSTER KEYSLOT", "CLUSTER LINKS", "CLUSTER MEET", "CLUSTER MYID", "CLUSTER MYSHARDID",
    "CLUSTER NODES", "CLUSTER REPLICAS", "CLUSTER REPLICATE", "CLUSTER RESET", "CLUSTER SAVECONFIG",
    "CLUSTER SET-CONFIG-EPOCH", "CLUSTER SETSLOT", "CLUSTER SHARDS", "CLUSTER SLAVES", "CLUSTER SLOTS",
    "COMMAND COUNT", "COMMAND DOCS", "COMMAND GETKEYS", "COMMAND GETKEYSANDFLAGS", "COMMAND HELP",
    "COMMAND INFO", "COMMAND LIST", "CONFIG GET", "CONFIG HELP", "CONFIG RESETSTAT", "CONFIG REWRITE",
    "CONFIG SET", "FUNCTION DELETE", "FUNCTION DUMP", "FUNCTION FLUSH", "FUNCTION HELP", "FUNCTION KILL",
    "FUNCTION LIST", "FUNCTION LOAD", "FUNCTION RESTORE", "FUNCTION STATS", "LATENCY DOCTOR",
    "LATENCY GRAPH", "LATENCY HELP", "LATENCY HISTOGRAM", "LATENCY HISTORY", "LATENCY LATEST",
    "LATENCY RESET", "MEMORY DOCTOR", "MEMORY HELP", "MEMORY MALLOC-STATS", "MEMORY PURGE", "MEMORY STATS",
    "MEMORY USAGE", "MODULE HELP", "MODULE LIST", "MODULE LOAD", "MODULE LOADEX", "MODULE UNLOAD",
    "OBJECT ENCODING", "OBJECT FREQ", "OBJECT HELP", "OBJECT IDLETIME", "OBJECT REFCOUNT",
    "PUBSUB CHANNELS", "PUBSUB HELP", "PUBSUB NUMPAT", "PUBSUB NUMSUB", "PUBSUB SHARDCHANNELS",
    "PUBSUB SHARDNUMSUB", "SCRIPT DEBUG", "SCRIPT EXISTS", "SCRIPT FLUSH", "SCRIPT HELP", "SCRIPT KILL",
    "SCRIPT LOAD", "SLOWLOG GET", "SLOWLOG HELP", "SLOWLOG LEN", "SLOWLOG RESET", "XGROUP CREATE",
    "XGROUP CREATECONSUMER", "XGROUP DELCONSUMER", "XGROUP DESTROY", "XGROUP HELP", "XGROUP SETID",
    "XINFO CONSUMERS", "XINFO GROUPS", "XINFO HELP", "XINFO STREAM",
];

// ---------------------------------------------------------------------------
// RESP scanning (one direction)

/// An aggregate still open in the message being scanned.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Values still expected (map and attribute entries count twice).
    remaining: u64,
    /// An attribute (`|`): annotates the next value and is not one itself.
    attr: bool,
}

/// A message that starts in the current chunk.
#[derive(Clone, Copy, Debug, Default)]
struct Msg {
    start: usize,
    /// Type byte of the message (of the value after any attribute).
    kind: u8,
    /// Scalars at depth <= 1 outside attributes, as ranges of the chunk head.
    tokens: [(usize, usize); MAX_TOKENS],
    ntok: usize,
}

impl Msg {
    fn at(start: usize) -> Msg {
        Msg { start, ..Msg::default() }
    }

    fn token<'h>(&self, head: &'h [u8], i: usize) -> Option<&'h [u8]> {
        let (a, b) = *self.tokens.get(i).filter(|_| i < self.ntok)?;
        head.get(a..b)
    }

    fn push_token(&mut self, a: usize, b: usize) {
        if let Some(t) = self.tokens.get_mut(self.ntok) {
            *t = (a, b.max(a));
            self.ntok += 1;
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Found {
    /// The message carried over from an earlier chunk ended here (or its end cannot be seen).
    Ended,
    /// A message starting in this chunk.
    Msg { msg: Msg, extent: Extent, bytes: Option<usize> },
    /// Bytes at the end of the chunk that could not be seen after the last message.
    LostTail(usize),
    /// The chunk does not hold RESP where it should.
    Garbage,
}

/// What reading one value header gave.
enum Step {
    /// A value completed; the next one starts at this offset (possibly past the visible head).
    Value(usize),
    /// An aggregate opened; its elements start at this offset.
    Opened(usize),
    /// The value's payload continues into later chunks.
    Spills,
    /// The header line is not complete in the visible bytes.
    Cut,
    Bad,
}

/// One direction of a connection.
#[derive(Default)]
struct Side {
    framer: LengthFramer,
    stack: Vec<Frame>,
    /// A message that started in an earlier chunk is still open.
    open: bool,
    /// The unfinished end of a fully visible chunk, parsed again with the next one.
    carry: Vec<u8>,
    /// Bytes at the start of the current buffer that came from `carry`.
    base: usize,
    found: Vec<Found>,
    lost: u64,
    garbage: u64,
}

impl Side {
    /// Scans one chunk into `self.found`. With a carry, the token ranges index
    /// the returned buffer (carry + head), else the head.
    fn scan(&mut self, head: &[u8], len: usize, request: bool) -> Option<Vec<u8>> {
        if self.found.capacity() > 64 {
            self.found = Vec::new();
        }
        self.found.clear();
        // Buffers are only allocated on the rare path of a carry.
        let carry = std::mem::take(&mut self.carry);
        self.base = carry.len();
        let len = len.max(head.len());
        if carry.is_empty() {
            self.scan_buf(head, len, request);
            return None;
        }
        let mut joined = carry;
        joined.extend_from_slice(head);
        self.scan_buf(&joined, len + self.base, request);
        Some(joined)
    }

    fn scan_buf(&mut self, head: &[u8], len: usize, request: bool) {
        let vis = head.len();
        let mut pos = match self.framer.begin(len) {
            Start::Inside { ended } => {
                if ended && self.value_done() {
                    self.complete(&mut None, len);
                }
                return;
            }
            Start::At { offset, ended } => {
                if ended && self.value_done() {
                    self.complete(&mut None, offset);
                }
                offset
            }
        };
        let mut cur: Option<Msg> = None;
        loop {
            if !self.open && cur.is_none() {
                if pos >= vis {
                    if pos < len {
                        self.lose(None, len - pos);
                    }
                    return;
                }
                if !starts_message(head[pos], request) {
                    return self.bad(None);
                }
                cur = Some(Msg::at(pos));
                if request && head[pos] != b'*' {
                    match self.inline(head, pos, len, &mut cur) {
                        Some(end) => pos = end,
                        None => return,
                    }
                    continue;
                }
            }
            if pos >= vis {
                if pos >= len {
                    // A clean boundary at the chunk end: the message goes on in the next chunk.
                    if cur.is_some() && self.defer(head, cur, pos, len) {
                        return;
                    }
                    return self.spills(cur, len);
                }
                return self.lose(cur, len - pos);
            }
            match self.step(head, pos, len, &mut cur) {
                Step::Value(end) => {
                    pos = end;
                    if self.value_done() {
                        self.complete(&mut cur, end);
                    }
                }
                Step::Opened(next) => pos = next,
                Step::Spills if cur.is_some() && self.defer(head, cur, pos, len) => return,
                Step::Spills => return self.spills(cur, len),
                Step::Cut if self.defer(head, cur, pos, len) => return,
                Step::Cut => return self.cut(cur, pos, vis, len),
                Step::Bad => return self.bad(cur),
            }
        }
    }

    /// Reads the value header at `pos` (a full line is required).
    fn step(&mut self, head: &[u8], pos: usize, len: usize, cur: &mut Option<Msg>) -> Step {
        let vis = head.len();
        let Some(cr) = find_cr(head, pos) else { return Step::Cut };
        match head.get(cr + 1) {
            None => return Step::Cut,
            Some(b'\n') => {}
            Some(_) => return Step::Bad,
        }
        let kind = head[pos];
        let next = cr + 2;
        let keep = self.stack.len() <= 1 && !self.stack.iter().any(|f| f.attr);
        if let Some(m) = cur.as_mut() {
            if self.stack.is_empty() && kind != b'|' && m.kind == 0 {
                m.kind = kind;
            }
        }
        let mut token = |a: usize, b: usize| {
            if let Some(m) = cur.as_mut().filter(|_| keep) {
                m.push_token(a, b);
            }
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                token(pos + 1, cr);
                Step::Value(next)
            }
            b'$' | b'!' | b'=' => {
                let Some(n) = parse_int(&head[pos + 1..cr]) else { return Step::Bad };
                if n < 0 {
                    return if n == -1 { Step::Value(next) } else { Step::Bad };
                }
                let Ok(n) = usize::try_from(n) else { return Step::Bad };
                token(next, next.saturating_add(n).min(vis));
                match self.framer.message(next, n.saturating_add(2), len, vis) {
                    (Some(end), _) => Step::Value(end),
                    (None, true) => Step::Value(next.saturating_add(n).saturating_add(2).min(len)),
                    (None, false) => Step::Spills,
                }
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(n) = parse_int(&head[pos + 1..cr]) else { return Step::Bad };
                if n <= 0 {
                    return if n >= -1 { Step::Value(next) } else { Step::Bad };
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Step::Bad;
                }
                let pairs = kind == b'%' || kind == b'|';
                let remaining = n.unsigned_abs() * if pairs { 2 } else { 1 };
                self.stack.push(Frame { remaining, attr: kind == b'|' });
                Step::Opened(next)
            }
            _ => Step::Bad,
        }
    }

    /// An inline command (`PING\r\n`): returns where the next message starts.
    fn inline(&mut self, head: &[u8], pos: usize, len: usize, cur: &mut Option<Msg>) -> Option<usize> {
        let vis = head.len();
        let nl = head[pos..].iter().position(|&b| b == b'\n').map(|i| pos + i);
        let line_end = nl.unwrap_or(vis);
        let line = &head[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut m = Msg::at(pos);
        let mut at = pos;
        for word in line.split(|&b| b == b' ') {
            if !word.is_empty() {
                m.push_token(at, at + word.len());
            }
            at += word.len() + 1;
        }
        if nl.is_none() && self.defer(head, Some(m), pos, len) {
            *cur = None;
            return None;
        }
        let name_complete = nl.is_some() || m.ntok > 1;
        if !name_complete || !m.token(head, 0).is_some_and(command_known) {
            self.bad(None);
            return None;
        }
        *cur = None;
        match nl {
            Some(nl) => {
                let bytes = Some(self.chunk_bytes(pos, nl + 1));
                self.found.push(Found::Msg { msg: m, extent: Extent::Complete, bytes });
                Some(nl + 1)
            }
            None => {
                self.cut(Some(m), pos, vis, len);
                None
            }
        }
    }

    /// A value completed: closes the aggregates it completes. True when the message is complete.
    fn value_done(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            top.remaining = top.remaining.saturating_sub(1);
            if top.remaining > 0 {
                return false;
            }
            let attr = top.attr;
            self.stack.pop();
            if attr {
                // An attribute is not a value: the one it annotates follows.
                return false;
            }
        }
        true
    }

    /// A fully visible chunk stops inside a message: keep its unfinished end
    /// (the whole message if it started in this chunk) to parse it again with
    /// the next chunk, when small. Messages split by the reader's buffer are then
    /// reported once, whole, in the chunk where they end.
    fn defer(&mut self, buf: &[u8], cur: Option<Msg>, pos: usize, len: usize) -> bool {
        let from = cur.map_or(pos, |m| m.start);
        if buf.len() != len || len - from > MAX_CARRY {
            return false;
        }
        if cur.is_some() {
            self.stack.clear();
            self.framer = LengthFramer::default();
        }
        self.carry.extend_from_slice(&buf[from..]);
        true
    }

    /// Bytes of this chunk from `start` to `end` (carried bytes belong to the previous chunk).
    fn chunk_bytes(&self, start: usize, end: usize) -> usize {
        end - start.max(self.base).min(end)
    }

    fn complete(&mut self, cur: &mut Option<Msg>, end: usize) {
        match cur.take() {
            Some(msg) => {
                let bytes = Some(self.chunk_bytes(msg.start, end));
                self.found.push(Found::Msg { msg, extent: Extent::Complete, bytes });
            }
            None => {
                self.open = false;
                self.found.push(Found::Ended);
            }
        }
    }

    /// The message in progress continues into the next chunk.
    fn spills(&mut self, cur: Option<Msg>, len: usize) {
        if let Some(msg) = cur {
            let bytes = Some(self.chunk_bytes(msg.start, len));
            self.found.push(Found::Msg { msg, extent: Extent::Continues, bytes });
        }
        self.open = true;
    }

    /// Boundaries are lost in bytes we cannot see: the message in progress is
    /// taken to end with the chunk (applications write whole messages).
    fn lose(&mut self, cur: Option<Msg>, tail: usize) {
        self.close(cur, Extent::Complete);
        self.lost += 1;
        if tail > 0 {
            self.found.push(Found::LostTail(tail));
        }
    }

    /// The visible head ends inside a header line.
    fn cut(&mut self, cur: Option<Msg>, pos: usize, vis: usize, len: usize) {
        match cur {
            // Only the start of this message is visible: report what we have, end unknown.
            Some(m) if m.start == pos && vis < len => {
                self.close(Some(m), Extent::Unknown);
                self.lost += 1;
                self.found.push(Found::LostTail(len - vis));
            }
            _ => self.lose(cur, len - pos.max(vis)),
        }
    }

    fn bad(&mut self, cur: Option<Msg>) {
        self.close(cur, Extent::Complete);
        self.garbage += 1;
        self.found.push(Found::Garbage);
    }

    fn close(&mut self, cur: Option<Msg>, extent: Extent) {
        match cur {
            Some(msg) => self.found.push(Found::Msg { msg, extent, bytes: None }),
            None if self.open => self.found.push(Found::Ended),
            None => {}
        }
        self.stack.clear();
        self.open = false;
    }
}

fn starts_message(b: u8, request: bool) -> bool {
    if request {
        b == b'*' || b.is_ascii_alphabetic()
    } else {
        b"+-:$*_,#(!=%~>|".contains(&b)
    }
}

// ---------------------------------------------------------------------------
// The parser

/// Redis connection parser.
///
/// Replies are only reported while requests are unanswered: the parser counts
/// them (`outstanding`). When a reply chunk's head is cut at the snaplen (a
/// pipelined batch of large replies, say) the replies in the invisible tail
/// cannot be read; as applications write a batch of replies per syscall, the
/// parser reports up to `outstanding` of them there (at most one per 3 invisible
/// bytes) with an empty `status`, so in-order pairing stays aligned.
#[derive(Default)]
pub struct RedisParser {
    req: Side,
    resp: Side,
    /// The request / reply carried over between chunks was reported.
    req_open: bool,
    resp_open: bool,
    outstanding: u64,
    /// (Un)subscribe requests whose first confirmation is still to come.
    pending_sub: u64,
    /// RESP2 subscribe mode: `message` arrays are out-of-band.
    subscribed: bool,
}

/// How a reply relates to the requests.
enum Class {
    Reply,
    /// A (un)subscribe confirmation.
    Confirm,
    OutOfBand,
}

impl Parser for RedisParser {
    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let request = chunk.dir == Direction::Request;
        let side = if request { &mut self.req } else { &mut self.resp };
        let joined = side.scan(chunk.head, chunk.len, request);
        let found = std::mem::take(&mut side.found);
        let data = joined.as_deref().unwrap_or(chunk.head);
        for f in &found {
            if request {
                self.on_request(*f, data, out);
            } else {
                self.on_reply(*f, data, out);
            }
        }
        let side = if request { &mut self.req } else { &mut self.resp };
        side.found = found;
    }

    fn gave_up(&self) -> u64 {
        self.req.lost + self.req.garbage + self.resp.lost + self.resp.garbage
    }
}

impl RedisParser {
    fn on_request(&mut self, f: Found, head: &[u8], out: &mut Vec<ParseEvent>) {
        let dir = Direction::Request;
        match f {
            Found::Ended => {
                if std::mem::take(&mut self.req_open) {
                    out.push(ParseEvent::End { dir, id: None });
                }
            }
            Found::Msg { msg, extent, bytes } => {
                let info = request_info(&msg, head);
                self.track_subscriptions(&info.method);
                self.outstanding = (self.outstanding + 1).min(MAX_OUTSTANDING);
                self.req_open = extent == Extent::Continues;
                out.push(ParseEvent::Start { dir, id: None, info: Info::Request(info), extent, bytes });
            }
            Found::LostTail(_) | Found::Garbage => {}
        }
    }

    fn on_reply(&mut self, f: Found, head: &[u8], out: &mut Vec<ParseEvent>) {
        let dir = Direction::Response;
        match f {
            Found::Ended => {
                if std::mem::take(&mut self.resp_open) {
                    out.push(ParseEvent::End { dir, id: None });
                }
            }
            Found::Msg { msg, extent, bytes } => {
                self.resp_open = false;
                if !self.answers_request(&msg, head) {
                    return;
                }
                self.outstanding -= 1;
                self.resp_open = extent == Extent::Continues;
                let info = Info::Response(response_info(&msg, head));
                out.push(ParseEvent::Start { dir, id: None, info, extent, bytes });
            }
            Found::LostTail(tail) => {
                let implied = self.outstanding.min((tail / MIN_REPLY) as u64).min(MAX_IMPLIED);
                self.outstanding -= implied;
                for _ in 0..implied {
                    let info = Info::Response(ResponseInfo::default());
                    out.push(ParseEvent::Start {
                        dir,
                        id: None,
                        info,
                        extent: Extent::Complete,
                        bytes: None,
                    });
                }
            }
            Found::Garbage => {}
        }
    }

    fn track_subscriptions(&mut self, method: &str) {
        match method {
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" => {
                self.subscribed = true;
                self.pending_sub += 1;
            }
            "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" => self.pending_sub += 1,
            "RESET" => {
                self.subscribed = false;
                self.pending_sub = 0;
            }
            _ => {}
        }
        self.pending_sub = self.pending_sub.min(MAX_OUTSTANDING);
    }

    /// Is this reply the answer to the oldest unanswered request?
    fn answers_request(&mut self, msg: &Msg, head: &[u8]) -> bool {
        match self.classify(msg, head) {
            Class::Reply => self.outstanding > 0,
            Class::Confirm => {
                let kind = msg.token(head, 0).unwrap_or_default();
                if kind.eq_ignore_ascii_case(b"unsubscribe") || kind.eq_ignore_ascii_case(b"punsubscribe") {
                    // The count of remaining subscriptions: none left ends subscribe mode.
                    if msg.token(head, 2) == Some(b"0") {
                        self.subscribed = false;
                    }
                }
                if self.pending_sub == 0 || self.outstanding == 0 {
                    return false;
                }
                self.pending_sub -= 1;
                true
            }
            Class::OutOfBand => false,
        }
    }

    fn classify(&self, msg: &Msg, head: &[u8]) -> Class {
        let kind = msg.token(head, 0).unwrap_or_default().to_ascii_lowercase();
        let pubsub =
            msg.kind == b'>' || (msg.kind == b'*' && self.subscribed && PUBSUB_KINDS.contains(&&kind[..]));
        if !pubsub {
            return Class::Reply;
        }
        if CONFIRM_KINDS.contains(&&kind[..]) {
            Class::Confirm
        } else {
            Class::OutOfBand
        }
    }
}

const CONFIRM_KINDS: &[&[u8]] =
    &[b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ssubscribe", b"sunsubscribe"];

const PUBSUB_KINDS: &[&[u8]] = &[
    b"message",
    b"pmessage",
    b"smessage",
    b"subscribe",
    b"unsubscribe",
    b"psubscribe",
    b"punsubscribe",
    b"ssubscribe",
    b"sunsubscribe",
];

fn request_info(m: &Msg, head: &[u8]) -> RequestInfo {
    let tok = |i: usize| m.token(head, i);
    let name = tok(0).and_then(upper);
    let (method, key_at) = match name {
        Some(n) if is_container(&n) => match tok(1).and_then(upper).map(|sub| format!("{n} {sub}")) {
            Some(full) if SUBCOMMANDS.binary_search(&full.as_str()).is_ok() => (full, 2),
            _ => (n, 1),
        },
        Some(n) if COMMANDS.binary_search(&n.as_str()).is_ok() || module_command(&n) => (n, 1),
        _ => ("OTHER".to_string(), 1),
    };
    let shown = if method == "AUTH" { 1 } else { key_at + 1 };
    let words: Vec<String> =
        (0..shown).filter_map(tok).map(|t| String::from_utf8_lossy(t).into_owned()).collect();
    RequestInfo {
        endpoint: method.clone(),
        method,
        detail: truncate_display(&words.join(" "), MAX_DETAIL),
        trace: None,
    }
}

fn response_info(m: &Msg, head: &[u8]) -> ResponseInfo {
    if m.kind != b'-' && m.kind != b'!' {
        return ResponseInfo { status: "OK".to_string(), ..ResponseInfo::default() };
    }
    let text = String::from_utf8_lossy(m.token(head, 0).unwrap_or_default());
    ResponseInfo {
        status: error_code(&text),
        is_error: true,
        message: truncate_display(&text, MAX_DETAIL),
        protocol: None,
    }
}

/// The error prefix word (`ERR`, `WRONGTYPE`, `MOVED`...); `ERR` when there is none.
fn error_code(text: &str) -> String {
    let word = text.split(' ').next().unwrap_or_default();
    let ok = (1..=32).contains(&word.len())
        && word.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok { word } else { "ERR" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSIONS: &str = include_str!("../tests/fixtures/kv/redis_sessions.txt");
    const BIG: &str = include_str!("../tests/fixtures/kv/redis_big.txt");

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

    fn feed(p: &mut RedisParser, chunks: &[(Direction, usize, Vec<u8>)], snaplen: usize) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, len, head) in chunks {
            let head = &head[..head.len().min(snaplen)];
            p.feed(Chunk { dir: *dir, head, len: *len }, &mut out);
        }
        out
    }

    /// `> METHOD [detail]`, `< STATUS` (`!` when an error), `end >`; `~` marks Continues, `?` Unknown.
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
                        Info::Request(r) => format!("> {} [{}]{mark}", r.method, r.detail),
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
        summary(&feed(&mut RedisParser::default(), &load(SESSIONS, name), 1024))
    }

    #[test]
    fn command_tables_are_sorted() {
        for t in [COMMANDS, SUBCOMMANDS, CONTAINERS] {
            assert!(t.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn redis_cli_commands() {
        assert_eq!(run("cli_set"), ["> SET [SET foo]", "< OK"]);
        assert_eq!(run("cli_get_nil"), ["> GET [GET nokey]", "< OK"]);
        assert_eq!(run("cli_wrongtype"), ["> LPUSH [LPUSH foo]", "< WRONGTYPE!"]);
        assert_eq!(run("cli_config_get"), ["> CONFIG GET [CONFIG GET maxmemory]", "< OK"]);
        assert_eq!(run("cli_client_setname"), ["> CLIENT SETNAME [CLIENT SETNAME me]", "< OK"]);
        assert_eq!(run("cli_xinfo"), ["> XINFO STREAM [XINFO STREAM nostream]", "< ERR!"]);
        assert_eq!(run("cli_unknown_cmd"), ["> OTHER [BOGUSCMD x]", "< ERR!"]);
        assert_eq!(run("cli_resp3_hgetall"), ["> HELLO [HELLO 3]", "< OK", "> HGETALL [HGETALL hh]", "< OK"]);
    }

    #[test]
    fn error_reply_fields() {
        let events = feed(&mut RedisParser::default(), &load(SESSIONS, "cli_wrongtype"), 1024);
        let ParseEvent::Start { info: Info::Response(r), id, extent, bytes, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!((id, extent, bytes), (&None, &Extent::Complete, &Some(68)));
        assert_eq!(r.message, "WRONGTYPE Operation against a key holding the wrong kind of value");
    }

    #[test]
    fn resp3_types_and_pushes() {
        let s = run("resp3_types");
        let replies: Vec<_> = s.iter().filter(|l| l.starts_with('<')).collect();
        let requests = s.iter().filter(|l| l.starts_with('>')).count();
        // Every request answered once; the DEBUG PROTOCOL push and the tracking
        // invalidation push are out-of-band.
        assert_eq!(requests, 18);
        assert_eq!(replies.len(), 18);
        assert_eq!(s[1], "< OK");
        assert_eq!(s.last().map(String::as_str), Some("< MYERR!"));
        assert!(s.contains(&"> DEBUG [DEBUG PROTOCOL]".to_string()));
        assert!(s.contains(&"> CLIENT TRACKING [CLIENT TRACKING on]".to_string()));
    }

    #[test]
    fn multi_exec() {
        let s = run("multi_exec");
        assert_eq!(
            s,
            [
                "> MULTI [MULTI]",
                "< OK",
                "> SET [SET a]",
                "< OK",
                "> INCR [INCR a]",
                "< OK",
                "> LPUSH [LPUSH a]",
                "< OK",
                "> EXEC [EXEC]",
                "< OK",
                "> MULTI [MULTI]",
                "< OK",
                "> OTHER [NOTACMD]",
                "< ERR!",
                "> EXEC [EXEC]",
                "< EXECABORT!",
            ]
        );
    }

    #[test]
    fn subscribe_mode_resp2_and_resp3() {
        // SUBSCRIBE ch1 ch2 gets two confirmations (one reported), then a message push.
        assert_eq!(
            run("subscribe_resp2"),
            [
                "> SUBSCRIBE [SUBSCRIBE ch1]",
                "< OK",
                "> PING [PING]",
                "< OK",
                "> UNSUBSCRIBE [UNSUBSCRIBE]",
                "< OK"
            ]
        );
        assert_eq!(
            run("subscribe_resp3"),
            [
                "> HELLO [HELLO 3]",
                "< OK",
                "> SUBSCRIBE [SUBSCRIBE ch1]",
                "< OK",
                "> PING [PING]",
                "< OK",
                "> GET [GET a]",
                "< OK"
            ]
        );
    }

    #[test]
    fn inline_commands() {
        assert_eq!(
            run("inline"),
            [
                "> PING [PING]",
                "< OK",
                "> SET [SET inl]",
                "< OK",
                "> GET [GET inl]",
                "< OK",
                "> AUTH [AUTH]",
                "< ERR!"
            ]
        );
    }

    #[test]
    fn pipelined_benchmark_reports_every_command_and_reply() {
        for (name, cmd) in [("bench_set", "SET"), ("bench_get", "GET"), ("bench_lpush", "LPUSH")] {
            let s = run(name);
            let reqs = s.iter().filter(|l| l.starts_with(&format!("> {cmd} "))).count();
            let oks = s.iter().filter(|l| *l == "< OK").count();
            assert_eq!((reqs, oks, s.len()), (32, 32, 64), "{name}: {s:?}");
            // Each request chunk's 16 commands come before its 16 replies.
            assert!(
                s[..16].iter().all(|l| l.starts_with('>')) && s[16..32].iter().all(|l| l.starts_with('<'))
            );
        }
    }

    #[test]
    fn truncated_reply_batches_are_inferred() {
        // LRANGE replies (4688 bytes a chunk, 1024 visible): the invisible
        // replies are inferred so pairing stays in step.
        let s = run("bench_lrange");
        assert_eq!(s.iter().filter(|l| l.starts_with("> LRANGE")).count(), 32);
        assert_eq!(s.iter().filter(|l| l.starts_with('<')).count(), 32);
        // 3 whole replies and the start of a 4th are visible per chunk.
        assert_eq!(s.iter().filter(|l| *l == "< ").count(), 32 - 2 * 4);
        // MSET requests (5360 bytes, 1024 visible): only the visible commands are
        // reported, and only as many replies.
        let s = run("bench_mset");
        let reqs = s.iter().filter(|l| l.starts_with("> MSET")).count();
        assert_eq!(s.iter().filter(|l| *l == "< OK").count(), reqs);
        assert!(reqs >= 2);
    }

    #[test]
    fn large_values_span_chunks() {
        let chunks = load(BIG, "big_value");
        let mget = chunks.iter().rposition(|c| c.0 == Direction::Request).expect("MGET");
        let mut p = RedisParser::default();
        let s = summary(&feed(&mut p, &chunks[..mget], 64));
        assert_eq!(s, ["> SET [SET big]~", "end >", "< OK", "> GET [GET big]", "< OK~", "end <"]);
        assert_eq!(p.gave_up(), 0);
        // MGET big a big: the second element starts in bytes cut from the head, so
        // the reply is closed there and the rest of the big values is skipped.
        let s = summary(&feed(&mut p, &chunks[mget..], 64));
        assert_eq!(s, ["> MGET [MGET big]", "< OK~", "end <"]);
        assert!(p.gave_up() > 0);
    }

    #[test]
    fn pipeline_split_anywhere_gives_the_same_starts() {
        for name in ["bench_set", "bench_get", "multi_exec", "resp3_types", "subscribe_resp2"] {
            let chunks = load(SESSIONS, name);
            let whole = summary(&feed(&mut RedisParser::default(), &chunks, 4096));
            let whole: Vec<_> = whole.iter().map(|l| l.trim_end_matches('~').to_string()).collect();
            for (i, (dir, _, head)) in chunks.iter().enumerate() {
                for cut in 1..head.len() {
                    let mut split = chunks[..i].to_vec();
                    split.push((*dir, cut, head[..cut].to_vec()));
                    split.push((*dir, head.len() - cut, head[cut..].to_vec()));
                    split.extend_from_slice(&chunks[i + 1..]);
                    let s = summary(&feed(&mut RedisParser::default(), &split, 4096));
                    let starts: Vec<_> =
                        s.iter().filter(|l| !l.starts_with("end")).map(|l| l.trim_end_matches('~')).collect();
                    assert_eq!(starts, whole, "{name} chunk {i} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn replies_never_outnumber_requests_at_any_snaplen() {
        let names = SESSIONS.lines().filter_map(|l| l.strip_prefix("## "));
        for name in names {
            for snaplen in [16, 40, 64, 100, 256, 1024, 4096] {
                let mut p = RedisParser::default();
                let (mut reqs, mut replies) = (0, 0);
                for (dir, len, head) in load(SESSIONS, name) {
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
        assert!(detect(c(b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n"), 7000));
        assert!(detect(c(b"*2\r\n$8\r\nJSON.GET\r\n$1\r\nk\r\n"), 7000));
        assert!(!detect(c(b"*2\r\n$5\r\nHELLX\r\n$1\r\n3\r\n"), 7000));
        assert!(detect(c(b"*2\r\n$5\r\nHELLX\r\n$1\r\n3\r\n"), 6379));
        assert!(detect(c(b"PING\r\n"), 6379));
        assert!(!detect(c(b"PING\r\n"), 7000));
        assert!(!detect(c(b"GET / HTTP/1.1\r\n"), 6379));
        assert!(!detect(c(b"*\r\n"), 6379));
        let resp = Chunk { dir: Direction::Response, head: b"+OK\r\n", len: 5 };
        assert!(!detect(resp, 6379));
    }

    #[test]
    fn attributes_and_nested_errors() {
        let mut p = RedisParser::default();
        let mut out = Vec::new();
        let req = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        p.feed(Chunk { dir: Direction::Request, head: req, len: req.len() }, &mut out);
        let resp: &[u8] = concat!(
            "|1\r\n+ttl\r\n:3\r\n!9\r\nSYNTAX xy\r\n",
            "*2\r\n-ERR a\r\n*1\r\n%1\r\n+k\r\n|1\r\n+a\r\n+b\r\n+v\r\n",
            "=5\r\ntxt:x\r\n"
        )
        .as_bytes();
        p.feed(Chunk { dir: Direction::Response, head: resp, len: resp.len() }, &mut out);
        // The attribute annotates the blob error; a nested error leaves the array OK.
        assert_eq!(summary(&out)[3..], ["< SYNTAX!", "< OK", "< OK"]);
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn garbage_is_counted() {
        let mut p = RedisParser::default();
        let mut out = Vec::new();
        p.feed(Chunk { dir: Direction::Request, head: b"\x00\x01binary", len: 8 }, &mut out);
        p.feed(Chunk { dir: Direction::Response, head: b"xyz", len: 3 }, &mut out);
        assert!(out.is_empty());
        assert_eq!(p.gave_up(), 2);
    }

    fn arb_chunk() -> impl Strategy<Value = (bool, Vec<u8>, usize)> {
        let resp_bytes = prop::collection::vec(
            prop_oneof![
                Just(b"*".to_vec()),
                Just(b"$".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b"3".to_vec()),
                Just(b"-1".to_vec()),
                Just(b"SET".to_vec()),
                Just(b"|1".to_vec()),
                Just(b">2".to_vec()),
                Just(b"subscribe".to_vec()),
                prop::collection::vec(any::<u8>(), 0..4),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat());
        (any::<bool>(), resp_bytes, 0usize..5000)
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_bounded(chunks in prop::collection::vec(arb_chunk(), 0..30)) {
            let mut p = RedisParser::default();
            for (req, head, extra) in chunks {
                let dir = if req { Direction::Request } else { Direction::Response };
                let mut out = Vec::new();
                p.feed(Chunk { dir, head: &head, len: head.len() + extra }, &mut out);
                prop_assert!(out.len() <= head.len() + MAX_CARRY + 2 + ((head.len() + extra) / MIN_REPLY));
            }
        }
    }
}
