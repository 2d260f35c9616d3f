//! The trace-profile document (`GET /api/v1/profiles/{id}`); field names are
//! the contract in PRODUCT.md.

use kindling_requests::RequestRecord;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceProfile {
    pub id: String,
    pub trace_id: String,
    pub trace_type: String,
    pub request: RequestRecord,
    /// `error`, `slow` or `baseline`.
    pub kept_because: String,
    pub verdict: Verdict,
    /// `thread`, or `goroutine` when a Go goroutine was followed.
    pub unit: String,
    /// The window shown: the request plus the configured edge on each side.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// The threads that served the request (first: the one that read it).
    pub threads: Vec<ThreadDoc>,
    /// Slices of the window not shown (`[traceprof] max_slices`; the
    /// farthest from the request go first). The verdict counts them all.
    #[serde(default)]
    pub slices_left_out: u64,
    /// The request's critical path (what the verdict sums), in time order.
    pub path: Vec<PathDoc>,
    /// On-CPU samples on the critical path, aggregated by stack (innermost
    /// frame first): the profile's flame graph.
    pub oncpu_stacks: Vec<StackWeight>,
}

/// Where the request's time went (ns of its duration) and the one-line summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub oncpu_ns: u64,
    pub net_ns: u64,
    pub file_ns: u64,
    pub lock_ns: u64,
    pub epoll_ns: u64,
    pub sleep_ns: u64,
    pub runqueue_ns: u64,
    pub other_ns: u64,
    pub summary: String,
    /// The hottest application function on CPU, when samples name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_function: Option<String>,
    /// The slowest downstream call made during the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slowest_downstream: Option<Downstream>,
}

/// A downstream call named in the verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downstream {
    pub protocol: String,
    pub peer: String,
    pub detail: String,
    pub duration_ns: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThreadDoc {
    pub tid: u32,
    pub name: String,
    /// `request` (read it), `response` (wrote it), `handoff` (on the critical
    /// path between them), `waker` (woke a thread of the path: a lock holder...).
    pub role: String,
    pub slices: Vec<SliceDoc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SliceDoc {
    pub start_ns: u64,
    pub end_ns: u64,
    /// `oncpu` or the off-CPU reason.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waker_tid: u32,
    /// Innermost frame first: the blocking stack of an off-CPU slice, the
    /// most frequent sampled stack of an on-CPU one.
    #[serde(default)]
    pub stack: Vec<String>,
    /// Client-side requests this thread made during the slice.
    #[serde(default)]
    pub downstream: Vec<RequestRecord>,
}

/// A stretch of the critical path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathDoc {
    pub tid: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackWeight {
    pub stack: Vec<String>,
    pub samples: u64,
    pub weight_ns: u64,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
