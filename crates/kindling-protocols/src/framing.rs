//! Framing for protocols whose messages state their own length (PostgreSQL,
//! MySQL, Kafka, DNS over TCP, HTTP with Content-Length, RESP...).
//!
//! The parser sees only the head of each chunk, so a message may spill into
//! later chunks, and the start of the next message may fall in bytes it never
//! sees. [`LengthFramer`] keeps count of one direction: how many bytes of the
//! current message are still to come, and whether we lost the message
//! boundaries (then the next chunk is assumed to start a message, which is how
//! applications write: one message, or a batch of them, per syscall).

/// Where parsing of a chunk should start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The whole chunk continues the current message; nothing starts here.
    /// `ended`: the current message ends exactly at the end of this chunk.
    Inside { ended: bool },
    /// A message starts at this offset. `ended`: an earlier message finished
    /// in this chunk before that offset.
    At { offset: usize, ended: bool },
}

#[derive(Clone, Debug, Default)]
pub struct LengthFramer {
    /// Bytes of the current message still to come in later chunks.
    remaining: usize,
    /// Boundaries were lost (a message started in bytes we could not see).
    lost: u64,
}

impl LengthFramer {
    /// Call once per chunk before parsing it.
    pub fn begin(&mut self, chunk_len: usize) -> Start {
        if self.remaining == 0 {
            return Start::At { offset: 0, ended: false };
        }
        if self.remaining >= chunk_len {
            self.remaining -= chunk_len;
            return Start::Inside { ended: self.remaining == 0 };
        }
        let offset = self.remaining;
        self.remaining = 0;
        Start::At { offset, ended: true }
    }

    /// A message of `len` bytes starts at `offset` of a chunk of `chunk_len`
    /// bytes whose first `visible` bytes we have. Returns where the next
    /// message starts if we can see it, and whether this one is complete
    /// within the chunk.
    pub fn message(&mut self, offset: usize, len: usize, chunk_len: usize, visible: usize) -> (Option<usize>, bool) {
        let end = offset.saturating_add(len);
        if end > chunk_len {
            self.remaining = end - chunk_len;
            return (None, false);
        }
        if end >= visible {
            if end < chunk_len {
                // The next message starts in bytes we cannot see.
                self.lost += 1;
            }
            return (None, true);
        }
        (Some(end), true)
    }

    /// The rest of the chunk could not be parsed: forget the boundaries and
    /// assume the next chunk starts a message.
    pub fn resync(&mut self) {
        self.remaining = 0;
        self.lost += 1;
    }

    /// Is a message still in progress (spilling into later chunks)?
    pub fn in_message(&self) -> bool {
        self.remaining > 0
    }

    /// How many times boundaries were lost.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_spill_and_end() {
        let mut f = LengthFramer::default();
        assert_eq!(f.begin(100), Start::At { offset: 0, ended: false });
        // 250-byte message in a 100-byte chunk: continues for 150 more bytes.
        assert_eq!(f.message(0, 250, 100, 100), (None, false));
        assert_eq!(f.begin(100), Start::Inside { ended: false });
        // 50 left: next chunk has the end, then a new message at 50.
        assert_eq!(f.begin(80), Start::At { offset: 50, ended: true });
        assert_eq!(f.message(50, 30, 80, 80), (None, true));
        assert_eq!(f.begin(10), Start::At { offset: 0, ended: false });
    }

    #[test]
    fn several_messages_in_one_chunk() {
        let mut f = LengthFramer::default();
        assert_eq!(f.message(0, 10, 30, 30), (Some(10), true));
        assert_eq!(f.message(10, 10, 30, 30), (Some(20), true));
        assert_eq!(f.message(20, 10, 30, 30), (None, true));
        assert!(!f.in_message());
    }

    #[test]
    fn invisible_boundary_is_counted() {
        let mut f = LengthFramer::default();
        // Chunk of 2000 bytes, we see 512; a 600-byte message ends at 600 < 2000.
        assert_eq!(f.message(0, 600, 2000, 512), (None, true));
        assert_eq!(f.lost(), 1);
        assert_eq!(f.begin(100), Start::At { offset: 0, ended: false });
    }
}
