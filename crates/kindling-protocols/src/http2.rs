//! HTTP/2 (RFC 9113) over cleartext TCP, and gRPC on top of it.
//!
//! Each direction is a sequence of frames (9-byte header + payload). We follow
//! the frame boundaries across chunks: a header may be split between chunks and
//! a DATA frame may be far longer than the visible head, so we count how many
//! bytes of the current frame are still to come. When the next frame starts in
//! bytes we cannot see, the boundaries are lost; we resync on a chunk that
//! starts with plausible frames (writers send whole frames per syscall).
//!
//! Header blocks are HPACK-compressed with one dynamic table per direction
//! ([`hpack`]). A truncated block means the table may now lack entries: the
//! decoder then reports references it cannot resolve as unknown instead of
//! guessing, and later blocks still yield their static and literal fields.
//!
//! Messages are keyed by stream id. A gRPC response's status is in its
//! trailers, so its `Start` is reported when the trailers arrive (complete,
//! with the final status); other responses start at their HEADERS.

use std::collections::BTreeMap;

use crate::{Chunk, Direction, Extent, Info, ParseEvent, Parser, Protocol, RequestInfo, ResponseInfo};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE before any SETTINGS (and the limit we assume when resyncing).
const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest length a frame header can state.
const MAX_FRAME_LEN: usize = (1 << 24) - 1;
/// Streams tracked per connection; beyond that the oldest is forgotten.
const MAX_STREAMS: usize = 1024;
/// Header block bytes buffered per direction; a larger block is decoded as truncated.
const MAX_BLOCK: usize = 32 * 1024;
/// An unseen tail this short after a gRPC message is taken to be its trailers.
const MAX_HIDDEN_TRAILERS: usize = FRAME_HEADER + 128;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// Does this chunk start an HTTP/2 connection (client preface), or look like
/// frames of one picked up mid-stream?
pub fn detect(chunk: Chunk<'_>) -> bool {
    let head = chunk.head;
    if chunk.dir == Direction::Request && is_preface(head) {
        return true;
    }
    plausible_frames(head, chunk.len.max(head.len()), chunk.dir, DEFAULT_MAX_FRAME)
}

/// The client preface, or (when the head is short) enough of its start to be unambiguous.
fn is_preface(head: &[u8]) -> bool {
    if head.len() >= PREFACE.len() {
        return head.starts_with(PREFACE);
    }
    head.len() >= 14 && PREFACE.starts_with(head)
}

/// Do the visible bytes parse as a run of plausible frames? Strict on purpose:
/// this is what claims a connection (or resyncs one) from bytes alone.
fn plausible_frames(head: &[u8], len: usize, dir: Direction, max_frame: usize) -> bool {
    let mut pos = 0usize;
    let mut frames = 0;
    while let Some(bytes) = head.get(pos..pos + FRAME_HEADER) {
        let h = FrameHeader::parse(bytes);
        if !h.plausible(dir, max_frame) {
            return false;
        }
        frames += 1;
        pos += FRAME_HEADER + h.len;
        if pos >= len {
            // Ends exactly with the chunk, or continues into the next one.
            return true;
        }
    }
    // The next header is beyond the snaplen, or split into the next read.
    frames > 0 && (pos >= head.len() || head.len() < len || plausible_partial(&head[pos..], max_frame))
}

/// The first bytes (fewer than 9) of a frame header: length and type in range.
fn plausible_partial(b: &[u8], max_frame: usize) -> bool {
    let len = b.iter().take(3).fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
    let len_ok = len << (8 * (3 - b.len().min(3))) <= max_frame;
    len_ok && b.get(3).is_none_or(|&kind| kind <= CONTINUATION)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
    reserved: bool,
}

impl FrameHeader {
    /// `b` must hold at least 9 bytes.
    fn parse(b: &[u8]) -> FrameHeader {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader { len, kind: b[3], flags: b[4], stream: sid & 0x7fff_ffff, reserved: sid >> 31 == 1 }
    }

    /// Rules every well-formed frame of a known type follows (unknown types
    /// must be skipped, so they pass).
    fn valid(&self) -> bool {
        let (s, n) = (self.stream, self.len);
        match self.kind {
            DATA | HEADERS | CONTINUATION => s != 0,
            PRIORITY => s != 0 && n == 5,
            RST_STREAM => s != 0 && n == 4,
            SETTINGS => s == 0 && n % 6 == 0 && (self.flags & FLAG_ACK == 0 || n == 0),
            PUSH_PROMISE => s != 0 && n >= 4,
            PING => s == 0 && n == 8,
            GOAWAY => s == 0 && n >= 8,
            WINDOW_UPDATE => n == 4,
            _ => true,
        }
    }

    /// Stricter than [`valid`](Self::valid): also what real senders do (no
    /// extension types or unknown flags, reserved bit clear, clients only
    /// open odd streams, length within the peer's limit).
    fn plausible(&self, dir: Direction, max_frame: usize) -> bool {
        if self.reserved || self.len > max_frame || self.kind > CONTINUATION || !self.valid() {
            return false;
        }
        let allowed = match self.kind {
            DATA => FLAG_END_STREAM | FLAG_PADDED,
            HEADERS => FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            SETTINGS | PING => FLAG_ACK,
            PUSH_PROMISE => FLAG_END_HEADERS | FLAG_PADDED,
            CONTINUATION => FLAG_END_HEADERS,
            _ => 0,
        };
        if self.flags & !allowed != 0 {
            return false;
        }
        if self.kind == HEADERS && self.len < self.prefix_len() {
            return false;
        }
        let client = dir == Direction::Request;
        let on_stream = matches!(self.kind, DATA | HEADERS | CONTINUATION);
        !(client && (self.kind == PUSH_PROMISE || (on_stream && self.stream & 1 == 0)))
    }

    /// Bytes of HEADERS payload before the block fragment (pad length, priority).
    fn prefix_len(&self) -> usize {
        let pad = usize::from(self.flags & FLAG_PADDED != 0);
        let prio = if self.flags & FLAG_PRIORITY != 0 { 5 } else { 0 };
        pad + prio
    }

    fn end_stream(&self) -> bool {
        self.flags & FLAG_END_STREAM != 0
    }
}

/// A frame whose bytes are still arriving. `header: None` is the client preface.
#[derive(Debug)]
struct InFrame {
    header: Option<FrameHeader>,
    /// Payload bytes still to come.
    left: usize,
    /// Whether we buffer the payload (header blocks, RST_STREAM, SETTINGS).
    keep: bool,
    buf: Vec<u8>,
    /// Part of the payload was not visible (or over the buffer cap).
    cut: bool,
    /// Bytes of this frame in the current chunk.
    in_chunk: usize,
}

impl InFrame {
    fn new(h: FrameHeader) -> InFrame {
        let keep = matches!(h.kind, HEADERS | CONTINUATION | PUSH_PROMISE | RST_STREAM | SETTINGS);
        InFrame { header: Some(h), left: h.len, keep, buf: Vec::new(), cut: false, in_chunk: 0 }
    }

    fn preface() -> InFrame {
        InFrame { header: None, left: PREFACE.len(), keep: false, buf: Vec::new(), cut: false, in_chunk: 0 }
    }

    /// Takes the `take` bytes at `pos` of a chunk whose visible part is `head`.
    fn consume(&mut self, head: &[u8], pos: usize, take: usize) {
        if self.keep {
            let end = (pos + take).min(head.len());
            if let Some(bytes) = head.get(pos..end) {
                let room = MAX_BLOCK.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                self.cut |= bytes.len() > room;
            }
            self.cut |= pos + take > head.len();
        }
        self.left -= take;
        self.in_chunk += take;
    }
}

/// A header block being assembled from HEADERS/PUSH_PROMISE + CONTINUATION.
#[derive(Debug)]
struct Block {
    stream: u32,
    push: bool,
    end_stream: bool,
    buf: Vec<u8>,
    cut: bool,
}

/// One direction's framing and header decompression state.
#[derive(Debug, Default)]
struct Side {
    /// We know where frames start.
    synced: bool,
    /// Any chunk was seen in this direction.
    seen: bool,
    /// A frame header split across chunks.
    hdr: [u8; FRAME_HEADER],
    hdr_len: usize,
    frame: Option<InFrame>,
    block: Option<Block>,
    hpack: hpack::Decoder,
    /// SETTINGS_MAX_FRAME_SIZE announced by the receiver of this direction.
    max_frame: Option<usize>,
    /// Stream of the last frame completed in the current chunk, if it was DATA without END_STREAM.
    last_data: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Msg {
    #[default]
    Absent,
    Open,
    Done,
}

#[derive(Debug, Default)]
struct Stream {
    grpc: bool,
    req: Msg,
    resp: Msg,
    /// Response HEADERS seen, Start held back until the final status (gRPC,
    /// or a status we could not decode).
    deferred: bool,
    http_status: Option<u16>,
    /// Bytes of response frames so far (reported with a deferred Start).
    resp_bytes: usize,
}

/// What we read from one header block.
#[derive(Debug, Default)]
struct Fields {
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    status: Option<u16>,
    grpc_content: bool,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    trace: Option<crate::TraceContext>,
    /// Every field was decoded (none unknown, nothing cut).
    complete: bool,
}

impl Fields {
    fn add(&mut self, dir: Direction, name: &[u8], value: &[u8]) {
        let text = || String::from_utf8_lossy(value).into_owned();
        match name {
            b":method" => self.method = Some(crate::truncate_display(&text(), 32)),
            b":path" => self.path = Some(text()),
            b":authority" => self.authority = Some(text()),
            b":status" => self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()),
            // gRPC-Web carries its status in the body, not in trailers.
            b"content-type" => {
                self.grpc_content =
                    value.starts_with(b"application/grpc") && !value.starts_with(b"application/grpc-web")
            }
            b"grpc-status" => self.grpc_status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()),
            b"grpc-message" => self.grpc_message = Some(percent_decode(value)),
            _ if dir == Direction::Request && self.trace.is_none() && !name.starts_with(b":") => {
                if let (Ok(n), Ok(v)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                    self.trace = crate::trace::from_header(n, v);
                }
            }
            _ => {}
        }
    }
}

/// A Start reported in the current chunk, still open to extent/bytes updates.
#[derive(Debug)]
struct Pending {
    dir: Direction,
    stream: u32,
    index: usize,
}

/// HTTP/2 parser for one connection.
#[derive(Debug, Default)]
pub struct Http2Parser {
    sides: [Side; 2],
    streams: BTreeMap<u32, Stream>,
    pending: Vec<Pending>,
    /// The client preface was seen: both directions were followed from their first byte.
    preface_seen: bool,
    gave_up: u64,
    desyncs: u64,
    overflows: u64,
}

fn side_of(dir: Direction) -> usize {
    match dir {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

impl Parser for Http2Parser {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }

    fn feed(&mut self, chunk: Chunk<'_>, out: &mut Vec<ParseEvent>) {
        let head = chunk.head;
        let len = chunk.len.max(head.len());
        if len == 0 {
            return;
        }
        self.pending.clear();
        let d = side_of(chunk.dir);
        if !self.sides[d].synced && !self.sync(chunk.dir, head, len) {
            self.sides[d].seen = true;
            self.gave_up += 1;
            return;
        }
        self.sides[d].seen = true;
        self.walk(chunk.dir, head, len, out);
    }

    fn gave_up(&self) -> u64 {
        self.gave_up
    }
}

impl Http2Parser {
    /// Times a header block was incomplete (or referenced table entries we
    /// lacked), so that direction's HPACK table may be missing entries.
    pub fn hpack_desyncs(&self) -> u64 {
        self.desyncs
    }

    /// Streams forgotten because too many were open at once.
    pub fn stream_overflows(&self) -> u64 {
        self.overflows
    }

    /// Finds frame boundaries at the start of a chunk in an unsynced direction.
    fn sync(&mut self, dir: Direction, head: &[u8], len: usize) -> bool {
        let preface_seen = self.preface_seen;
        let side = &mut self.sides[side_of(dir)];
        let first = !side.seen;
        side.hdr_len = 0;
        side.frame = None;
        side.block = None;
        // The first read may hold only part of the preface (a server's recv()).
        let partial = first && !head.is_empty() && PREFACE.starts_with(head) && head.len() == len;
        if dir == Direction::Request && (is_preface(head) || partial) {
            // Connection start: the client's table is known (empty).
            side.synced = true;
            side.frame = Some(InFrame::preface());
            side.hpack = hpack::Decoder::fresh();
            self.preface_seen = true;
            return true;
        }
        if first && dir == Direction::Response && preface_seen {
            // The server's first byte after the client's preface starts its SETTINGS.
            side.synced = true;
            side.hpack = hpack::Decoder::fresh();
            return true;
        }
        if !plausible_frames(head, len, dir, side.max_frame.unwrap_or(DEFAULT_MAX_FRAME)) {
            return false;
        }
        side.synced = true;
        // The server's first frame is its SETTINGS: its table is known (empty).
        let h = FrameHeader::parse(head);
        if first && dir == Direction::Response && h.kind == SETTINGS && h.flags & FLAG_ACK == 0 {
            side.hpack = hpack::Decoder::fresh();
        }
        true
    }

    /// Follows frames through one chunk of a synced direction.
    fn walk(&mut self, dir: Direction, head: &[u8], len: usize, out: &mut Vec<ParseEvent>) {
        let d = side_of(dir);
        if let Some(f) = self.sides[d].frame.as_mut() {
            f.in_chunk = 0;
        }
        self.sides[d].last_data = None;
        let mut pos = 0usize;
        while pos < len {
            let side = &mut self.sides[d];
            if let Some(f) = side.frame.as_mut() {
                let take = f.left.min(len - pos);
                f.consume(head, pos, take);
                pos += take;
                if f.left == 0 {
                    if let Some(f) = side.frame.take() {
                        self.on_frame(dir, f, out);
                    }
                }
                continue;
            }
            if pos >= head.len() {
                // The next frame starts in bytes we cannot see.
                self.hidden_trailers(dir, len - pos, out);
                return self.lose_sync(dir, out);
            }
            let take = (FRAME_HEADER - side.hdr_len).min(head.len() - pos);
            side.hdr[side.hdr_len..side.hdr_len + take].copy_from_slice(&head[pos..pos + take]);
            side.hdr_len += take;
            pos += take;
            if side.hdr_len < FRAME_HEADER {
                if pos < len {
                    return self.lose_sync(dir, out);
                }
                return; // the header continues in the next chunk
            }
            side.hdr_len = 0;
            let h = FrameHeader::parse(&side.hdr);
            if !h.valid() || h.len > side.max_frame.unwrap_or(MAX_FRAME_LEN) {
                return self.lose_sync(dir, out);
            }
            let mut f = InFrame::new(h);
            f.in_chunk = take;
            if h.len == 0 {
                self.on_frame(dir, f, out);
            } else {
                side.frame = Some(f);
            }
        }
    }

    /// A gRPC server writes a unary response as HEADERS, DATA and trailers at once.
    /// When the trailers fall beyond the snaplen, a short unseen tail right after
    /// the message is taken to be them: the response is reported with an unknown
    /// status rather than not at all.
    fn hidden_trailers(&mut self, dir: Direction, tail: usize, out: &mut Vec<ParseEvent>) {
        let Some(sid) = self.sides[side_of(dir)].last_data else { return };
        let deferred = self.streams.get(&sid).is_some_and(|st| st.deferred && st.grpc);
        if dir == Direction::Response && deferred && tail <= MAX_HIDDEN_TRAILERS {
            if let Some(st) = self.streams.get_mut(&sid) {
                st.resp_bytes = st.resp_bytes.saturating_add(tail);
            }
            self.final_response(sid, Some(&Fields::default()), out);
        }
    }

    /// Frame boundaries are lost in this direction until a chunk starts with frames again.
    fn lose_sync(&mut self, dir: Direction, out: &mut Vec<ParseEvent>) {
        self.gave_up += 1;
        let side = &mut self.sides[side_of(dir)];
        side.synced = false;
        side.hdr_len = 0;
        side.frame = None;
        if let Some(mut block) = side.block.take() {
            block.cut = true;
            self.finish_block(dir, block, out);
        }
        // Header blocks in the frames we skip would have changed the table.
        self.sides[side_of(dir)].hpack.desync();
    }

    fn on_frame(&mut self, dir: Direction, f: InFrame, out: &mut Vec<ParseEvent>) {
        let Some(h) = f.header else { return };
        if h.stream != 0 && dir == Direction::Response {
            if let Some(st) = self.streams.get_mut(&h.stream) {
                st.resp_bytes = st.resp_bytes.saturating_add(FRAME_HEADER + h.len);
            }
        }
        if h.kind != CONTINUATION {
            if let Some(mut block) = self.sides[side_of(dir)].block.take() {
                // A header block must be continued by CONTINUATION frames only.
                block.cut = true;
                self.finish_block(dir, block, out);
            }
        }
        let (buf, cut) = (f.buf, f.cut);
        let data = h.kind == DATA && !h.end_stream();
        self.sides[side_of(dir)].last_data = data.then_some(h.stream);
        match h.kind {
            DATA if h.end_stream() => self.end_stream(dir, h.stream, out),
            HEADERS => self.on_headers(dir, h, buf, cut, out),
            PUSH_PROMISE => self.on_push_promise(dir, h, buf, cut, out),
            CONTINUATION => self.on_continuation(dir, h, buf, cut, out),
            RST_STREAM => {
                let code = buf.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                self.on_rst(h.stream, code, out);
            }
            SETTINGS if h.flags & FLAG_ACK == 0 => self.on_settings(dir, &buf),
            _ => {}
        }
        if h.stream != 0 {
            self.add_bytes(dir, h.stream, f.in_chunk, out);
        }
    }

    fn on_settings(&mut self, dir: Direction, payload: &[u8]) {
        for s in payload.chunks_exact(6) {
            if u16::from_be_bytes([s[0], s[1]]) == SETTINGS_MAX_FRAME_SIZE {
                let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]) as usize;
                // The sender of SETTINGS receives the other direction's frames.
                let other = 1 - side_of(dir);
                self.sides[other].max_frame = Some(v.clamp(DEFAULT_MAX_FRAME, MAX_FRAME_LEN));
            }
        }
    }

    fn on_headers(
        &mut self,
        dir: Direction,
        h: FrameHeader,
        buf: Vec<u8>,
        cut: bool,
        out: &mut Vec<ParseEvent>,
    ) {
        let pad = if h.flags & FLAG_PADDED != 0 { buf.first().map(|&p| usize::from(p)) } else { Some(0) };
        let (frag, frag_cut) = fragment(buf, cut, h.len, h.prefix_len(), pad);
        let block =
            Block { stream: h.stream, push: false, end_stream: h.end_stream(), buf: frag, cut: frag_cut };
        self.begin_block(dir, h, block, out);
    }

    fn on_push_promise(
        &mut self,
        dir: Direction,
        h: FrameHeader,
        buf: Vec<u8>,
        cut: bool,
        out: &mut Vec<ParseEvent>,
    ) {
        let padded = h.flags & FLAG_PADDED != 0;
        let pad = if padded { buf.first().map(|&p| usize::from(p)) } else { Some(0) };
        let (frag, frag_cut) = fragment(buf, cut, h.len, usize::from(padded) + 4, pad);
        let block = Block { stream: h.stream, push: true, end_stream: false, buf: frag, cut: frag_cut };
        self.begin_block(dir, h, block, out);
    }

    fn begin_block(&mut self, dir: Direction, h: FrameHeader, block: Block, out: &mut Vec<ParseEvent>) {
        if h.flags & FLAG_END_HEADERS != 0 {
            self.finish_block(dir, block, out);
        } else {
            self.sides[side_of(dir)].block = Some(block);
        }
    }

    fn on_continuation(
        &mut self,
        dir: Direction,
        h: FrameHeader,
        buf: Vec<u8>,
        cut: bool,
        out: &mut Vec<ParseEvent>,
    ) {
        let side = &mut self.sides[side_of(dir)];
        let Some(mut block) = side.block.take() else {
            // We missed the block's start: the table may have missed its entries.
            if side.hpack.desync() {
                self.desyncs += 1;
                self.gave_up += 1;
            }
            return;
        };
        if block.stream != h.stream {
            block.cut = true;
            return self.finish_block(dir, block, out);
        }
        if !block.cut {
            let room = MAX_BLOCK.saturating_sub(block.buf.len());
            block.buf.extend_from_slice(&buf[..buf.len().min(room)]);
            block.cut = cut || buf.len() > room;
        }
        if h.flags & FLAG_END_HEADERS != 0 {
            self.finish_block(dir, block, out);
        } else {
            self.sides[side_of(dir)].block = Some(block);
        }
    }

    /// Decodes a complete (or given-up) header block and reports what it means.
    fn finish_block(&mut self, dir: Direction, block: Block, out: &mut Vec<ParseEvent>) {
        let mut fields = Fields::default();
        let side = &mut self.sides[side_of(dir)];
        let result = side.hpack.decode(&block.buf, &mut |n, v| fields.add(dir, n, v));
        fields.complete = !block.cut && matches!(result, Ok(ref r) if r.all_known);
        // A cut block may have changed the table in bytes we never saw.
        let cut = block.cut || result.is_err();
        if cut {
            side.hpack.desync();
        }
        if cut || result.is_ok_and(|r| r.desynced) {
            self.desyncs += 1;
            self.gave_up += 1;
        }
        // Pushed streams (even ids) have no request on the wire to pair with.
        if block.push || block.stream & 1 == 0 {
            return;
        }
        match dir {
            Direction::Request => self.on_request_headers(block.stream, fields, block.end_stream, out),
            Direction::Response => self.on_response_headers(block.stream, fields, block.end_stream, out),
        }
    }

    fn on_request_headers(&mut self, sid: u32, f: Fields, end_stream: bool, out: &mut Vec<ParseEvent>) {
        if self.streams.get(&sid).is_some_and(|st| st.req != Msg::Absent) {
            // Trailers.
            if end_stream {
                self.end_message(Direction::Request, sid, out);
            }
            return;
        }
        if f.method.is_none() && f.complete {
            return; // trailers of a stream whose start we did not see
        }
        let st = self.stream_mut(sid);
        st.grpc |= f.grpc_content;
        st.req = Msg::Open;
        let grpc = st.grpc;
        let info = request_info(&f, grpc);
        self.start(Direction::Request, sid, Info::Request(info), out);
        if end_stream {
            self.end_message(Direction::Request, sid, out);
        }
    }

    fn on_response_headers(&mut self, sid: u32, f: Fields, end_stream: bool, out: &mut Vec<ParseEvent>) {
        let known = self.streams.get(&sid).map(|st| (st.resp, st.deferred));
        if known.is_some_and(|(resp, _)| resp != Msg::Absent) {
            if end_stream {
                self.end_message(Direction::Response, sid, out);
            }
            return;
        }
        if known.is_some_and(|(_, deferred)| deferred) {
            // Trailers of a response whose Start we held back.
            if end_stream {
                self.final_response(sid, Some(&f), out);
            }
            return;
        }
        if f.status.is_some_and(|s| (100..200).contains(&s) && s != 101) {
            return; // informational (100-continue, 103 early hints)
        }
        if known.is_none() && f.complete && f.status.is_none() && f.grpc_status.is_none() {
            return; // trailers of a stream we know nothing of
        }
        let st = self.stream_mut(sid);
        st.grpc |= f.grpc_content || f.grpc_status.is_some();
        st.http_status = f.status;
        match f.status {
            Some(code) if !st.grpc => {
                st.resp = Msg::Open;
                let info =
                    ResponseInfo { status: code.to_string(), is_error: code >= 400, ..Default::default() };
                self.start(Direction::Response, sid, Info::Response(info), out);
                if end_stream {
                    self.end_message(Direction::Response, sid, out);
                }
            }
            _ if end_stream => self.final_response(sid, Some(&f), out),
            _ => st.deferred = true,
        }
    }

    /// END_STREAM on a DATA frame.
    fn end_stream(&mut self, dir: Direction, sid: u32, out: &mut Vec<ParseEvent>) {
        let Some(st) = self.streams.get(&sid) else { return };
        match dir {
            Direction::Request if st.req == Msg::Open => self.end_message(dir, sid, out),
            Direction::Response if st.resp == Msg::Open => self.end_message(dir, sid, out),
            Direction::Response if st.deferred => self.final_response(sid, None, out),
            _ => {}
        }
    }

    fn on_rst(&mut self, sid: u32, code: Option<u32>, out: &mut Vec<ParseEvent>) {
        let Some(st) = self.streams.get(&sid) else { return };
        let (req, resp, grpc) = (st.req, st.resp, st.grpc);
        if req == Msg::Open {
            self.end_message(Direction::Request, sid, out);
        }
        match resp {
            Msg::Open => self.end_message(Direction::Response, sid, out),
            Msg::Absent => {
                let info = ResponseInfo {
                    status: format!("RST_STREAM {}", code.map_or("?".to_string(), h2_error_name)),
                    is_error: true,
                    protocol: grpc.then_some(Protocol::Grpc),
                    ..Default::default()
                };
                let info = Info::Response(info);
                out.push(start_event(Direction::Response, sid, info, Extent::Complete, None));
            }
            Msg::Done => {}
        }
        self.streams.remove(&sid);
    }

    /// Reports a held-back response, now that its final status is known.
    fn final_response(&mut self, sid: u32, trailers: Option<&Fields>, out: &mut Vec<ParseEvent>) {
        let Some(st) = self.streams.get_mut(&sid) else { return };
        let grpc_status = trailers.and_then(|t| t.grpc_status);
        // Trailers we could not fully decode may hold a grpc-status we cannot see.
        let unreadable = trailers.is_some_and(|t| !t.complete);
        let info = if st.grpc || grpc_status.is_some() {
            let code = match grpc_status {
                Some(code) => Some(code),
                None if unreadable => None,
                // No grpc-status at all: gRPC derives the code from the HTTP status.
                None => Some(grpc_from_http(st.http_status)),
            };
            ResponseInfo {
                status: code.map(grpc_status_name).unwrap_or_default(),
                is_error: code.is_some_and(|c| c != 0),
                message: trailers.and_then(|t| t.grpc_message.clone()).unwrap_or_default(),
                protocol: Some(Protocol::Grpc),
            }
        } else {
            let status = st.http_status.or_else(|| trailers.and_then(|t| t.status));
            ResponseInfo {
                status: status.map(|s| s.to_string()).unwrap_or_default(),
                is_error: status.is_some_and(|s| s >= 400),
                ..Default::default()
            }
        };
        st.deferred = false;
        st.resp = Msg::Done;
        let bytes = Some(st.resp_bytes);
        out.push(start_event(Direction::Response, sid, Info::Response(info), Extent::Complete, bytes));
        self.forget_if_done(sid);
    }

    /// Reports a message start in this chunk; it continues until END_STREAM.
    fn start(&mut self, dir: Direction, sid: u32, info: Info, out: &mut Vec<ParseEvent>) {
        self.pending.push(Pending { dir, stream: sid, index: out.len() });
        out.push(start_event(dir, sid, info, Extent::Continues, Some(0)));
    }

    /// A message ended: complete its Start if reported in this chunk, else report the End.
    fn end_message(&mut self, dir: Direction, sid: u32, out: &mut Vec<ParseEvent>) {
        let Some(st) = self.streams.get_mut(&sid) else { return };
        let msg = match dir {
            Direction::Request => &mut st.req,
            Direction::Response => &mut st.resp,
        };
        if *msg != Msg::Open {
            return; // already ended (e.g. END_STREAM repeated on trailers)
        }
        *msg = Msg::Done;
        let pending = self.pending.iter().find(|p| p.dir == dir && p.stream == sid);
        match pending.and_then(|p| out.get_mut(p.index)) {
            Some(ParseEvent::Start { extent, .. }) => *extent = Extent::Complete,
            _ => out.push(ParseEvent::End { dir, id: Some(u64::from(sid)) }),
        }
        self.forget_if_done(sid);
    }

    /// Counts a frame's bytes in this chunk towards a Start reported in it.
    fn add_bytes(&mut self, dir: Direction, sid: u32, n: usize, out: &mut [ParseEvent]) {
        let pending = self.pending.iter().find(|p| p.dir == dir && p.stream == sid);
        if let Some(ParseEvent::Start { bytes: Some(b), .. }) = pending.and_then(|p| out.get_mut(p.index)) {
            *b += n;
        }
    }

    fn forget_if_done(&mut self, sid: u32) {
        if self.streams.get(&sid).is_some_and(|st| st.resp == Msg::Done && st.req != Msg::Open) {
            self.streams.remove(&sid);
        }
    }

    /// The stream's state, created if new; the oldest stream is forgotten when too many are open.
    fn stream_mut(&mut self, sid: u32) -> &mut Stream {
        if !self.streams.contains_key(&sid) && self.streams.len() >= MAX_STREAMS {
            self.streams.pop_first();
            self.overflows += 1;
            self.gave_up += 1;
        }
        self.streams.entry(sid).or_default()
    }
}

/// The header block fragment of a HEADERS/PUSH_PROMISE payload: after `prefix`
/// bytes, before the padding. Returns the fragment and whether it is incomplete.
fn fragment(mut buf: Vec<u8>, cut: bool, len: usize, prefix: usize, pad: Option<usize>) -> (Vec<u8>, bool) {
    let Some(pad) = pad else { return (Vec::new(), true) };
    let Some(end) = len.checked_sub(pad).filter(|&e| e >= prefix) else {
        return (Vec::new(), true); // malformed padding
    };
    let missing = cut && buf.len() < end;
    buf.truncate(end);
    buf.drain(..prefix.min(buf.len()));
    (buf, missing)
}

fn start_event(dir: Direction, sid: u32, info: Info, extent: Extent, bytes: Option<usize>) -> ParseEvent {
    ParseEvent::Start { dir, id: Some(u64::from(sid)), info, extent, bytes }
}

fn request_info(f: &Fields, grpc: bool) -> RequestInfo {
    let method = f.method.clone().unwrap_or_default();
    let (endpoint, detail) = match (&f.path, &f.authority) {
        (Some(p), _) if grpc => (grpc_endpoint(p), p.as_str()),
        (Some(p), _) => (crate::normalize::path(p), p.as_str()),
        // CONNECT names an authority instead of a path.
        (None, Some(a)) if method == "CONNECT" => (a.clone(), a.as_str()),
        _ => (String::new(), ""),
    };
    RequestInfo {
        method,
        endpoint,
        detail: crate::truncate_display(detail, crate::MAX_DETAIL),
        trace: f.trace.clone(),
    }
}

/// `/pkg.Service/Method` as is (bounded by the service definitions); anything
/// else is normalised like a URL path.
fn grpc_endpoint(path: &str) -> String {
    let p = path.split('?').next().unwrap_or("");
    let mut parts = p.strip_prefix('/').unwrap_or("").split('/');
    let ok = matches!((parts.next(), parts.next(), parts.next()),
        (Some(s), Some(m), None) if !s.is_empty() && !m.is_empty());
    if ok && p.len() <= crate::MAX_DETAIL {
        p.to_string()
    } else {
        crate::normalize::path(path)
    }
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len().min(crate::MAX_DETAIL));
    let mut i = 0;
    while i < v.len() && out.len() < crate::MAX_DETAIL * 2 {
        let hex = v.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (v[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    crate::truncate_display(&String::from_utf8_lossy(&out), crate::MAX_DETAIL)
}

fn grpc_status_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).map_or_else(|| code.to_string(), |n| n.to_string())
}

/// The gRPC code a response without grpc-status stands for (gRPC's HTTP mapping).
fn grpc_from_http(status: Option<u16>) -> u32 {
    match status {
        Some(400) => 13,
        Some(401) => 16,
        Some(403) => 7,
        Some(404) => 12,
        Some(429) | Some(502) | Some(503) | Some(504) => 14,
        _ => 2,
    }
}

fn h2_error_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).map_or_else(|| format!("0x{code:x}"), |n| n.to_string())
}

/// HPACK (RFC 7541) decoding, tolerant of a dynamic table that lost entries.
///
/// Why lookups stay correct after a loss: once we clear the table, every entry
/// we hold was inserted after the loss, so it is one of the encoder's newest
/// entries at the same index. An index beyond what we hold is then reported as
/// unknown instead of being an error. Evicting less than the encoder (our
/// size limit is at least its) never changes indices that the encoder uses.
pub(crate) mod hpack {
    use std::borrow::Cow;
    use std::collections::VecDeque;

    /// Our dynamic table's size limit (RFC 7541 size units), whatever the encoder says.
    pub const MAX_TABLE: usize = 64 * 1024;
    const ENTRY_OVERHEAD: usize = 32;

    /// A table entry's name and value; `None` where we could not decode it.
    pub type Slots<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum Error {
        #[error("header block ends inside a field")]
        Truncated,
        #[error("integer too large")]
        Overflow,
    }

    /// What decoding one block found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Decoded {
        /// Every field was decoded.
        pub all_known: bool,
        /// The block referenced an entry we should have had: the table was wrong.
        pub desynced: bool,
    }

    /// A table entry; `None` parts are ones we could not decode.
    #[derive(Debug)]
    struct Entry {
        name: Option<Box<[u8]>>,
        value: Option<Box<[u8]>>,
        size: usize,
    }

    #[derive(Debug)]
    pub struct Decoder {
        /// Newest first.
        table: VecDeque<Entry>,
        size: usize,
        max: usize,
        /// The table may lack old entries: indices beyond it are unknown, not errors.
        lenient: bool,
    }

    impl Default for Decoder {
        /// A decoder for a connection picked up mid-stream: the table is unknown.
        fn default() -> Decoder {
            Decoder { table: VecDeque::new(), size: 0, max: MAX_TABLE, lenient: true }
        }
    }

    impl Decoder {
        /// A decoder at connection start: the table is known to be empty.
        pub fn fresh() -> Decoder {
            Decoder { lenient: false, ..Decoder::default() }
        }

        #[cfg(test)]
        pub fn with_max(max: usize) -> Decoder {
            Decoder { max, ..Decoder::fresh() }
        }

        /// The table may have missed entries. Returns whether it was trusted until now.
        pub fn desync(&mut self) -> bool {
            self.table.clear();
            self.size = 0;
            !std::mem::replace(&mut self.lenient, true)
        }

        #[cfg(test)]
        pub fn entries(&self) -> Vec<Slots<'_>> {
            self.table.iter().map(|e| (e.name.as_deref(), e.value.as_deref())).collect()
        }

        /// Decodes one header block, calling `field` with each field we can
        /// name and value. Stops at a field cut by the block's end.
        pub fn decode(
            &mut self,
            block: &[u8],
            field: &mut dyn FnMut(&[u8], &[u8]),
        ) -> Result<Decoded, Error> {
            let mut r = Reader { buf: block, pos: 0 };
            let mut res = Decoded { all_known: true, desynced: false };
            while let Some(b) = r.peek() {
                if b & 0x80 != 0 {
                    let index = r.int(7)?;
                    match self.lookup(index) {
                        Some((Some(n), Some(v))) => field(n, v),
                        Some(_) => res.all_known = false,
                        None => {
                            res.all_known = false;
                            self.missing::<()>(&mut res);
                        }
                    }
                } else if b & 0xe0 == 0x20 {
                    let max = r.int(5)?;
                    self.resize(max);
                } else {
                    // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
                    let indexing = b & 0xc0 == 0x40;
                    let index = r.int(if indexing { 6 } else { 4 })?;
                    let name = if index == 0 { r.string()? } else { self.name(index, &mut res) };
                    let value = r.string()?;
                    match (&name, &value) {
                        (Some(n), Some(v)) => field(n, v),
                        _ => res.all_known = false,
                    }
                    if indexing {
                        self.insert(name, value);
                    }
                }
            }
            Ok(res)
        }

        /// Name and value at `index` (1-based, static table first); `None` if not in the tables.
        fn lookup(&self, index: usize) -> Option<Slots<'_>> {
            if let Some(&(n, v)) = index.checked_sub(1).and_then(|i| STATIC.get(i)) {
                return Some((Some(n), Some(v)));
            }
            let e = index.checked_sub(STATIC.len() + 1).and_then(|i| self.table.get(i))?;
            Some((e.name.as_deref(), e.value.as_deref()))
        }

        /// The name at `index`, for a literal field (static names are not copied).
        fn name(&mut self, index: usize, res: &mut Decoded) -> Option<Cow<'static, [u8]>> {
            if let Some(&(n, _)) = index.checked_sub(1).and_then(|i| STATIC.get(i)) {
                return Some(Cow::Borrowed(n));
            }
            match self.lookup(index) {
                Some((name, _)) => name.map(|n| Cow::Owned(n.to_vec())),
                None => self.missing(res),
            }
        }

        /// An index not in the tables: garbage, or (if we trusted it) our table is wrong.
        fn missing<T>(&mut self, res: &mut Decoded) -> Option<T> {
            if !self.lenient {
                res.desynced |= self.desync();
            }
            None
        }

        fn insert(&mut self, name: Option<Cow<'_, [u8]>>, value: Option<Cow<'_, [u8]>>) {
            let len = |p: &Option<Cow<'_, [u8]>>| p.as_ref().map_or(0, |b| b.len());
            let size = len(&name) + len(&value) + ENTRY_OVERHEAD;
            if size > self.max {
                // Larger than the table: it empties it (RFC 7541 §4.4).
                self.table.clear();
                self.size = 0;
                return;
            }
            self.size += size;
            let boxed = |p: Option<Cow<'_, [u8]>>| p.map(|b| b.into_owned().into_boxed_slice());
            self.table.push_front(Entry { name: boxed(name), value: boxed(value), size });
            self.evict();
        }

        fn resize(&mut self, max: usize) {
            self.max = max.min(MAX_TABLE);
            if max == 0 {
                // The encoder emptied its table: ours is exact again.
                self.table.clear();
                self.size = 0;
                self.lenient = false;
            }
            self.evict();
        }

        fn evict(&mut self) {
            while self.size > self.max {
                match self.table.pop_back() {
                    Some(e) => self.size -= e.size,
                    None => self.size = 0,
                }
            }
        }
    }

    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn peek(&self) -> Option<u8> {
            self.buf.get(self.pos).copied()
        }

        fn byte(&mut self) -> Result<u8, Error> {
            let b = self.peek().ok_or(Error::Truncated)?;
            self.pos += 1;
            Ok(b)
        }

        /// An integer with an N-bit prefix (RFC 7541 §5.1).
        fn int(&mut self, prefix: u32) -> Result<usize, Error> {
            let mask = (1u8 << prefix) - 1;
            let first = self.byte()? & mask;
            if first < mask {
                return Ok(usize::from(first));
            }
            let mut value = u64::from(mask);
            let mut shift = 0;
            loop {
                let b = self.byte()?;
                value += u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 28 {
                    return Err(Error::Overflow);
                }
            }
            usize::try_from(value).map_err(|_| Error::Overflow)
        }

        /// A string literal (RFC 7541 §5.2); `None` if its Huffman code is invalid.
        fn string(&mut self) -> Result<Option<Cow<'a, [u8]>>, Error> {
            let huffman = self.peek().ok_or(Error::Truncated)? & 0x80 != 0;
            let len = self.int(7)?;
            let end = self.pos.checked_add(len).ok_or(Error::Overflow)?;
            let raw = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
            self.pos = end;
            Ok(if huffman { huffman_decode(raw).map(Cow::Owned) } else { Some(Cow::Borrowed(raw)) })
        }
    }

    /// The HPACK Huffman code is canonical (codes of equal length are
    /// consecutive, in symbol order), so code lengths define it.
    struct Canonical {
        /// Per code length: first code, number of codes, index of the first symbol in `symbols`.
        first: [u32; 31],
        count: [u32; 31],
        offset: [u16; 31],
        symbols: [u16; 257],
    }

    const fn canonical() -> Canonical {
        let mut c = Canonical { first: [0; 31], count: [0; 31], offset: [0; 31], symbols: [0; 257] };
        let mut n = 0;
        let mut code = 0u32;
        let mut bits = 1;
        while bits <= 30 {
            c.first[bits] = code;
            c.offset[bits] = n as u16;
            let mut sym = 0;
            while sym < 257 {
                if HUFFMAN_BITS[sym] as usize == bits {
                    c.symbols[n] = sym as u16;
                    n += 1;
                    c.count[bits] += 1;
                }
                sym += 1;
            }
            code = (code + c.count[bits]) << 1;
            bits += 1;
        }
        c
    }

    static CANONICAL: Canonical = canonical();
    const EOS: u16 = 256;

    /// Decodes a Huffman-coded string; `None` if invalid (EOS inside, bad padding).
    pub fn huffman_decode(raw: &[u8]) -> Option<Vec<u8>> {
        let c = &CANONICAL;
        let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
        let (mut code, mut bits) = (0u32, 0usize);
        for &byte in raw {
            for shift in (0..8).rev() {
                code = (code << 1) | u32::from((byte >> shift) & 1);
                bits += 1;
                let i = code.wrapping_sub(c.first[bits]);
                if i < c.count[bits] {
                    let sym = c.symbols[usize::from(c.offset[bits]) + i as usize];
                    if sym == EOS {
                        return None;
                    }
                    out.push(sym as u8);
                    (code, bits) = (0, 0);
                } else if bits == 30 {
                    return None;
                }
            }
        }
        // Padding: fewer than 8 bits, all ones (a prefix of EOS).
        (bits < 8 && code == (1 << bits) - 1).then_some(out)
    }

    /// RFC 7541 Appendix A.
    const STATIC: [(&[u8], &[u8]); 61] = [
        (b":authority", b""),
        (b":method", b"GET"),
        (b":method", b"POST"),
        (b":path", b"/"),
        (b":path", b"/index.html"),
        (b":scheme", b"http"),
        (b":scheme", b"https"),
        (b":status", b"200"),
        (b":status", b"204"),
        (b":status", b"206"),
        (b":status", b"304"),
        (b":status", b"400"),
        (b":status", b"404"),
        (b":status", b"500"),
        (b"accept-charset", b""),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b""),
        (b"accept-ranges", b""),
        (b"accept", b""),
        (b"access-control-allow-origin", b""),
        (b"age", b""),
        (b"allow", b""),
        (b"authorization", b""),
        (b"cache-control", b""),
        (b"content-disposition", b""),
        (b"content-encoding", b""),
        (b"content-language", b""),
        (b"content-length", b""),
        (b"content-location", b""),
        (b"content-range", b""),
        (b"content-type", b""),
        (b"cookie", b""),
        (b"date", b""),
        (b"etag", b""),
        (b"expect", b""),
        (b"expires", b""),
        (b"from", b""),
        (b"host", b""),
        (b"if-match", b""),
        (b"if-modified-since", b""),
        (b"if-none-match", b""),
        (b"if-range", b""),
        (b"if-unmodified-since", b""),
        (b"last-modified", b""),
        (b"link", b""),
        (b"location", b""),
        (b"max-forwards", b""),
        (b"proxy-authenticate", b""),
        (b"proxy-authorization", b""),
        (b"range", b""),
        (b"referer", b""),
        (b"refresh", b""),
        (b"retry-after", b""),
        (b"server", b""),
        (b"set-cookie", b""),
        (b"strict-transport-security", b""),
        (b"transfer-encoding", b""),
        (b"user-agent", b""),
        (b"vary", b""),
        (b"via", b""),
        (b"www-authenticate", b""),
    ];

    /// RFC 7541 Appendix B: code length in bits of each symbol (256 = EOS).
    const HUFFMAN_BITS: [u8; 257] = [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28,
        28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6,
        6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6,
        7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23,
        22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26,
        20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26,
        26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26,
        27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GRPC_CALLS: &str = include_str!("../tests/fixtures/http2/grpc_calls.txt");
    const GRPC_RST: &str = include_str!("../tests/fixtures/http2/grpc_rst.txt");
    const NGINX: &str = include_str!("../tests/fixtures/http2/nginx_h2c.txt");
    const CURL_404: &str = include_str!("../tests/fixtures/http2/curl_nginx_404.txt");
    const GRPC_BIDI: &str = include_str!("../tests/fixtures/http2/grpc_bidi.txt");
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[derive(Clone, Debug)]
    struct Rec {
        dir: Direction,
        len: usize,
        head: Vec<u8>,
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
    }

    /// Fixture lines: `>`/`<`, bytes moved, hex head.
    fn load(text: &str) -> Vec<Rec> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.split(' ');
                let dir = if parts.next() == Some(">") { Direction::Request } else { Direction::Response };
                let len = parts.next().unwrap().parse().unwrap();
                Rec { dir, len, head: unhex(parts.next().unwrap_or("")) }
            })
            .collect()
    }

    fn run(recs: &[Rec]) -> (Http2Parser, Vec<ParseEvent>) {
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        for r in recs {
            p.feed(Chunk { dir: r.dir, head: &r.head, len: r.len }, &mut out);
        }
        (p, out)
    }

    /// Heads cut at `snap` bytes, as the kernel would.
    fn snapped(recs: &[Rec], snap: usize) -> Vec<Rec> {
        recs.iter().map(|r| Rec { head: r.head[..r.head.len().min(snap)].to_vec(), ..r.clone() }).collect()
    }

    fn requests(events: &[ParseEvent]) -> Vec<(u64, RequestInfo, Extent)> {
        events
            .iter()
            .filter_map(|e| match e {
                ParseEvent::Start { id: Some(id), info: Info::Request(r), extent, .. } => {
                    Some((*id, r.clone(), *extent))
                }
                _ => None,
            })
            .collect()
    }

    fn responses(events: &[ParseEvent]) -> Vec<(u64, ResponseInfo, Extent)> {
        events
            .iter()
            .filter_map(|e| match e {
                ParseEvent::Start { id: Some(id), info: Info::Response(r), extent, .. } => {
                    Some((*id, r.clone(), *extent))
                }
                _ => None,
            })
            .collect()
    }

    /// Every Start that continues is ended exactly once, after it.
    fn assert_balanced(events: &[ParseEvent]) {
        let mut open: Vec<(Direction, Option<u64>)> = Vec::new();
        for e in events {
            match e {
                ParseEvent::Start { dir, id, extent: Extent::Continues, .. } => {
                    assert!(!open.contains(&(*dir, *id)), "started twice: {e:?}");
                    open.push((*dir, *id));
                }
                ParseEvent::End { dir, id } => {
                    let i = open.iter().position(|o| *o == (*dir, *id)).expect("End without Start");
                    open.remove(i);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn grpc_unary_and_server_streaming() {
        let (p, events) = run(&load(GRPC_CALLS));
        let reqs = requests(&events);
        let paths: Vec<_> =
            reqs.iter().map(|(id, r, _)| (*id, r.method.as_str(), r.endpoint.as_str())).collect();
        assert_eq!(
            paths,
            [
                (1, "POST", "/demo.Greeter/Hello"),
                (3, "POST", "/demo.Greeter/Hello"),
                (5, "POST", "/demo.Greeter/Stream"),
                (7, "POST", "/demo.Greeter/Stream"),
            ]
        );
        for (_, r, extent) in &reqs {
            assert_eq!(r.detail, r.endpoint);
            assert_eq!(r.trace.as_ref().map(|t| t.trace_id.as_str()), Some(TRACE_ID));
            assert_eq!(r.trace.as_ref().map(|t| t.trace_type.as_str()), Some("w3c"));
            // HEADERS and the END_STREAM DATA frame came in one write.
            assert_eq!(*extent, Extent::Complete);
        }
        let resps = responses(&events);
        let st: Vec<_> =
            resps.iter().map(|(id, r, _)| (*id, r.status.as_str(), r.is_error, r.message.as_str())).collect();
        assert_eq!(
            st,
            [
                (1, "OK", false, ""),
                (3, "NOT_FOUND", true, "no such user"),
                (5, "OK", false, ""),
                (7, "UNAVAILABLE", true, "gone"),
            ]
        );
        for (_, r, extent) in &resps {
            assert_eq!(r.protocol, Some(Protocol::Grpc));
            assert_eq!(*extent, Extent::Complete);
        }
        // SETTINGS, PING, WINDOW_UPDATE say nothing; everything ended in its chunk.
        assert_eq!(events.len(), 8);
        assert_eq!((p.gave_up(), p.hpack_desyncs()), (0, 0));
        assert!(p.streams.is_empty());
    }

    #[test]
    fn grpc_response_bytes_cover_the_whole_stream() {
        let (_, events) = run(&load(GRPC_CALLS));
        // Stream 5: HEADERS (3+9) + 3 DATA (9+9 each) + trailers (HPACK 'bf 00 0c grpc-message 00' = 16, +9).
        let bytes = events.iter().find_map(|e| match e {
            ParseEvent::Start { dir: Direction::Response, id: Some(5), bytes, .. } => *bytes,
            _ => None,
        });
        assert_eq!(bytes, Some(12 + 3 * 18 + 25));
    }

    #[test]
    fn grpc_bidi_streaming_is_one_exchange() {
        let (p, events) = run(&load(GRPC_BIDI));
        let reqs = requests(&events);
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].0, reqs[0].1.endpoint.as_str(), reqs[0].2),
            (1, "/demo.Greeter/Chat", Extent::Continues)
        );
        let resps = responses(&events);
        assert_eq!(resps.len(), 1);
        assert_eq!((resps[0].0, resps[0].1.status.as_str(), resps[0].2), (1, "OK", Extent::Complete));
        // The request ends with the client's last (empty) DATA frame, before the trailers.
        let end = events.iter().position(|e| *e == ParseEvent::End { dir: Direction::Request, id: Some(1) });
        let resp =
            events.iter().position(|e| matches!(e, ParseEvent::Start { dir: Direction::Response, .. }));
        assert!(end.unwrap() < resp.unwrap());
        assert_eq!(events.len(), 3);
        assert_eq!(p.gave_up(), 0);
        assert!(p.streams.is_empty());
    }

    #[test]
    fn client_cancel_is_reported_as_rst_stream() {
        let (p, events) = run(&load(GRPC_RST));
        let reqs = requests(&events);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].1.endpoint, "/demo.Greeter/Hello");
        assert_eq!(reqs[1].1.endpoint, "/demo.Greeter/Stream");
        let resps = responses(&events);
        let st: Vec<_> = resps.iter().map(|(id, r, e)| (*id, r.status.as_str(), r.is_error, *e)).collect();
        assert_eq!(
            st,
            [
                (1, "RST_STREAM CANCEL", true, Extent::Complete),
                (3, "RST_STREAM CANCEL", true, Extent::Complete)
            ]
        );
        assert!(resps.iter().all(|(_, r, _)| r.protocol == Some(Protocol::Grpc)));
        assert_eq!(p.gave_up(), 0);
        assert!(p.streams.is_empty());
    }

    #[test]
    fn nginx_get_200_404_and_a_large_body() {
        let recs = load(NGINX);
        let (p, events) = run(&recs);
        let reqs = requests(&events);
        let got: Vec<_> =
            reqs.iter().map(|(id, r, e)| (*id, r.method.as_str(), r.detail.as_str(), *e)).collect();
        assert_eq!(
            got,
            [
                (1, "GET", "/index.html", Extent::Complete),
                (3, "GET", "/users/42?x=1", Extent::Complete),
                (5, "GET", "/big.txt", Extent::Complete),
            ]
        );
        assert_eq!(reqs[1].1.endpoint, crate::normalize::path("/users/42?x=1"));
        assert_eq!(
            reqs[0].1.trace.as_ref().map(|t| t.trace_id.as_str()),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        let resps = responses(&events);
        let got: Vec<_> = resps.iter().map(|(id, r, e)| (*id, r.status.as_str(), r.is_error, *e)).collect();
        assert_eq!(
            got,
            [
                (1, "200", false, Extent::Complete),
                (3, "404", true, Extent::Complete),
                (5, "200", false, Extent::Continues)
            ]
        );
        assert!(resps.iter().all(|(_, r, _)| r.protocol.is_none()));
        // The 81 kB body: its frame boundaries fall beyond the 1024-byte heads.
        assert!(p.gave_up() >= 1);
        assert_balanced(&events);
    }

    #[test]
    fn curl_prior_knowledge_404() {
        let (p, events) = run(&load(CURL_404));
        let reqs = requests(&events);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].1.method, "GET");
        assert_eq!(reqs[0].1.detail, "/api/orders/9f86d081?verbose=1");
        assert_eq!(reqs[0].1.endpoint, crate::normalize::path("/api/orders/9f86d081?verbose=1"));
        let resps = responses(&events);
        assert_eq!(resps.len(), 1);
        assert_eq!(
            (resps[0].1.status.as_str(), resps[0].1.is_error, resps[0].2),
            ("404", true, Extent::Complete)
        );
        assert_eq!(p.gave_up(), 0);
    }

    /// Splitting any chunk in two, at any byte, reports the same messages.
    #[test]
    fn split_at_every_position_gives_the_same_starts() {
        for fixture in [GRPC_CALLS, GRPC_RST, CURL_404, GRPC_BIDI] {
            let recs = load(fixture);
            let (_, base) = run(&recs);
            let key = |events: &[ParseEvent]| {
                let mut r: Vec<_> =
                    requests(events).into_iter().map(|(id, i, _)| format!("{id} {i:?}")).collect();
                r.extend(responses(events).into_iter().map(|(id, i, _)| format!("{id} {i:?}")));
                r
            };
            for i in 0..recs.len() {
                for cut in 1..recs[i].len {
                    let r = &recs[i];
                    let mut split = recs[..i].to_vec();
                    split.push(Rec { dir: r.dir, len: cut, head: r.head[..cut].to_vec() });
                    split.push(Rec { dir: r.dir, len: r.len - cut, head: r.head[cut..].to_vec() });
                    split.extend_from_slice(&recs[i + 1..]);
                    let (p, events) = run(&split);
                    assert_eq!(key(&events), key(&base), "chunk {i} cut at {cut}");
                    assert_balanced(&events);
                    // A server's first frame header cut before the client's preface was seen
                    // cannot be told from noise: those 9 bytes (SETTINGS) are dropped.
                    let first_of_dir = recs[..i].iter().all(|o| o.dir != r.dir);
                    if !(first_of_dir && cut < FRAME_HEADER) {
                        assert_eq!(p.gave_up(), 0, "{:.30} chunk {i} cut at {cut}", fixture);
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_header_block_desyncs_without_wrong_values() {
        // Heads cut at 100 bytes: stream 1's request block (322 bytes) is cut after
        // :path, :authority, :method and :scheme; its DATA frame is out of sight.
        let mut recs = load(GRPC_CALLS);
        for r in recs.iter_mut().filter(|r| r.dir == Direction::Request) {
            r.head.truncate(100);
        }
        let (p, events) = run(&recs);
        assert!(p.hpack_desyncs() >= 1);
        assert!(p.gave_up() >= 2);
        let reqs = requests(&events);
        assert_eq!(reqs[0].0, 1);
        assert_eq!(reqs[0].1.method, "POST");
        assert_eq!(reqs[0].1.detail, "/demo.Greeter/Hello");
        // Stream 3 refers to table entries we lost: unknown, never wrong. POST is static.
        let s3 = reqs.iter().find(|(id, _, _)| *id == 3).expect("stream 3 request");
        assert_eq!((s3.1.method.as_str(), s3.1.endpoint.as_str(), s3.1.detail.as_str()), ("POST", "", ""));
        // The response direction is untouched: statuses are still right.
        let st: Vec<_> = responses(&events).into_iter().map(|(id, r, _)| (id, r.status)).collect();
        assert_eq!(
            st,
            [(1, "OK".into()), (3, "NOT_FOUND".into()), (5, "OK".into()), (7, "UNAVAILABLE".into())]
        );
    }

    #[test]
    fn tiny_heads_never_panic() {
        for fixture in [GRPC_CALLS, GRPC_RST, NGINX, CURL_404, GRPC_BIDI] {
            for snap in [0, 1, 5, 9, 10, 17, 24, 33, 64] {
                let (p, events) = run(&snapped(&load(fixture), snap));
                assert!(events.len() <= 64);
                assert!(p.streams.len() <= MAX_STREAMS);
            }
        }
    }

    #[test]
    fn picked_up_mid_connection() {
        // Drop the first 5 chunks (preface, SETTINGS, stream 1): the tables are unknown.
        let recs = load(GRPC_CALLS);
        let (p, events) = run(&recs[5..]);
        let reqs = requests(&events);
        // Stream 3's request is all dynamic-table references except :method and :scheme.
        assert_eq!(reqs[0].0, 3);
        assert_eq!(reqs[0].1.method, "POST");
        // Stream 5 re-sends :path as a literal.
        assert!(reqs.iter().any(|(id, r, _)| *id == 5 && r.endpoint == "/demo.Greeter/Stream"));
        // gRPC is recognised from the trailers even though content-type is a lost reference.
        let st: Vec<_> =
            responses(&events).into_iter().map(|(id, r, _)| (id, r.status, r.protocol)).collect();
        assert!(st.contains(&(3, "NOT_FOUND".into(), Some(Protocol::Grpc))));
        assert!(st.contains(&(7, "UNAVAILABLE".into(), Some(Protocol::Grpc))));
        assert_eq!(p.hpack_desyncs(), 0);
    }

    #[test]
    fn unreadable_grpc_status_is_unknown_not_an_error() {
        // The response table is lost before stream 5's trailers, which refer to the
        // 'grpc-status: 0' entry: the status is unknown, not UNKNOWN.
        let mut recs = load(GRPC_CALLS);
        let trailers = recs.iter().position(|r| {
            r.dir == Direction::Response && r.head.starts_with(&[0, 0, 0x10, 1, 5, 0, 0, 0, 5])
        });
        let i = trailers.expect("stream 5 trailers chunk");
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        for r in &recs[..i] {
            p.feed(Chunk { dir: r.dir, head: &r.head, len: r.len }, &mut out);
        }
        p.sides[1].hpack.desync();
        let r = recs.remove(i);
        let mut events = Vec::new();
        p.feed(Chunk { dir: r.dir, head: &r.head, len: r.len }, &mut events);
        let resps = responses(&events);
        assert_eq!(resps.len(), 1);
        let (id, info, _) = &resps[0];
        assert_eq!(
            (*id, info.status.as_str(), info.is_error, info.protocol),
            (5, "", false, Some(Protocol::Grpc))
        );
    }

    #[test]
    fn grpc_trailers_beyond_the_snaplen() {
        // Stream 1's response (HEADERS, DATA, trailers in one 161-byte write) seen through a
        // 100-byte head: the trailers are hidden, the response is still reported.
        let mut recs = load(GRPC_CALLS);
        let i = recs.iter().position(|r| r.dir == Direction::Response && r.len == 161).unwrap();
        recs[i].head.truncate(100);
        let (p, events) = run(&recs[..=i]);
        let resps = responses(&events);
        assert_eq!(resps.len(), 1);
        let (id, info, extent) = &resps[0];
        assert_eq!((*id, info.status.as_str(), info.is_error, *extent), (1, "", false, Extent::Complete));
        assert_eq!(info.protocol, Some(Protocol::Grpc));
        assert_eq!(p.gave_up(), 1);
    }

    #[test]
    fn garbage_chunk_is_counted_and_resynced() {
        let recs = load(GRPC_CALLS);
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        p.feed(Chunk { dir: Direction::Request, head: b"\x17\x03\x03garbage", len: 10 }, &mut out);
        assert_eq!((p.gave_up(), out.len()), (1, 0));
        for r in &recs {
            p.feed(Chunk { dir: r.dir, head: &r.head, len: r.len }, &mut out);
        }
        assert_eq!(requests(&out).len(), 4);
    }

    /// Stream 1's request from the curl capture: its HPACK block.
    fn curl_block() -> Vec<u8> {
        let first = &load(CURL_404)[0].head;
        // Preface (24), SETTINGS (9 + 18), WINDOW_UPDATE (9 + 4), then HEADERS.
        let at = 24 + 27 + 13;
        let h = FrameHeader::parse(&first[at..]);
        assert_eq!((h.kind, h.stream), (HEADERS, 1));
        first[at + 9..at + 9 + h.len].to_vec()
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn feed_all(p: &mut Http2Parser, dir: Direction, bytes: &[u8]) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        p.feed(Chunk { dir, head: bytes, len: bytes.len() }, &mut out);
        out
    }

    #[test]
    fn padded_priority_headers_and_continuation() {
        let block = curl_block();
        let mut payload = vec![3u8, 0x80, 0, 0, 0, 15];
        payload.extend_from_slice(&block);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(
            HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM | FLAG_END_HEADERS,
            1,
            &payload,
        ));
        // The same block again on stream 3, split into HEADERS + 2 CONTINUATION.
        wire.extend(frame(HEADERS, 0, 3, &block[..5]));
        wire.extend(frame(CONTINUATION, 0, 3, &block[5..20]));
        wire.extend(frame(CONTINUATION, FLAG_END_HEADERS, 3, &block[20..]));
        let mut p = Http2Parser::default();
        let events = feed_all(&mut p, Direction::Request, &wire);
        let reqs = requests(&events);
        assert_eq!(reqs.len(), 2);
        for (_, r, _) in &reqs {
            assert_eq!((r.method.as_str(), r.detail.as_str()), ("GET", "/api/orders/9f86d081?verbose=1"));
        }
        assert_eq!((reqs[0].2, reqs[1].2), (Extent::Complete, Extent::Continues));
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn large_data_frame_spans_chunks() {
        let recs = load(NGINX);
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        for r in &recs[..6] {
            p.feed(Chunk { dir: r.dir, head: &r.head, len: r.len }, &mut out);
        }
        // Stream 5's response HEADERS (real), then a 5000-byte DATA frame ending the stream
        // over three reads of which we see 1024, 0 and 1024 bytes.
        let resp = &recs[6].head;
        let headers_len = FRAME_HEADER + FrameHeader::parse(resp).len;
        let mut data = frame(DATA, FLAG_END_STREAM, 5, &[b'x'; 5000]);
        let mut wire = resp[..headers_len].to_vec();
        wire.append(&mut data);
        let mut events = Vec::new();
        let parts = [(0, 1500), (1500, 3000), (3000, wire.len())];
        for (i, (a, b)) in parts.into_iter().enumerate() {
            let head = if i == 1 { &wire[a..a] } else { &wire[a..(a + 1024).min(b)] };
            let before = events.len();
            p.feed(Chunk { dir: Direction::Response, head, len: b - a }, &mut events);
            if i == 0 {
                let r = responses(&events[before..]);
                assert_eq!((r[0].0, r[0].1.status.as_str(), r[0].2), (5, "200", Extent::Continues));
            }
        }
        assert_eq!(events.last(), Some(&ParseEvent::End { dir: Direction::Response, id: Some(5) }));
        assert_eq!(p.gave_up(), 0);
    }

    #[test]
    fn rst_stream_after_response_start_ends_it() {
        let block = curl_block();
        let mut p = Http2Parser::default();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &block));
        let reqs = feed_all(&mut p, Direction::Request, &wire);
        assert_eq!(requests(&reqs)[0].2, Extent::Continues);
        // :status 200 (static index 8).
        let events = feed_all(&mut p, Direction::Response, &frame(HEADERS, FLAG_END_HEADERS, 1, &[0x88]));
        assert_eq!(responses(&events)[0].1.status, "200");
        let events = feed_all(&mut p, Direction::Request, &frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
        assert_eq!(
            events,
            [
                ParseEvent::End { dir: Direction::Request, id: Some(1) },
                ParseEvent::End { dir: Direction::Response, id: Some(1) }
            ]
        );
        // Unknown streams are ignored.
        let events = feed_all(&mut p, Direction::Request, &frame(RST_STREAM, 0, 9, &8u32.to_be_bytes()));
        assert!(events.is_empty());
        assert!(p.streams.is_empty());
    }

    #[test]
    fn grpc_status_falls_back_to_http_mapping() {
        let mut p = Http2Parser::default();
        // :method POST, :path /a.B/C (literal, name :path = static 4), content-type application/grpc.
        let mut block = vec![0x83, 0x04, 6];
        block.extend_from_slice(b"/a.B/C");
        block.extend_from_slice(&[0x0f, 0x10, 16]); // literal without indexing, name index 31
        block.extend_from_slice(b"application/grpc");
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &block));
        feed_all(&mut p, Direction::Request, &wire);
        // A proxy answers 503 with END_STREAM and no grpc-status (:status 503 literal, name index 8).
        let mut resp = vec![0x08, 3];
        resp.extend_from_slice(b"503");
        let events = feed_all(
            &mut p,
            Direction::Response,
            &frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 1, &resp),
        );
        let r = &responses(&events)[0].1;
        assert_eq!((r.status.as_str(), r.is_error, r.protocol), ("UNAVAILABLE", true, Some(Protocol::Grpc)));
    }

    #[test]
    fn informational_responses_are_skipped() {
        let mut p = Http2Parser::default();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &curl_block()));
        feed_all(&mut p, Direction::Request, &wire);
        let mut resp = frame(HEADERS, FLAG_END_HEADERS, 1, &[0x08, 3, b'1', b'0', b'3']);
        resp.extend(frame(HEADERS, FLAG_END_HEADERS, 1, &[0x8d]));
        resp.extend(frame(DATA, FLAG_END_STREAM, 1, b"gone"));
        let events = feed_all(&mut p, Direction::Response, &resp);
        let r = responses(&events);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].1.status.as_str(), r[0].1.is_error, r[0].2), ("404", true, Extent::Complete));
        if let ParseEvent::Start { bytes, .. } = &events[0] {
            // 404 HEADERS (9 + 1) and DATA (9 + 4); the 103 is not part of it.
            assert_eq!(*bytes, Some(23));
        }
    }

    #[test]
    fn stream_table_is_bounded() {
        let block = curl_block();
        let mut wire = PREFACE.to_vec();
        for i in 0..1100u32 {
            wire.extend(frame(HEADERS, FLAG_END_HEADERS, 2 * i + 1, &block));
        }
        let mut p = Http2Parser::default();
        let events = feed_all(&mut p, Direction::Request, &wire);
        assert_eq!(requests(&events).len(), 1100);
        assert_eq!(p.streams.len(), MAX_STREAMS);
        assert_eq!(p.stream_overflows(), 1100 - MAX_STREAMS as u64);
    }

    #[test]
    fn detects_preface_and_mid_stream_frames() {
        let chunk = |dir, head: &[u8], len| detect(Chunk { dir, head, len });
        for fixture in [GRPC_CALLS, NGINX, CURL_404] {
            let recs = load(fixture);
            assert!(chunk(Direction::Request, &recs[0].head, recs[0].len));
            // Every chunk of these connections would be claimed mid-stream, except those
            // starting inside a DATA frame.
            for r in &recs[1..] {
                let starts_inside_data = fixture == NGINX && r.len > 1024;
                if !starts_inside_data {
                    assert!(chunk(r.dir, &r.head, r.len), "{fixture:.40} {r:?}");
                }
            }
        }
        assert!(chunk(Direction::Request, b"PRI * HTTP/2.0\r\n", 16));
    }

    #[test]
    fn does_not_claim_other_protocols() {
        let other: [(&str, &[u8], usize); 11] = [
            // psql 15 startup message (captured).
            (
                "postgres",
                &unhex(concat!(
                    "000000360003000075736572006170700064617461626173650073686f70006170706c6963617469",
                    "6f6e5f6e616d65007073716c0000",
                )),
                54,
            ),
            ("pg ssl", &[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f], 8),
            // redis-cli PING (captured).
            ("redis", b"*1\r\n$4\r\nPING\r\n", 14),
            // openssl s_client ClientHello (captured head).
            (
                "tls",
                &unhex("1603010124010001200303aafca0744525403733b53d6fc925c4bf17b49f3209b59e9337a6276ec5"),
                297,
            ),
            ("mysql", &unhex("4a0000000a382e302e333300080000001a2b3c4d5e6f7a0100ffff"), 78),
            // kafka-python Produce v0 request head.
            (
                "kafka",
                &unhex("00000094000000000000006400066b762d67656e000100000bb80000000200066f726465727300"),
                152,
            ),
            ("dns tcp", &unhex("001dabcd0100000100000000000003777777076578616d706c6503636f6d0000010001"), 31),
            ("memcached", &unhex("800000050000000000000005000000000000000000000000"), 29),
            ("http1", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
            ("zeros", &[0; 16], 16),
            // A client HEADERS frame on an even stream.
            ("even", &frame(HEADERS, FLAG_END_HEADERS, 2, &[0x82]), 10),
        ];
        for (name, head, len) in other {
            for dir in [Direction::Request, Direction::Response] {
                let claimed = detect(Chunk { dir, head, len });
                assert!(!claimed || (name == "even" && dir == Direction::Response), "{name} {dir:?}");
            }
        }
    }

    mod hpack_tests {
        use super::super::hpack::{huffman_decode, Decoder, Error};

        fn decode(d: &mut Decoder, hex: &str) -> (Vec<(String, String)>, bool) {
            let mut got = Vec::new();
            let r = d.decode(&super::unhex(hex), &mut |n, v| {
                got.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()))
            });
            (got, r.unwrap().all_known)
        }

        fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
            p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        }

        #[test]
        fn rfc7541_c4_requests_with_huffman() {
            let mut d = Decoder::fresh();
            let (h, _) = decode(&mut d, "828684418cf1e3c2e5f23a6ba0ab90f4ff");
            let base =
                [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")];
            assert_eq!(h, pairs(&base));
            let (h, _) = decode(&mut d, "828684be5886a8eb10649cbf");
            assert_eq!(h[4], ("cache-control".into(), "no-cache".into()));
            let (h, ok) = decode(&mut d, "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf");
            assert!(ok);
            assert_eq!(h[2], (":path".into(), "/index.html".into()));
            assert_eq!(h[4], ("custom-key".into(), "custom-value".into()));
            assert_eq!(d.entries().len(), 3);
        }

        #[test]
        fn rfc7541_c6_responses_with_eviction() {
            let mut d = Decoder::with_max(256);
            let first = concat!(
                "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad",
                "171863c78f0b97c8e9ae82ae43d3",
            );
            let (h, _) = decode(&mut d, first);
            assert_eq!(h[0], (":status".into(), "302".into()));
            assert_eq!(h[3], ("location".into(), "https://www.example.com".into()));
            let (h, _) = decode(&mut d, "4883640effc1c0bf");
            assert_eq!(h[0], (":status".into(), "307".into()));
            assert_eq!(h[1], ("cache-control".into(), "private".into()));
            let third = concat!(
                "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2",
                "e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
            );
            let (h, ok) = decode(&mut d, third);
            assert!(ok);
            assert_eq!(h[4], ("content-encoding".into(), "gzip".into()));
            assert_eq!(h[5].1, "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1");
            let names: Vec<_> = d.entries().iter().map(|(n, _)| n.unwrap().to_vec()).collect();
            assert_eq!(names, [b"set-cookie".to_vec(), b"content-encoding".to_vec(), b"date".to_vec()]);
        }

        #[test]
        fn huffman_every_byte() {
            // python hpack 4.2 HuffmanEncoder output for bytes 0..=255.
            let coded = super::unhex(concat!(
                "ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabff",
                "ffffdfffffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffff",
                "d7fffffdbfffffdffffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b7",
                "1d79fb9f7fff20ffbff3ff50ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff",
                "4719242cb34e6e9d68a6a3d7dac426defe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ff",
                "ff53fffd5ffffb3fffeb7fffdaffffb7ffff73fffeeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffff",
                "eeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9ffffcdffff9fffffbffffdafffeeffff4ffffb7ff",
                "fee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fffff5ffffecffff07fff87fffe0ffff17f",
                "ffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff1fffff83ffffe1fffebfffe3",
                "ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8fffffb7fff97fff8ffff",
                "fe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9fffff97f",
                "ffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffff",
                "a7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffb",
                "bfffff7ffffff0fffffbbf",
            ));
            assert_eq!(huffman_decode(&coded), Some((0..=255u8).collect::<Vec<_>>()));
        }

        #[test]
        fn invalid_huffman_and_integers() {
            // EOS (30 ones) inside the string.
            assert_eq!(huffman_decode(&[0xff, 0xff, 0xff, 0xff]), None);
            // Padding of 8 bits or more, or not all ones.
            assert_eq!(huffman_decode(&[0x1f, 0xff]), None);
            assert_eq!(huffman_decode(&[0x00]), None);
            assert_eq!(huffman_decode(&[]), Some(Vec::new()));
            let mut d = Decoder::fresh();
            let mut sink = |_: &[u8], _: &[u8]| {};
            assert_eq!(
                d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], &mut sink),
                Err(Error::Overflow)
            );
            assert_eq!(d.decode(&[0x40, 0x05, b'a'], &mut sink), Err(Error::Truncated));
            // Bad Huffman in a value: the field is unknown, the block goes on.
            let (h, ok) = decode(&mut d, "4003616263810082");
            assert!(!ok);
            assert_eq!(h, pairs(&[(":method", "GET")]));
            // The entry was still inserted, keeping later indices right.
            assert_eq!(d.entries().len(), 1);
        }

        #[test]
        fn lost_entries_are_unknown_never_wrong() {
            let mut d = Decoder::fresh();
            // Insert custom-key: custom-value (C.3.3 style literal with indexing).
            decode(&mut d, "400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
            // Index 62 is it.
            assert_eq!(decode(&mut d, "be").0, pairs(&[("custom-key", "custom-value")]));
            // A block was lost: the table is cleared and lenient.
            assert!(d.desync());
            let (h, ok) = decode(&mut d, "be82");
            assert!(!ok);
            assert_eq!(h, pairs(&[(":method", "GET")]));
            // New inserts are the encoder's newest entries: index 62 is known again, 63 is not.
            decode(&mut d, "4001610162");
            let (h, ok) = decode(&mut d, "bebf");
            assert!(!ok);
            assert_eq!(h, pairs(&[("a", "b")]));
            // A size update to 0 empties the encoder's table too: exact again.
            decode(&mut d, "203fe11f");
            assert!(d.desync());
        }

        #[test]
        fn out_of_range_index_desyncs_a_trusted_table() {
            let mut d = Decoder::fresh();
            let mut sink = |_: &[u8], _: &[u8]| {};
            let r = d.decode(&[0xc0], &mut sink).unwrap();
            assert!(r.desynced && !r.all_known);
            // Now lenient: no second desync.
            assert!(!d.decode(&[0xc0], &mut sink).unwrap().desynced);
        }
    }

    /// Mostly well-formed frames (any flags, real or random header blocks), some garbage.
    fn arb_frames() -> impl Strategy<Value = Vec<u8>> {
        let blocks = [
            curl_block(),
            unhex("88400c636f6e74656e742d74797065106170706c69636174696f6e2f67727063"),
            unhex("400b677270632d737461747573013540"),
        ];
        let one = (0u8..12, any::<u8>(), 0u32..6, proptest::collection::vec(any::<u8>(), 0..40), 0usize..4);
        proptest::collection::vec(one, 0..30).prop_map(move |frames| {
            let mut wire = PREFACE.to_vec();
            for (kind, flags, pick, mut payload, real) in frames {
                let stream = match kind {
                    SETTINGS | PING | GOAWAY => 0,
                    _ => 2 * pick + 1,
                };
                let fixed = match kind {
                    PRIORITY => Some(5),
                    RST_STREAM | WINDOW_UPDATE => Some(4),
                    SETTINGS => Some(payload.len() / 6 * 6),
                    PING | GOAWAY => Some(8),
                    _ => None,
                };
                if let Some(n) = fixed {
                    payload.resize(n, 0);
                }
                if matches!(kind, HEADERS | CONTINUATION) && real < blocks.len() {
                    payload = blocks[real].clone();
                }
                wire.extend(frame(kind, flags, stream, &payload));
            }
            wire
        })
    }

    proptest! {
        #[test]
        fn arbitrary_chunks_never_panic(
            chunks in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..64), 0usize..100_000),
                0..40,
            )
        ) {
            let mut p = Http2Parser::default();
            for (req, head, extra) in chunks {
                let dir = if req { Direction::Request } else { Direction::Response };
                let mut out = Vec::new();
                p.feed(Chunk { dir, head: &head, len: head.len() + extra }, &mut out);
                prop_assert!(out.len() <= 2 * (head.len() / FRAME_HEADER + 1));
            }
            prop_assert!(p.streams.len() <= MAX_STREAMS);
        }

        #[test]
        fn arbitrary_frames_in_arbitrary_reads(
            wire in arb_frames(),
            cuts in proptest::collection::vec((0usize..200, 0usize..64), 1..20),
            req in any::<bool>(),
        ) {
            let mut p = Http2Parser::default();
            let dir = if req { Direction::Request } else { Direction::Response };
            let (mut pos, mut events) = (0, Vec::new());
            for (n, snap) in cuts {
                let end = (pos + n).min(wire.len());
                let head = &wire[pos..(pos + snap).min(end)];
                p.feed(Chunk { dir, head, len: end - pos }, &mut events);
                pos = end;
            }
            prop_assert!(events.len() <= 2 * (wire.len() / FRAME_HEADER + 1));
            assert_balanced(&events);
        }
    }
}
