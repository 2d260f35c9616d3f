//! Latency histograms for percentiles: geometric buckets with integer bounds,
//! each at most 5% wider than its lower bound, from 1 µs to 100 s (one
//! underflow bucket below, one overflow bucket above).
//!
//! A percentile is found by rank in the merged histogram and linearly
//! interpolated inside its bucket, then clamped to the observed min/max. The
//! true (nearest-rank) value lies in the same bucket, so between 1 µs and
//! 100 s the estimate is within [`LATENCY_RELATIVE_ERROR`] of it.

use std::sync::OnceLock;

/// Below this, one bucket `[0, 1 µs)`: no relative-error guarantee.
pub const LATENCY_MIN_NS: u64 = 1_000;
/// At and above this, one bucket bounded by the observed maximum.
pub const LATENCY_MAX_NS: u64 = 100_000_000_000;
/// The worst relative error of a percentile between the two bounds.
pub const LATENCY_RELATIVE_ERROR: f64 = 0.05;

/// `bounds()[i]` is the inclusive lower bound of bucket `i`; bucket `i` ends
/// where `i + 1` starts, the last bucket is unbounded.
pub(crate) fn bounds() -> &'static [u64] {
    static BOUNDS: OnceLock<Vec<u64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut b = vec![0, LATENCY_MIN_NS];
        let mut lo = LATENCY_MIN_NS;
        while lo < LATENCY_MAX_NS {
            // next / lo <= 1.05 exactly (integer division rounds down).
            lo = (lo + lo / 20).min(LATENCY_MAX_NS);
            b.push(lo);
        }
        b
    })
}

pub(crate) fn bucket_count() -> usize {
    bounds().len()
}

#[inline]
pub(crate) fn bucket_of(ns: u64) -> u16 {
    // bounds()[0] == 0 <= ns, so the partition point is >= 1.
    (bounds().partition_point(|&b| b <= ns) - 1) as u16
}

/// A sparse histogram for one time bucket of one edge: (bucket, count)
/// sorted by bucket. Cleared, not freed, when its time slot is reused.
#[derive(Clone, Debug, Default)]
pub(crate) struct SparseHist {
    cells: Vec<(u16, u32)>,
}

impl SparseHist {
    #[inline]
    pub fn add(&mut self, bucket: u16) {
        match self.cells.binary_search_by_key(&bucket, |c| c.0) {
            Ok(i) => self.cells[i].1 = self.cells[i].1.saturating_add(1),
            Err(i) => self.cells.insert(i, (bucket, 1)),
        }
    }

    pub fn clear(&mut self) {
        self.cells.clear();
    }

    pub fn cells(&self) -> &[(u16, u32)] {
        &self.cells
    }
}

/// A merged histogram (a window of time slots, possibly of several edges).
#[derive(Clone, Debug)]
pub(crate) struct DenseHist {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for DenseHist {
    fn default() -> Self {
        DenseHist { counts: vec![0; bucket_count()], total: 0, min: u64::MAX, max: 0 }
    }
}

impl DenseHist {
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    pub fn merge(&mut self, h: &SparseHist, min: u64, max: u64) {
        for &(b, c) in h.cells() {
            if let Some(slot) = self.counts.get_mut(b as usize) {
                *slot += u64::from(c);
                self.total += u64::from(c);
            }
        }
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }

    /// The `q`-quantile (0 < q <= 1) in nanoseconds, `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_finite() { q.clamp(0.0, 1.0) } else { 1.0 };
        if q >= 1.0 {
            return Some(self.max as f64);
        }
        let rank = (q * self.total as f64).max(f64::MIN_POSITIVE);
        let b = bounds();
        let (min, max) = (self.min as f64, self.max as f64);
        let mut cum = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (cum + c) as f64 >= rank {
                let lo = b[i] as f64;
                let hi = b.get(i + 1).map_or(max, |&h| h as f64);
                // The bucket's samples sit at the middles of equal shares of it.
                let frac = ((rank - cum as f64 - 0.5) / c as f64).clamp(0.0, 1.0);
                let est = lo + (hi - lo) * frac;
                return Some(est.clamp(min, max.max(min)));
            }
            cum += c;
        }
        Some(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_increasing_and_within_five_percent() {
        let b = bounds();
        assert_eq!(b[0], 0);
        assert_eq!(b[1], LATENCY_MIN_NS);
        assert_eq!(*b.last().unwrap(), LATENCY_MAX_NS);
        for w in b[1..].windows(2) {
            assert!(w[1] > w[0]);
            assert!((w[1] - w[0]) as f64 <= w[0] as f64 * LATENCY_RELATIVE_ERROR + 1e-9, "{w:?}");
        }
        assert!(b.len() < u16::MAX as usize);
        assert!(b.len() < 400, "{}", b.len());
    }

    #[test]
    fn bucket_of_respects_bounds() {
        let b = bounds();
        for (i, &lo) in b.iter().enumerate() {
            assert_eq!(bucket_of(lo) as usize, i);
            if lo > 0 {
                assert_eq!(bucket_of(lo - 1) as usize, i - 1);
            }
        }
        assert_eq!(bucket_of(u64::MAX) as usize, b.len() - 1);
    }

    #[test]
    fn single_value_is_exact() {
        let mut s = SparseHist::default();
        s.add(bucket_of(1_234_567));
        let mut d = DenseHist::default();
        d.merge(&s, 1_234_567, 1_234_567);
        for q in [0.5, 0.95, 0.99, 1.0] {
            assert_eq!(d.quantile(q), Some(1_234_567.0));
        }
        assert_eq!(DenseHist::default().quantile(0.5), None);
    }
}
