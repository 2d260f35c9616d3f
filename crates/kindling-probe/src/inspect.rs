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
use std::sync::OnceLock;

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
    /// The `bpf_task_pt_regs` helper (5.15+).
    pub task_pt_regs: bool,
    /// `sched_switch` passes the previous task's state (5.18+).
    pub switch_prev_state: bool,
}

impl KernelFeatures {
    /// Reads the kernel's BTF (once per process); a kernel without readable
    /// BTF has none of these (and the probe refuses to start there anyway).
    pub fn detect() -> KernelFeatures {
        static DETECTED: OnceLock<KernelFeatures> = OnceLock::new();
        DETECTED.get_or_init(KernelFeatures::read).clone()
    }

    fn read() -> KernelFeatures {
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
        f.task_pt_regs = has_member("bpf_func_id", "BPF_FUNC_task_pt_regs");
        // sched.bpf.c decides by the kernel version (LINUX_KERNEL_VERSION).
        let release = crate::preflight::kernel_release().unwrap_or_default();
        let (major, minor, _) = crate::preflight::parse_version(&release);
        f.switch_prev_state = (major, minor) >= (5, 18);
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
        if features.sched.is_some() {
            if !self.task_pt_regs {
                out.push(
                    "sched: no bpf_task_pt_regs (kernel < 5.15): off-CPU slices do not name the blocking syscall"
                        .to_string(),
                );
            }
            if !self.switch_prev_state {
                out.push(
                    "sched: sched_switch has no prev_state (kernel < 5.18): blocked vs preempted is read \
                     from the task (a racing wake-up can blur it)"
                        .to_string(),
                );
            }
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

/// How many programs the modules enabled in `features` load on this kernel,
/// read from the objects without loading them (for reports when a load fails).
pub fn program_count(features: &Features) -> Result<usize, crate::ProbeError> {
    use libbpf_rs::skel::{OpenSkel, SkelBuilder};
    use std::mem::MaybeUninit;
    let open_err = crate::loader::open_err;
    let mut n = 0;
    if features.sockets {
        let mut storage = MaybeUninit::uninit();
        let mut open = crate::skel::KindlingSkelBuilder::default().open(&mut storage).map_err(open_err)?;
        crate::sockets::choose_iov_walk(open.open_object_mut(), KernelFeatures::detect().bpf_loop);
        n += open.open_object().progs().filter(|p| p.autoload()).count();
    }
    if features.tcp {
        let mut storage = MaybeUninit::uninit();
        let open = crate::tcp_skel::TcpSkelBuilder::default().open(&mut storage).map_err(open_err)?;
        n += open.open_object().progs().count();
    }
    if features.sched.is_some() {
        let mut storage = MaybeUninit::uninit();
        let open = crate::sched_skel::SchedSkelBuilder::default().open(&mut storage).map_err(open_err)?;
        n += open.open_object().progs().count();
    }
    Ok(n)
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
        let all = Features { sockets: true, tcp: true, sched: Some(Default::default()) };
        let lines = none.degradations(&all);
        assert_eq!(lines.len(), 7);
        assert!(lines.iter().all(|l| !l.contains('\n')));
        let only_tcp = Features { sockets: false, tcp: true, sched: None };
        assert_eq!(none.degradations(&only_tcp).len(), 1);
        let full = KernelFeatures {
            task_storage: true,
            bpf_loop: true,
            rdonly_cast: true,
            current_task_btf: true,
            skb_drop_reason: true,
            task_pt_regs: true,
            switch_prev_state: true,
        };
        assert!(full.degradations(&all).is_empty());
    }
}
