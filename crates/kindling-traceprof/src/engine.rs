//! The stateful driver: offers every server-side request to the sampler,
//! builds the kept ones once their threads' slices have arrived (`settle`
//! after the request's end), and says what to store and what to remove
//! (a kept profile displaced by a later request of its window).
//!
//! Which processes are followed: every process seen serving requests, up to
//! `follow_processes` (the least recently active one gives way when full).
//! A request whose process was not followed over its whole window gets no
//! profile (counted as `not_followed`): a newly seen server's first
//! requests, or requests older than the timelines' retention.

use crate::assemble::{assemble, Input};
use crate::doc::TraceProfile;
use crate::hash::hash;
use crate::sampler::{Change, Ident, KeptBecause, Offer, Sampler, SamplerConfig};
use kindling_profile::{Symbolizer, Timelines};
use kindling_requests::{RequestRecord, Side};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceProfConfig {
    pub enabled: bool,
    pub sampler: SamplerConfig,
    /// Time shown before and after each request.
    pub edge_ns: u64,
    /// How long after a request's end its profile is built (its threads'
    /// last slices arrive when they next switch in).
    pub settle_ns: u64,
    pub follow_processes: usize,
    /// Bytes of profiles stored per sampling window at most.
    pub max_bytes_per_window: u64,
    pub max_threads: usize,
    pub max_slices: usize,
    /// Profiles built per call of `build_settled` at most (the analysis
    /// thread's time; the rest wait for the next call).
    pub max_builds_per_tick: usize,
    /// Client-side records remembered for downstream attribution.
    pub downstream_records: usize,
}

impl Default for TraceProfConfig {
    fn default() -> Self {
        TraceProfConfig {
            enabled: true,
            sampler: SamplerConfig::default(),
            edge_ns: 20_000_000,
            settle_ns: 1_000_000_000,
            follow_processes: 32,
            max_bytes_per_window: 16 * 1024 * 1024,
            max_threads: 16,
            max_slices: 2_000,
            max_builds_per_tick: 16,
            downstream_records: 20_000,
        }
    }
}

/// What to do with the store.
#[derive(Debug)]
pub enum Action {
    /// A profile to keep, with its JSON (serialized once: its size is what
    /// the disk budget counts, and what the store writes).
    Store { profile: Box<TraceProfile>, json: String },
    /// A stored profile no longer kept (displaced in its window).
    Remove(String),
}

/// Counts, for self-telemetry. Every offered request is accounted for by
/// the sampler's own stats; these count what happens after.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceProfStats {
    pub built: u64,
    pub removed: u64,
    /// Server requests of processes not followed over their window.
    pub not_followed: u64,
    /// Processes that could not be followed (`follow_processes` reached).
    pub follow_full: u64,
    /// Kept, but over the window's byte budget: not stored.
    pub over_budget: u64,
    /// Downstream records forgotten before their time (buffer full).
    pub downstream_evicted: u64,
    pub sampler: crate::sampler::SamplerStats,
}

struct Kept {
    because: KeptBecause,
    window: u64,
    /// Set once built and stored: (id, bytes).
    stored: Option<(String, u64)>,
}

pub struct TraceProfiler {
    cfg: TraceProfConfig,
    sampler: Sampler,
    /// The records of the sampler's members (and of kept ones not yet built).
    records: HashMap<Ident, Arc<RequestRecord>>,
    kept: HashMap<Ident, Kept>,
    due: BTreeSet<(u64, Ident)>,
    downstream: VecDeque<Arc<RequestRecord>>,
    /// Followed server pids and when each last served a request.
    followed: HashMap<u32, u64>,
    followed_changed: bool,
    bytes: HashMap<u64, u64>,
    actions: Vec<Action>,
    stats: TraceProfStats,
    now_ns: u64,
}

impl TraceProfiler {
    pub fn new(cfg: TraceProfConfig) -> TraceProfiler {
        TraceProfiler {
            sampler: Sampler::new(cfg.sampler.clone()),
            cfg,
            records: HashMap::new(),
            kept: HashMap::new(),
            due: BTreeSet::new(),
            downstream: VecDeque::new(),
            followed: HashMap::new(),
            followed_changed: false,
            bytes: HashMap::new(),
            actions: Vec::new(),
            stats: TraceProfStats::default(),
            now_ns: 0,
        }
    }

    /// A completed request record, and the name of its workload (the
    /// sampling key's first part: a process's threads share it).
    pub fn observe(&mut self, r: &Arc<RequestRecord>, workload: &str, tl: &Timelines) {
        if !self.cfg.enabled {
            return;
        }
        match r.side {
            // Only the followed servers' calls can be a profile's downstream.
            Side::Client if self.followed.contains_key(&r.pid) => self.remember_downstream(r),
            Side::Client => {}
            Side::Server => {
                self.follow(r.pid, r.end_ts_ns);
                let complete = tl.since(r.pid).is_some_and(|s| s <= r.start_ts_ns.saturating_sub(self.cfg.edge_ns));
                if !complete {
                    self.stats.not_followed += 1;
                    return;
                }
                self.offer(r, workload);
            }
        }
    }

    fn remember_downstream(&mut self, r: &Arc<RequestRecord>) {
        if self.downstream.len() >= self.cfg.downstream_records.max(1) {
            self.downstream.pop_front();
            self.stats.downstream_evicted += 1;
        }
        self.downstream.push_back(r.clone());
    }

    fn follow(&mut self, pid: u32, ts: u64) {
        if let Some(t) = self.followed.get_mut(&pid) {
            *t = (*t).max(ts);
            return;
        }
        if self.followed.len() >= self.cfg.follow_processes {
            // The least recently active gives way if it has been idle a window.
            let idle = self.followed.iter().min_by_key(|(_, t)| **t).map(|(p, t)| (*p, *t));
            match idle {
                Some((p, t)) if t + self.cfg.sampler.window_ns < ts => {
                    self.followed.remove(&p);
                }
                _ => {
                    self.stats.follow_full += 1;
                    return;
                }
            }
        }
        self.followed.insert(pid, ts);
        self.followed_changed = true;
    }

    /// The server pids to follow, once after each change.
    pub fn take_followed_change(&mut self) -> Option<Vec<u32>> {
        if !std::mem::take(&mut self.followed_changed) {
            return None;
        }
        let mut v: Vec<u32> = self.followed.keys().copied().collect();
        v.sort_unstable();
        Some(v)
    }

    fn offer(&mut self, r: &Arc<RequestRecord>, workload: &str) {
        let key = format!("{workload}|{}|{}", r.protocol.name(), r.endpoint);
        let h = if r.trace_id.is_empty() {
            hash(&[&r.pid.to_le_bytes(), &r.sock_id.to_le_bytes(), &r.start_ts_ns.to_le_bytes()])
        } else {
            hash(&[r.trace_id.as_bytes()])
        };
        let ident = Ident { hash: h, start_ns: r.start_ts_ns, sock_id: r.sock_id };
        let offer = Offer {
            key: &key,
            ident,
            end_ns: r.end_ts_ns,
            duration_ns: r.duration_ns,
            is_error: r.is_error,
            is_slow: r.is_slow,
        };
        let change = self.sampler.offer(&offer);
        if change.entered {
            self.records.insert(ident, r.clone());
        }
        let window = self.sampler.window_of(r.end_ts_ns);
        self.apply(change, window);
    }

    fn apply(&mut self, c: Change, window: u64) {
        for id in &c.unkept {
            if let Some(k) = self.kept.remove(id) {
                if let Some((pid, bytes)) = k.stored {
                    self.actions.push(Action::Remove(pid));
                    self.stats.removed += 1;
                    if let Some(b) = self.bytes.get_mut(&k.window) {
                        *b = b.saturating_sub(bytes);
                    }
                }
            }
        }
        for (id, because) in &c.kept {
            if let Some(r) = self.records.get(id) {
                self.due.insert((r.end_ts_ns.saturating_add(self.cfg.settle_ns), *id));
                self.kept.insert(*id, Kept { because: *because, window, stored: None });
            }
        }
        for id in &c.left {
            // Out of the sampler: its record is no longer needed once built.
            if self.kept.get(id).is_none_or(|k| k.stored.is_some()) {
                self.records.remove(id);
            }
            if self.kept.get(id).is_some_and(|k| k.stored.is_some()) {
                self.kept.remove(id);
            }
        }
    }

    /// Time passes: windows close.
    pub fn tick(&mut self, now_ns: u64) {
        if !self.cfg.enabled {
            return;
        }
        self.now_ns = self.now_ns.max(now_ns);
        let c = self.sampler.tick(now_ns);
        let w = self.sampler.window_of(now_ns);
        self.apply(c, w);
        // Windows whose profiles are all built and gone from the sampler.
        let open = self.sampler.window_of(now_ns).saturating_sub(self.cfg.sampler.windows_open);
        self.bytes.retain(|w, _| *w >= open);
        let horizon = now_ns.saturating_sub(self.cfg.sampler.window_ns.saturating_mul(2));
        while self.downstream.front().is_some_and(|d| d.end_ts_ns < horizon) {
            self.downstream.pop_front();
        }
    }

    /// Builds the kept profiles whose requests settled (the symbolizer is
    /// the caller's: it lives on one thread).
    pub fn build_settled(&mut self, tl: &Timelines, sample_period_ns: u64, sym: &mut Symbolizer) {
        let mut built = 0;
        while let Some(&(due, id)) = self.due.first() {
            if due > self.now_ns || built >= self.cfg.max_builds_per_tick.max(1) {
                break;
            }
            built += 1;
            self.due.pop_first();
            self.build(id, tl, sample_period_ns, sym);
        }
    }

    /// Whether profiles are waiting to be built (cheap: no symbolizer needed).
    pub fn has_settled(&self) -> bool {
        self.due.first().is_some_and(|(due, _)| *due <= self.now_ns)
    }

    fn build(&mut self, ident: Ident, tl: &Timelines, sample_period_ns: u64, sym: &mut Symbolizer) {
        let Some(k) = self.kept.get(&ident) else { return };
        let Some(r) = self.records.get(&ident).cloned() else { return };
        let id = profile_id(&r);
        let (w0, w1) = (r.start_ts_ns.saturating_sub(self.cfg.edge_ns), r.end_ts_ns + self.cfg.edge_ns);
        let downstream: Vec<Arc<RequestRecord>> = self
            .downstream
            .iter()
            .filter(|d| d.pid == r.pid && d.end_ts_ns > w0 && d.start_ts_ns < w1)
            .cloned()
            .collect();
        let input = Input {
            id: id.clone(),
            request: &r,
            kept_because: k.because,
            edge_ns: self.cfg.edge_ns,
            max_threads: self.cfg.max_threads,
            max_slices: self.cfg.max_slices,
            downstream: &downstream,
            sample_period_ns,
        };
        let window = k.window;
        let doc = assemble(&input, tl, sym);
        let Ok(json) = serde_json::to_string(&doc) else { return };
        let bytes = json.len() as u64;
        let used = self.bytes.entry(window).or_default();
        if *used + bytes > self.cfg.max_bytes_per_window {
            self.stats.over_budget += 1;
            self.kept.remove(&ident);
            self.records.remove(&ident);
            return;
        }
        *used += bytes;
        if let Some(k) = self.kept.get_mut(&ident) {
            k.stored = Some((id, bytes));
        }
        if !self.sampler.is_kept(window, &ident) {
            // Its window closed while it settled: nothing will mention it again.
            self.kept.remove(&ident);
            self.records.remove(&ident);
        }
        self.stats.built += 1;
        self.actions.push(Action::Store { profile: Box::new(doc), json });
    }

    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn stats(&self) -> TraceProfStats {
        TraceProfStats { sampler: self.sampler.stats().clone(), ..self.stats.clone() }
    }

}

/// A profile's id: stable for a request (its process, connection and start).
pub fn profile_id(r: &RequestRecord) -> String {
    format!("{:016x}", hash(&[&r.pid.to_le_bytes(), &r.sock_id.to_le_bytes(), &r.start_ts_ns.to_le_bytes()]))
}
