//! Kafka binary protocol: size-prefixed requests (header: api_key,
//! api_version, correlation_id, client_id, tagged fields in flexible versions)
//! and size-prefixed responses (correlation_id, then tagged fields in flexible
//! versions except ApiVersions).
//!
//! A response does not name its API, so the parser keeps a small bounded map
//! correlation_id -> (api_key, api_version) from the requests it saw, to read
//! the response bodies it cares about.
//!
//! What is reported:
//! - Requests: `id` = Some(correlation_id), `method` = the API name (`Produce`,
//!   `Fetch`, `Metadata`... else `ApiKey<n>`), `endpoint` = the first topic of a
//!   Produce (v0-v12) or Fetch (v0-v12) request when visible (flexible versions
//!   included), else the API name (Produce v13+ and Fetch v13+ name topics by
//!   id), `detail` = `Produce v9 orders (client kv-producer)`.
//! - Responses: `id` = Some(correlation_id), `status` = for Produce and Fetch the
//!   first partition's error code (Fetch v7+: the top-level error when set),
//!   for group/coordinator/SASL/ApiVersions/InitProducerId APIs their top-level
//!   error code, else (or when not visible) `0`; `is_error` when it is not 0;
//!   `message` = the error name (`NOT_LEADER_OR_FOLLOWER`) for common codes. A
//!   response to a request not seen (or forgotten) has status `0`.
//! - A Produce with acks=0 gets no response: it is followed at once by a
//!   synthetic response (same id) with status `NOREPLY`.

use std::collections::VecDeque;

use crate::framing::{LengthFramer, Start};
use crate::{
    truncate_display, Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo,
    ResponseInfo, MAX_DETAIL,
};

/// Requests awaiting a response that are remembered; the oldest is forgotten first.
const MAX_INFLIGHT: usize = 1024;
/// Largest message accepted (Kafka's `socket.request.max.bytes` default is 100 MiB).
const MAX_SIZE: usize = 200 << 20;
/// Largest unfinished message kept from a fully visible chunk for the next one.
const MAX_CARRY: usize = 1024;
/// Versions above the highest known still accepted (newer clients).
const VERSION_SLACK: i16 = 4;

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const API_VERSIONS: i16 = 18;

pub fn detect(chunk: Chunk<'_>, server_port: u16) -> bool {
    if chunk.dir != Direction::Request {
        return false;
    }
    let h = chunk.head;
    let Some(size) = be_i32(h, 0) else { return false };
    let Ok(size) = usize::try_from(size) else { return false };
    let hinted = server_port == 9092;
    // One request per write is how clients send; the port allows batches.
    let sized = size + 4 == chunk.len || (hinted && size + 4 < chunk.len);
    if !sized || size < 10 {
        return false;
    }
    let Some(hdr) = read_header(&h[4..]) else { return false };
    let Some(&(_, _, max, _)) = api(hdr.key) else { return false };
    let version_ok = hdr.version >= 0 && hdr.version <= max + VERSION_SLACK;
    let client_ok = hdr.client_id.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    version_ok && hdr.corr >= 0 && client_ok && hdr.client_len_ok
}

fn api(key: i16) -> Option<&'static (i16, &'static str, i16, Option<i16>)> {
    APIS.binary_search_by_key(&key, |a| a.0).ok().map(|i| &APIS[i])
}

fn api_name(key: i16) -> String {
    api(key).map_or_else(|| format!("ApiKey{key}"), |a| a.1.to_string())
}

/// Does (key, version) use flexible encodings (compact strings, tagged fields)?
fn flexible(key: i16, version: i16) -> bool {
    api(key).and_then(|a| a.3).is_some_and(|f| version >= f)
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A byte cursor over the visible part of a message.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = *self.take(1)?.first()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A (nullable) string: int16 length, or compact (uvarint length + 1).
    fn string(&mut self, compact: bool) -> Option<Option<&'a [u8]>> {
        let len = if compact {
            usize::try_from(self.uvarint()?).ok()?.checked_sub(1)
        } else {
            usize::try_from(self.i16()?).ok()
        };
        match len {
            Some(n) => self.take(n).map(Some),
            None => Some(None),
        }
    }

    /// An array length: int32, or compact (uvarint length + 1).
    fn array_len(&mut self, compact: bool) -> Option<usize> {
        if compact {
            usize::try_from(self.uvarint()?).ok()?.checked_sub(1)
        } else {
            usize::try_from(self.i32()?).ok()
        }
    }

    /// Skips a tagged-field section.
    fn tagged(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.take(size)?;
        }
        Some(())
    }
}

/// A request header.
struct Header<'a> {
    key: i16,
    version: i16,
    corr: i32,
    client_id: &'a [u8],
    /// The client id length was consistent (not cut by the head).
    client_len_ok: bool,
    /// Where the body starts, if the header was whole in the visible bytes.
    body: Option<usize>,
}

/// Reads a request header from the message (after the size field).
fn read_header(m: &[u8]) -> Option<Header<'_>> {
    let mut c = Cur { b: m, at: 0 };
    let (key, version, corr) = (c.i16()?, c.i16()?, c.i32()?);
    let mut client_len_ok = true;
    let client_id = match c.string(false) {
        Some(s) => s.unwrap_or_default(),
        None => {
            client_len_ok = m.len() >= 10 && i16::from_be_bytes([m[8], m[9]]) >= -1;
            &[]
        }
    };
    let body = if flexible(key, version) { c.tagged().map(|_| c.at) } else { Some(c.at) };
    Some(Header { key, version, corr, client_id, client_len_ok, body })
}

/// The first topic (and acks) of a Produce request body.
fn produce_topic<'a>(c: &mut Cur<'a>, version: i16, flex: bool) -> (Option<i16>, Option<&'a [u8]>) {
    if version >= 3 && c.string(flex).is_none() {
        return (None, None);
    }
    let acks = c.i16();
    let topic = (|| {
        c.i32()?;
        if c.array_len(flex)? == 0 || version >= 13 {
            return None;
        }
        c.string(flex)?
    })();
    (acks, topic)
}

/// The first topic of a Fetch request body.
fn fetch_topic<'a>(c: &mut Cur<'a>, version: i16, flex: bool) -> Option<&'a [u8]> {
    let fixed = match version {
        0..=2 => 12,
        3 => 16,
        4..=6 => 17,
        7..=14 => 25,
        _ => 21,
    };
    c.take(fixed)?;
    if c.array_len(flex)? == 0 || version >= 13 {
        return None;
    }
    c.string(flex)?
}

/// Topic names are `[a-zA-Z0-9._-]{1,249}`; anything else is not used as an endpoint.
fn topic_name(t: &[u8]) -> Option<&str> {
    let ok =
        (1..=249).contains(&t.len()) && t.iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b));
    ok.then(|| std::str::from_utf8(t).ok()).flatten()
}

/// What a request (the visible bytes after its size field) says; the acks of a Produce.
fn request_info(hdr: &Header<'_>, m: &[u8]) -> (RequestInfo, Option<i16>) {
    let method = api_name(hdr.key);
    let flex = flexible(hdr.key, hdr.version);
    let mut c = Cur { b: m, at: hdr.body.unwrap_or(m.len()) };
    let (acks, topic) = match hdr.key {
        PRODUCE => produce_topic(&mut c, hdr.version, flex),
        FETCH => (None, fetch_topic(&mut c, hdr.version, flex)),
        _ => (None, None),
    };
    let endpoint = topic.and_then(topic_name).map_or_else(|| method.clone(), str::to_string);
    let mut detail = format!("{method} v{}", hdr.version);
    if endpoint != method {
        detail = format!("{detail} {endpoint}");
    }
    if !hdr.client_id.is_empty() {
        detail = format!("{detail} (client {})", String::from_utf8_lossy(hdr.client_id));
    }
    let info = RequestInfo { method, endpoint, detail: truncate_display(&detail, MAX_DETAIL), trace: None };
    (info, acks)
}

/// The error code a response body carries (see the module docs); None when not visible.
fn response_error(key: i16, version: i16, c: &mut Cur<'_>) -> Option<i16> {
    let flex = flexible(key, version);
    match key {
        PRODUCE => {
            if c.array_len(flex)? == 0 {
                return Some(0);
            }
            skip_topic(c, version >= 13, flex)?;
            if c.array_len(flex)? == 0 {
                return Some(0);
            }
            c.i32()?;
            c.i16()
        }
        FETCH => {
            if version >= 1 {
                c.i32()?;
            }
            if version >= 7 {
                let top = c.i16()?;
                c.i32()?;
                if top != 0 {
                    return Some(top);
                }
            }
            if c.array_len(flex)? == 0 {
                return Some(0);
            }
            skip_topic(c, version >= 13, flex)?;
            if c.array_len(flex)? == 0 {
                return Some(0);
            }
            c.i32()?;
            c.i16()
        }
        _ => {
            let throttled = match key {
                10 => (1..=3).contains(&version),
                11 => version >= 2,
                12..=14 | 16 => version >= 1,
                22 => true,
                17 | 18 | 36 => false,
                _ => return None,
            };
            if key == 10 && version >= 4 {
                return None;
            }
            if throttled {
                c.i32()?;
            }
            c.i16()
        }
    }
}

fn skip_topic(c: &mut Cur<'_>, by_id: bool, flex: bool) -> Option<()> {
    if by_id {
        c.take(16).map(|_| ())
    } else {
        c.string(flex).map(|_| ())
    }
}

fn error_name(code: i16) -> &'static str {
    ERRORS.iter().find(|e| e.0 == code).map_or("", |e| e.1)
}

/// Framing state of one direction.
#[derive(Default)]
struct Stream {
    framer: LengthFramer,
    /// The reported message continuing into later chunks: its id.
    open: Option<u64>,
    /// The unfinished end of a fully visible chunk, read again with the next one.
    carry: Vec<u8>,
}

/// Kafka connection parser (see the module docs).
#[derive(Default)]
pub struct KafkaParser {
    req: Stream,
    resp: Stream,
    /// (correlation id, api key, api version) of requests awaiting their response.
    inflight: VecDeque<(i32, i16, i16)>,
    lost: u64,
    garbage: u64,
}

/// The bytes being read: carried bytes + the chunk head.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    buf: &'a [u8],
    len: usize,
    base: usize,
    dir: Direction,
}

impl Parser for KafkaParser {
    fn protocol(&self) -> Protocol {
        Protocol::Kafka
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let request = chunk.dir == Direction::Request;
        let stream = if request { &mut self.req } else { &mut self.resp };
        // A buffer is only allocated on the rare path of a carry.
        let carry = std::mem::take(&mut stream.carry);
        let base = carry.len();
        let joined = (base > 0).then(|| [&carry[..], chunk.head].concat());
        let buf = joined.as_deref().unwrap_or(chunk.head);
        let len = chunk.len.max(chunk.head.len()) + base;
        self.messages(Ctx { buf, len, base, dir: chunk.dir }, out);
    }

    fn gave_up(&self) -> u64 {
        self.lost + self.garbage
    }
}

impl KafkaParser {
    fn stream(&mut self, dir: Direction) -> &mut Stream {
        if dir == Direction::Request {
            &mut self.req
        } else {
            &mut self.resp
        }
    }

    /// Reads the size-prefixed messages of one chunk.
    fn messages(&mut self, c: Ctx<'_>, out: &mut Vec<ParseEvent>) {
        let (vis, len, dir) = (c.buf.len(), c.len, c.dir);
        let s = self.stream(dir);
        let mut pos = match s.framer.begin(len) {
            Start::Inside { ended } => return end_open(s, dir, ended, out),
            Start::At { offset, ended } => {
                end_open(s, dir, ended, out);
                offset
            }
        };
        while pos < vis {
            let s = self.stream(dir);
            let size = be_i32(c.buf, pos);
            let Some(size) = size.and_then(|n| usize::try_from(n).ok()) else {
                if size.is_none() && defer(s, c.buf, pos, len) {
                    return;
                }
                return self.give_up(size.is_some(), dir);
            };
            let min = if dir == Direction::Request { 8 } else { 4 };
            if !(min..=MAX_SIZE).contains(&size) {
                return self.give_up(true, dir);
            }
            let (next, complete) = s.framer.message(pos, size + 4, len, vis);
            if !complete && defer(s, c.buf, pos, len) {
                s.framer = LengthFramer::default();
                return;
            }
            let m = &c.buf[pos + 4..(pos + 4 + size).min(vis)];
            let bytes = (pos + 4 + size).min(len) - pos.max(c.base).min(len);
            let extent = if complete { Extent::Complete } else { Extent::Continues };
            let reported = match dir {
                Direction::Request => self.request(m, extent, bytes, out),
                Direction::Response => self.response(m, extent, bytes, out),
            };
            let s = self.stream(dir);
            match reported {
                Some(id) if !complete => s.open = Some(id),
                None if m.len() >= min => return self.give_up(true, dir),
                None => self.lost += 1,
                Some(_) => {}
            }
            match next {
                Some(n) if complete => pos = n,
                _ => {
                    if complete && pos + 4 + size < len {
                        self.lost += 1;
                    }
                    return;
                }
            }
        }
        if pos < len {
            self.lost += 1;
        }
    }

    /// Not Kafka where a message should start: forget the boundaries.
    fn give_up(&mut self, garbage: bool, dir: Direction) {
        self.stream(dir).framer.resync();
        if garbage {
            self.garbage += 1;
        } else {
            self.lost += 1;
        }
    }

    /// Reports a request; its id, or None if its header is not readable.
    fn request(&mut self, m: &[u8], extent: Extent, bytes: usize, out: &mut Vec<ParseEvent>) -> Option<u64> {
        let hdr = read_header(m)?;
        let known = api(hdr.key).is_some_and(|a| hdr.version >= 0 && hdr.version <= a.2 + VERSION_SLACK);
        if !known || hdr.corr < 0 {
            return None;
        }
        let id = Some(corr_id(hdr.corr));
        let (info, acks) = request_info(&hdr, m);
        out.push(ParseEvent::Start {
            dir: Direction::Request,
            id,
            info: Info::Request(info),
            extent,
            bytes: Some(bytes),
        });
        if hdr.key == PRODUCE && acks == Some(0) {
            let info = ResponseInfo { status: "NOREPLY".to_string(), ..ResponseInfo::default() };
            out.push(ParseEvent::Start {
                dir: Direction::Response,
                id,
                info: Info::Response(info),
                extent: Extent::Complete,
                bytes: Some(0),
            });
        } else {
            if self.inflight.len() >= MAX_INFLIGHT {
                self.inflight.pop_front();
            }
            self.inflight.push_back((hdr.corr, hdr.key, hdr.version));
        }
        id
    }

    /// Reports a response; its id, or None if its correlation id is not visible.
    fn response(&mut self, m: &[u8], extent: Extent, bytes: usize, out: &mut Vec<ParseEvent>) -> Option<u64> {
        let corr = be_i32(m, 0)?;
        let found = self.inflight.iter().position(|f| f.0 == corr);
        let code = found.and_then(|i| self.inflight.remove(i)).and_then(|(_, key, version)| {
            let mut c = Cur { b: m, at: 4 };
            if flexible(key, version) && key != API_VERSIONS {
                c.tagged()?;
            }
            response_error(key, version, &mut c)
        });
        let code = code.unwrap_or(0);
        let info = ResponseInfo {
            status: code.to_string(),
            is_error: code != 0,
            message: error_name(code).to_string(),
            protocol: None,
        };
        let id = Some(corr_id(corr));
        out.push(ParseEvent::Start {
            dir: Direction::Response,
            id,
            info: Info::Response(info),
            extent,
            bytes: Some(bytes),
        });
        id
    }
}

/// Correlation ids are int32s: the id is their bit pattern.
fn corr_id(corr: i32) -> u64 {
    u64::from(corr as u32)
}

/// Keeps `buf[from..]` for the next chunk if this one was fully visible and it is small.
fn defer(s: &mut Stream, buf: &[u8], from: usize, len: usize) -> bool {
    if buf.len() != len || len - from > MAX_CARRY {
        return false;
    }
    s.carry.extend_from_slice(&buf[from..]);
    true
}

fn end_open(s: &mut Stream, dir: Direction, ended: bool, out: &mut Vec<ParseEvent>) {
    if ended {
        if let Some(id) = s.open.take() {
            out.push(ParseEvent::End { dir, id: Some(id) });
        }
    }
}

/// (api key, name, highest version known, first flexible version), from the Apache Kafka message
/// definitions shipped with kafka-python 3.0.12 (plus the inter-broker, delegation-token and
/// KIP-848/714 APIs it lacks).
const APIS: &[(i16, &str, i16, Option<i16>)] = &[
    (0, "Produce", 13, Some(9)),
    (1, "Fetch", 18, Some(12)),
    (2, "ListOffsets", 11, Some(6)),
    (3, "Metadata", 13, Some(9)),
    (4, "LeaderAndIsr", 7, Some(4)),
    (5, "StopReplica", 4, Some(2)),
    (6, "UpdateMetadata", 8, Some(6)),
    (7, "ControlledShutdown", 3, Some(3)),
    (8, "OffsetCommit", 10, Some(8)),
    (9, "OffsetFetch", 10, Some(6)),
    (10, "FindCoordinator", 6, Some(3)),
    (11, "JoinGroup", 9, Some(6)),
    (12, "Heartbeat", 4, Some(4)),
    (13, "LeaveGroup", 5, Some(4)),
    (14, "SyncGroup", 5, Some(4)),
    (15, "DescribeGroups", 6, Some(5)),
    (16, "ListGroups", 5, Some(3)),
    (17, "SaslHandshake", 1, None),
    (18, "ApiVersions", 4, Some(3)),
    (19, "CreateTopics", 7, Some(5)),
    (20, "DeleteTopics", 6, Some(4)),
    (21, "DeleteRecords", 2, Some(2)),
    (22, "InitProducerId", 6, Some(2)),
    (23, "OffsetForLeaderEpoch", 4, Some(4)),
    (24, "AddPartitionsToTxn", 5, Some(3)),
    (25, "AddOffsetsToTxn", 4, Some(3)),
    (26, "EndTxn", 5, Some(3)),
    (27, "WriteTxnMarkers", 2, Some(1)),
    (28, "TxnOffsetCommit", 5, Some(3)),
    (29, "DescribeAcls", 3, Some(2)),
    (30, "CreateAcls", 3, Some(2)),
    (31, "DeleteAcls", 3, Some(2)),
    (32, "DescribeConfigs", 4, Some(4)),
    (33, "AlterConfigs", 2, Some(2)),
    (34, "AlterReplicaLogDirs", 2, Some(2)),
    (35, "DescribeLogDirs", 5, Some(2)),
    (36, "SaslAuthenticate", 2, Some(2)),
    (37, "CreatePartitions", 3, Some(2)),
    (38, "CreateDelegationToken", 3, Some(2)),
    (39, "RenewDelegationToken", 2, Some(2)),
    (40, "ExpireDelegationToken", 2, Some(2)),
    (41, "DescribeDelegationToken", 3, Some(2)),
    (42, "DeleteGroups", 2, Some(2)),
    (43, "ElectLeaders", 2, Some(2)),
    (44, "IncrementalAlterConfigs", 1, Some(1)),
    (45, "AlterPartitionReassignments", 1, Some(0)),
    (46, "ListPartitionReassignments", 0, Some(0)),
    (47, "OffsetDelete", 0, None),
    (48, "DescribeClientQuotas", 1, Some(1)),
    (49, "AlterClientQuotas", 1, Some(1)),
    (50, "DescribeUserScramCredentials", 0, Some(0)),
    (51, "AlterUserScramCredentials", 0, Some(0)),
    (55, "DescribeQuorum", 2, Some(0)),
    (57, "UpdateFeatures", 2, Some(0)),
    (60, "DescribeCluster", 2, Some(0)),
    (61, "DescribeProducers", 0, Some(0)),
    (65, "DescribeTransactions", 0, Some(0)),
    (66, "ListTransactions", 2, Some(0)),
    (68, "ConsumerGroupHeartbeat", 1, Some(0)),
    (69, "ConsumerGroupDescribe", 1, Some(0)),
    (71, "GetTelemetrySubscriptions", 0, Some(0)),
    (72, "PushTelemetry", 0, Some(0)),
    (74, "ListConfigResources", 1, Some(0)),
    (75, "DescribeTopicPartitions", 0, Some(0)),
];

/// Names of common Kafka error codes (as in the Apache Kafka protocol guide), for `message`.
#[rustfmt::skip]
const ERRORS: &[(i16, &str)] = &[
    (-1, "UNKNOWN_SERVER_ERROR"), (1, "OFFSET_OUT_OF_RANGE"), (2, "CORRUPT_MESSAGE"),
    (3, "UNKNOWN_TOPIC_OR_PARTITION"), (4, "INVALID_FETCH_SIZE"), (5, "LEADER_NOT_AVAILABLE"),
    (6, "NOT_LEADER_OR_FOLLOWER"), (7, "REQUEST_TIMED_OUT"), (8, "BROKER_NOT_AVAILABLE"),
    (9, "REPLICA_NOT_AVAILABLE"), (10, "MESSAGE_TOO_LARGE"), (13, "NETWORK_EXCEPTION"),
    (14, "COORDINATOR_LOAD_IN_PROGRESS"), (15, "COORDINATOR_NOT_AVAILABLE"), (16, "NOT_COORDINATOR"),
    (17, "INVALID_TOPIC_EXCEPTION"), (18, "RECORD_LIST_TOO_LARGE"), (19, "NOT_ENOUGH_REPLICAS"),
    (20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND"), (21, "INVALID_REQUIRED_ACKS"), (22, "ILLEGAL_GENERATION"),
    (25, "UNKNOWN_MEMBER_ID"), (27, "REBALANCE_IN_PROGRESS"), (29, "TOPIC_AUTHORIZATION_FAILED"),
    (30, "GROUP_AUTHORIZATION_FAILED"), (31, "CLUSTER_AUTHORIZATION_FAILED"),
    (33, "UNSUPPORTED_SASL_MECHANISM"), (34, "ILLEGAL_SASL_STATE"), (35, "UNSUPPORTED_VERSION"),
    (36, "TOPIC_ALREADY_EXISTS"), (37, "INVALID_PARTITIONS"), (41, "NOT_CONTROLLER"),
    (42, "INVALID_REQUEST"), (45, "OUT_OF_ORDER_SEQUENCE_NUMBER"), (47, "INVALID_PRODUCER_EPOCH"),
    (48, "INVALID_TXN_STATE"), (51, "CONCURRENT_TRANSACTIONS"), (56, "KAFKA_STORAGE_ERROR"),
    (58, "SASL_AUTHENTICATION_FAILED"), (59, "UNKNOWN_PRODUCER_ID"), (70, "FETCH_SESSION_ID_NOT_FOUND"),
    (71, "INVALID_FETCH_SESSION_EPOCH"), (74, "FENCED_LEADER_EPOCH"), (75, "UNKNOWN_LEADER_EPOCH"),
    (76, "UNSUPPORTED_COMPRESSION_TYPE"), (78, "OFFSET_NOT_AVAILABLE"), (79, "MEMBER_ID_REQUIRED"),
    (87, "INVALID_RECORD"), (89, "THROTTLING_QUOTA_EXCEEDED"), (100, "UNKNOWN_TOPIC_ID"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VERSIONS: &str = include_str!("../tests/fixtures/kv/kafka_versions.txt");
    const SESSIONS: &str = include_str!("../tests/fixtures/kv/kafka_sessions.txt");

    type Chunks = Vec<(Direction, usize, Vec<u8>)>;

    /// Fixture format: `## name` starts a session; `C|S <syscall len> <hex head>` lines.
    fn load(name: &str) -> Chunks {
        let mut on = false;
        let mut chunks = Vec::new();
        for line in SESSIONS.lines() {
            if let Some(n) = line.strip_prefix("## ") {
                on = n == name;
            } else if on && !line.starts_with('#') {
                chunks.push(chunk_line(line));
            }
        }
        assert!(!chunks.is_empty(), "no session {name}");
        chunks
    }

    fn chunk_line(line: &str) -> (Direction, usize, Vec<u8>) {
        let mut it = line.split(' ');
        let dir = if it.next() == Some("C") { Direction::Request } else { Direction::Response };
        let len = it.next().and_then(|l| l.parse().ok()).expect("len");
        (dir, len, hex(it.next().unwrap_or_default()))
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
    }

    fn feed(p: &mut KafkaParser, chunks: &[(Direction, usize, Vec<u8>)], snaplen: usize) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        for (dir, len, head) in chunks {
            let head = &head[..head.len().min(snaplen)];
            p.feed(Chunk { dir: *dir, head, len: *len }, &mut out);
        }
        out
    }

    /// `> id Method endpoint`, `< id status[!] message`, `end id`; `~` marks Continues.
    fn summary(events: &[ParseEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ParseEvent::Start { info, extent, id, .. } => {
                    let id = id.map(|i| i.to_string()).unwrap_or_default();
                    let mark = if *extent == Extent::Continues { "~" } else { "" };
                    match info {
                        Info::Request(r) => format!("> {id} {} {}{mark}", r.method, r.endpoint),
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
    fn api_table_is_sorted() {
        assert!(APIS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn produce_and_fetch_every_version() {
        // kafka-python's encoders, Produce v0-13 and Fetch v0-18, request then response.
        let mut lines = VERSIONS.lines().filter(|l| !l.is_empty()).peekable();
        let mut seen = 0;
        while let Some(line) = lines.next() {
            let Some(title) = line.strip_prefix("# ").filter(|t| t.contains(" err=")) else { continue };
            let (api_v, err) = title.split_once(" err=").expect("title");
            let (api, v) = api_v.split_once(" v").expect("version");
            let v: i16 = v.parse().expect("v");
            let req = chunk_line(lines.next().expect("request"));
            let resp = chunk_line(lines.next().expect("response"));
            let mut p = KafkaParser::default();
            let s = summary(&feed(&mut p, &[req.clone(), resp], 4096));
            let id = if api == "Produce" { 100 + v } else { 200 + v };
            let topic = if v >= 13 { api } else { "orders" };
            let err: i16 = err.parse().expect("err");
            let bang = if err != 0 { "!" } else { "" };
            let expected =
                [format!("> {id} {api} {topic}"), format!("< {id} {err}{bang} {}", error_name(err))];
            assert_eq!(s, expected, "{title}");
            assert_eq!(p.gave_up(), 0);
            assert!(detect(Chunk { dir: Direction::Request, head: &req.2, len: req.1 }, 1234), "{title}");
            seen += 1;
        }
        assert_eq!(seen, 14 + 19);
    }

    #[test]
    fn real_client_sessions() {
        assert_eq!(
            summary(&feed(&mut KafkaParser::default(), &load("new_producer"), 1024)),
            [
                "> 1 ApiVersions ApiVersions",
                "< 1 0 ",
                "> 2 Produce orders",
                "< 2 0 ",
                "> 3 Produce orders",
                "< 3 0 ",
                "> 4 Produce orders",
                "< 4 0 "
            ]
        );
        assert_eq!(
            summary(&feed(&mut KafkaParser::default(), &load("new_producer_meta"), 1024)),
            ["> 1 ApiVersions ApiVersions", "< 1 0 ", "> 2 Metadata Metadata", "< 2 0 "]
        );
        let s = summary(&feed(&mut KafkaParser::default(), &load("new_consumer"), 1024));
        assert_eq!(s[2..4], ["> 2 Fetch orders", "< 2 0 "]);
        assert_eq!(s.len(), 12);
        // Produce v7 answered NOT_LEADER_OR_FOLLOWER; Metadata v8 in between.
        assert_eq!(
            summary(&feed(&mut KafkaParser::default(), &load("old_producer"), 1024)),
            [
                "> 1 ApiVersions ApiVersions",
                "< 1 0 ",
                "> 2 Produce orders",
                "< 2 6! NOT_LEADER_OR_FOLLOWER",
                "> 3 Metadata Metadata",
                "< 3 0 ",
                "> 4 Produce orders",
                "< 4 6! NOT_LEADER_OR_FOLLOWER",
                "> 5 Metadata Metadata",
                "< 5 0 "
            ]
        );
    }

    #[test]
    fn request_fields() {
        let events = feed(&mut KafkaParser::default(), &load("new_producer"), 1024);
        let ParseEvent::Start { info: Info::Request(r), extent, bytes, .. } = &events[2] else { panic!() };
        assert_eq!(r.detail, "Produce v9 orders (client kv-producer)");
        assert_eq!((*extent, *bytes), (Extent::Complete, Some(127)));
    }

    #[test]
    fn split_anywhere_and_cut_heads() {
        let chunks = load("new_producer");
        let whole = summary(&feed(&mut KafkaParser::default(), &chunks, 4096));
        for (i, (dir, _, head)) in chunks.iter().enumerate() {
            for cut in 1..head.len() {
                let mut split = chunks[..i].to_vec();
                split.push((*dir, cut, head[..cut].to_vec()));
                split.push((*dir, head.len() - cut, head[cut..].to_vec()));
                split.extend_from_slice(&chunks[i + 1..]);
                let s = summary(&feed(&mut KafkaParser::default(), &split, 4096));
                assert_eq!(s, whole, "chunk {i} cut at {cut}");
            }
        }
        // Heads cut before the topic: the API name is the endpoint; before the id: nothing.
        let s = summary(&feed(&mut KafkaParser::default(), &chunks, 40));
        assert_eq!(s[2], "> 2 Produce Produce");
        let mut p = KafkaParser::default();
        assert_eq!(summary(&feed(&mut p, &chunks[..1], 10)), Vec::<String>::new());
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn batches_and_spills() {
        let chunks = load("new_producer");
        let reqs: Vec<u8> =
            chunks.iter().filter(|c| c.0 == Direction::Request).flat_map(|c| c.2.clone()).collect();
        let resps: Vec<u8> =
            chunks.iter().filter(|c| c.0 == Direction::Response).flat_map(|c| c.2.clone()).collect();
        let (a, b) = resps.split_at(180);
        let batched = vec![
            (Direction::Request, reqs.len(), reqs.clone()),
            (Direction::Response, a.len(), a.to_vec()),
            (Direction::Response, b.len(), b.to_vec()),
        ];
        // All requests in one write, heads of 64 bytes: the first is whole, the
        // second's topic is cut, the others are not visible.
        let s = summary(&feed(&mut KafkaParser::default(), &batched[..1], 64));
        assert_eq!(s, ["> 1 ApiVersions ApiVersions", "> 2 Produce Produce"]);
        // The responses in two reads: the second response spans them. Fully
        // visible, its start is kept and it is reported whole with the second read.
        let s = summary(&feed(&mut KafkaParser::default(), &batched, 4096));
        assert_eq!(s[4..], ["< 1 0 ", "< 2 0 ", "< 3 0 ", "< 4 0 "]);
        let s = summary(&feed(&mut KafkaParser::default(), &batched, 170));
        assert_eq!(s[2..], ["< 1 0 ", "< 2 0 ~", "end Some(2)", "< 3 0 ", "< 4 0 "]);
    }

    #[test]
    fn acks_zero_produce_gets_a_synthetic_reply() {
        let chunks = load("new_producer");
        let mut req = chunks[2].2.clone();
        // Produce v9 body: transactional_id (compact null), then acks.
        let at = 4 + 8 + 2 + 11 + 1 + 1;
        assert_eq!(&req[at..at + 2], &[0, 1]);
        req[at + 1] = 0;
        let s = summary(&feed(&mut KafkaParser::default(), &[(Direction::Request, req.len(), req)], 4096));
        assert_eq!(s, ["> 2 Produce orders", "< 2 NOREPLY "]);
    }

    #[test]
    fn detection() {
        let chunks = load("old_producer");
        let first = Chunk { dir: Direction::Request, head: &chunks[0].2, len: chunks[0].1 };
        assert!(detect(first, 9391));
        assert!(!detect(Chunk { dir: Direction::Response, ..first }, 9092));
        let c = |h: &'static [u8]| Chunk { dir: Direction::Request, head: h, len: h.len() };
        assert!(!detect(c(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 9092));
        assert!(!detect(c(b"\x00\x00\x00\x0a\x00\x63\x00\x00\x00\x00\x00\x01\x00\x00"), 9092));
        assert!(!detect(c(b"*3\r\n$3\r\nSET\r\n"), 9092));
    }

    fn arb_chunk() -> impl Strategy<Value = (bool, Vec<u8>, usize)> {
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..300), 0usize..3000)
    }

    proptest! {
        #[test]
        fn never_panics(chunks in prop::collection::vec(arb_chunk(), 0..20)) {
            let mut p = KafkaParser::default();
            for (req, head, extra) in chunks {
                let dir = if req { Direction::Request } else { Direction::Response };
                let mut out = Vec::new();
                p.feed(Chunk { dir, head: &head, len: head.len() + extra }, &mut out);
                prop_assert!(out.len() <= 2 * (head.len() + MAX_CARRY) / 8 + 2);
                prop_assert!(p.inflight.len() <= MAX_INFLIGHT);
                let _ = detect(Chunk { dir, head: &head, len: head.len() + extra }, 9092);
            }
        }

        #[test]
        fn mutated_real_messages_never_panic(
            i in 0usize..66,
            flips in prop::collection::vec((0usize..400, any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let is_chunk = |l: &&str| l.starts_with("C ") || l.starts_with("S ");
            let pairs: Vec<_> = VERSIONS.lines().filter(is_chunk).map(chunk_line).collect();
            let mut p = KafkaParser::default();
            let mut out = Vec::new();
            let base = (i / 2) * 2;
            for (j, (dir, len, head)) in pairs[base..base + 2].iter().enumerate() {
                let mut head = head.clone();
                if j == i % 2 {
                    for (at, b) in &flips {
                        let n = head.len().max(1);
                        if let Some(x) = head.get_mut(at % n) {
                            *x = *b;
                        }
                    }
                    head.truncate(cut.max(1));
                }
                p.feed(Chunk { dir: *dir, head: &head, len: *len }, &mut out);
            }
            prop_assert!(out.len() <= 4);
        }
    }
}
