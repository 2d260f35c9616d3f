//! The scheduler module (sched.bpf.c): per-thread on/off-CPU timelines and
//! CPU samples with stacks, for profiling.

use crate::loader::{attach_all, check_sections, clear_libbpf_log, load_error, open_err, Module, ProbeConfig, ProbeError};
use crate::preflight::KernelInfo;
use crate::sched_skel::{SchedSkel, SchedSkelBuilder};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use std::mem::MaybeUninit;

/// What to profile.
#[derive(Clone, Debug, Default)]
pub struct SchedConfig {
    /// Processes whose threads are recorded (empty: none).
    pub pids: Vec<u32>,
    /// On-CPU sampling frequency (Hz).
    pub sample_hz: u32,
}

pub(crate) fn setup<'obj>(
    storage: &'obj mut MaybeUninit<libbpf_rs::OpenObject>,
    cfg: &ProbeConfig,
    _sc: &SchedConfig,
    kernel: &KernelInfo,
) -> Result<Module<SchedSkel<'obj>>, ProbeError> {
    let mut open = SchedSkelBuilder::default().open(storage).map_err(open_err)?;
    check_sections(open.open_object(), kernel)?;
    if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
        ro.self_tgid = cfg.self_pid;
    }
    clear_libbpf_log();
    let skel = open.load().map_err(load_error)?;
    let attached = attach_all(skel.object())?;
    Ok(Module { skel, attached })
}
