//! What the running kernel offers the BPF programs, and how often each
//! attached program ran: for the one-line notices printed when a module falls
//! back to a slower or narrower path, and for `kindling selftest`.
//!
//! The feature checks mirror the ones the programs make at load time (CO-RE
//! `bpf_core_enum_value_exists` and weak kfuncs resolve against the kernel's
//! BTF), so a notice is printed exactly when the object takes its fallback.

use crate::loader::Features;
use libbpf_rs::btf::types::{Enum, Func};
use libbpf_rs::btf::Btf;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};

/// Optional kernel features the programs use when present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFeatures {
    /// Task-local storage usable from tracepoint programs.
    pub task_storage: bool,
    /// The `bpf_loop` helper (5.17+).
    pub bpf_loop: bool,
    /// The `bpf_rdonly_cast` kfunc (6.2+).
    pub rdonly_cast: bool,
    /// The `bpf_get_current_task_btf` helper (5.11+).
    pub current_task_btf: bool,
    /// `kfree_skb` carries a drop reason (5.17+).
    pub skb_drop_reason: bool,
}

impl KernelFeatures {
    /// Reads the kernel's BTF once; a kernel without readable BTF has none of
    /// these (and the probe refuses to start there anyway).
    pub fn detect() -> KernelFeatures {
        let mut f = KernelFeatures {
            task_storage: crate::sockets::task_storage_supported(),
            ..KernelFeatures::default()
        };
        let Ok(btf) = Btf::from_vmlinux() else {
            return f;
        };
        let has_member = |enum_name: &str, member: &str| {
            btf.type_by_name::<Enum<'_>>(enum_name)
                .is_some_and(|e| e.iter().any(|m| m.name.is_some_and(|n| n == member)))
        };
        f.bpf_loop = has_member("bpf_func_id", "BPF_FUNC_loop");
        f.current_task_btf = has_member("bpf_func_id", "BPF_FUNC_get_current_task_btf");
        f.skb_drop_reason = has_member("skb_drop_reason", "SKB_DROP_REASON_NOT_SPECIFIED");
        f.rdonly_cast = btf.type_by_name::<Func<'_>>("bpf_rdonly_cast").is_some();
        f
    }

    /// Every fallback the enabled modules take on this kernel, one line each,
    /// saying what is missing and what the agent does instead.
    pub fn degradations(&self, features: &Features) -> Vec<String> {
        let mut out = Vec::new();
        if features.sockets {
            if !self.task_storage {
                out.push(
                    "sockets: task-local storage unavailable to tracepoints (kernel < 5.19): \
                     in-flight syscalls kept in a hash map"
                        .to_string(),
                );
            }
            if !self.bpf_loop {
                out.push(
                    "sockets: no bpf_loop (kernel < 5.17): payload heads of writev/sendmsg \
                     come from the first 8 iovecs only"
                        .to_string(),
                );
            }
            if !self.rdonly_cast {
                out.push("sockets: no bpf_rdonly_cast (kernel < 6.2): socket lookups use CO-RE reads".to_string());
            }
            if !self.current_task_btf {
                out.push(
                    "sockets: no bpf_get_current_task_btf (kernel < 5.11): fd lookups use CO-RE reads".to_string(),
                );
            }
        }
        if features.tcp && !self.skb_drop_reason {
            out.push("tcp: kfree_skb has no drop reason (kernel < 5.17): packet drops are not reported".to_string());
        }
        out
    }
}

/// Prints one warning per fallback the enabled modules take (called once at
/// start-up by the loader).
pub(crate) fn warn_degradations(features: &Features) {
    for line in KernelFeatures::detect().degradations(features) {
        tracing::warn!("{line}");
    }
}

/// While held, the kernel counts every BPF program's runs (BPF_ENABLE_STATS,
/// 5.8+); dropping it turns counting off again (unless someone else holds it).
pub struct RunStats(#[allow(dead_code)] OwnedFd);

/// Turns on run counting for all BPF programs.
pub fn enable_run_stats() -> Result<RunStats, String> {
    // SAFETY: a plain syscall wrapper; it returns a new fd we then own, or < 0.
    let fd = unsafe { libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd).to_string());
    }
    // SAFETY: `fd` was just returned to us by the kernel and nobody else owns it.
    Ok(RunStats(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// How often each loaded BPF program ran so far, by program id (counted only
/// while some `RunStats` is held).
pub fn run_counts() -> HashMap<u32, u64> {
    libbpf_rs::query::ProgInfoIter::default().map(|p| (p.id, p.run_cnt)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_feature_of_an_enabled_module_is_one_line() {
        let none = KernelFeatures::default();
        let all = Features { sockets: true, tcp: true, sched: None };
        let lines = none.degradations(&all);
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let only_tcp = Features { sockets: false, tcp: true, sched: None };
        assert_eq!(none.degradations(&only_tcp).len(), 1);
        let full = KernelFeatures {
            task_storage: true,
            bpf_loop: true,
            rdonly_cast: true,
            current_task_btf: true,
            skb_drop_reason: true,
        };
        assert!(full.degradations(&all).is_empty());
    }
}
