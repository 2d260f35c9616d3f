//! The request record: one observed request/response exchange, from one side
//! of the connection. Field names are a contract (`requests --json`,
//! `/api/v1/requests`, OTLP span attributes, the store).

use kindling_protocols::Protocol;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Which end of the connection observed the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Where the time of a request went, Chrome-DevTools style (nanoseconds).
///
/// Client side: `connect_ns` (the connection's handshake, first request on a
/// new connection only), `request_sent_ns` (writing the request),
/// `waiting_ttfb_ns` (request written -> first response bytes received: the
/// network plus the server), `content_download_ns` (first -> last response bytes).
///
/// Server side: `request_sent_ns` is reading the request, `waiting_ttfb_ns`
/// the processing until the response starts being written, and
/// `content_download_ns` writing the response; `connect_ns` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breakdown {
    pub connect_ns: u64,
    pub request_sent_ns: u64,
    pub waiting_ttfb_ns: u64,
    pub content_download_ns: u64,
}

/// TCP health seen on the request's connection while it was in flight
/// (filled by the network-metrics stage when available).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpDuring {
    pub retransmits: u32,
    pub srtt_us: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Client side: the request's first byte written (minus connect time for
    /// the first request of a connection). Server side: the request received.
    pub start_ts_ns: u64,
    /// The response's last byte.
    pub end_ts_ns: u64,
    pub protocol: Protocol,
    pub side: Side,
    pub pid: u32,
    /// The thread that handled the request (server: read it; client: sent it).
    pub tid: u32,
    /// The thread that wrote (server) or read (client) the response.
    pub response_tid: u32,
    pub comm: String,
    /// The client end of the connection.
    pub src: SocketAddr,
    /// The server end of the connection.
    pub dst: SocketAddr,
    pub method: String,
    /// Normalised, bounded cardinality (`/users/{id}`, `SELECT * FROM t WHERE id = ?`, `GET`).
    pub endpoint: String,
    /// Raw target for display (URL, SQL text, key), truncated, secrets masked.
    pub detail: String,
    /// HTTP code, SQL error code or `OK`, DNS rcode name, gRPC status name...;
    /// `timeout` or `closed` when no response came.
    pub status: String,
    pub is_error: bool,
    pub is_slow: bool,
    /// Error text the protocol carried, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    pub duration_ns: u64,
    pub breakdown: Breakdown,
    pub request_bytes: u64,
    pub response_bytes: u64,
    #[serde(default)]
    pub trace_id: String,
    #[serde(default)]
    pub trace_type: String,
    /// The kernel socket (joins with TCP events and profiles).
    pub sock_id: u64,
    #[serde(default)]
    pub tcp: TcpDuring,
}

impl RequestRecord {
    /// The server port: the edge's `dst_port`.
    pub fn dst_port(&self) -> u16 {
        self.dst.port()
    }
}
