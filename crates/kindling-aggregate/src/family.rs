//! A bounded store of series found by a hash of *borrowed* key parts, so the
//! hot path (the series already exists) neither allocates nor builds a key.
//!
//! Entries live in a slab; the index maps a 64-bit keyed hash to the head of a
//! collision chain through the slab, and every candidate is confirmed with an
//! exact comparison, so a hash collision can never merge two series.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The index's keys are already keyed SipHash outputs: hashing them again
/// would only cost time.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

const NIL: u32 = u32::MAX;

/// Why a series exists: its own labels, folded past the cap, or the last resort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Exact,
    Overflow,
    CatchAll,
}

pub(crate) struct Entry<K, S> {
    hash: u64,
    next: u32,
    pub kind: Kind,
    pub key: K,
    pub stats: S,
    /// The newest record time that touched the series.
    pub last_ns: u64,
}

pub(crate) struct Family<K, S> {
    index: IdMap<u32>,
    slab: Vec<Option<Entry<K, S>>>,
    free: Vec<u32>,
    exact: usize,
    overflow: usize,
}

impl<K, S> Default for Family<K, S> {
    fn default() -> Self {
        Family { index: IdMap::default(), slab: Vec::new(), free: Vec::new(), exact: 0, overflow: 0 }
    }
}

impl<K, S> Family<K, S> {
    pub fn find(&self, hash: u64, mut eq: impl FnMut(&K) -> bool) -> Option<u32> {
        let mut id = *self.index.get(&hash)?;
        while id != NIL {
            let e = self.slab.get(id as usize)?.as_ref()?;
            if e.hash == hash && eq(&e.key) {
                return Some(id);
            }
            id = e.next;
        }
        None
    }

    pub fn get(&self, id: u32) -> Option<&Entry<K, S>> {
        self.slab.get(id as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Entry<K, S>> {
        self.slab.get_mut(id as usize)?.as_mut()
    }

    pub fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Exact => self.exact,
            Kind::Overflow => self.overflow,
            Kind::CatchAll => self.len() - self.exact - self.overflow,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    pub fn insert(&mut self, hash: u64, kind: Kind, key: K, stats: S, now_ns: u64) -> u32 {
        let head = self.index.get(&hash).copied().unwrap_or(NIL);
        let entry = Entry { hash, next: head, kind, key, stats, last_ns: now_ns };
        let id = match self.free.pop() {
            Some(id) => {
                self.slab[id as usize] = Some(entry);
                id
            }
            None => {
                self.slab.push(Some(entry));
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(hash, id);
        match kind {
            Kind::Exact => self.exact += 1,
            Kind::Overflow => self.overflow += 1,
            Kind::CatchAll => {}
        }
        id
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry<K, S>> + Clone {
        self.slab.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry<K, S>> {
        self.slab.iter_mut().flatten()
    }

    /// Drops the entries `keep` refuses (calling `on_remove` for each) and
    /// relinks the index. O(entries); meant for periodic sweeps.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry<K, S>) -> bool, mut on_remove: impl FnMut(Entry<K, S>)) {
        let mut removed = false;
        for (id, slot) in self.slab.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|e| !keep(e)) {
                if let Some(e) = slot.take() {
                    match e.kind {
                        Kind::Exact => self.exact -= 1,
                        Kind::Overflow => self.overflow -= 1,
                        Kind::CatchAll => {}
                    }
                    self.free.push(id as u32);
                    on_remove(e);
                    removed = true;
                }
            }
        }
        if !removed {
            return;
        }
        // Trailing free slots can go back to the allocator.
        while matches!(self.slab.last(), Some(None)) {
            self.slab.pop();
        }
        let len = self.slab.len() as u32;
        self.free.retain(|&id| id < len);
        self.index.clear();
        for (id, slot) in self.slab.iter_mut().enumerate() {
            if let Some(e) = slot {
                e.next = self.index.insert(e.hash, id as u32).unwrap_or(NIL);
            }
        }
        if self.slab.capacity() > 2 * self.slab.len() + 64 {
            self.slab.shrink_to_fit();
            self.index.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collisions_chain_and_survive_retain() {
        let mut f: Family<u32, u64> = Family::default();
        // Same hash, different keys: both must be found exactly.
        let a = f.insert(7, Kind::Exact, 1, 10, 0);
        let b = f.insert(7, Kind::Exact, 2, 20, 0);
        let c = f.insert(9, Kind::Overflow, 3, 30, 0);
        assert_eq!(f.find(7, |k| *k == 1), Some(a));
        assert_eq!(f.find(7, |k| *k == 2), Some(b));
        assert_eq!(f.find(7, |k| *k == 3), None);
        assert_eq!(f.find(9, |k| *k == 3), Some(c));
        assert_eq!((f.count(Kind::Exact), f.count(Kind::Overflow), f.len()), (2, 1, 3));
        let mut gone = Vec::new();
        f.retain(|e| e.key != 2, |e| gone.push(e.key));
        assert_eq!(gone, vec![2]);
        assert_eq!(f.find(7, |k| *k == 1), Some(a));
        assert_eq!(f.find(7, |k| *k == 2), None);
        assert_eq!(f.find(9, |k| *k == 3), Some(c));
        // The freed slot is reused.
        let d = f.insert(7, Kind::Exact, 4, 40, 0);
        assert_eq!(f.find(7, |k| *k == 4), Some(d));
        assert_eq!(f.find(7, |k| *k == 1), Some(a));
        assert_eq!(f.len(), 3);
        f.retain(|_| false, |_| {});
        assert_eq!(f.len(), 0);
        assert_eq!(f.find(7, |k| *k == 1), None);
    }
}
