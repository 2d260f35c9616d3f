//! Which processes the sched module follows: each holder (an API request for
//! a flame graph, a trace-profiling rule, ...) wants a pid until some time
//! (or for good); the kernel follows the union. Changes are reported once, so
//! the owner of the probe pushes them to the kernel only when needed.

use std::collections::{BTreeSet, HashMap};

/// Pids wanted, each until a time (ns, event clock; `u64::MAX`: until released).
#[derive(Debug, Default)]
pub struct Interest {
    until: HashMap<u32, u64>,
    /// Pids wanted for good, by holder name.
    held: HashMap<String, BTreeSet<u32>>,
    changed: bool,
    capacity: usize,
    /// The set the kernel follows now (as last reported by `applied`).
    applied: BTreeSet<u32>,
}

impl Interest {
    pub fn new(capacity: usize) -> Interest {
        Interest { capacity, ..Default::default() }
    }

    /// Wants `pid` at least until `until_ns`. False when full.
    pub fn want_until(&mut self, pid: u32, until_ns: u64) -> bool {
        if !self.until.contains_key(&pid) && !self.is_wanted(pid) && self.len() >= self.capacity() {
            return false;
        }
        let was = self.is_wanted(pid);
        let e = self.until.entry(pid).or_insert(0);
        *e = (*e).max(until_ns);
        self.changed |= !was;
        true
    }

    /// Replaces the set of pids a named holder wants for good (e.g. the
    /// server processes trace-profiling follows). False when full.
    pub fn hold(&mut self, holder: &str, pids: &[u32]) -> bool {
        let new: BTreeSet<u32> = pids.iter().copied().collect();
        let extra = new.iter().filter(|p| !self.is_wanted(**p)).count();
        if self.len() + extra > self.capacity() {
            return false;
        }
        let before = self.pids();
        self.held.insert(holder.to_string(), new);
        self.changed |= before != self.pids();
        true
    }

    /// Forgets the pids whose time is up (and exited processes via `alive`).
    pub fn expire(&mut self, now_ns: u64) {
        let before = self.until.len();
        self.until.retain(|_, t| *t > now_ns);
        if self.until.len() != before {
            self.changed = true;
        }
    }

    pub fn is_wanted(&self, pid: u32) -> bool {
        self.until.contains_key(&pid) || self.held.values().any(|s| s.contains(&pid))
    }

    /// Every pid wanted now, sorted.
    pub fn pids(&self) -> Vec<u32> {
        let mut s: BTreeSet<u32> = self.until.keys().copied().collect();
        for h in self.held.values() {
            s.extend(h.iter().copied());
        }
        s.into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.pids().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn capacity(&self) -> usize {
        if self.capacity == 0 {
            4096
        } else {
            self.capacity
        }
    }

    /// The new pid set, once after each change.
    pub fn take_change(&mut self) -> Option<Vec<u32>> {
        std::mem::take(&mut self.changed).then(|| self.pids())
    }

    /// The owner of the probe reports the set the kernel now follows.
    pub fn applied(&mut self, pids: &[u32]) {
        self.applied = pids.iter().copied().collect();
    }

    /// Whether the kernel follows `pid` already.
    pub fn is_applied(&self, pid: u32) -> bool {
        self.applied.contains(&pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_expiry_and_changes() {
        let mut i = Interest::new(3);
        assert!(i.want_until(10, 100));
        assert!(!i.is_applied(10));
        assert_eq!(i.take_change(), Some(vec![10]));
        i.applied(&[10]);
        assert!(i.is_applied(10));
        assert_eq!(i.take_change(), None);
        assert!(i.want_until(10, 200));
        assert_eq!(i.take_change(), None, "extending is not a change");
        assert!(i.hold("servers", &[20, 10]));
        assert_eq!(i.take_change(), Some(vec![10, 20]));
        i.expire(250);
        assert_eq!(i.pids(), vec![10, 20], "10 is still held");
        assert!(i.want_until(30, 300));
        assert!(!i.want_until(40, 300), "full");
        i.hold("servers", &[]);
        i.expire(400);
        assert!(i.is_empty());
        assert_eq!(i.take_change(), Some(vec![]));
    }
}
