//! Trace-profiling (issue 6): for server-side requests, the threads (or Go
//! goroutines) that served them, their on/off-CPU slices over the request's
//! window with reasons, stacks and the downstream calls made meanwhile, the
//! trace id from the wire, and a triage verdict; plus the sampling that
//! decides which requests keep such a profile.

pub mod hash;
pub mod sampler;
