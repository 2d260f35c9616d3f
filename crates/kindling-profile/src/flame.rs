//! From timelines to a flame graph: on-CPU samples (weighted by the sampling
//! period) and off-CPU slices (weighted by their duration, under a root
//! frame naming the reason), aggregated by identical stacks, then
//! symbolized into [`Profile`], which the formats render.

use crate::stacks::Frames;
use crate::symbolize::{Symbolizer, KERNEL_SUFFIX};
use crate::timeline::{State, Timelines};
use std::collections::HashMap;
use std::sync::Arc;

/// Which time a flame graph shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileType {
    OnCpu,
    OffCpu,
    Both,
}

impl ProfileType {
    pub fn from_name(s: &str) -> Option<ProfileType> {
        match s {
            "oncpu" => Some(ProfileType::OnCpu),
            "offcpu" => Some(ProfileType::OffCpu),
            "both" => Some(ProfileType::Both),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProfileType::OnCpu => "oncpu",
            ProfileType::OffCpu => "offcpu",
            ProfileType::Both => "both",
        }
    }
}

/// An unsymbolized stack and its weight (ns).
#[derive(Clone, Debug)]
pub struct RawStack {
    /// A frame above the stack: `oncpu` or the off-CPU reason (None for on-CPU-only profiles).
    pub root: Option<&'static str>,
    pub kstack: Option<Frames>,
    pub ustack: Option<Frames>,
    /// Samples (on-CPU) or 0.
    pub count: u64,
    pub weight_ns: u64,
}

/// What a window of a process's timelines holds, before symbolization.
#[derive(Clone, Debug)]
pub struct RawProfile {
    pub pid: u32,
    pub kind: ProfileType,
    pub start_ns: u64,
    pub end_ns: u64,
    pub sample_period_ns: u64,
    pub stacks: Vec<RawStack>,
    /// Total on-CPU samples and off-CPU ns per state name, for summaries.
    pub samples: u64,
    pub offcpu_ns: HashMap<&'static str, u64>,
}

impl RawProfile {
    /// Collects `[t0, t1)` of `pid`. Samples count `sample_period_ns` each.
    pub fn collect(tl: &Timelines, pid: u32, t0: u64, t1: u64, kind: ProfileType, sample_period_ns: u64) -> RawProfile {
        let mut agg: Agg = HashMap::new();
        let mut samples = 0;
        let mut offcpu_ns: HashMap<&'static str, u64> = HashMap::new();
        if kind != ProfileType::OffCpu {
            let root = (kind == ProfileType::Both).then_some("oncpu");
            for s in tl.samples(pid, t0, t1) {
                samples += 1;
                let e = entry(&mut agg, root, &s.kstack, &s.ustack);
                e.count += 1;
                e.weight_ns += sample_period_ns;
            }
        }
        for th in tl.threads(pid, None, t0, t1) {
            for s in th.slices {
                let State::Off(reason) = s.state else { continue };
                *offcpu_ns.entry(reason.name()).or_default() += s.duration_ns();
                if kind == ProfileType::OnCpu {
                    continue;
                }
                let root = Some(reason.name());
                entry(&mut agg, root, &s.kstack, &s.ustack).weight_ns += s.duration_ns();
            }
        }
        let mut stacks: Vec<RawStack> = agg.into_values().collect();
        stacks.sort_by_key(|s| std::cmp::Reverse(s.weight_ns));
        RawProfile { pid, kind, start_ns: t0, end_ns: t1, sample_period_ns, stacks, samples, offcpu_ns }
    }
}

/// Raw stacks by (root, kernel stack, user stack): stacks are interned, so
/// their pointers identify them.
type Agg = HashMap<(Option<&'static str>, usize, usize), RawStack>;

/// The aggregate of one (root, kernel stack, user stack).
fn entry<'a>(agg: &'a mut Agg, root: Option<&'static str>, k: &Option<Frames>, u: &Option<Frames>) -> &'a mut RawStack {
    let key = |f: &Option<Frames>| f.as_ref().map(|a| Arc::as_ptr(a) as *const u64 as usize).unwrap_or(0);
    agg.entry((root, key(k), key(u)))
        .or_insert_with(|| RawStack { root, kstack: k.clone(), ustack: u.clone(), count: 0, weight_ns: 0 })
}

/// Builds a [`Profile`]'s frames and stacks: names interned in first-seen
/// order, equal stacks merged, heaviest first. Every flame graph is made so.
#[derive(Default)]
pub struct StackMerger {
    index: HashMap<Arc<str>, u32>,
    merged: HashMap<Vec<u32>, (u64, u64)>,
}

impl StackMerger {
    /// One stack, root frame first, with its sample count and weight.
    pub fn add(&mut self, p: &mut Profile, root_first: impl IntoIterator<Item = Arc<str>>, count: u64, weight_ns: u64) {
        let ids: Vec<u32> = root_first
            .into_iter()
            .map(|n| {
                let next = self.index.len() as u32;
                *self.index.entry(n.clone()).or_insert_with(|| {
                    p.frames.push(n);
                    next
                })
            })
            .collect();
        let e = self.merged.entry(ids).or_default();
        e.0 += count;
        e.1 += weight_ns;
    }

    /// Fills `p.stacks`, heaviest first.
    pub fn finish(self, p: &mut Profile) {
        p.stacks = self.merged.into_iter().map(|(k, (c, w))| (k, c, w)).collect();
        p.stacks.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    }
}

/// A symbolized, aggregated profile: frames interned, stacks root first.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub pid: u32,
    pub kind_name: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
    pub sample_period_ns: u64,
    pub frames: Vec<Arc<str>>,
    /// (frame indices root -> leaf, sample count, weight in ns), heaviest first.
    pub stacks: Vec<(Vec<u32>, u64, u64)>,
}

impl Profile {
    /// Names the frames of a raw profile. Kernel frames of the probe itself
    /// (the tracepoint and BPF machinery at the leaf) are left out.
    pub fn symbolize(raw: &RawProfile, sym: &mut Symbolizer) -> Profile {
        sym.refresh_perf_map(raw.pid);
        let mut user_addrs: Vec<u64> = Vec::new();
        let mut kernel_addrs: Vec<u64> = Vec::new();
        for s in &raw.stacks {
            if let Some(u) = &s.ustack {
                user_addrs.extend(call_sites(u));
            }
            if let Some(k) = &s.kstack {
                kernel_addrs.extend(call_sites(k));
            }
        }
        user_addrs.sort_unstable();
        user_addrs.dedup();
        kernel_addrs.sort_unstable();
        kernel_addrs.dedup();
        let user: HashMap<u64, Arc<str>> =
            user_addrs.iter().copied().zip(sym.user(raw.pid, &user_addrs)).collect();
        let kernel: HashMap<u64, Arc<str>> = kernel_addrs.iter().copied().zip(sym.kernel(&kernel_addrs)).collect();

        let mut p = Profile {
            pid: raw.pid,
            kind_name: raw.kind.name(),
            start_ns: raw.start_ns,
            end_ns: raw.end_ns,
            sample_period_ns: raw.sample_period_ns,
            ..Default::default()
        };
        let mut merger = StackMerger::default();
        for s in &raw.stacks {
            let mut names: Vec<Arc<str>> = Vec::new();
            if let Some(r) = s.root {
                names.push(r.into());
            }
            if let Some(u) = &s.ustack {
                names.extend(call_sites(u).collect::<Vec<_>>().iter().rev().map(|a| user[a].clone()));
            }
            if let Some(k) = &s.kstack {
                let mut ks: Vec<Arc<str>> = call_sites(k).map(|a| kernel[&a].clone()).collect();
                trim_probe_frames(&mut ks);
                names.extend(ks.into_iter().rev());
            }
            if names.is_empty() || (s.root.is_some() && names.len() == 1) {
                names.push("[no stack]".into());
            }
            merger.add(&mut p, names, s.count, s.weight_ns);
        }
        merger.finish(&mut p);
        p
    }

    /// Total weight in ns.
    pub fn total_ns(&self) -> u64 {
        self.stacks.iter().map(|s| s.2).sum()
    }

    /// Weight (ns) of stacks that contain a frame whose name contains `needle`.
    pub fn weight_with(&self, needle: &str) -> u64 {
        self.stacks
            .iter()
            .filter(|s| s.0.iter().any(|f| self.frames[*f as usize].contains(needle)))
            .map(|s| s.2)
            .sum()
    }
}

/// Leaf first; return addresses (all but the leaf) point after their call:
/// one byte back lands inside the calling instruction's function.
pub(crate) fn call_sites(frames: &[u64]) -> impl Iterator<Item = u64> + '_ {
    frames.iter().enumerate().map(|(i, a)| if i == 0 { *a } else { a.saturating_sub(1) })
}

/// Drops the leaf-side frames that belong to the tracepoint and BPF call path
/// (they are how the stack was taken, not what the thread did).
pub(crate) fn trim_probe_frames(leaf_first: &mut Vec<Arc<str>>) {
    let probe = |n: &str| {
        let n = n.strip_suffix(KERNEL_SUFFIX).unwrap_or(n);
        n.starts_with("bpf_")
            || n.starts_with("__bpf_")
            || n.starts_with("__traceiter_")
            || n.starts_with("perf_trace")
            || n.starts_with("__perf_")
            || n.starts_with("perf_")
            || n.starts_with("trace_call_bpf")
    };
    // The probe's own frames sit at the leaf, sometimes around an address
    // with no good symbol (the BPF program itself): cut up to the last one.
    let Some(first) = leaf_first.iter().take(4).position(|n| probe(n)) else { return };
    let end = leaf_first[first..].iter().position(|n| !probe(n)).map_or(leaf_first.len(), |i| first + i);
    leaf_first.drain(..end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_frames_are_trimmed_at_the_leaf_only() {
        let mut v: Vec<Arc<str>> = ["__stop_x_[k]", "bpf_trace_run4_[k]", "__schedule_[k]", "bpf_y_[k]"]
            .into_iter()
            .map(Arc::from)
            .collect();
        trim_probe_frames(&mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(&*v[0], "__schedule_[k]");
    }

    #[test]
    fn call_sites_step_back_except_the_leaf() {
        let v: Vec<u64> = call_sites(&[100, 200, 300]).collect();
        assert_eq!(v, vec![100, 199, 299]);
    }

    #[test]
    fn profile_types() {
        for t in [ProfileType::OnCpu, ProfileType::OffCpu, ProfileType::Both] {
            assert_eq!(ProfileType::from_name(t.name()), Some(t));
        }
        assert_eq!(ProfileType::from_name("cpu"), None);
    }
}
