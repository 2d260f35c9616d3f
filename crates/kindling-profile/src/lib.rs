//! Profiling from the sched module's events: per-thread timelines cut into
//! on-CPU and off-CPU slices with reasons (`net`, `file`, `lock`, `epoll`,
//! `sleep`, `runqueue`, `other`), stacks, symbols and flame graphs.
//!
//! - [`timeline`]: the bounded store of slices and samples per process and
//!   thread, and the window query trace-profiling builds on;
//! - [`goroutines`]: Go goroutines as pseudo-threads (runtime uprobe marks);
//! - [`stacks`]: the kernel's deduplicated stacks, interned;
//! - [`interest`]: which processes are followed, and until when;
//! - [`flame`]: samples and slices -> aggregated, symbolized stacks;
//! - [`unwind`]: recovering frames of code without frame pointers (.eh_frame);
//! - [`symbolize`]: ELF/DWARF, Go, JIT perf maps (Java), kernel symbols (blazesym);
//! - [`format`]: folded stacks, pprof, speedscope;
//! - [`export`]: a process's timeline as JSON (threads, slices, stacks).

pub mod export;
pub mod flame;
pub mod format;
pub mod goroutines;
pub mod interest;
pub mod stacks;
pub mod symbolize;
pub mod timeline;
pub mod unwind;

pub use flame::{Profile, ProfileType, RawProfile};
pub use format::Format;
pub use interest::Interest;
pub use symbolize::Symbolizer;
pub use timeline::{Sample, Slice, State, Target, ThreadTimeline, TimelineConfig, TimelineStats, Timelines};

/// The default on-CPU sampling frequency (Hz): not a multiple of common
/// timer frequencies, so samples do not beat with periodic work.
pub const DEFAULT_SAMPLE_HZ: u32 = 99;

/// ns between two samples at `hz`.
pub fn sample_period_ns(hz: u32) -> u64 {
    1_000_000_000 / hz.max(1) as u64
}

/// What an agent keeps for profiling: the timelines, which processes are
/// followed (and until when), and the sampling period that weighs samples.
pub struct Profiling {
    pub timelines: Timelines,
    pub interest: Interest,
    pub sample_period_ns: u64,
}

impl Default for Profiling {
    fn default() -> Self {
        Profiling::new(TimelineConfig::default(), DEFAULT_SAMPLE_HZ)
    }
}

impl Profiling {
    pub fn new(cfg: TimelineConfig, sample_hz: u32) -> Profiling {
        Profiling { timelines: Timelines::new(cfg), interest: Interest::new(0), sample_period_ns: sample_period_ns(sample_hz) }
    }

    pub fn observe(&mut self, ev: &kindling_events::model::Event) {
        self.timelines.observe(ev);
    }

    /// Time passes: old slices go, expired interests end.
    pub fn tick(&mut self, now_ns: u64) {
        self.timelines.tick(now_ns);
        self.interest.expire(now_ns);
    }
}
