//! Kindling's event model and its encodings.
//!
//! - [`model`]: what the kernel told us (socket syscalls, process lifecycle, /proc snapshots);
//! - [`wire`]: decoding the kernel's ring-buffer records into that model;
//! - [`capture`]: the recording file that `kindling capture --record` writes and `replay` reads;
//! - [`json`]: the flat JSON view printed by `capture --json`;
//! - [`tcp`], [`sched`]: the events of the tcp and sched kernel modules;
//! - [`redact`]: masking of secrets in payload heads, applied wherever payload
//!   bytes leave the process (recordings, printed payloads, extracted strings).
//!
//! Everything here is pure: no I/O beyond the reader/writer handed in.

pub mod capture;
pub mod json;
pub mod model;
pub mod redact;
pub mod sched;
pub mod tcp;
pub mod wire;

pub use model::*;
