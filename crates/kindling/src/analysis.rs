//! The analysis stages every command shares, live or replayed: socket roles,
//! then requests. Synchronous and pure: the same events give the same records.

use kindling_events::model::Event;
use kindling_requests::{RequestRecord, Tracker, TrackerConfig};
use kindling_sockets::SocketTable;

pub struct Analysis {
    pub sockets: SocketTable,
    pub tracker: Tracker,
    out: Vec<RequestRecord>,
}

impl Analysis {
    pub fn new(cfg: TrackerConfig) -> Analysis {
        Analysis { sockets: SocketTable::default(), tracker: Tracker::new(cfg), out: Vec::new() }
    }

    /// Annotates `ev` (its role) and returns the requests it completed.
    pub fn process(&mut self, ev: &mut Event) -> std::vec::Drain<'_, RequestRecord> {
        self.sockets.observe(ev);
        self.tracker.observe(ev, &mut self.out);
        self.out.drain(..)
    }

    /// Time passes without events (live): completes what went quiet.
    pub fn tick(&mut self, now_ns: u64) -> std::vec::Drain<'_, RequestRecord> {
        self.tracker.tick(now_ns, &mut self.out);
        self.out.drain(..)
    }

    /// End of input: every pending request is reported.
    pub fn finish(&mut self) -> std::vec::Drain<'_, RequestRecord> {
        self.tracker.finish(&mut self.out);
        self.out.drain(..)
    }
}
