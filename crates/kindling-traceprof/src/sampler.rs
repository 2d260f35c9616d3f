//! Which requests keep a trace-profile, without anyone choosing.
//!
//! Per key (workload, protocol, endpoint) and window (by the request's end,
//! default 60 s) the rule keeps:
//! - **errors**: up to `errors` failed requests, those with the smallest
//!   hash of their identity (bottom-k: a uniform sample, the same one
//!   whatever the order of arrival);
//! - **slow**: the `slow` slowest of the slow requests that did not fail
//!   (top-k by duration, ties broken by hash);
//! - **baseline**: `baseline` of the others (neither slow nor failed),
//!   smallest hash first;
//!
//! and at most `max_per_window` in all: every key's members are ranked by
//! (their rank within their key and class, class, hash) and the first
//! `max_per_window` are kept, so a busy window keeps every key's worst
//! error, slowest request and baseline before anyone's second. Everything
//! here is a function of the set of requests seen, never of their order:
//! the kept set after the last request of a window is the rule's.
//!
//! The hash is of the trace id when there is one (so services that see the
//! same trace tend to keep it together), else of the request's own identity.
//!
//! Bounded: `max_keys` keys per window (requests of further keys are
//! counted, not considered), `windows_open` windows at once (a request for
//! an older window is counted as late).

use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    pub window_ns: u64,
    pub errors: usize,
    pub slow: usize,
    pub baseline: usize,
    pub max_per_window: usize,
    pub max_keys: usize,
    /// Windows considered at once (the newest and the ones before it).
    pub windows_open: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            window_ns: 60_000_000_000,
            errors: 3,
            slow: 3,
            baseline: 1,
            max_per_window: 200,
            max_keys: 2_000,
            windows_open: 2,
        }
    }
}

/// Why a profile was kept (`kept_because`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeptBecause {
    Error,
    Slow,
    Baseline,
}

impl KeptBecause {
    pub fn name(self) -> &'static str {
        match self {
            KeptBecause::Error => "error",
            KeptBecause::Slow => "slow",
            KeptBecause::Baseline => "baseline",
        }
    }

    fn order(self) -> u8 {
        self as u8
    }
}

/// A request's identity for sampling: its hash first (the rule's order),
/// then what makes it unique among requests of the same trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident {
    pub hash: u64,
    pub start_ns: u64,
    pub sock_id: u64,
}

/// What the sampler needs to know of a request.
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// The key (workload, protocol, endpoint), joined.
    pub key: &'a str,
    pub ident: Ident,
    pub end_ns: u64,
    pub duration_ns: u64,
    pub is_error: bool,
    pub is_slow: bool,
}

impl Offer<'_> {
    pub fn class(&self) -> KeptBecause {
        if self.is_error {
            KeptBecause::Error
        } else if self.is_slow {
            KeptBecause::Slow
        } else {
            KeptBecause::Baseline
        }
    }
}

/// What one offer (or the closing of windows) changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The offered request became a candidate of its key.
    pub entered: bool,
    /// Candidates no longer considered (displaced in their key, or their
    /// window closed): their requests can be forgotten unless kept.
    pub left: Vec<Ident>,
    /// Newly kept.
    pub kept: Vec<(Ident, KeptBecause)>,
    /// No longer kept (displaced by a later request of the same window).
    pub unkept: Vec<Ident>,
}

/// Counts, for self-telemetry: every request offered ends up in exactly one
/// of `entered`, `not_selected`, `keys_full`, `late`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SamplerStats {
    pub offered: u64,
    pub entered: u64,
    /// Not among its key's errors, slowest or baseline when offered.
    pub not_selected: u64,
    /// Its window already had `max_keys` other keys.
    pub keys_full: u64,
    /// Its window was already closed.
    pub late: u64,
    /// Kept, then displaced.
    pub displaced: u64,
}

#[derive(Default)]
struct KeySet {
    errors: BTreeSet<Ident>,
    slow: BTreeSet<(std::cmp::Reverse<u64>, Ident)>,
    baseline: BTreeSet<Ident>,
    /// This key's entries in the window's ranking.
    ranked: Vec<Rank>,
}

/// (rank within key and class, class, ident): the window's global order.
type Rank = (u32, u8, Ident);

#[derive(Default)]
struct Window {
    keys: HashMap<String, KeySet>,
    ranked: BTreeSet<Rank>,
    kept: HashMap<Ident, KeptBecause>,
}

/// Inserts `v` if it is among the `k` smallest; returns (inserted, evicted).
fn bottom_k<T: Ord + Copy>(set: &mut BTreeSet<T>, v: T, k: usize) -> (bool, Option<T>) {
    if k == 0 || set.contains(&v) {
        return (false, None);
    }
    if set.len() < k {
        set.insert(v);
        return (true, None);
    }
    match set.iter().next_back().copied() {
        Some(last) if v < last => {
            set.remove(&last);
            set.insert(v);
            (true, Some(last))
        }
        _ => (false, None),
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    windows: BTreeMap<u64, Window>,
    /// The newest window seen (by offers or time).
    newest: u64,
    stats: SamplerStats,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler { cfg, windows: BTreeMap::new(), newest: 0, stats: SamplerStats::default() }
    }

    pub fn window_of(&self, end_ns: u64) -> u64 {
        end_ns / self.cfg.window_ns.max(1)
    }

    /// Considers one request.
    pub fn offer(&mut self, o: &Offer<'_>) -> Change {
        self.stats.offered += 1;
        let w = self.window_of(o.end_ns);
        let mut change = Change::default();
        if w + self.cfg.windows_open <= self.newest {
            self.stats.late += 1;
            return change;
        }
        if w > self.newest {
            self.newest = w;
            self.close_before(w.saturating_sub(self.cfg.windows_open - 1), &mut change);
        }
        let cfg = &self.cfg;
        let win = self.windows.entry(w).or_default();
        if !win.keys.contains_key(o.key) && win.keys.len() >= cfg.max_keys {
            self.stats.keys_full += 1;
            return change;
        }
        let set = win.keys.entry(o.key.to_string()).or_default();
        let (entered, evicted) = match o.class() {
            KeptBecause::Error => bottom_k(&mut set.errors, o.ident, cfg.errors),
            KeptBecause::Slow => {
                let (e, ev) = bottom_k(&mut set.slow, (std::cmp::Reverse(o.duration_ns), o.ident), cfg.slow);
                (e, ev.map(|(_, id)| id))
            }
            KeptBecause::Baseline => bottom_k(&mut set.baseline, o.ident, cfg.baseline),
        };
        if !entered {
            self.stats.not_selected += 1;
            return change;
        }
        self.stats.entered += 1;
        change.entered = true;
        change.left.extend(evicted);
        // Re-rank this key's members in the window's order.
        for r in set.ranked.drain(..) {
            win.ranked.remove(&r);
        }
        let mut ranked: Vec<Rank> = Vec::new();
        ranked.extend(set.errors.iter().enumerate().map(|(i, id)| (i as u32, KeptBecause::Error.order(), *id)));
        ranked.extend(set.slow.iter().enumerate().map(|(i, (_, id))| (i as u32, KeptBecause::Slow.order(), *id)));
        ranked.extend(set.baseline.iter().enumerate().map(|(i, id)| (i as u32, KeptBecause::Baseline.order(), *id)));
        win.ranked.extend(ranked.iter().copied());
        set.ranked = ranked;
        // The first max_per_window of the ranking are kept.
        let now: HashMap<Ident, KeptBecause> =
            win.ranked.iter().take(cfg.max_per_window).map(|(_, c, id)| (*id, class_of(*c))).collect();
        for id in win.kept.keys() {
            if !now.contains_key(id) {
                change.unkept.push(*id);
            }
        }
        for (id, c) in &now {
            if !win.kept.contains_key(id) {
                change.kept.push((*id, *c));
            }
        }
        change.unkept.sort_unstable();
        change.kept.sort_unstable();
        self.stats.displaced += change.unkept.len() as u64;
        win.kept = now;
        change
    }

    /// Time passes (event time): windows too old for new requests close.
    pub fn tick(&mut self, now_ns: u64) -> Change {
        let mut change = Change::default();
        let w = self.window_of(now_ns);
        self.newest = self.newest.max(w);
        // A window stays open for requests that end late in the next one.
        self.close_before(w.saturating_sub(self.cfg.windows_open - 1), &mut change);
        change
    }

    fn close_before(&mut self, w: u64, change: &mut Change) {
        let open = self.windows.split_off(&w);
        for (_, win) in std::mem::replace(&mut self.windows, open) {
            for set in win.keys.into_values() {
                change.left.extend(set.ranked.iter().map(|r| r.2));
            }
        }
    }

    /// The kept set of a window (ids and why), in id order.
    pub fn kept(&self, window: u64) -> Vec<(Ident, KeptBecause)> {
        let mut v: Vec<(Ident, KeptBecause)> =
            self.windows.get(&window).map(|w| w.kept.iter().map(|(i, c)| (*i, *c)).collect()).unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Whether `id` is kept now in window `window`.
    pub fn is_kept(&self, window: u64, id: &Ident) -> bool {
        self.windows.get(&window).is_some_and(|w| w.kept.contains_key(id))
    }

    /// Candidates held at most (memory bound): keys × per-key members × windows.
    pub fn members(&self) -> usize {
        self.windows.values().map(|w| w.ranked.len()).sum()
    }

    pub fn stats(&self) -> &SamplerStats {
        &self.stats
    }
}

fn class_of(order: u8) -> KeptBecause {
    match order {
        0 => KeptBecause::Error,
        1 => KeptBecause::Slow,
        _ => KeptBecause::Baseline,
    }
}

/// The rule applied to a whole window at once (for tests and for checking
/// the online sampler): the kept set of `offers`, all of one window.
pub fn select(cfg: &SamplerConfig, offers: &[Offer<'_>]) -> Vec<(Ident, KeptBecause)> {
    let mut by_key: BTreeMap<&str, Vec<&Offer<'_>>> = BTreeMap::new();
    for o in offers {
        by_key.entry(o.key).or_default().push(o);
    }
    // Keys beyond max_keys are those first seen after it was reached; with
    // a whole window at once that is order-dependent, so callers keep
    // within max_keys.
    let mut ranked: Vec<Rank> = Vec::new();
    for list in by_key.values() {
        let mut errors: Vec<Ident> = list.iter().filter(|o| o.is_error).map(|o| o.ident).collect();
        errors.sort_unstable();
        errors.dedup();
        let mut slow: Vec<(std::cmp::Reverse<u64>, Ident)> =
            list.iter().filter(|o| !o.is_error && o.is_slow).map(|o| (std::cmp::Reverse(o.duration_ns), o.ident)).collect();
        slow.sort_unstable();
        slow.dedup();
        let mut base: Vec<Ident> = list.iter().filter(|o| !o.is_error && !o.is_slow).map(|o| o.ident).collect();
        base.sort_unstable();
        base.dedup();
        ranked.extend(errors.iter().take(cfg.errors).enumerate().map(|(i, id)| (i as u32, 0, *id)));
        ranked.extend(slow.iter().take(cfg.slow).enumerate().map(|(i, (_, id))| (i as u32, 1, *id)));
        ranked.extend(base.iter().take(cfg.baseline).enumerate().map(|(i, id)| (i as u32, 2, *id)));
    }
    ranked.sort_unstable();
    let mut out: Vec<(Ident, KeptBecause)> =
        ranked.into_iter().take(cfg.max_per_window).map(|(_, c, id)| (id, class_of(c))).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(h: u64) -> Ident {
        Ident { hash: crate::hash::mix(h), start_ns: h, sock_id: 1 }
    }

    fn offer(key: &str, i: u64, dur: u64, err: bool, slow: bool) -> Offer<'_> {
        Offer { key, ident: id(i), end_ns: 1_000 + i, duration_ns: dur, is_error: err, is_slow: slow }
    }

    /// Replays offers through an online sampler; its final kept set of window 0.
    fn online(cfg: &SamplerConfig, offers: &[Offer<'_>]) -> Vec<(Ident, KeptBecause)> {
        let mut s = Sampler::new(cfg.clone());
        let mut kept: HashMap<Ident, KeptBecause> = HashMap::new();
        for o in offers {
            let c = s.offer(o);
            for u in &c.unkept {
                assert!(kept.remove(u).is_some(), "unkept something not kept");
            }
            for (i, k) in &c.kept {
                assert!(kept.insert(*i, *k).is_none(), "kept twice");
            }
            // Caps hold at every moment, not only at the end.
            assert!(kept.len() <= cfg.max_per_window);
        }
        let mut v: Vec<_> = kept.into_iter().collect();
        v.sort_unstable();
        assert_eq!(v, s.kept(0), "reported changes agree with the sampler's state");
        v
    }

    #[test]
    fn keeps_errors_slowest_and_a_baseline() {
        let cfg = SamplerConfig::default();
        let mut offers = Vec::new();
        for i in 0..100 {
            offers.push(offer("a", i, 1_000 + i, i % 10 == 0, i >= 90));
        }
        let kept = online(&cfg, &offers);
        let slow: Vec<u64> = kept.iter().filter(|k| k.1 == KeptBecause::Slow).map(|k| k.0.start_ns).collect();
        let mut want = vec![97, 98, 99];
        want.sort_by_key(|i| id(*i));
        let mut got = slow.clone();
        got.sort_by_key(|i| id(*i));
        assert_eq!(got, want, "the three slowest non-error slow requests (90 is an error)");
        assert_eq!(kept.iter().filter(|k| k.1 == KeptBecause::Error).count(), 3);
        assert_eq!(kept.iter().filter(|k| k.1 == KeptBecause::Baseline).count(), 1);
        assert_eq!(kept, select(&cfg, &offers));
    }

    #[test]
    fn global_cap_keeps_every_keys_first_before_anyones_second() {
        let cfg = SamplerConfig { max_per_window: 4, ..Default::default() };
        let keys = ["a", "b"];
        let mut offers = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            for i in 0..10u64 {
                offers.push(offer(key, k as u64 * 100 + i, i, false, i >= 5));
            }
        }
        let kept = online(&cfg, &offers);
        assert_eq!(kept.len(), 4);
        // Each key: its slowest (rank 0 slow) and its baseline (rank 0 baseline).
        let classes: Vec<KeptBecause> = kept.iter().map(|k| k.1).collect();
        assert_eq!(classes.iter().filter(|c| **c == KeptBecause::Slow).count(), 2);
        assert_eq!(classes.iter().filter(|c| **c == KeptBecause::Baseline).count(), 2);
        assert!(kept.iter().any(|k| k.0.start_ns == 9) && kept.iter().any(|k| k.0.start_ns == 109));
    }

    #[test]
    fn windows_close_and_late_requests_are_counted() {
        let cfg = SamplerConfig { window_ns: 100, ..Default::default() };
        let mut s = Sampler::new(cfg);
        let mut o = offer("a", 1, 5, false, true);
        o.end_ns = 50;
        assert!(s.offer(&o).entered);
        let mut o2 = offer("a", 2, 5, false, true);
        o2.end_ns = 150;
        assert!(s.offer(&o2).entered);
        let c = s.tick(350);
        assert_eq!(c.left.len(), 2, "both windows closed");
        let mut late = offer("a", 3, 5, false, true);
        late.end_ns = 120;
        s.offer(&late);
        assert_eq!(s.stats().late, 1);
        assert_eq!(s.members(), 0);
    }

    #[test]
    fn keys_are_bounded() {
        let cfg = SamplerConfig { max_keys: 2, ..Default::default() };
        let mut s = Sampler::new(cfg);
        let keys = ["a", "b", "c"];
        for (i, k) in keys.iter().enumerate() {
            s.offer(&offer(k, i as u64, 1, false, false));
        }
        assert_eq!(s.stats().keys_full, 1);
        let st = s.stats();
        assert_eq!(st.offered, st.entered + st.not_selected + st.keys_full + st.late);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// 1000 requests of known durations: the kept set is exactly the
        /// rule's (slowest k, errors k, baseline) in any arrival order, and
        /// the caps hold throughout.
        #[test]
        fn order_independent(seed in any::<u64>(), nkeys in 1usize..6, cap in 1usize..40,
                             k_e in 0usize..4, k_s in 0usize..5) {
            let cfg = SamplerConfig { errors: k_e, slow: k_s, max_per_window: cap, ..Default::default() };
            let keys: Vec<String> = (0..nkeys).map(|k| format!("svc|http|/k{k}")).collect();
            let mut offers = Vec::new();
            let mut x = seed;
            for i in 0..1000u64 {
                x = crate::hash::mix(x.wrapping_add(i));
                let dur = 1_000 + x % 500_000;
                offers.push(Offer {
                    key: &keys[(x >> 20) as usize % nkeys],
                    ident: id(i),
                    end_ns: 1_000 + i,
                    duration_ns: dur,
                    is_error: (x >> 40) % 13 == 0,
                    is_slow: dur > 400_000,
                });
            }
            let want = select(&cfg, &offers);
            prop_assert_eq!(&online(&cfg, &offers), &want);
            let mut rev = offers.clone();
            rev.reverse();
            prop_assert_eq!(&online(&cfg, &rev), &want);
            // A shuffle.
            let mut sh = offers.clone();
            let mut y = seed ^ 0x9e37_79b9;
            for i in (1..sh.len()).rev() {
                y = crate::hash::mix(y);
                sh.swap(i, (y % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(&online(&cfg, &sh), &want);
            prop_assert!(want.len() <= cap);
            let per_key_max = k_e + k_s + 1;
            prop_assert!(want.len() <= nkeys * per_key_max);
        }
    }
}
