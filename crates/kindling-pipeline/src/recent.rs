//! The most recent request records, for `/api/v1/requests` (bounded ring).

use kindling_protocols::Protocol;
use kindling_requests::{RequestRecord, Side};
use std::collections::VecDeque;
use std::sync::Arc;

/// Filters of `/api/v1/requests`; every field optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestQuery {
    pub protocol: Option<Protocol>,
    pub side: Option<Side>,
    pub slow: Option<bool>,
    pub error: Option<bool>,
    pub endpoint: Option<String>,
    pub trace_id: Option<String>,
    /// Only records that ended at or after this time.
    pub since_ns: Option<u64>,
    pub limit: usize,
}

pub struct Recent {
    buf: VecDeque<Arc<RequestRecord>>,
    cap: usize,
}

impl Recent {
    pub fn new(cap: usize) -> Recent {
        Recent { buf: VecDeque::with_capacity(cap.min(1024)), cap }
    }

    pub fn push(&mut self, r: Arc<RequestRecord>) {
        if self.cap == 0 {
            return;
        }
        if self.buf.len() == self.cap {
            self.buf.pop_front();
        }
        self.buf.push_back(r);
    }

    /// Newest first.
    pub fn query(&self, q: &RequestQuery) -> Vec<Arc<RequestRecord>> {
        self.buf
            .iter()
            .rev()
            .filter(|r| q.protocol.is_none_or(|p| r.protocol == p))
            .filter(|r| q.side.is_none_or(|s| r.side == s))
            .filter(|r| q.slow.is_none_or(|s| r.is_slow == s))
            .filter(|r| q.error.is_none_or(|e| r.is_error == e))
            .filter(|r| q.endpoint.as_ref().is_none_or(|e| &r.endpoint == e))
            .filter(|r| q.trace_id.as_ref().is_none_or(|t| &r.trace_id == t))
            .filter(|r| q.since_ns.is_none_or(|t| r.end_ts_ns >= t))
            .take(q.limit)
            .cloned()
            .collect()
    }
}
