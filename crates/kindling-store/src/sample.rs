//! Which request records the store keeps: every slow or failed one, and the
//! first few per (edge, side, endpoint) each second, within a per-second
//! total. Memory is bounded: the keys of one second at most `MAX_KEYS`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

const MAX_KEYS: usize = 20_000;

pub struct Sampler {
    per_key: u32,
    max_per_second: u32,
    second: u64,
    kept: u32,
    counts: HashMap<u64, u32>,
}

impl Sampler {
    pub fn new(per_key: u32, max_per_second: u32) -> Sampler {
        Sampler { per_key, max_per_second, second: 0, kept: 0, counts: HashMap::new() }
    }

    /// Whether to keep a record that ended at `end_ts_ns`; `key` names its
    /// (edge, side, endpoint).
    pub fn keep(&mut self, end_ts_ns: u64, important: bool, key: &[&str]) -> bool {
        let sec = end_ts_ns / 1_000_000_000;
        // Records arrive roughly in order; a late one counts in the current second.
        if sec > self.second {
            self.second = sec;
            self.kept = 0;
            self.counts.clear();
        }
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
        assert!(s.keep(t, false, &["a"]));
        assert!(s.keep(t, false, &["a"]));
        assert!(!s.keep(t, false, &["a"]));
        assert!(s.keep(t, false, &["b"]));
        assert!(s.keep(t, true, &["a"]), "slow or failed: always");
        assert!(s.keep(t + 1_000_000_000, false, &["a"]), "a new second");
    }

    #[test]
    fn total_per_second_is_bounded() {
        let mut s = Sampler::new(1000, 10);
        let kept = (0..100).filter(|_| s.keep(1, true, &["x"])).count();
        assert_eq!(kept, 10);
    }
}
