//! Connections to requests.
//!
//! Fed socket events (with their client/server role), the tracker keeps one
//! state per connection, detects its protocol, runs the protocol's parser over
//! each syscall's bytes, pairs requests with responses and times them.

pub mod record;
pub mod tracker;

pub use record::{Breakdown, RequestRecord, Side, TcpDuring};
pub use tracker::{SlowThresholds, Tracker, TrackerConfig, TrackerStats};
