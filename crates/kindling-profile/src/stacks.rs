//! Stacks as the kernel sends them: frames once per generation, then
//! referred to by a 64-bit hash. Interned here as shared frame lists, so a
//! slice or sample holds its stack by reference and forgetting the table
//! never invalidates what was already stored.

use std::collections::HashMap;
use std::sync::Arc;

/// Instruction addresses, leaf first.
pub type Frames = Arc<[u64]>;

/// A stack hash -> frames table with a capacity: when full it is cleared and
/// the caller asks the kernel for a new generation (which resends stacks).
#[derive(Debug)]
pub struct StackTable {
    stacks: HashMap<u64, Frames>,
    capacity: usize,
    /// References to hashes we had no frames for.
    pub unknown: u64,
    /// Times the table was cleared because it was full.
    pub resets: u64,
    reset_pending: bool,
}

impl StackTable {
    pub fn new(capacity: usize) -> StackTable {
        StackTable { stacks: HashMap::new(), capacity: capacity.max(1), unknown: 0, resets: 0, reset_pending: false }
    }

    pub fn insert(&mut self, id: u64, frames: &[u64]) {
        if self.stacks.len() >= self.capacity && !self.stacks.contains_key(&id) {
            self.stacks.clear();
            self.resets += 1;
            self.reset_pending = true;
        }
        self.stacks.insert(id, frames.into());
    }

    /// The frames of a stack hash (0 is "no stack").
    pub fn get(&mut self, id: u64) -> Option<Frames> {
        if id == 0 {
            return None;
        }
        match self.stacks.get(&id) {
            Some(f) => Some(f.clone()),
            None => {
                self.unknown += 1;
                None
            }
        }
    }

    /// True once after each reset: the kernel must start a new generation.
    pub fn take_reset(&mut self) -> bool {
        std::mem::take(&mut self.reset_pending)
    }

    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_generations() {
        let mut t = StackTable::new(2);
        t.insert(1, &[10, 11]);
        t.insert(2, &[20]);
        assert_eq!(t.get(1).as_deref(), Some(&[10u64, 11][..]));
        let held = t.get(2).unwrap();
        t.insert(3, &[30]);
        assert_eq!(t.len(), 1);
        assert!(t.take_reset());
        assert!(!t.take_reset());
        assert_eq!(&held[..], &[20]);
        assert!(t.get(1).is_none());
        assert_eq!(t.unknown, 1);
        assert!(t.get(0).is_none());
        assert_eq!(t.unknown, 1);
    }
}
