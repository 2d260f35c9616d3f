//! A kept trace-profile as a flame graph (`/api/v1/profiles/{id}/flamegraph`):
//! the critical path's on-CPU samples, and its off-CPU waits weighted by
//! their time under a root frame naming the wait (`offcpu:net`, ...).

use crate::doc::TraceProfile;
use kindling_profile::flame::StackMerger;
use kindling_profile::{Profile, ProfileType};
use std::sync::Arc;

pub fn flame(p: &TraceProfile, kind: ProfileType) -> Profile {
    let period = p.oncpu_stacks.first().map(|s| s.weight_ns / s.samples.max(1)).unwrap_or(0);
    let mut out = Profile {
        pid: p.request.pid,
        kind_name: kind.name(),
        start_ns: p.request.start_ts_ns,
        end_ns: p.request.end_ts_ns,
        sample_period_ns: period,
        ..Default::default()
    };
    let mut merger = StackMerger::default();
    let mut add = |root: Option<String>, leaf_first: &[String], count: u64, weight: u64, out: &mut Profile| {
        let names = root.into_iter().chain(leaf_first.iter().rev().cloned()).map(|n| Arc::from(n.as_str()));
        merger.add(out, names, count, weight);
    };
    if matches!(kind, ProfileType::OnCpu | ProfileType::Both) {
        for s in &p.oncpu_stacks {
            let root = (kind == ProfileType::Both).then(|| "oncpu".to_string());
            add(root, &s.stack, s.samples, s.weight_ns, &mut out);
        }
    }
    if matches!(kind, ProfileType::OffCpu | ProfileType::Both) {
        for seg in p.path.iter().filter(|s| s.state != "oncpu") {
            let stack = p
                .threads
                .iter()
                .filter(|t| t.tid == seg.tid)
                .flat_map(|t| t.slices.iter())
                .find(|s| s.state == seg.state && s.start_ns <= seg.start_ns && s.end_ns >= seg.end_ns)
                .map(|s| s.stack.clone())
                .unwrap_or_default();
            let stack = if stack.is_empty() { vec!["[no stack]".to_string()] } else { stack };
            add(Some(format!("offcpu:{}", seg.state)), &stack, 1, seg.end_ns.saturating_sub(seg.start_ns), &mut out);
        }
    }
    merger.finish(&mut out);
    out
}
