//! Kindling's kernel side: loads the CO-RE BPF object, attaches its
//! tracepoint programs and reads the ring buffer on a dedicated thread.
//!
//! This is the only crate with `unsafe` beyond libc calls at start-up; what
//! comes out is raw wire records (see `src/bpf/kindling.h`), handed to a
//! callback that decodes them (`kindling_events::wire`) and queues them.
//! Kernel-side drops are read from the `drop_counts` map and published as
//! counters, so nothing is lost silently.

pub mod preflight;

#[allow(clippy::all, unused_imports, dead_code, non_camel_case_types, non_snake_case)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/kindling.skel.rs"));
}

#[allow(clippy::all, unused_imports, dead_code, non_camel_case_types, non_snake_case)]
mod tcp_skel {
    include!(concat!(env!("OUT_DIR"), "/tcp.skel.rs"));
}

#[allow(clippy::all, unused_imports, dead_code, non_camel_case_types, non_snake_case)]
mod sched_skel {
    include!(concat!(env!("OUT_DIR"), "/sched.skel.rs"));
}

#[allow(clippy::all, unused_imports, dead_code, non_camel_case_types, non_snake_case)]
mod bench_skel {
    include!(concat!(env!("OUT_DIR"), "/bench_empty.skel.rs"));
}

pub mod adopt;
pub mod inspect;
mod layout;
mod loader;
pub mod golang;
mod gofollow;
pub mod sched;
mod sockets;
mod tcp;

pub use loader::{start, start_empty, Features, ProbeConfig, ProbeError, ProbeHandle, ProgramInfo};
pub use sched::SchedConfig;
pub use preflight::{KernelInfo, PreflightError};

/// Wall-clock minus monotonic time, in ns: what turns the kernel's
/// `bpf_ktime_get_ns` timestamps into Unix time.
pub fn realtime_offset_ns() -> i64 {
    fn now(clock: libc::clockid_t) -> i64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid timespec for the duration of the call.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}
