//! Which request records the store keeps: every slow or failed one, and the
//! first few per (edge, side, endpoint) each second, within a per-second
//! total. Records of one trace follow the first decision taken for it, so
//! both ends of a call (and the hops that pass the trace on) are kept or
//! left together. Memory is bounded: the keys of one second at most
//! `MAX_KEYS`, the last `MAX_TRACES` trace decisions.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

const MAX_KEYS: usize = 20_000;
const MAX_TRACES: usize = 8_192;

pub struct Sampler {
    per_key: u32,
    max_per_second: u32,
    second: u64,
    kept: u32,
    counts: HashMap<u64, u32>,
    traces: HashMap<Box<str>, bool>,
}

impl Sampler {
    pub fn new(per_key: u32, max_per_second: u32) -> Sampler {
        Sampler { per_key, max_per_second, second: 0, kept: 0, counts: HashMap::new(), traces: HashMap::new() }
    }

    /// Whether to keep a record that ended at `end_ts_ns`; `key` names its
    /// (edge, side, endpoint), `trace_id` its trace ("" when none).
    pub fn keep(&mut self, end_ts_ns: u64, important: bool, key: &[&str], trace_id: &str) -> bool {
        let decided = if trace_id.is_empty() { None } else { self.traces.get(trace_id).copied() };
        let keep = match decided {
            Some(true) => self.take_budget(end_ts_ns),
            Some(false) if !important => false,
            _ => self.decide(end_ts_ns, important, key),
        };
        if decided.is_none() && !trace_id.is_empty() {
            if self.traces.len() >= MAX_TRACES {
                self.traces.clear();
            }
            self.traces.insert(trace_id.into(), keep);
        }
        keep
    }

    /// Counts one kept record in its second's total; false when it is spent.
    fn take_budget(&mut self, end_ts_ns: u64) -> bool {
        self.roll(end_ts_ns);
        if self.kept >= self.max_per_second {
            return false;
        }
        self.kept += 1;
        true
    }

    fn roll(&mut self, end_ts_ns: u64) {
        let sec = end_ts_ns / 1_000_000_000;
        // Records arrive roughly in order; a late one counts in the current second.
        if sec > self.second {
            self.second = sec;
            self.kept = 0;
            self.counts.clear();
        }
    }

    fn decide(&mut self, end_ts_ns: u64, important: bool, key: &[&str]) -> bool {
        self.roll(end_ts_ns);
        if self.kept >= self.max_per_second {
            return false;
        }
        if !important {
            let h = hash_key(key);
            if self.counts.len() >= MAX_KEYS && !self.counts.contains_key(&h) {
                return false;
            }
            let n = self.counts.entry(h).or_insert(0);
            if *n >= self.per_key {
                return false;
            }
            *n += 1;
        }
        self.kept += 1;
        true
    }
}

/// A 64-bit hash of the key's parts (a collision only merges two keys' quotas).
fn hash_key(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_important_and_a_few_per_key_per_second() {
        let mut s = Sampler::new(2, 100);
        let t = 5_000_000_000;
        assert!(s.keep(t, false, &["a"], ""));
        assert!(s.keep(t, false, &["a"], ""));
        assert!(!s.keep(t, false, &["a"], ""));
        assert!(s.keep(t, false, &["b"], ""));
        assert!(s.keep(t, true, &["a"], ""), "slow or failed: always");
        assert!(s.keep(t + 1_000_000_000, false, &["a"], ""), "a new second");
    }

    #[test]
    fn both_ends_of_a_trace_go_together() {
        let mut s = Sampler::new(1, 100);
        let t = 7_000_000_000;
        assert!(s.keep(t, false, &["server"], "t1"));
        assert!(s.keep(t, false, &["client"], "t1"));
        // The quota of these keys is spent: t2 is left, on both ends.
        assert!(!s.keep(t, false, &["server"], "t2"));
        assert!(!s.keep(t, false, &["client"], "t2"));
        // t1 was kept: its records are kept beyond their keys' quota.
        assert!(s.keep(t, false, &["server"], "t1"));
        // A slow record of a left trace is still kept.
        assert!(s.keep(t, true, &["client"], "t2"));
    }

    #[test]
    fn total_per_second_is_bounded() {
        let mut s = Sampler::new(1000, 10);
        let kept = (0..100).filter(|_| s.keep(1, true, &["x"], "")).count();
        assert_eq!(kept, 10);
    }
}
