//! Checks of the `sched` module (sched.bpf.c): thread timelines and CPU
//! samples of the workload process, which the selftest names as the process
//! to profile. The workload spins on two threads for 150 ms each and sleeps
//! 20 times for 1 ms (`Report::busy_ms`, `Report::sleeps`), so a module that
//! works reports on-CPU samples, slices and blocked time for `Report::pid`.
//!
//! Until the module's own checks are written here, the generic ones apply:
//! each of its programs must load, attach and run, and its events must arrive
//! and decode.

use super::{Observed, Outcome};

pub fn checks(_obs: &Observed) -> Vec<Outcome> {
    Vec::new()
}
