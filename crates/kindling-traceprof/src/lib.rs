//! Trace-profiling (issue 6): for server-side requests, the threads (or Go
//! goroutines) that served them, their on/off-CPU slices over the request's
//! window with reasons, stacks and the downstream calls made meanwhile, the
//! trace id from the wire, and a triage verdict; plus the sampling that
//! decides which requests keep such a profile.
//!
//! ```text
//! server request record ──> sampler (keep? why?) ──> after `settle`: assemble
//!   (critical path over thread timelines -> verdict, threads, slices, stacks,
//!    downstream client records) ──> Action::Store / Action::Remove (displaced)
//! ```
//!
//! - [`sampler`]: which requests are kept, independent of arrival order;
//! - [`path`]: the request's critical path across its threads (hand-offs);
//! - [`verdict`]: where the time went, and the one-line summary;
//! - [`assemble`]: the `/api/v1/profiles/{id}` document;
//! - [`engine`]: the stateful driver the pipeline feeds;
//! - [`flame`]: a kept profile's stacks as a flame graph.

pub mod assemble;
pub mod doc;
pub mod engine;
pub mod flame;
pub mod hash;
pub mod path;
pub mod sampler;
pub mod verdict;

pub use doc::{SliceDoc, ThreadDoc, TraceProfile, Verdict};
pub use engine::{Action, TraceProfConfig, TraceProfStats, TraceProfiler};
pub use sampler::{KeptBecause, SamplerConfig};
