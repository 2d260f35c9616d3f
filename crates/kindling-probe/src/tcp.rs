//! The TCP module (tcp.bpf.c): retransmits, resets, RTT, drops with their
//! kernel reason, connect outcomes and connection summaries.

use crate::loader::{attach_all, check_sections, clear_libbpf_log, load_error, open_err, Module, ProbeConfig, ProbeError};
use crate::preflight::KernelInfo;
use crate::tcp_skel::{TcpSkel, TcpSkelBuilder};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use std::mem::MaybeUninit;

pub(crate) fn setup<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    cfg: &ProbeConfig,
    kernel: &KernelInfo,
) -> Result<Module<TcpSkel<'obj>>, ProbeError> {
    let mut open = TcpSkelBuilder::default().open(storage).map_err(open_err)?;
    check_sections(open.open_object(), kernel)?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.self_tgid = cfg.self_pid;
        ro.retransmit_has_err = retransmit_has_err(&kernel.tracefs);
    }
    clear_libbpf_log();
    let skel = open.load().map_err(load_error)?;
    let attached = attach_all(skel.object())?;
    Ok(Module { skel, attached })
}

/// Whether tcp_retransmit_skb carries the attempt's result (newer kernels
/// trace failed attempts too, which the kernel does not count as retransmits).
fn retransmit_has_err(tracefs: &str) -> bool {
    std::fs::read_to_string(format!("{tracefs}/events/tcp/tcp_retransmit_skb/format"))
        .map(|f| f.contains("field:int err;"))
        .unwrap_or(false)
}
