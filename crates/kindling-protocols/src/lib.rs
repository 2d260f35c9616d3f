//! Sans-IO L7 protocol parsers.
//!
//! The kernel gives us, per socket syscall, the *head* of the bytes moved (up
//! to the snaplen) and how many bytes were moved in total. A connection is
//! therefore a sequence of [`Chunk`]s in two directions (requests and
//! responses), each possibly truncated. A [`Parser`] is fed those chunks in
//! order, one connection per parser instance, and reports where messages
//! *start* ([`ParseEvent::Start`]) and, when it can tell, where a message that
//! began in an earlier chunk *ends* ([`ParseEvent::End`]). It never does I/O
//! and never panics on any input; what it cannot understand it skips.
//!
//! Pairing requests with responses, timing and bytes are the job of
//! `kindling-requests`; a parser only says what the bytes mean.
//!
//! Detection is by content ([`detect`]), with the server port only as a hint
//! for protocols whose first bytes are ambiguous.

pub mod framing;
pub mod normalize;
pub mod sql;
pub mod trace;

pub mod dns;
pub mod http1;
pub mod http2;
pub mod kafka;
pub mod memcached;
pub mod mysql;
pub mod postgres;
pub mod redis;

use serde::{Deserialize, Serialize};

/// The application protocols Kindling understands (`tcp` when none applies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Mysql,
    Postgresql,
    Redis,
    Kafka,
    Dns,
    Memcached,
    Tcp,
}

impl Protocol {
    pub const ALL: [Protocol; 10] = [
        Protocol::Http,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::Mysql,
        Protocol::Postgresql,
        Protocol::Redis,
        Protocol::Kafka,
        Protocol::Dns,
        Protocol::Memcached,
        Protocol::Tcp,
    ];

    /// The name used in records, labels and the API.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Mysql => "mysql",
            Protocol::Postgresql => "postgresql",
            Protocol::Redis => "redis",
            Protocol::Kafka => "kafka",
            Protocol::Dns => "dns",
            Protocol::Memcached => "memcached",
            Protocol::Tcp => "tcp",
        }
    }

    pub fn from_name(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Which way bytes flow, from the application protocol's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client -> server.
    Request,
    /// Server -> client.
    Response,
}

/// One syscall's worth of one direction of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    pub dir: Direction,
    /// The visible beginning of the bytes moved (at most the snaplen).
    pub head: &'a [u8],
    /// How many bytes the syscall moved in total (>= head.len()).
    pub len: usize,
}

/// A distributed-trace context found on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    pub trace_id: String,
    /// `w3c` (traceparent), `skywalking` (sw8), `pinpoint`, `b3`.
    pub trace_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub span_id: String,
}

/// What a request says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    /// HTTP method, SQL verb (`SELECT`), Redis/Memcached command, Kafka API
    /// (`Produce`), DNS query type (`A`), gRPC `POST`.
    pub method: String,
    /// Normalised with bounded cardinality: `/users/{id}`, `SELECT * FROM t WHERE id = ?`,
    /// `GET` (Redis), a Kafka topic, a DNS name, a gRPC `/pkg.Service/Method`.
    pub endpoint: String,
    /// The raw target for display (URL with query, SQL text, Redis key...),
    /// truncated and with secrets masked. Never used as a metric label.
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub trace: Option<TraceContext>,
}

/// What a response says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseInfo {
    /// HTTP status code, SQL error code, DNS rcode name (`NXDOMAIN`), gRPC
    /// status name, Redis `OK`/`ERR`, Kafka error code...
    pub status: String,
    pub is_error: bool,
    /// A short error message when the protocol carries one.
    #[serde(default)]
    pub message: String,
    /// Protocol refinement learnt from the response (HTTP/2 -> gRPC).
    #[serde(default)]
    pub protocol: Option<Protocol>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Info {
    Request(RequestInfo),
    Response(ResponseInfo),
}

/// How much of a message the chunk it starts in holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// The whole message is in this chunk.
    Complete,
    /// The message continues into later chunks of the same direction; the
    /// parser reports [`ParseEvent::End`] when it sees the end.
    Continues,
    /// The parser cannot tell (e.g. an HTTP body delimited by connection
    /// close): the message ends when the other direction speaks, a new message
    /// starts, or the connection closes.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseEvent {
    /// A message starts in this chunk.
    Start {
        dir: Direction,
        /// Matching key for protocols that say which response answers which
        /// request (DNS id, Kafka correlation id, HTTP/2 stream id). `None`:
        /// responses answer requests in order.
        id: Option<u64>,
        info: Info,
        extent: Extent,
        /// Bytes of the chunk that belong to this message, when known.
        bytes: Option<usize>,
    },
    /// A message that started in an earlier chunk ended in this one.
    End { dir: Direction, id: Option<u64> },
}

/// A connection's parser. One instance per connection; fed chunks in order.
pub trait Parser: Send {
    fn protocol(&self) -> Protocol;

    /// Reads one chunk and appends what happened in it to `out`.
    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>);

    /// How many chunks this parser could not make sense of (dropped bytes are
    /// counted, never silent).
    fn gave_up(&self) -> u64 {
        0
    }
}

/// Guesses the protocol from the first chunk seen on a connection (either
/// direction) and the server port. `None`: not a protocol we parse (the
/// connection is still reported at the `tcp` level).
pub fn detect(chunk: Chunk<'_>, server_port: u16, transport_udp: bool) -> Option<Protocol> {
    let h = chunk.head;
    if h.is_empty() {
        return None;
    }
    if transport_udp {
        return dns::detect(chunk, server_port).then_some(Protocol::Dns);
    }
    // Cheap, unambiguous signatures first; port-hinted binary protocols last.
    if http2::detect(chunk) {
        return Some(Protocol::Http2);
    }
    if http1::detect(chunk) {
        return Some(Protocol::Http);
    }
    if redis::detect(chunk, server_port) {
        return Some(Protocol::Redis);
    }
    if memcached::detect(chunk, server_port) {
        return Some(Protocol::Memcached);
    }
    if postgres::detect(chunk, server_port) {
        return Some(Protocol::Postgresql);
    }
    if mysql::detect(chunk, server_port) {
        return Some(Protocol::Mysql);
    }
    if kafka::detect(chunk, server_port) {
        return Some(Protocol::Kafka);
    }
    if dns::detect(chunk, server_port) {
        return Some(Protocol::Dns);
    }
    None
}

/// A fresh parser for one connection of `protocol` (`None` for `tcp`).
pub fn new_parser(protocol: Protocol) -> Option<Box<dyn Parser>> {
    Some(match protocol {
        Protocol::Http => Box::new(http1::Http1Parser::default()),
        Protocol::Http2 | Protocol::Grpc => Box::new(http2::Http2Parser::default()),
        Protocol::Mysql => Box::new(mysql::MysqlParser::default()),
        Protocol::Postgresql => Box::new(postgres::PostgresParser::default()),
        Protocol::Redis => Box::new(redis::RedisParser::default()),
        Protocol::Kafka => Box::new(kafka::KafkaParser::default()),
        Protocol::Dns => Box::new(dns::DnsParser::default()),
        Protocol::Memcached => Box::new(memcached::MemcachedParser::default()),
        Protocol::Tcp => return None,
    })
}

/// Truncates a display string to at most `max` bytes on a char boundary.
pub fn truncate_display(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Longest `detail` string a parser keeps.
pub const MAX_DETAIL: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for p in Protocol::ALL {
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_display("héllo", 2), "h…");
        assert_eq!(truncate_display("abc", 5), "abc");
    }
}
